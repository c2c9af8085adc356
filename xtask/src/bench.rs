//! `cargo xtask bench`: cost of one melody step per shipped variant, the
//! real-time kernel beside tract, in microseconds and allocations.

use anyhow::Result;
use wren::melody::tokens::{write_input, Meter, Token};
use wren::model::kernel::GruKernel;
use wren::model::onnx::TractStep;

use crate::render::{percentile, time_kernel};
use crate::ALLOCATOR;

/// Options of the benchmark.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Steps timed per variant and engine.
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

/// Runs the command and prints a table.
pub fn run(args: &BenchArgs) -> Result<()> {
    let budget_us = 64.0 / 48_000.0 * 1e6;
    let mut rows = Vec::new();
    let progress =
        indicatif::ProgressBar::new(wren::engine::models::EMBEDDED_MODELS.len() as u64 * 2);
    for (name, bytes) in wren::engine::models::EMBEDDED_MODELS {
        let model = wren::engine::models::load_model(name, bytes)?;
        let mut kernel = GruKernel::new(&model.net);
        let before = ALLOCATOR.allocations();
        let times = time_kernel(&mut kernel, args.steps);
        let allocations = (ALLOCATOR.allocations() - before) as f64 / (args.steps + 100) as f64;
        rows.push(row(name, "wren kernel", &times, allocations));
        progress.inc(1);

        let tract = TractStep::load(bytes, model.net.shape())?;
        let shape = model.net.shape();
        let (mut x, mut state) = (vec![0.0; shape.input], vec![0.0; shape.state()]);
        let mut times = Vec::with_capacity(args.steps);
        let before = ALLOCATOR.allocations();
        for i in 0..args.steps {
            write_input(
                &mut x,
                Token::from_index(i * 7 % 51),
                (i % 16) as u32,
                Meter::default(),
            );
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
        "{:<22} {:<12} {:>9} {:>9} {:>9} {:>12} {:>10}",
        "model", "engine", "p50 us", "p99 us", "p99.9 us", "allocs/step", "budget"
    );
    for r in &rows {
        println!(
            "{:<22} {:<12} {:>9.2} {:>9.2} {:>9.2} {:>12.1} {:>9.2}%",
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
        "budget: share of a 64-sample buffer at 48 kHz ({budget_us:.0} us) one step takes at p99"
    );
    Ok(())
}

fn row(model: &str, engine: &'static str, times: &[f64], allocations: f64) -> Row {
    Row {
        model: model.into(),
        engine,
        median: percentile(times, 0.5),
        p99: percentile(times, 0.99),
        p999: percentile(times, 0.999),
        allocations,
    }
}
