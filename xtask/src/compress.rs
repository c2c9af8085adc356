//! `cargo xtask compress`: search widths, ranks, sparsities and precisions
//! of the melody network, or of each instrument's timbre network, for the
//! best model that fits a buffer budget on this machine; writes the models,
//! their manifest entries, golden outputs and a preset.

use std::path::PathBuf;

use anyhow::{Context, Result};
use wren_pipeline::melody::PipelineConfig;
use wren_pipeline::search::{run as search, Network, SearchConfig};
use wren_pipeline::timbre::pipeline::TimbreConfig;
use wren_pipeline::train::TrainConfig;

/// Options of the search.
#[derive(clap::Args, Debug)]
pub struct CompressArgs {
    /// The network to compress: melody, or timbre (every instrument, or
    /// those named by --instrument).
    #[arg(long, default_value = "melody")]
    pub network: String,
    /// Timbre instruments searched and where their notes come from (the
    /// same as the teacher's: see train-timbre).
    #[command(flatten)]
    pub source: crate::timbre::SourceArgs,
    /// The teacher: any ONNX step model with the network's contract. In a
    /// timbre search `{instrument}` stands for each instrument's name.
    /// Default: models/melody-teacher.onnx, or
    /// models/timbre-{instrument}-teacher.onnx.
    #[arg(long)]
    pub teacher: Option<PathBuf>,
    /// A Wren GRU the candidates start from (default: the teacher), named
    /// like the teacher.
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
    /// The timbre variant a melody search's preset pairs with.
    #[arg(long, default_value = "student-int8")]
    pub timbre: String,
    /// The melody model a timbre search's preset pairs with.
    #[arg(long, default_value = "melody-student-int8")]
    pub melody: String,
    /// Largest weight bytes allowed.
    #[arg(long)]
    pub max_bytes: Option<usize>,
    /// Hidden widths tried. Default: 512,384,256,192,144 for the melody
    /// network, 512,256,128,96,64 for timbre.
    #[arg(long, value_delimiter = ',')]
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
    /// Name of the model written; in a timbre search the variant, written
    /// as timbre-<instrument>-<name>.
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
    anyhow::ensure!(
        args.share > 0.0 && args.share <= 1.0,
        "--share {} is not a share of the buffer's time: it lies in (0, 1]",
        args.share
    );
    let int8 = args
        .precisions
        .iter()
        .map(|p| match p.as_str() {
            "f32" => Ok(false),
            "int8" => Ok(true),
            other => anyhow::bail!("precision {other:?}: f32 or int8"),
        })
        .collect::<Result<Vec<bool>>>()?;
    let melody = match args.network.as_str() {
        "melody" => true,
        "timbre" => false,
        other => anyhow::bail!("network {other:?}: melody or timbre"),
    };
    let network = if melody {
        let mut data = PipelineConfig::full(command);
        data.out_dir = args.out.clone();
        Network::Melody(data)
    } else {
        let mut data = TimbreConfig::full(command);
        data.out_dir = args.out.clone();
        args.source.apply(&mut data)?;
        Network::Timbre(data)
    };
    let (teacher, widths, pair, window): (&str, &[usize], &String, usize) = if melody {
        (
            "models/melody-teacher.onnx",
            &[512, 384, 256, 192, 144],
            &args.timbre,
            64,
        )
    } else {
        (
            "models/timbre-{instrument}-teacher.onnx",
            &[512, 256, 128, 96, 64],
            &args.melody,
            128,
        )
    };
    let widths = if args.widths.is_empty() {
        widths.to_vec()
    } else {
        args.widths.clone()
    };
    let config = SearchConfig {
        network,
        teacher: args.teacher.clone().unwrap_or_else(|| teacher.into()),
        start: args.start.clone(),
        block_size,
        sample_rate,
        voices: args.voices,
        share: args.share,
        tempo: 300.0,
        pair: pair.clone(),
        max_bytes: args.max_bytes,
        widths,
        energies: args.energies.clone(),
        sparsities: args.sparsities.clone(),
        int8,
        finalists: args.finalists,
        cost_steps: 500,
        train: TrainConfig {
            hidden: 0,
            layers: 0,
            steps: args.steps,
            batch: if melody { 32 } else { 16 },
            window,
            learning_rate: 1e-3,
            dropout: 0.0,
            seed: 7,
            eval_every: (args.steps / 4).max(1),
        },
        name: args.name.clone(),
        preset: args.preset.clone(),
        preset_dir: args.preset_dir.clone(),
    };
    let quality = if melody { "test NLL" } else { "test LSD dB" };
    for outcome in search(&config)? {
        let fitting = outcome.measured.iter().filter(|m| m.fits).count();
        println!(
            "{}: {} candidates, {fitting} fit {}: {} ({} bytes, {quality} {:.4})",
            outcome.model,
            outcome.measured.len(),
            args.budget,
            outcome.winner,
            outcome.net.bytes(),
            outcome.quality
        );
    }
    Ok(())
}
