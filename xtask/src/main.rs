//! `cargo xtask`: Wren's developer commands.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

mod bench;
mod bundle;
mod compress;
mod eval;
mod render;
mod report;
mod test;
mod timbre;
mod timbre_examples;

/// candle's training loop frees and allocates large tensors every step;
/// glibc's allocator returns them to the kernel each time (half the time
/// in system calls), mimalloc keeps them.
#[global_allocator]
static ALLOCATOR: Counting = Counting(std::sync::atomic::AtomicU64::new(0));

/// mimalloc with a count of allocations, for the benchmark.
struct Counting(std::sync::atomic::AtomicU64);

impl Counting {
    fn allocations(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

// SAFETY: every call forwards to mimalloc unchanged; counting is an atomic add.
unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { mimalloc::MiMalloc.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: `ptr` came from mimalloc with this layout.
        unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, size: usize) -> *mut u8 {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // SAFETY: `ptr` came from mimalloc with this layout.
        unsafe { mimalloc::MiMalloc.realloc(ptr, layout, size) }
    }
}

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Wren's developer commands")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build and bundle target/bundled/Wren.vst3 and Wren.clap.
    Bundle {
        /// Also copy the bundles to ~/.vst3 and ~/.clap.
        #[arg(long)]
        install: bool,
        /// Build without optimization (faster to build, too slow to play).
        #[arg(long)]
        debug: bool,
    },
    /// Render bars of generated melody offline to target/render/wren.wav and wren.mid.
    Render(render::RenderArgs),
    /// Score every shipped model and the n-gram baseline on MIDI files.
    Eval(eval::EvalArgs),
    /// Time one step of every shipped model: real-time kernel and tract.
    Bench(bench::BenchArgs),
    /// Sizes, quality and cost of every listed model under Wren, tract and ONNX Runtime.
    Report(report::ReportArgs),
    /// Set up and run the whole test suite (what CI runs).
    Test,
    /// Re-export every int8 model from its f32 source and measure it again.
    Requantize,
    /// Search the compressions of the melody or timbre network for the best that fits a buffer budget.
    Compress(Box<compress::CompressArgs>),
    /// Rebuild the melody dataset from the music21 corpus.
    Data,
    /// Render and analyse the timbre data from the soundfont; print its counts.
    TimbreData(timbre::TimbreDataArgs),
    /// Held-out phrases as the soundfont and Wren play them: WAVs and spectrograms.
    TimbreExamples(timbre_examples::TimbreExamplesArgs),
    /// Train, distill, quantize, evaluate and export the timbre models.
    TrainTimbre {
        /// Run the whole pipeline on a sliver of the data with tiny networks.
        #[arg(long)]
        tiny: bool,
        /// The instruments and where their notes come from.
        #[command(flatten)]
        source: timbre::SourceArgs,
        /// Output folder (default: `models`, or a temporary folder with --tiny).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Optimizer steps of the teacher (default: the shipped setting).
        #[arg(long)]
        teacher_steps: Option<usize>,
        /// Optimizer steps of each student (default: the shipped setting).
        #[arg(long)]
        student_steps: Option<usize>,
    },
    /// Train, distill, quantize, evaluate and export the melody models.
    TrainMelody {
        /// Run the whole pipeline on a sliver of the data with tiny networks.
        #[arg(long)]
        tiny: bool,
        /// Output folder (default: `models`, or a temporary folder with --tiny).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let command_line = format!(
        "cargo xtask {}",
        std::env::args().skip(1).collect::<Vec<_>>().join(" ")
    );
    match cli.command {
        Command::Bundle { install, debug } => bundle::run(install, !debug),
        Command::Render(args) => render::run(&args),
        Command::Eval(args) => eval::run(&args),
        Command::Bench(args) => bench::run(&args),
        Command::Report(args) => report::run(&args),
        Command::Test => test::run(),
        Command::Compress(args) => compress::run(&args, command_line),
        Command::Requantize => wren_pipeline::requantize::run(
            std::path::Path::new("models"),
            &wren_pipeline::melody::PipelineConfig::full(command_line.clone()),
            &wren_pipeline::timbre::pipeline::TimbreConfig::full(command_line),
        ),
        Command::Data => data(),
        Command::TimbreData(args) => timbre::run(&args),
        Command::TimbreExamples(args) => timbre_examples::run(&args),
        Command::TrainTimbre {
            tiny,
            source,
            out,
            teacher_steps,
            student_steps,
        } => {
            use wren_pipeline::timbre::pipeline::{run, TimbreConfig};
            let mut config = if tiny {
                let out = out
                    .clone()
                    .unwrap_or_else(|| std::env::temp_dir().join("wren-tiny-timbre"));
                TimbreConfig::tiny(command_line, out)
            } else {
                TimbreConfig::full(command_line)
            };
            if let (Some(out), false) = (out, tiny) {
                config.work_dir = out.join("work");
                config.out_dir = out;
            }
            config.teacher_steps = teacher_steps.unwrap_or(config.teacher_steps);
            config.student_steps = student_steps.unwrap_or(config.student_steps);
            source.apply(&mut config)?;
            run(&config)
        }
        Command::TrainMelody { tiny, out } => {
            use wren_pipeline::melody::{run, PipelineConfig};
            let config = if tiny {
                let out = out.unwrap_or_else(|| std::env::temp_dir().join("wren-tiny-pipeline"));
                PipelineConfig::tiny(command_line, out)
            } else {
                let mut config = PipelineConfig::full(command_line);
                if let Some(out) = out {
                    config.work_dir = out.join("work");
                    config.out_dir = out;
                }
                config
            };
            run(&config)
        }
    }
}

/// Rebuilds `models/data/melodies.tsv.gz` with the pinned music21.
fn data() -> Result<()> {
    let status = std::process::Command::new("scripts/setup.sh")
        .arg("--data")
        .status()?;
    anyhow::ensure!(status.success(), "set-up failed");
    let status = std::process::Command::new(".venv/bin/python")
        .args([
            "models/pipeline/melody_data.py",
            "models/data/melodies.tsv.gz",
        ])
        .status()?;
    anyhow::ensure!(status.success(), "extracting melodies failed");
    let sha =
        wren::melody::dataset::file_sha256(std::path::Path::new("models/data/melodies.tsv.gz"))?;
    println!("wrote models/data/melodies.tsv.gz (sha256 {sha})");
    Ok(())
}
