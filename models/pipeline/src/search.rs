//! The automated compression search, for the melody network or the timbre
//! network of each instrument.
//!
//! Given a teacher (any ONNX step model), a buffer budget and the voices the
//! timbre network must serve, it builds candidates over width (structured
//! pruning), rank (truncated SVD by retained energy), sparsity (gradual
//! magnitude pruning) and precision (f32 or int8), measures each one's step
//! cost on this machine with the real-time kernel (the other network's
//! paired variant takes its share of the same budget), keeps those that fit,
//! fine-tunes the most promising ones with the teacher's targets and writes
//! the best on validation: the ONNX file, its manifest entry, golden outputs
//! and a preset.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use candle_core::Device;
use rustysynth::SoundFont;
use wren::engine::cost::{measure, Cost, PresetCost, Workload};
use wren::engine::models::{Role, EMBEDDED_MODELS};
use wren::melody::dataset::{read_dataset, Tune};
use wren::model::kernel::GruKernel;
use wren::model::onnx::import;
use wren::model::GruNet;

use crate::compress::{
    factorize_net, fine_tune, kernel_nll, shrink, MelodyObjective, Objective, Plan, PruneScope,
    Teacher,
};
use crate::export::{read_manifest, write_manifest, write_model, Shipping};
use crate::melody::{load_data, melody_golden, refs, PipelineConfig};
use crate::net::StepNet;
use crate::timbre::data::{describe, load_soundfont, Instrument};
use crate::timbre::pipeline::{distances, play, record_instrument, timbre_golden, TimbreConfig};
use crate::timbre::train::{FrameSet, TimbreObjective};
use crate::train::{TrainConfig, Trained};

/// Distillation settings of the melody search: weight of the ground truth,
/// softmax temperature of the teacher's targets.
const MELODY_DISTILL: (f64, f64) = (0.5, 2.0);

/// Share of the analysed targets in the timbre search's blend; the rest is
/// the teacher's outputs.
const TIMBRE_BLEND: f64 = 0.5;

/// Which network a search compresses, with its data.
#[derive(Clone, Debug)]
pub enum Network {
    /// The melody network, on the melody pipeline's dataset.
    Melody(PipelineConfig),
    /// The timbre network of each instrument of the configuration, on its
    /// rendered notes.
    Timbre(TimbreConfig),
}

/// What the search looks for and where it writes.
#[derive(Clone, Debug)]
pub struct SearchConfig {
    /// The network searched and its data.
    pub network: Network,
    /// The teacher's ONNX file; in a timbre search `{instrument}` in it
    /// stands for each instrument's name.
    pub teacher: PathBuf,
    /// A Wren GRU whose weights every candidate starts from (pruned and
    /// factorized), named like the teacher; the teacher's when `None`. A
    /// teacher that is no Wren GRU and no start: candidates start from
    /// fresh weights.
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
    /// The other network's variant the preset pairs with, whose cost shares
    /// the budget: a timbre variant (`student-int8`) in a melody search, a
    /// melody model (`melody-compact`) in a timbre search.
    pub pair: String,
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
    /// Name of the model written (`melody-compact`); in a timbre search the
    /// variant, written as `timbre-<instrument>-<name>`.
    pub name: String,
    /// Name of the preset written (`compact`).
    pub preset: String,
    /// Folder of the preset's TOML.
    pub preset_dir: PathBuf,
}

impl SearchConfig {
    /// Where models, manifest and golden outputs go.
    fn out_dir(&self) -> &Path {
        match &self.network {
            Network::Melody(data) => &data.out_dir,
            Network::Timbre(data) => &data.out_dir,
        }
    }

    /// The command line that ran the search.
    fn command(&self) -> &str {
        match &self.network {
            Network::Melody(data) => &data.command,
            Network::Timbre(data) => &data.command,
        }
    }

    /// The step cost of a candidate together with the paired variant's.
    fn preset_cost(&self, candidate: Cost, paired: Cost) -> PresetCost {
        match self.network {
            Network::Melody(_) => PresetCost {
                melody: candidate,
                timbre: paired,
            },
            Network::Timbre(_) => PresetCost {
                melody: paired,
                timbre: candidate,
            },
        }
    }
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

/// What the search produced for one model.
pub struct Outcome {
    /// The model's name.
    pub model: String,
    /// Every candidate, timed.
    pub measured: Vec<Measured>,
    /// The winner, fine-tuned.
    pub winner: Candidate,
    /// Its weights as shipped.
    pub net: GruNet,
    /// Its held-out quality: test NLL (nats per step, kernel arithmetic)
    /// for the melody network, log-spectral distance (dB) for timbre.
    pub quality: f64,
}

/// The step cost of the paired variant: the slowest timbre frame of a
/// timbre variant among shipped instruments, or one step of a shipped
/// melody model.
fn paired_cost(config: &SearchConfig) -> Result<Cost> {
    let suffix = format!("-{}", config.pair);
    let melody_pair = matches!(config.network, Network::Timbre(_));
    let role = if melody_pair {
        Role::Melody
    } else {
        Role::Timbre
    };
    let paired = |name: &str| {
        if melody_pair {
            name == config.pair
        } else {
            name.starts_with("timbre-") && name.ends_with(&suffix)
        }
    };
    let mut slowest = None;
    for (name, bytes) in EMBEDDED_MODELS.iter().filter(|(n, _)| paired(n)) {
        let net = import(bytes)
            .with_context(|| format!("reading {name}"))?
            .net;
        let cost = measure(&mut GruKernel::new(&net), role, config.cost_steps);
        slowest = Some(slowest.map_or(cost, |s: Cost| s.slower(cost)));
    }
    slowest.with_context(|| format!("no shipped model is the paired variant {:?}", config.pair))
}

/// Builds and times every candidate.
fn measure_candidates(
    config: &SearchConfig,
    role: Role,
    start: &GruNet,
    paired: Cost,
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
                let cost = measure(&mut GruKernel::new(&shipped), role, config.cost_steps);
                let work = workload.work_us(&config.preset_cost(cost, paired));
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

/// The teacher of one model's search, its name (the file's stem) and the
/// starting weights of every candidate. A start
/// model, else a Wren GRU teacher, is the starting point of every
/// candidate; a teacher of any other graph teaches students that start from
/// scratch.
fn teacher_and_start(
    config: &SearchConfig,
    instrument: Option<&str>,
    device: &Device,
) -> Result<(Teacher, String, GruNet)> {
    let named = |path: &Path| -> PathBuf {
        match instrument {
            Some(name) => path.to_string_lossy().replace("{instrument}", name).into(),
            None => path.to_path_buf(),
        }
    };
    let teacher_path = named(&config.teacher);
    let contract = match config.network {
        Network::Melody(_) => (
            wren::melody::tokens::INPUT_SIZE,
            wren::melody::tokens::VOCAB,
        ),
        Network::Timbre(_) => (wren::timbre::INPUT_SIZE, wren::timbre::OUTPUT_SIZE),
    };
    let teacher_bytes = std::fs::read(&teacher_path)
        .with_context(|| format!("reading the teacher {}", teacher_path.display()))?;
    let teacher = Teacher::load(&teacher_bytes, contract, device)
        .with_context(|| format!("{} cannot teach this network", teacher_path.display()))?;
    let start = match (&config.start, &teacher) {
        (Some(path), _) => {
            let path = named(path);
            let bytes =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
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
            let (input, output) = contract;
            let layers = match config.network {
                Network::Melody(_) => 2,
                Network::Timbre(_) => 1,
            };
            StepNet::new(input, widest, layers, output, config.train.seed, device)?.to_gru_net()?
        }
    };
    let name = teacher_path
        .file_stem()
        .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
    Ok((teacher, name, start))
}

/// Times the candidates grown from `start` and returns them with the
/// finalists (most stored parameters first, then the cheaper step).
fn candidates(
    config: &SearchConfig,
    role: Role,
    start: &GruNet,
    paired: Cost,
) -> Result<Vec<Measured>> {
    let mut measured = measure_candidates(config, role, start, paired)?;
    eprintln!("{} p99 {:.2} us", config.pair, paired.p99_us);
    for m in &measured {
        eprintln!(
            "{:<50} {:>9} B {:>8.2} us p99 {}",
            m.candidate.to_string(),
            m.bytes,
            m.cost.p99_us,
            if m.fits { "fits" } else { "" }
        );
    }
    measured.sort_by(|a, b| {
        b.parameters
            .cmp(&a.parameters)
            .then(a.cost.p99_us.total_cmp(&b.cost.p99_us))
    });
    if !measured.iter().any(|m| m.fits) {
        bail!(
            "no candidate fits {}@{} x {} voices, share {}: try a larger buffer or share, or \
             fewer voices",
            config.block_size,
            config.sample_rate,
            config.voices,
            config.share
        );
    }
    Ok(measured)
}

/// Fine-tunes the finalists on an objective and keeps the best on its
/// validation score.
fn fine_tune_finalists<O: Objective>(
    config: &SearchConfig,
    measured: &[Measured],
    prefix: &str,
    mut objective: impl FnMut() -> O,
    device: &Device,
) -> Result<(Candidate, Trained)> {
    let mut best: Option<(Candidate, Trained)> = None;
    for m in measured
        .iter()
        .filter(|m| m.fits)
        .take(config.finalists.max(1))
    {
        let plan = Plan {
            sparsity: m.candidate.sparsity,
            scope: PruneScope::Global,
            int8: m.candidate.int8,
        };
        let label = format!("{prefix}{}", m.candidate);
        let trained = fine_tune(
            &label,
            &config.train,
            &m.net,
            plan,
            &mut objective(),
            device,
        )?;
        eprintln!("{label}: valid {:.4}", trained.valid_loss);
        if best
            .as_ref()
            .is_none_or(|b| trained.valid_loss < b.1.valid_loss)
        {
            best = Some((m.candidate, trained));
        }
    }
    best.context("no finalist trained")
}

/// Training settings recorded in the manifest.
fn training_record(
    config: &SearchConfig,
    winner: &Candidate,
    distill: String,
) -> BTreeMap<String, String> {
    let mut training = config.train.settings(&[
        ("search", winner.to_string()),
        (
            "budget",
            format!("{}@{}", config.block_size, config.sample_rate),
        ),
        ("voices", config.voices.to_string()),
        ("budget_share", config.share.to_string()),
        ("distill", distill),
    ]);
    if winner.int8 {
        training.insert("int8".into(), crate::requantize::INT8_METHOD.into());
    }
    training
}

/// Runs the search and writes the winners (one model for the melody
/// network, one per instrument for timbre) and the preset.
pub fn run(config: &SearchConfig) -> Result<Vec<Outcome>> {
    let paired = paired_cost(config)?;
    let outcomes = match &config.network {
        Network::Melody(data) => vec![search_melody(config, data, paired)?],
        Network::Timbre(data) => {
            let font = load_soundfont(&data.soundfont)?;
            for instrument in &data.instruments {
                eprintln!("{}", describe(&font, &data.soundfont, instrument)?);
            }
            let tunes = read_dataset(&data.melodies)?;
            data.instruments
                .iter()
                .map(|instrument| search_timbre(config, data, instrument, (&font, &tunes), paired))
                .collect::<Result<_>>()?
        }
    };
    write_preset(config, &outcomes)?;
    Ok(outcomes)
}

fn search_melody(config: &SearchConfig, data: &PipelineConfig, paired: Cost) -> Result<Outcome> {
    let device = Device::Cpu;
    let (teacher, teacher_name, start) = teacher_and_start(config, None, &device)?;
    let measured = candidates(config, Role::Melody, &start, paired)?;
    let melodies = load_data(data)?;
    let (train, valid, test) = (
        refs(&melodies.train),
        refs(&melodies.valid),
        refs(&melodies.test),
    );
    let (winner, trained) = fine_tune_finalists(
        config,
        &measured,
        "",
        || {
            MelodyObjective::new(
                &teacher,
                MELODY_DISTILL,
                (&train, &valid),
                &config.train,
                &device,
            )
        },
        &device,
    )?;
    let net = trained.net;
    let (test_nll, test_accuracy) = kernel_nll(&net, &test);
    let cost = measure(&mut GruKernel::new(&net), Role::Melody, config.cost_steps);
    eprintln!(
        "winner {winner}: test NLL {test_nll:.4}, {} bytes, {:.2} us p99",
        net.bytes(),
        cost.p99_us
    );
    let metrics = BTreeMap::from([
        ("test_nll".to_string(), test_nll),
        ("test_accuracy".to_string(), test_accuracy),
        ("valid_nll".to_string(), trained.valid_loss),
        ("step_median_us".to_string(), cost.median_us),
        ("step_p99_us".to_string(), cost.p99_us),
    ]);
    let (alpha, temperature) = MELODY_DISTILL;
    let training = training_record(
        config,
        &winner,
        format!("alpha {alpha}, temperature {temperature}"),
    );
    ship(
        config,
        (&config.name, &teacher_name),
        "melody",
        &net,
        &melodies.record,
        training,
        metrics,
    )?;
    let candle = StepNet::from_gru_net(&net, &device)?;
    melody_golden(
        data.out_dir.as_path(),
        &config.name,
        &candle,
        &melodies.test,
        &device,
    )?;
    Ok(Outcome {
        model: config.name.clone(),
        measured,
        winner,
        net,
        quality: test_nll,
    })
}

fn search_timbre(
    config: &SearchConfig,
    data: &TimbreConfig,
    instrument: &Instrument,
    (font, tunes): (&Arc<SoundFont>, &[Tune]),
    paired: Cost,
) -> Result<Outcome> {
    let device = Device::Cpu;
    let name = instrument.name;
    let (teacher, teacher_name, start) = teacher_and_start(config, Some(name), &device)?;
    let measured = candidates(config, Role::Timbre, &start, paired)?;
    let recordings = record_instrument(data, instrument, font, tunes)?;
    let (train, valid) = (
        FrameSet::new(&recordings.train),
        FrameSet::new(&recordings.valid),
    );
    anyhow::ensure!(
        !train.is_empty() && !valid.is_empty() && !recordings.test.is_empty(),
        "{name}: a split has no takes"
    );
    let (winner, trained) = fine_tune_finalists(
        config,
        &measured,
        &format!("{name} "),
        || {
            TimbreObjective::new(
                (&train, &valid),
                Some((&teacher, TIMBRE_BLEND)),
                config.train.seed,
                &device,
            )
        },
        &device,
    )?;
    let net = trained.net;
    let mut metrics = distances(&recordings.test, |r| play(&net, r));
    let cost = measure(&mut GruKernel::new(&net), Role::Timbre, config.cost_steps);
    let lsd = metrics["test_lsd_db"];
    eprintln!(
        "{name} winner {winner}: test LSD {lsd:.2} dB, {} bytes, {:.2} us p99",
        net.bytes(),
        cost.p99_us
    );
    metrics.insert("valid_loss".into(), trained.valid_loss);
    metrics.insert("step_median_us".into(), cost.median_us);
    metrics.insert("step_p99_us".into(), cost.p99_us);
    let mut training = training_record(
        config,
        &winner,
        format!("blend {TIMBRE_BLEND} analysed, rest teacher"),
    );
    training.insert(
        "instrument".into(),
        describe(font, &data.soundfont, instrument)?,
    );
    let model = format!("timbre-{name}-{}", config.name);
    ship(
        config,
        (&model, &teacher_name),
        "timbre",
        &net,
        &recordings.record,
        training,
        metrics,
    )?;
    timbre_golden(data, &model, &net, &recordings.test[0], &device)?;
    Ok(Outcome {
        model,
        measured,
        winner,
        net,
        quality: lsd,
    })
}

/// Writes a model, taught by `teacher`, and its manifest entry.
fn ship(
    config: &SearchConfig,
    (model, teacher): (&str, &str),
    role: &str,
    net: &GruNet,
    record: &wren::model::manifest::DataRecord,
    training: BTreeMap<String, String>,
    metrics: BTreeMap<String, f64>,
) -> Result<()> {
    let out = config.out_dir();
    std::fs::create_dir_all(out)?;
    let entry = write_model(
        out,
        net,
        Shipping {
            name: model,
            role,
            teacher: Some(teacher),
            data: record,
            command: config.command(),
            training,
            metrics,
        },
    )?;
    let mut manifest = read_manifest(out)?;
    manifest.upsert(entry);
    write_manifest(out, &manifest)
}

/// Writes the preset that pairs the winners with the paired variant.
fn write_preset(config: &SearchConfig, outcomes: &[Outcome]) -> Result<()> {
    let found: Vec<String> = outcomes
        .iter()
        .map(|o| format!("{} {}", o.model, o.winner))
        .collect();
    let (network, melody, timbre) = match config.network {
        Network::Melody(_) => ("melody", config.name.as_str(), config.pair.as_str()),
        Network::Timbre(_) => ("timbre", config.pair.as_str(), config.name.as_str()),
    };
    std::fs::create_dir_all(&config.preset_dir)?;
    let preset = format!(
        "# Written by `{}`.\n# Found: {}.\nname = \"{}\"\ndescription = \"Searched {network} \
         GRU, {}\"\nmelody = \"{melody}\"\n\
         # The timbre variant of every instrument: timbre-<instrument>-<variant>.\n\
         timbre = \"{timbre}\"\n# The buffer it is meant for.\nblock_size = {}\nsample_rate = {}\n\
         budget_share = {}\n",
        config.command(),
        found.join("; "),
        config.preset,
        outcomes
            .first()
            .map(|o| o.winner.to_string())
            .unwrap_or_default(),
        config.block_size,
        config.sample_rate as u32,
        config.share,
    );
    let path = config.preset_dir.join(format!("{}.toml", config.preset));
    std::fs::write(&path, preset).with_context(|| format!("writing {}", path.display()))?;
    eprintln!("wrote {}", path.display());
    Ok(())
}
