//! What inference costs on this machine, and which preset fits a buffer.
//!
//! [`measure`] times kernel steps. It allocates and runs for milliseconds,
//! so it belongs to neither real-time thread: [`Measurement`] runs it on a
//! background thread after the models load and hands the [`CostTable`] to
//! the engine. The fit rule ([`Workload`], [`CostTable::fits`],
//! [`CostTable::choose`]) is arithmetic on `Copy` values and real-time safe.
//!
//! A preset fits a buffer when the worst-case inference work of one buffer,
//! at the p99.9 step cost, stays within the preset's share of the buffer's
//! duration: the melody steps the buffer can hold at the fastest planned
//! tempo, plus every voice's timbre frames (`ceil(block_size / hop)` each).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use rtrb::Producer;

use super::harmonic::hop_for;
use super::models::Role;
use crate::model::kernel::GruKernel;
use crate::model::GruNet;

/// Most presets a cost table holds.
pub const MAX_PRESETS: usize = 8;
/// Steps run untimed before timing starts, so that caches are warm.
pub const WARM_UP_STEPS: usize = 100;
/// Steps timed per model by the background measurement.
pub const MEASURE_STEPS: usize = 300;
/// The budget share of a preset nobody gave one.
pub const DEFAULT_SHARE: f64 = 0.5;

/// Time of one kernel step (a melody step, or one voice's timbre frame) in
/// microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Cost {
    /// Median.
    pub median_us: f64,
    /// 99th percentile: what the fit rule uses.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
}

impl Cost {
    /// The median, p99 and p99.9 of step times in microseconds (0 for none).
    /// Allocates a sorted copy.
    pub fn of(times_us: &[f64]) -> Cost {
        let mut sorted = times_us.to_vec();
        sorted.sort_by(f64::total_cmp);
        let quantile = |q: f64| {
            let last = sorted.len().saturating_sub(1);
            sorted
                .get((last as f64 * q).round() as usize)
                .copied()
                .unwrap_or(0.0)
        };
        Cost {
            median_us: quantile(0.5),
            p99_us: quantile(0.99),
            p999_us: quantile(0.999),
        }
    }

    /// The slower of two costs, compared at the 99th percentile.
    pub fn slower(self, other: Cost) -> Cost {
        if other.p99_us > self.p99_us {
            other
        } else {
            self
        }
    }
}

/// What one preset costs: a melody step, and one voice's timbre frame (the
/// slowest installed instrument's; zero when no instrument is installed).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PresetCost {
    /// One melody step.
    pub melody: Cost,
    /// One timbre frame of one voice.
    pub timbre: Cost,
}

/// The most one host buffer can ask of the inference thread.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Workload {
    /// Samples per buffer (the host's largest).
    pub block_size: usize,
    /// Samples per second.
    pub sample_rate: f64,
    /// Neural voices that may sound at once.
    pub voices: usize,
    /// The fastest tempo planned for, in beats per minute.
    pub tempo: f64,
}

impl Workload {
    /// The buffer's duration in seconds.
    pub fn seconds(&self) -> f64 {
        self.block_size as f64 / self.sample_rate.max(1.0)
    }

    /// Most melody steps (16th notes at [`Workload::tempo`]) one buffer holds.
    pub fn melody_steps(&self) -> usize {
        let step_seconds = 60.0 / (self.tempo.max(1.0) * 4.0);
        (self.seconds() / step_seconds).ceil() as usize
    }

    /// Most timbre frames one voice needs per buffer.
    pub fn frames_per_voice(&self) -> usize {
        self.block_size.div_ceil(hop_for(self.sample_rate as f32))
    }

    /// Microseconds of inference a preset with budget `share` may use per buffer.
    pub fn budget_us(&self, share: f64) -> f64 {
        share * self.seconds() * 1e6
    }

    /// Worst-case inference work per buffer, in microseconds, at the p99.9
    /// costs: a buffer in a thousand may take longer.
    pub fn work_us(&self, cost: &PresetCost) -> f64 {
        let frames = self.voices * self.frames_per_voice();
        self.melody_steps() as f64 * cost.melody.p999_us + frames as f64 * cost.timbre.p999_us
    }
}

/// The presets auto chooses among, best first (the order of
/// [`crate::presets::EMBEDDED`]): each one's budget share and cost. `Copy`
/// and of fixed size, so that it can travel to the audio thread.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CostTable {
    len: usize,
    shares: [f64; MAX_PRESETS],
    costs: [PresetCost; MAX_PRESETS],
    measured: bool,
}

impl CostTable {
    /// Presets with these budget shares whose costs are not known yet: none
    /// fits, so auto runs the cheapest. Presets past [`MAX_PRESETS`] are left out.
    pub fn unmeasured(shares: &[f64]) -> CostTable {
        let mut table = CostTable {
            len: shares.len().min(MAX_PRESETS),
            shares: [DEFAULT_SHARE; MAX_PRESETS],
            costs: [PresetCost::default(); MAX_PRESETS],
            measured: false,
        };
        table.shares[..table.len].copy_from_slice(&shares[..table.len]);
        table
    }

    /// Presets with known costs, best first: `(budget share, cost)` each.
    /// Measured ones come from [`measure_presets`]; tests make them up.
    pub fn measured(presets: &[(f64, PresetCost)]) -> CostTable {
        let shares: Vec<f64> = presets.iter().map(|(share, _)| *share).collect();
        let mut table = CostTable::unmeasured(&shares);
        for (slot, (_, cost)) in table.costs.iter_mut().zip(presets) {
            *slot = *cost;
        }
        table.measured = true;
        table
    }

    /// Number of presets.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the table holds no preset.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the costs are known.
    pub fn is_measured(&self) -> bool {
        self.measured
    }

    /// The budget shares, best preset first.
    pub fn shares(&self) -> &[f64] {
        &self.shares[..self.len]
    }

    /// The cost of a preset, if the table has it and it is known.
    pub fn cost(&self, preset: usize) -> Option<PresetCost> {
        (self.measured && preset < self.len).then(|| self.costs[preset])
    }

    /// Whether a preset's worst-case work fits its share of the buffer.
    /// Real-time safe.
    pub fn fits(&self, preset: usize, workload: &Workload) -> bool {
        self.cost(preset)
            .is_some_and(|cost| workload.work_us(&cost) <= workload.budget_us(self.shares[preset]))
    }

    /// The best preset that fits the buffer, or the cheapest if none does.
    /// Real-time safe.
    pub fn choose(&self, workload: &Workload) -> usize {
        (0..self.len)
            .find(|&preset| self.fits(preset, workload))
            .unwrap_or(self.cheapest())
    }

    /// The cheapest preset: the last.
    pub fn cheapest(&self) -> usize {
        self.len.saturating_sub(1)
    }
}

/// Times `steps` steps of a kernel on the role's example inputs (after
/// [`WARM_UP_STEPS`] untimed ones) and returns their median, p99 and p99.9.
/// Allocates and takes `steps` times a step: call it off the real-time threads.
pub fn measure(kernel: &mut GruKernel, role: Role, steps: usize) -> Cost {
    let shape = kernel.shape();
    let mut state = vec![0.0; shape.state()];
    let mut x = vec![0.0; shape.input];
    let mut y = vec![0.0; shape.output];
    let steps = steps.max(1);
    let mut times = Vec::with_capacity(steps);
    for i in 0..WARM_UP_STEPS + steps {
        role.write_example(i, &mut x);
        let started = Instant::now();
        kernel.step(&x, &mut state, &mut y);
        if i >= WARM_UP_STEPS {
            times.push(started.elapsed().as_secs_f64() * 1e6);
        }
    }
    Cost::of(&times)
}

/// The networks whose costs are measured: each preset's melody network,
/// best preset first, and each instrument's timbre networks in the same
/// order (none for an instrument that is not installed).
#[derive(Clone, Debug, Default)]
pub struct CostModels {
    /// Melody network of each preset.
    pub melody: Vec<GruNet>,
    /// `[instrument][preset]` timbre networks.
    pub timbres: Vec<Vec<GruNet>>,
}

/// Measures every preset's melody step and timbre frame, `steps` steps
/// each; `None` if `stop` is raised first. Allocates; takes a few hundred
/// steps of every network.
pub fn measure_presets(
    models: &CostModels,
    shares: &[f64],
    steps: usize,
    stop: &AtomicBool,
) -> Option<CostTable> {
    let mut presets = Vec::new();
    for (index, melody) in models.melody.iter().enumerate().take(MAX_PRESETS) {
        if stop.load(Ordering::Relaxed) {
            return None;
        }
        let mut cost = PresetCost {
            melody: measure(&mut GruKernel::new(melody), Role::Melody, steps),
            timbre: Cost::default(),
        };
        for net in models
            .timbres
            .iter()
            .filter_map(|variants| variants.get(index))
        {
            if stop.load(Ordering::Relaxed) {
                return None;
            }
            let frame = measure(&mut GruKernel::new(net), Role::Timbre, steps);
            cost.timbre = cost.timbre.slower(frame);
        }
        let share = shares.get(index).copied().unwrap_or(DEFAULT_SHARE);
        presets.push((share, cost));
    }
    Some(CostTable::measured(&presets))
}

/// The background thread that measures costs. Dropping it asks the thread
/// to stop and joins it (within one network's measurement), so that no
/// thread outlives the plugin that started it.
pub struct Measurement {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Measurement {
    /// Starts measuring `models` with these budget shares; the table goes
    /// into `inbox` when done. Allocates; returns at once.
    pub fn spawn(
        models: CostModels,
        shares: Vec<f64>,
        mut inbox: Producer<CostTable>,
    ) -> std::io::Result<Measurement> {
        let stop = Arc::new(AtomicBool::new(false));
        let stop_flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("wren-cost".into())
            .spawn(move || {
                // Measured as the inference thread runs.
                super::denormals::flush();
                let started = Instant::now();
                let Some(table) = measure_presets(&models, &shares, MEASURE_STEPS, &stop_flag)
                else {
                    return;
                };
                for preset in 0..table.len() {
                    if let Some(cost) = table.cost(preset) {
                        log::info!(
                            "cost of preset {preset}: melody step p99 {:.1} us, timbre frame p99 {:.1} us",
                            cost.melody.p99_us,
                            cost.timbre.p99_us
                        );
                    }
                }
                log::info!("costs measured in {:.0} ms", started.elapsed().as_secs_f64() * 1e3);
                let _ = inbox.push(table);
            })?;
        Ok(Measurement {
            stop,
            thread: Some(thread),
        })
    }

    /// Whether the thread has ended.
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }
}

impl Drop for Measurement {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cost(melody_p99: f64, timbre_p99: f64) -> PresetCost {
        let at = |p99_us| Cost {
            median_us: p99_us / 2.0,
            p99_us,
            p999_us: p99_us,
        };
        PresetCost {
            melody: at(melody_p99),
            timbre: at(timbre_p99),
        }
    }

    fn workload(block_size: usize, sample_rate: f64) -> Workload {
        Workload {
            block_size,
            sample_rate,
            voices: 8,
            tempo: 300.0,
        }
    }

    #[test]
    fn the_workload_counts_steps_and_frames_of_a_buffer() {
        // 16th notes at 300 BPM: 50 ms. A 2048-sample buffer at 44.1 kHz
        // lasts 46 ms: at most one step, but 64 samples still may hold one.
        assert_eq!(workload(2048, 44_100.0).melody_steps(), 1);
        assert_eq!(workload(64, 48_000.0).melody_steps(), 1);
        assert_eq!(workload(4800, 48_000.0).melody_steps(), 2);
        // 128-sample hops at 48 kHz, 256 at 96 kHz.
        assert_eq!(workload(64, 48_000.0).frames_per_voice(), 1);
        assert_eq!(workload(256, 48_000.0).frames_per_voice(), 2);
        assert_eq!(workload(257, 48_000.0).frames_per_voice(), 3);
        assert_eq!(workload(256, 96_000.0).frames_per_voice(), 1);
        let w = workload(256, 48_000.0);
        assert!((w.budget_us(0.5) - 2666.67).abs() < 0.01);
        assert!((w.work_us(&cost(100.0, 10.0)) - (100.0 + 16.0 * 10.0)).abs() < 1e-9);
    }

    #[test]
    fn the_best_preset_that_fits_is_chosen_else_the_cheapest() {
        let table = CostTable::measured(&[
            (0.5, cost(300.0, 60.0)),
            (0.5, cost(25.0, 4.0)),
            (0.5, cost(20.0, 3.0)),
        ]);
        // 256 at 48 kHz: 2667 us; the teacher needs 300 + 16 * 60 = 1260.
        assert_eq!(table.choose(&workload(256, 48_000.0)), 0);
        // 64 at 48 kHz: 667 us; the teacher needs 780, the student 57.
        assert_eq!(table.choose(&workload(64, 48_000.0)), 1);
        // 16 samples at 192 kHz: 42 us; nothing fits, the cheapest runs.
        assert!(!table.fits(2, &workload(16, 192_000.0)));
        assert_eq!(table.choose(&workload(16, 192_000.0)), 2);
    }

    #[test]
    fn unmeasured_costs_fit_nothing() {
        let table = CostTable::unmeasured(&[0.5, 0.5, 0.5]);
        assert_eq!(table.len(), 3);
        assert!(!table.is_measured());
        assert!(!table.fits(0, &workload(2048, 44_100.0)));
        assert_eq!(table.choose(&workload(2048, 44_100.0)), 2);
        assert_eq!(
            CostTable::unmeasured(&[]).choose(&workload(64, 48_000.0)),
            0
        );
    }

    #[test]
    fn a_preset_with_a_larger_share_fits_where_a_smaller_one_does_not() {
        let w = workload(64, 48_000.0);
        let tight = CostTable::measured(&[(0.25, cost(200.0, 20.0)), (0.5, cost(1.0, 1.0))]);
        let loose = CostTable::measured(&[(0.5, cost(200.0, 20.0)), (0.5, cost(1.0, 1.0))]);
        // 200 + 8 * 20 = 360 us: over a quarter of 1333 us, under half.
        assert_eq!(tight.choose(&w), 1);
        assert_eq!(loose.choose(&w), 0);
    }

    /// A one-layer GRU of eight units with a role's widths.
    fn small_net(role: Role) -> GruNet {
        use crate::model::{GruLayer, Matrix};
        let (input, output) = role.widths();
        let matrix = |rows: usize, cols: usize| Matrix::F32 {
            rows,
            cols,
            values: vec![0.01; rows * cols],
        };
        GruNet {
            layers: vec![GruLayer {
                w_input: matrix(input, 24),
                w_hidden: matrix(8, 24),
                b_input: vec![0.0; 24],
                b_hidden: vec![0.0; 24],
            }],
            w_out: matrix(8, output),
            b_out: vec![0.0; output],
        }
    }

    #[test]
    fn a_measured_cost_is_three_ordered_quantiles() {
        let net = small_net(Role::Timbre);
        let cost = measure(&mut GruKernel::new(&net), Role::Timbre, 200);
        assert!(cost.median_us.is_finite() && cost.median_us >= 0.0);
        assert!(cost.median_us <= cost.p99_us && cost.p99_us <= cost.p999_us);
    }

    #[test]
    fn every_preset_is_measured_unless_stopped() {
        let models = CostModels {
            melody: vec![small_net(Role::Melody); 2],
            timbres: vec![vec![small_net(Role::Timbre); 2], Vec::new()],
        };
        let stop = AtomicBool::new(false);
        let table = measure_presets(&models, &[0.5, 0.25], 50, &stop).unwrap();
        assert!(table.is_measured());
        assert_eq!(table.shares(), &[0.5, 0.25]);
        for preset in 0..2 {
            let cost = table.cost(preset).unwrap();
            assert!(cost.melody.p99_us.is_finite() && cost.timbre.p99_us.is_finite());
        }
        stop.store(true, Ordering::Relaxed);
        assert_eq!(measure_presets(&models, &[0.5, 0.25], 50, &stop), None);
    }
}
