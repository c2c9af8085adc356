//! The auto preset on the audio thread: which preset runs, chosen from the
//! cost table for the host's buffer, stepped down one preset when steps or
//! frames come late and back up when they stop.
//!
//! Choosing happens when the buffer changes ([`Auto::set_buffer`]) and when
//! a cost table arrives ([`Auto::set_table`]): the best preset that fits
//! runs. Until costs are measured, and in offline renders, the plan stands
//! in for them: the best preset meant for a buffer no longer than the
//! host's, by the buffer each preset states ([`Auto::planned`]), the same
//! on every machine. [`Auto::update`] runs once per block. A block in which late work
//! shows up is a strike; [`Tuning::strikes`] strikes with no calm spell of
//! [`Tuning::forget_seconds`] between them step down one preset. After a
//! calm wait auto steps back up, never above the best preset that fits. The
//! wait doubles after each step down and halves after each calm wait spent
//! at the top, so a preset that keeps failing is retried less and less often.
//!
//! Real-time safe: every method is arithmetic on plain fields and never
//! allocates, locks or waits.

use serde::Deserialize;

use super::cost::{CostTable, Workload, MAX_PRESETS};

/// How auto plans and reacts, from `presets/auto.toml`.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
pub struct Tuning {
    /// The fastest tempo the fit rule plans for, in beats per minute.
    pub max_tempo: f64,
    /// Blocks with late work that make auto step down.
    pub strikes: u32,
    /// Seconds without late work after which strikes are forgotten.
    pub forget_seconds: f64,
    /// Seconds without late work before the first step back up.
    pub recover_seconds: f64,
    /// Longest wait before a step back up, in seconds.
    pub max_recover_seconds: f64,
    /// Seconds after a change during which late work does not count.
    pub settle_seconds: f64,
}

impl Default for Tuning {
    /// The tuning of the embedded `presets/auto.toml`.
    fn default() -> Self {
        crate::presets::auto().tuning
    }
}

/// What auto is doing, for tests, logs and displays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AutoStatus {
    /// The best preset that fits the buffer by the measured costs (the
    /// cheapest if none does); until they are measured, the planned one.
    pub fit: usize,
    /// The preset auto runs now.
    pub running: usize,
    /// Whether the cost table holds measured costs.
    pub measured: bool,
    /// Steps down since the engine started.
    pub step_downs: u64,
    /// Steps back up since the engine started.
    pub step_ups: u64,
}

/// The auto preset's state. Audio thread.
#[derive(Clone, Debug)]
pub struct Auto {
    tuning: Tuning,
    table: CostTable,
    workload: Workload,
    /// The buffer each preset is meant for, in seconds, best first.
    stated: [f64; MAX_PRESETS],
    stated_len: usize,
    fit: usize,
    running: usize,
    /// Late steps and frames counted so far, as last seen.
    last_late: u64,
    strikes: u32,
    /// Samples since late work last showed up.
    calm: u64,
    /// Samples left during which late work does not count.
    settle: u64,
    /// Samples of calm needed before a step up.
    wait: u64,
    step_downs: u64,
    step_ups: u64,
}

impl Auto {
    /// Auto for a cost table and a buffer of `block_size` samples at
    /// `sample_rate` with `voices` neural voices. Runs the best preset that fits.
    pub fn new(
        tuning: Tuning,
        table: CostTable,
        (block_size, sample_rate, voices): (usize, f64, usize),
    ) -> Auto {
        let workload = Workload {
            block_size,
            sample_rate: sample_rate.max(1.0),
            voices,
            tempo: tuning.max_tempo,
        };
        let mut auto = Auto {
            tuning,
            table,
            workload,
            stated: [0.0; MAX_PRESETS],
            stated_len: 0,
            fit: 0,
            running: 0,
            last_late: 0,
            strikes: 0,
            calm: 0,
            settle: 0,
            wait: 0,
            step_downs: 0,
            step_ups: 0,
        };
        auto.wait = auto.samples(tuning.recover_seconds);
        auto.choose();
        auto
    }

    /// Plans for another buffer and chooses again.
    pub fn set_buffer(&mut self, block_size: usize, sample_rate: f64, voices: usize) {
        let old_rate = self.workload.sample_rate;
        self.workload.block_size = block_size;
        self.workload.sample_rate = sample_rate.max(1.0);
        self.workload.voices = voices;
        // The wait is kept in seconds across a change of sample rate.
        self.wait = (self.wait as f64 * self.workload.sample_rate / old_rate) as u64;
        self.choose();
    }

    /// Takes a new cost table (measured costs arriving) and chooses again.
    pub fn set_table(&mut self, table: CostTable) {
        self.table = table;
        self.choose();
    }

    /// Takes the buffer each preset is meant for (seconds, best first) and
    /// chooses again.
    pub fn set_stated_buffers(&mut self, seconds: &[f64]) {
        self.stated_len = seconds.len().min(MAX_PRESETS);
        self.stated[..self.stated_len].copy_from_slice(&seconds[..self.stated_len]);
        self.choose();
    }

    /// The preset planned for the buffer without measured costs: the best
    /// one meant for a buffer no longer than it; the cheapest if there is
    /// none, or if no preset states its buffer. A buffer of 0 samples (an
    /// offline render without a deadline) gets the best. Real-time safe.
    pub fn planned(&self) -> usize {
        if self.workload.block_size == 0 {
            return 0;
        }
        let seconds = self.workload.seconds();
        (0..self.stated_len.min(self.table.len()))
            .find(|&preset| self.stated[preset] <= seconds)
            .unwrap_or(self.table.cheapest())
    }

    /// Takes new tuning and chooses again.
    pub fn set_tuning(&mut self, tuning: Tuning) {
        self.tuning = tuning;
        self.workload.tempo = tuning.max_tempo;
        self.wait = self.samples(tuning.recover_seconds);
        self.choose();
    }

    /// The cost table in use.
    pub fn table(&self) -> &CostTable {
        &self.table
    }

    /// The buffer auto plans for.
    pub fn workload(&self) -> Workload {
        self.workload
    }

    /// What auto is doing.
    pub fn status(&self) -> AutoStatus {
        AutoStatus {
            fit: self.fit,
            running: self.running,
            measured: self.table.is_measured(),
            step_downs: self.step_downs,
            step_ups: self.step_ups,
        }
    }

    /// The preset auto runs now.
    pub fn running(&self) -> usize {
        self.running
    }

    /// Samples of calm auto waits for before it steps up.
    pub fn wait_samples(&self) -> u64 {
        self.wait
    }

    /// Keeps the late counter in step while auto is not in charge (a fixed
    /// preset or an offline render), so that earlier late work does not
    /// count once it is.
    pub fn follow(&mut self, late_total: u64) {
        self.last_late = late_total;
        self.strikes = 0;
        self.calm = 0;
    }

    /// One block of `frames` samples played, with `late_total` late steps
    /// and frames counted so far (a counter that only grows, or starts
    /// again from zero). Returns the preset to run. Real-time safe.
    pub fn update(&mut self, late_total: u64, frames: usize) -> usize {
        let late = late_total > self.last_late;
        self.last_late = late_total;
        let frames = frames as u64;
        if late {
            self.calm = 0;
            if self.settle == 0 {
                self.strikes += 1;
                if self.strikes >= self.tuning.strikes.max(1) {
                    self.step_down();
                }
            }
        } else {
            self.calm += frames;
            if self.calm >= self.samples(self.tuning.forget_seconds) {
                self.strikes = 0;
            }
            if self.calm >= self.wait && self.settle == 0 {
                self.recover();
            }
        }
        self.settle = self.settle.saturating_sub(frames);
        self.running
    }

    /// Runs the best preset that fits (the planned one until costs are
    /// measured), and starts counting afresh.
    fn choose(&mut self) {
        self.fit = if self.table.is_measured() {
            self.table.choose(&self.workload)
        } else {
            self.planned()
        };
        self.running = self.fit;
        self.changed();
    }

    /// One preset cheaper, unless this is the cheapest.
    fn step_down(&mut self) {
        self.strikes = 0;
        if self.running + 1 < self.table.len() {
            self.running += 1;
            self.step_downs += 1;
            let longest = self.samples(self.tuning.max_recover_seconds);
            self.wait = self.wait.saturating_mul(2).min(longest);
            self.changed();
        }
    }

    /// After a calm wait: back up to the nearest better preset that fits
    /// (any up to the planned one, before costs are measured), or, already
    /// at the best that fits, a shorter wait next time.
    fn recover(&mut self) {
        self.calm = 0;
        let measured = self.table.is_measured();
        let better = (self.fit..self.running)
            .rev()
            .find(|&preset| !measured || self.table.fits(preset, &self.workload));
        match better {
            Some(preset) => {
                self.running = preset;
                self.step_ups += 1;
                self.changed();
            }
            None => {
                let shortest = self.samples(self.tuning.recover_seconds);
                self.wait = (self.wait / 2).max(shortest);
            }
        }
    }

    fn changed(&mut self) {
        self.strikes = 0;
        self.calm = 0;
        self.settle = self.samples(self.tuning.settle_seconds);
    }

    fn samples(&self, seconds: f64) -> u64 {
        (seconds.max(0.0) * self.workload.sample_rate) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::super::cost::{Cost, PresetCost};
    use super::*;

    const RATE: f64 = 48_000.0;
    const BLOCK: usize = 480; // 10 ms

    fn tuning() -> Tuning {
        Tuning {
            max_tempo: 300.0,
            strikes: 3,
            forget_seconds: 0.5,
            recover_seconds: 1.0,
            max_recover_seconds: 8.0,
            settle_seconds: 0.1,
        }
    }

    /// Three presets, each a tenth of the one before; `fitting` of them
    /// (counted from the cheapest) fit a 480-sample buffer at 48 kHz.
    fn table(fitting: usize) -> CostTable {
        let cost = |p99_us: f64| PresetCost {
            melody: Cost {
                median_us: p99_us,
                p99_us,
                p999_us: p99_us,
            },
            timbre: Cost::default(),
        };
        // Half the buffer is 5000 us; one melody step per buffer.
        let costs = [4_000.0, 1_000.0, 100.0];
        let shares = |i: usize| if i + fitting >= 3 { 0.5 } else { 0.001 };
        let presets: Vec<(f64, PresetCost)> = costs
            .iter()
            .enumerate()
            .map(|(i, c)| (shares(i), cost(*c)))
            .collect();
        CostTable::measured(&presets)
    }

    fn auto(fitting: usize) -> Auto {
        Auto::new(tuning(), table(fitting), (BLOCK, RATE, 8))
    }

    /// Plays `blocks` blocks, each late when `late(block)`; returns the
    /// preset after each block.
    fn play(auto: &mut Auto, late_total: &mut u64, blocks: usize, late: bool) -> Vec<usize> {
        (0..blocks)
            .map(|_| {
                *late_total += late as u64;
                auto.update(*late_total, BLOCK)
            })
            .collect()
    }

    /// Blocks until the preset changes from what it is, at most `limit`.
    fn blocks_until_change(auto: &mut Auto, late_total: &mut u64, late: bool) -> Option<usize> {
        let before = auto.running();
        (1..=2000).find(|_| {
            *late_total += late as u64;
            auto.update(*late_total, BLOCK) != before
        })
    }

    #[test]
    fn auto_starts_at_the_best_preset_that_fits() {
        assert_eq!(auto(3).running(), 0);
        assert_eq!(auto(2).running(), 1);
        assert_eq!(auto(1).running(), 2);
        assert_eq!(auto(0).running(), 2, "nothing fits: the cheapest");
        let unmeasured = Auto::new(tuning(), CostTable::unmeasured(&[0.5; 3]), (BLOCK, RATE, 8));
        assert_eq!(unmeasured.running(), 2);
    }

    #[test]
    fn repeated_late_blocks_step_down_one_preset_and_isolated_ones_do_not() {
        let mut a = auto(3);
        let mut late = 0;
        // Past the settling time of the start.
        play(&mut a, &mut late, 20, false);
        // A late block every 0.6 s: each strike is forgotten before the next.
        for _ in 0..10 {
            play(&mut a, &mut late, 1, true);
            play(&mut a, &mut late, 59, false);
        }
        assert_eq!(a.running(), 0);
        assert_eq!(a.status().step_downs, 0);
        // Three late blocks in a row: one step down, and settling holds it there.
        assert_eq!(play(&mut a, &mut late, 3, true), vec![0, 0, 1]);
        assert_eq!(play(&mut a, &mut late, 10, true), vec![1; 10]);
        assert_eq!(a.status().step_downs, 1);
    }

    #[test]
    fn settled_late_work_keeps_stepping_down_to_the_cheapest_and_no_further() {
        let mut a = auto(3);
        let mut late = 0;
        let trace = play(&mut a, &mut late, 200, true);
        assert_eq!(*trace.last().unwrap(), 2);
        assert_eq!(a.status().step_downs, 2);
        // Each step down waits out the settling time (10 blocks), then three strikes.
        let first_at_cheapest = trace.iter().position(|p| *p == 2).unwrap();
        assert!(first_at_cheapest <= 2 * (10 + 3), "{first_at_cheapest}");
    }

    #[test]
    fn the_wait_before_stepping_up_doubles_after_each_step_down() {
        let mut a = auto(3);
        let mut late = 0;
        let second = |s: f64| (s * RATE / BLOCK as f64).round() as usize;
        play(&mut a, &mut late, 20, false);
        let mut waits = Vec::new();
        for _ in 0..3 {
            blocks_until_change(&mut a, &mut late, true).unwrap();
            assert_eq!(a.running(), 1);
            waits.push(blocks_until_change(&mut a, &mut late, false).unwrap());
            assert_eq!(a.running(), 0);
        }
        assert_eq!(waits, vec![second(2.0), second(4.0), second(8.0)]);
        // Capped at max_recover_seconds.
        blocks_until_change(&mut a, &mut late, true).unwrap();
        assert_eq!(a.wait_samples(), (8.0 * RATE) as u64);
    }

    #[test]
    fn calm_at_the_top_shortens_the_wait_again() {
        let mut a = auto(3);
        let mut late = 0;
        play(&mut a, &mut late, 20, false);
        for _ in 0..2 {
            blocks_until_change(&mut a, &mut late, true).unwrap();
            blocks_until_change(&mut a, &mut late, false).unwrap();
        }
        assert_eq!(a.wait_samples(), (4.0 * RATE) as u64);
        // Four calm seconds at the top halve it, two more halve it again.
        play(&mut a, &mut late, 400 + 200, false);
        assert_eq!(a.wait_samples(), (1.0 * RATE) as u64);
    }

    #[test]
    fn auto_never_steps_up_into_a_preset_that_does_not_fit() {
        let mut a = auto(2);
        let mut late = 0;
        assert_eq!(a.running(), 1);
        play(&mut a, &mut late, 20, true);
        assert_eq!(a.running(), 2);
        let trace = play(&mut a, &mut late, 3000, false);
        assert_eq!(*trace.last().unwrap(), 1);
        assert!(trace.iter().all(|p| *p >= 1), "the teacher does not fit");
    }

    #[test]
    fn new_costs_or_a_new_buffer_choose_again() {
        let mut a = Auto::new(tuning(), CostTable::unmeasured(&[0.5; 3]), (BLOCK, RATE, 8));
        assert_eq!(a.running(), 2);
        a.set_table(table(3));
        assert_eq!(a.status().fit, 0);
        assert_eq!(a.running(), 0);
        assert!(a.status().measured);
        // A buffer a tenth as long: only the cheapest fits.
        a.set_buffer(BLOCK / 10, RATE, 8);
        assert_eq!(a.running(), 2);
        a.set_buffer(BLOCK, RATE, 8);
        assert_eq!(a.running(), 0);
    }

    #[test]
    fn without_measured_costs_auto_plans_by_the_buffers_the_presets_state() {
        let mut a = Auto::new(tuning(), CostTable::unmeasured(&[0.5; 3]), (BLOCK, RATE, 8));
        assert_eq!(a.planned(), 2, "no preset states a buffer: the cheapest");
        a.set_stated_buffers(&[0.020, 0.005, 0.001]);
        // 480 samples at 48 kHz last 10 ms.
        assert_eq!((a.planned(), a.running()), (1, 1));
        a.set_buffer(960, RATE, 8);
        assert_eq!(a.running(), 0);
        a.set_buffer(24, RATE, 8);
        assert_eq!(
            a.running(),
            2,
            "shorter than every stated buffer: the cheapest"
        );
        a.set_buffer(0, RATE, 8);
        assert_eq!(a.planned(), 0, "no deadline: the best");
        // Measured costs take over; the plan stays what it was.
        a.set_buffer(BLOCK, RATE, 8);
        a.set_table(table(1));
        assert_eq!((a.planned(), a.running()), (1, 2));
    }

    #[test]
    fn before_costs_are_measured_auto_steps_back_up_to_the_plan_and_no_further() {
        let mut a = Auto::new(tuning(), CostTable::unmeasured(&[0.5; 3]), (BLOCK, RATE, 8));
        a.set_stated_buffers(&[0.020, 0.005, 0.001]);
        let mut late = 0;
        play(&mut a, &mut late, 20, true);
        assert_eq!(a.running(), 2);
        let trace = play(&mut a, &mut late, 3000, false);
        assert_eq!(*trace.last().unwrap(), 1);
        assert!(trace.iter().all(|p| *p >= 1));
    }

    #[test]
    fn late_work_before_auto_was_in_charge_does_not_count() {
        let mut a = auto(3);
        a.follow(500);
        let trace = play(&mut a, &mut 500, 100, false);
        assert!(trace.iter().all(|p| *p == 0));
        // A counter that starts again from zero is no late work either.
        assert_eq!(a.update(0, BLOCK), 0);
        assert_eq!(a.status().step_downs, 0);
    }
}
