//! `cargo xtask compress`: search widths, ranks, sparsities and precisions
//! of the melody network for the best model that fits a buffer budget on
//! this machine; writes the model, its manifest entry, golden outputs and a
//! preset.

use std::path::PathBuf;

use anyhow::{Context, Result};
use wren_pipeline::melody::PipelineConfig;
use wren_pipeline::search::{run as search, SearchConfig};
use wren_pipeline::train::TrainConfig;

/// Options of the search.
#[derive(clap::Args, Debug)]
pub struct CompressArgs {
    /// The teacher: any ONNX step model with the melody contract.
    #[arg(long, default_value = "models/melody-teacher.onnx")]
    pub teacher: PathBuf,
    /// A Wren GRU the candidates start from (default: the teacher).
    #[arg(long)]
    pub start: Option<PathBuf>,
    /// The buffer to fit, `block_size@sample_rate`.
    #[arg(long, default_value = "64@48000")]
    pub budget: String,
    /// Neural voices sounding at once (their timbre frames share the budget).
    #[arg(long, default_value_t = 8)]
    pub voices: usize,
    /// Share of the buffer's duration inference may use.
    #[arg(long, default_value_t = 0.5)]
    pub share: f64,
    /// The timbre variant the preset pairs with.
    #[arg(long, default_value = "student-int8")]
    pub timbre: String,
    /// Largest weight bytes allowed.
    #[arg(long)]
    pub max_bytes: Option<usize>,
    /// Hidden widths tried.
    #[arg(long, value_delimiter = ',', default_value = "512,384,256,192,144")]
    pub widths: Vec<usize>,
    /// Retained SVD energies tried (1 = dense).
    #[arg(long, value_delimiter = ',', default_value = "1,0.9,0.75,0.5")]
    pub energies: Vec<f64>,
    /// Final sparsities tried.
    #[arg(long, value_delimiter = ',', default_value = "0,0.3")]
    pub sparsities: Vec<f64>,
    /// Precisions tried: f32, int8.
    #[arg(long, value_delimiter = ',', default_value = "f32,int8")]
    pub precisions: Vec<String>,
    /// Candidates fine-tuned.
    #[arg(long, default_value_t = 2)]
    pub finalists: usize,
    /// Fine-tuning steps per finalist.
    #[arg(long, default_value_t = 250)]
    pub steps: usize,
    /// Name of the model written.
    #[arg(long, default_value = "melody-compact")]
    pub name: String,
    /// Name of the preset written to `presets/<preset>.toml`.
    #[arg(long, default_value = "compact")]
    pub preset: String,
    /// Output folder of the model, manifest and golden outputs.
    #[arg(long, default_value = "models")]
    pub out: PathBuf,
    /// Folder of the preset.
    #[arg(long, default_value = "presets")]
    pub preset_dir: PathBuf,
}

/// Parses `block_size@sample_rate`.
fn budget(text: &str) -> Result<(usize, f64)> {
    let (block, rate) = text
        .split_once('@')
        .context("the budget reads block_size@sample_rate, e.g. 64@48000")?;
    let block: usize = block.trim().parse().context("block size")?;
    let rate: f64 = rate.trim().parse().context("sample rate")?;
    anyhow::ensure!(
        (1..=1 << 16).contains(&block) && (8000.0..=768_000.0).contains(&rate),
        "budget {text} is out of range"
    );
    Ok((block, rate))
}

/// Runs the search.
pub fn run(args: &CompressArgs, command: String) -> Result<()> {
    let (block_size, sample_rate) = budget(&args.budget)?;
    let int8 = args
        .precisions
        .iter()
        .map(|p| match p.as_str() {
            "f32" => Ok(false),
            "int8" => Ok(true),
            other => anyhow::bail!("precision {other:?}: f32 or int8"),
        })
        .collect::<Result<Vec<bool>>>()?;
    let mut data = PipelineConfig::full(command);
    data.out_dir = args.out.clone();
    let config = SearchConfig {
        teacher: args.teacher.clone(),
        start: args.start.clone(),
        block_size,
        sample_rate,
        voices: args.voices,
        share: args.share,
        tempo: 300.0,
        timbre: args.timbre.clone(),
        max_bytes: args.max_bytes,
        widths: args.widths.clone(),
        energies: args.energies.clone(),
        sparsities: args.sparsities.clone(),
        int8,
        finalists: args.finalists,
        cost_steps: 500,
        train: TrainConfig {
            hidden: 0,
            layers: 0,
            steps: args.steps,
            batch: 32,
            window: 64,
            learning_rate: 1e-3,
            dropout: 0.0,
            seed: 7,
            eval_every: (args.steps / 4).max(1),
        },
        name: args.name.clone(),
        preset: args.preset.clone(),
        preset_dir: args.preset_dir.clone(),
        data,
    };
    let outcome = search(&config)?;
    let fitting = outcome.measured.iter().filter(|m| m.fits).count();
    println!(
        "{} candidates, {fitting} fit {}: {} ({} bytes, test NLL {:.4})",
        outcome.measured.len(),
        args.budget,
        outcome.winner,
        outcome.net.bytes(),
        outcome.test_nll
    );
    Ok(())
}
