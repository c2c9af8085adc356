//! `cargo xtask bench`: the cost of every shipped model per step (melody)
//! or frame (timbre), the real-time kernel beside tract, in microseconds
//! and allocations; then, per timbre variant, how many neural voices fit in
//! half of the buffer's time budget at common buffer sizes and sample rates.

use anyhow::Result;
use wren::engine::cost::{measure, Cost, WARM_UP_STEPS};
use wren::engine::harmonic::{hop_for, FrameParams, HarmonicSynth, HARMONICS};
use wren::engine::models::Role;
use wren::model::kernel::GruKernel;
use wren::model::onnx::TractStep;

use crate::ALLOCATOR;

/// Options of the benchmark.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Steps (or frames) timed per variant and engine.
    #[arg(long, default_value_t = 5000)]
    pub steps: usize,
}

struct Row {
    model: String,
    engine: &'static str,
    median: f64,
    p99: f64,
    p999: f64,
    allocations: f64,
}

/// Share of the buffer's time the voices may take, on each thread.
const SHARE: f64 = 0.5;
const BUFFERS: [usize; 3] = [64, 128, 256];
const RATES: [f64; 3] = [44_100.0, 48_000.0, 96_000.0];

/// Runs the command and prints the tables.
pub fn run(args: &BenchArgs) -> Result<()> {
    let budget_us = 64.0 / 48_000.0 * 1e6;
    let mut rows = Vec::new();
    let models = wren::engine::models::EMBEDDED_MODELS;
    let progress = indicatif::ProgressBar::new(models.len() as u64 * 2);
    for &(name, bytes) in models {
        let role = Role::of(name);
        let model = wren::engine::models::load_model(name, bytes)?;
        let mut kernel = GruKernel::new(&model.net);
        let before = ALLOCATOR.allocations();
        let cost = measure(&mut kernel, role, args.steps);
        let steps = args.steps + WARM_UP_STEPS;
        let allocations = (ALLOCATOR.allocations() - before) as f64 / steps as f64;
        rows.push(Row {
            model: name.into(),
            engine: "wren kernel",
            median: cost.median_us,
            p99: cost.p99_us,
            p999: cost.p999_us,
            allocations,
        });
        progress.inc(1);

        let shape = model.net.shape();
        let tract = TractStep::load(bytes, shape)?;
        let (mut x, mut state) = (vec![0.0; shape.input], vec![0.0; shape.state()]);
        let mut times = Vec::with_capacity(args.steps);
        let before = ALLOCATOR.allocations();
        for i in 0..args.steps {
            role.write_example(i, &mut x);
            let t = std::time::Instant::now();
            let (_, next) = tract.run(&x, &state)?;
            times.push(t.elapsed().as_secs_f64() * 1e6);
            state = next;
        }
        let allocations = (ALLOCATOR.allocations() - before) as f64 / args.steps as f64;
        rows.push(row(name, "tract", &times, allocations));
        progress.inc(1);
    }
    progress.finish_and_clear();
    println!(
        "{:<30} {:<12} {:>9} {:>9} {:>9} {:>12} {:>10}",
        "model", "engine", "p50 us", "p99 us", "p99.9 us", "allocs/step", "budget"
    );
    for r in &rows {
        println!(
            "{:<30} {:<12} {:>9.2} {:>9.2} {:>9.2} {:>12.1} {:>9.2}%",
            r.model,
            r.engine,
            r.median,
            r.p99,
            r.p999,
            r.allocations,
            r.p99 / budget_us * 100.0
        );
    }
    println!(
        "budget: share of a 64-sample buffer at 48 kHz ({budget_us:.0} us) one step or frame takes at p99"
    );
    voice_budget(&rows);
    Ok(())
}

/// Microseconds one voice's synthesizer takes per sample at a sample rate
/// (64 harmonics sounding and noise in every band): median over blocks.
fn synth_us_per_sample(sample_rate: f32) -> f64 {
    let mut synth = HarmonicSynth::new(sample_rate);
    let mut frame = FrameParams::silent(110.0);
    frame.harmonics = [0.01; HARMONICS];
    frame.noise = [0.001; wren::engine::harmonic::NOISE_BANDS];
    let mut block = vec![0.0; 256];
    let mut times = Vec::new();
    for i in 0..600 {
        let t = std::time::Instant::now();
        synth.render(&mut block, &mut || frame);
        if i >= 100 {
            times.push(t.elapsed().as_secs_f64() * 1e6 / block.len() as f64);
        }
    }
    Cost::of(&times).median_us
}

/// Voices of each timbre variant that fit in [`SHARE`] of the buffer's time
/// on both threads: the inference thread runs each voice's frames (at worst
/// `ceil(block / hop)` per block, each at the p99 of the kernel), the audio
/// thread runs its synthesizer.
fn voice_budget(rows: &[Row]) {
    let synth: Vec<f64> = RATES
        .iter()
        .map(|r| synth_us_per_sample(*r as f32))
        .collect();
    println!(
        "\nneural voices that fit in {:.0}% of the buffer (inference thread / audio thread; the fewer counts)",
        SHARE * 100.0
    );
    print!("{:<30} {:>8}", "timbre variant", "p99 us");
    for rate in RATES {
        for buffer in BUFFERS {
            print!(" {:>12}", format!("{buffer}@{:.1}k", rate / 1000.0));
        }
    }
    println!();
    for r in rows
        .iter()
        .filter(|r| r.engine == "wren kernel" && Role::of(&r.model) == Role::Timbre)
    {
        print!("{:<30} {:>8.2}", r.model, r.p99);
        for (rate, synth_us) in RATES.iter().zip(&synth) {
            for buffer in BUFFERS {
                let budget = buffer as f64 / rate * 1e6 * SHARE;
                let frames = buffer.div_ceil(hop_for(*rate as f32)) as f64;
                let inference = (budget / (frames * r.p99)).floor();
                let audio = (budget / (synth_us * buffer as f64)).floor();
                print!(" {:>12}", format!("{inference:.0}/{audio:.0}"));
            }
        }
        println!();
    }
    println!(
        "synthesizer per voice: {}",
        RATES
            .iter()
            .zip(&synth)
            .map(|(rate, us)| format!(
                "{:.2} us per 64 samples at {:.1} kHz",
                us * 64.0,
                rate / 1000.0
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
}

fn row(model: &str, engine: &'static str, times: &[f64], allocations: f64) -> Row {
    let cost = Cost::of(times);
    Row {
        model: model.into(),
        engine,
        median: cost.median_us,
        p99: cost.p99_us,
        p999: cost.p999_us,
        allocations,
    }
}
