//! The automated compression search for the melody network.
//!
//! Given a teacher (any ONNX step model), a buffer budget and the voices the
//! timbre network must also serve, it builds candidates over width
//! (structured pruning), rank (truncated SVD by retained energy), sparsity
//! (gradual magnitude pruning) and precision (f32 or int8), measures each
//! one's step cost on this machine with the real-time kernel, keeps those
//! that fit, fine-tunes the most promising ones with the teacher's soft
//! targets and writes the best on validation: the ONNX file, its manifest
//! entry, golden outputs and a preset.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use candle_core::Device;
use wren::engine::cost::{measure, Cost, PresetCost, Workload};
use wren::engine::models::{Role, EMBEDDED_MODELS};
use wren::model::kernel::GruKernel;
use wren::model::onnx::import;
use wren::model::GruNet;

use crate::compress::{factorize_net, fine_tune, kernel_nll, shrink, Plan, PruneScope, Teacher};
use crate::export::{read_manifest, write_manifest, write_model, Shipping};
use crate::melody::{load_data, melody_golden, refs, PipelineConfig};
use crate::net::StepNet;
use crate::train::TrainConfig;

/// What the search looks for and where it writes.
#[derive(Clone, Debug)]
pub struct SearchConfig {
    /// The teacher's ONNX file.
    pub teacher: PathBuf,
    /// A Wren GRU whose weights every candidate starts from (pruned and
    /// factorized); the teacher's when `None`. A teacher that is no Wren
    /// GRU and no start: candidates start from fresh weights.
    pub start: Option<PathBuf>,
    /// Samples per host buffer the result must fit.
    pub block_size: usize,
    /// Sample rate of that buffer.
    pub sample_rate: f64,
    /// Neural voices sounding at once.
    pub voices: usize,
    /// Share of the buffer's duration inference may use.
    pub share: f64,
    /// Fastest tempo planned for (beats per minute).
    pub tempo: f64,
    /// The timbre variant the preset pairs with (`student-int8`, ...): its
    /// frames share the budget.
    pub timbre: String,
    /// Largest weight bytes allowed, if any.
    pub max_bytes: Option<usize>,
    /// Hidden widths tried (structured pruning of the teacher's units).
    pub widths: Vec<usize>,
    /// Retained SVD energies tried; 1 keeps matrices dense.
    pub energies: Vec<f64>,
    /// Final sparsities tried (gradual magnitude pruning, global threshold).
    pub sparsities: Vec<f64>,
    /// Precisions tried: `false` f32, `true` int8 (quantization-aware).
    pub int8: Vec<bool>,
    /// Candidates fine-tuned.
    pub finalists: usize,
    /// Kernel steps timed per candidate.
    pub cost_steps: usize,
    /// Fine-tuning settings (steps, batch, learning rate, seed).
    pub train: TrainConfig,
    /// Name of the model written (`melody-compact`).
    pub name: String,
    /// Name of the preset written (`compact`).
    pub preset: String,
    /// Folder of the preset's TOML.
    pub preset_dir: PathBuf,
    /// Dataset, output folder and command line, as the melody pipeline has them.
    pub data: PipelineConfig,
}

/// One point of the search space.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Candidate {
    /// Units per layer.
    pub width: usize,
    /// Retained energy of the SVD (1 = dense).
    pub energy: f64,
    /// Final share of zero weights.
    pub sparsity: f64,
    /// int8 weights.
    pub int8: bool,
}

impl std::fmt::Display for Candidate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "width {}", self.width)?;
        if self.energy < 1.0 {
            write!(f, ", SVD {:.0}% energy", self.energy * 100.0)?;
        }
        if self.sparsity > 0.0 {
            write!(f, ", {:.0}% pruned", self.sparsity * 100.0)?;
        }
        write!(f, ", {}", if self.int8 { "int8" } else { "f32" })
    }
}

/// A candidate built and timed.
pub struct Measured {
    /// Where in the space it lies.
    pub candidate: Candidate,
    /// Its starting weights (from the teacher, or fresh), shared by the
    /// candidates that differ only in sparsity.
    pub net: Arc<GruNet>,
    /// Weight bytes as it will ship (sparsity saves none: kernels are dense).
    pub bytes: usize,
    /// Parameters stored.
    pub parameters: usize,
    /// One step in the kernel.
    pub cost: Cost,
    /// Whether it fits the budget and the byte cap.
    pub fits: bool,
}

/// What the search produced.
pub struct Outcome {
    /// Every candidate, timed.
    pub measured: Vec<Measured>,
    /// The winner, fine-tuned.
    pub winner: Candidate,
    /// Its weights as shipped.
    pub net: GruNet,
    /// Its test NLL (nats per step, kernel arithmetic).
    pub test_nll: f64,
}

/// The slowest timbre frame of the paired variant among shipped instruments.
fn timbre_cost(variant: &str, steps: usize) -> Result<Cost> {
    let suffix = format!("-{variant}");
    let mut slowest = Cost::default();
    for (name, bytes) in EMBEDDED_MODELS
        .iter()
        .filter(|(n, _)| n.starts_with("timbre-") && n.ends_with(&suffix))
    {
        let net = import(bytes)
            .with_context(|| format!("reading {name}"))?
            .net;
        slowest = slowest.slower(measure(&mut GruKernel::new(&net), Role::Timbre, steps));
    }
    Ok(slowest)
}

/// Builds and times every candidate.
fn measure_candidates(
    config: &SearchConfig,
    start: &GruNet,
    timbre: Cost,
) -> Result<Vec<Measured>> {
    let workload = Workload {
        block_size: config.block_size,
        sample_rate: config.sample_rate,
        voices: config.voices,
        tempo: config.tempo,
    };
    let budget = workload.budget_us(config.share);
    let mut measured = Vec::new();
    let total = config.widths.len() * config.energies.len();
    let progress = crate::progress::Progress::new("candidates", total as u64);
    for (i, &width) in config.widths.iter().enumerate() {
        let narrow = shrink(start, width);
        for (j, &energy) in config.energies.iter().enumerate() {
            let net = Arc::new(if energy < 1.0 {
                factorize_net(&narrow, energy)
            } else {
                narrow.clone()
            });
            for &int8 in &config.int8 {
                let shipped = if int8 {
                    net.quantized()
                } else {
                    GruNet::clone(&net)
                };
                let cost = measure(
                    &mut GruKernel::new(&shipped),
                    Role::Melody,
                    config.cost_steps,
                );
                let work = workload.work_us(&PresetCost {
                    melody: cost,
                    timbre,
                });
                let bytes = shipped.bytes();
                let fits = work <= budget && config.max_bytes.is_none_or(|max| bytes <= max);
                for &sparsity in &config.sparsities {
                    measured.push(Measured {
                        candidate: Candidate {
                            width: net.shape().hidden,
                            energy,
                            sparsity,
                            int8,
                        },
                        net: Arc::clone(&net),
                        bytes,
                        parameters: shipped.parameters(),
                        cost,
                        fits,
                    });
                }
            }
            progress.set((i * config.energies.len() + j + 1) as u64, "");
        }
    }
    progress.finish();
    Ok(measured)
}

/// Runs the search and writes the winner; returns what it found.
pub fn run(config: &SearchConfig) -> Result<Outcome> {
    let device = Device::Cpu;
    let teacher_bytes = std::fs::read(&config.teacher)
        .with_context(|| format!("reading the teacher {}", config.teacher.display()))?;
    let teacher = Teacher::load(&teacher_bytes, &device)
        .with_context(|| format!("{} is no melody step model", config.teacher.display()))?;
    // A start model, else a Wren GRU teacher, is the starting point of every
    // candidate; a teacher of any other graph teaches students that start
    // from scratch.
    let start = match (&config.start, &teacher) {
        (Some(path), _) => {
            let bytes =
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            import(&bytes)
                .context("the start model must be a Wren GRU step model")?
                .net
        }
        (None, Teacher::Gru(net)) => net.to_gru_net()?,
        (None, Teacher::Onnx(_)) => {
            let widest = config
                .widths
                .iter()
                .copied()
                .max()
                .context("no width to try")?;
            StepNet::melody(widest, 2, config.train.seed, &device)?.to_gru_net()?
        }
    };
    let timbre = timbre_cost(&config.timbre, config.cost_steps)?;
    let mut measured = measure_candidates(config, &start, timbre)?;
    let workload_text = format!(
        "{}@{} x {} voices, share {}",
        config.block_size, config.sample_rate, config.voices, config.share
    );
    eprintln!("timbre {} frame p99 {:.2} us", config.timbre, timbre.p99_us);
    for m in &measured {
        eprintln!(
            "{:<50} {:>9} B {:>8.2} us p99 {}",
            m.candidate.to_string(),
            m.bytes,
            m.cost.p99_us,
            if m.fits { "fits" } else { "" }
        );
    }
    // More stored parameters first (capacity), then the cheaper step.
    measured.sort_by(|a, b| {
        b.parameters
            .cmp(&a.parameters)
            .then(a.cost.p99_us.total_cmp(&b.cost.p99_us))
    });
    let finalists: Vec<&Measured> = measured
        .iter()
        .filter(|m| m.fits)
        .take(config.finalists.max(1))
        .collect();
    if finalists.is_empty() {
        bail!("no candidate fits {workload_text}: try a larger buffer or share, or fewer voices");
    }

    let data = load_data(&config.data)?;
    let (train, valid, test) = (refs(&data.train), refs(&data.valid), refs(&data.test));
    let mut best: Option<(f64, Candidate, GruNet)> = None;
    for m in &finalists {
        let plan = Plan {
            sparsity: m.candidate.sparsity,
            scope: PruneScope::Global,
            int8: m.candidate.int8,
            alpha: 0.5,
            temperature: 2.0,
        };
        let label = m.candidate.to_string();
        let trained = fine_tune(
            &label,
            &config.train,
            &m.net,
            plan,
            &teacher,
            (&train, &valid),
            &device,
        )?;
        eprintln!("{label}: valid NLL {:.4}", trained.valid_loss);
        if best.as_ref().is_none_or(|b| trained.valid_loss < b.0) {
            best = Some((trained.valid_loss, m.candidate, trained.net));
        }
    }
    let (valid_nll, winner, net) = best.context("no finalist trained")?;
    let (test_nll, test_accuracy) = kernel_nll(&net, &test);
    let cost = measure(&mut GruKernel::new(&net), Role::Melody, config.cost_steps);
    eprintln!(
        "winner {winner}: test NLL {test_nll:.4}, {} bytes, {:.2} us p99",
        net.bytes(),
        cost.p99_us
    );
    write_winner(
        config,
        &winner,
        &net,
        &data,
        (valid_nll, test_nll, test_accuracy),
        cost,
    )?;
    Ok(Outcome {
        measured,
        winner,
        net,
        test_nll,
    })
}

fn write_winner(
    config: &SearchConfig,
    winner: &Candidate,
    net: &GruNet,
    data: &crate::melody::Data,
    (valid_nll, test_nll, test_accuracy): (f64, f64, f64),
    cost: Cost,
) -> Result<()> {
    let out = &config.data.out_dir;
    std::fs::create_dir_all(out)?;
    let teacher_name = config
        .teacher
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned());
    let budget = format!("{}@{}", config.block_size, config.sample_rate);
    let mut training = config.train.settings(&[
        ("search", winner.to_string()),
        ("budget", budget.clone()),
        ("voices", config.voices.to_string()),
        ("budget_share", config.share.to_string()),
        ("distill", "alpha 0.5, temperature 2".into()),
    ]);
    if winner.int8 {
        training.insert("int8".into(), crate::requantize::INT8_METHOD.into());
    }
    let metrics = BTreeMap::from([
        ("test_nll".to_string(), test_nll),
        ("test_accuracy".to_string(), test_accuracy),
        ("valid_nll".to_string(), valid_nll),
        ("step_median_us".to_string(), cost.median_us),
        ("step_p99_us".to_string(), cost.p99_us),
    ]);
    let entry = write_model(
        out,
        net,
        Shipping {
            name: &config.name,
            role: "melody",
            teacher: teacher_name.as_deref(),
            data: &data.record,
            command: &config.data.command,
            training,
            metrics,
        },
    )?;
    let mut manifest = read_manifest(out)?;
    manifest.upsert(entry);
    write_manifest(out, &manifest)?;
    let device = Device::Cpu;
    let candle = StepNet::from_gru_net(net, &device)?;
    melody_golden(out, &config.name, &candle, &data.test, &device)?;

    std::fs::create_dir_all(&config.preset_dir)?;
    let preset = format!(
        "# Written by `{}`.\nname = \"{}\"\ndescription = \"Searched melody GRU: {}\"\nmelody = \"{}\"\n\
         # The timbre variant of every instrument: timbre-<instrument>-<variant>.\n\
         timbre = \"{}\"\n# The buffer it is meant for.\nblock_size = {}\nsample_rate = {}\n\
         budget_share = {}\n",
        config.data.command,
        config.preset,
        winner,
        config.name,
        config.timbre,
        config.block_size,
        config.sample_rate as u32,
        config.share,
    );
    let path = config.preset_dir.join(format!("{}.toml", config.preset));
    std::fs::write(&path, preset).with_context(|| format!("writing {}", path.display()))?;
    eprintln!("wrote {}", path.display());
    Ok(())
}
