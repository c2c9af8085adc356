//! The melody pipeline: baseline, teacher, students, distillation, int8,
//! evaluation and export, each stage cached under a work folder.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result};
use candle_core::Device;
use wren::melody::dataset::{read_dataset, Split, Tune};
use wren::melody::ngram::NGram;
use wren::melody::tokens::{write_input, Melody, Token, INPUT_SIZE, VOCAB};
use wren::model::manifest::DataRecord;
use wren::model::GruNet;

use crate::batches::{full_batch, transposed_copies, TRANSPOSITIONS};
use crate::compress::kernel_nll;
use crate::export::{
    cached, data_record, read_manifest, write_golden, write_manifest, write_model, Golden, Shipping,
};
use crate::net::StepNet;
use crate::train::{evaluate, train, Distill, TrainConfig};

/// Sizes and lengths of one pipeline run.
#[derive(Clone, Debug)]
pub struct PipelineConfig {
    /// The dataset file.
    pub dataset: PathBuf,
    /// Where shipped models, manifest and golden files go.
    pub out_dir: PathBuf,
    /// Where intermediate checkpoints go.
    pub work_dir: PathBuf,
    /// Teacher size `(hidden, layers)`.
    pub teacher: (usize, usize),
    /// Student size `(hidden, layers)`.
    pub student: (usize, usize),
    /// Optimizer steps for the teacher.
    pub teacher_steps: usize,
    /// Optimizer steps for each student.
    pub student_steps: usize,
    /// Distillation grid: `(alpha, temperature)` pairs tried on valid.
    pub distill_grid: Vec<(f64, f64)>,
    /// Highest n-gram order tried.
    pub max_order: usize,
    /// Seed of every run.
    pub seed: u64,
    /// Use only every `n`-th tune (1 = all); for quick runs.
    pub subsample: usize,
    /// The command line that produced the run, for the manifest.
    pub command: String,
}

impl PipelineConfig {
    /// The shipped configuration.
    pub fn full(command: String) -> PipelineConfig {
        PipelineConfig {
            dataset: "models/data/melodies.tsv.gz".into(),
            out_dir: "models".into(),
            work_dir: "models/work".into(),
            teacher: (512, 2),
            student: (144, 2),
            teacher_steps: 640,
            student_steps: 500,
            distill_grid: vec![(0.5, 2.0), (0.8, 1.0)],
            max_order: 8,
            seed: 7,
            subsample: 1,
            command,
        }
    }

    /// A run small enough for CI: the whole pipeline on a sliver of data.
    pub fn tiny(command: String, out_dir: PathBuf) -> PipelineConfig {
        PipelineConfig {
            work_dir: out_dir.join("work"),
            out_dir,
            teacher: (32, 2),
            student: (8, 2),
            teacher_steps: 30,
            student_steps: 20,
            distill_grid: vec![(0.5, 2.0)],
            max_order: 3,
            subsample: 20,
            ..PipelineConfig::full(command)
        }
    }
}

/// The melody dataset by split, with its provenance.
pub struct Data {
    /// Training tunes.
    pub train: Vec<Melody>,
    /// Validation tunes.
    pub valid: Vec<Melody>,
    /// Held-out test tunes.
    pub test: Vec<Melody>,
    /// Path, checksum and counts, for the manifest.
    pub record: DataRecord,
}

/// References to every melody of a split.
pub fn refs(set: &[Melody]) -> Vec<&Melody> {
    set.iter().collect()
}

/// Reads the dataset of `config` and splits it.
pub fn load_data(config: &PipelineConfig) -> Result<Data> {
    let tunes = read_dataset(&config.dataset)?;
    let tunes: Vec<Tune> = tunes.into_iter().step_by(config.subsample.max(1)).collect();
    let pick = |split: Split| -> Vec<Melody> {
        tunes
            .iter()
            .filter(|t| t.split == split)
            .map(|t| t.melody.clone())
            .collect()
    };
    let (train, valid, test) = (pick(Split::Train), pick(Split::Valid), pick(Split::Test));
    let mut tune_counts = BTreeMap::new();
    let mut step_counts = BTreeMap::new();
    for (name, set) in [("train", &train), ("valid", &valid), ("test", &test)] {
        tune_counts.insert(name.to_string(), set.len());
        step_counts.insert(name.to_string(), set.iter().map(|m| m.tokens.len()).sum());
    }
    for tune in &tunes {
        *tune_counts
            .entry(format!("source:{}", tune.source))
            .or_default() += 1;
    }
    let record = data_record(&config.dataset, tune_counts, step_counts)?;
    Ok(Data {
        train,
        valid,
        test,
        record,
    })
}

/// Runs every stage and writes models, manifest and golden files.
pub fn run(config: &PipelineConfig) -> Result<()> {
    std::fs::create_dir_all(&config.work_dir)?;
    std::fs::create_dir_all(config.out_dir.join("golden"))?;
    let device = Device::Cpu;
    let data = load_data(config)?;
    eprintln!(
        "data: {:?} tunes, {:?} steps",
        data.record.tunes, data.record.steps
    );
    let (train_set, valid_set, test_set) = (refs(&data.train), refs(&data.valid), refs(&data.test));

    let run = |label: &str, c: &TrainConfig, distill: Option<Distill>| {
        train(label, c, distill, &train_set, &valid_set, &device)
    };
    let work = &config.work_dir;
    let teacher_config = train_config(config, config.teacher, config.teacher_steps, 0.1);
    let teacher = cached(work, "melody-teacher", || {
        run("teacher", &teacher_config, None)
    })?;
    let teacher_net = StepNet::from_gru_net(&teacher.net, &device)?;

    let student_config = train_config(config, config.student, config.student_steps, 0.0);
    let alone = cached(work, "melody-student-alone", || {
        run("student alone", &student_config, None)
    })?;
    let mut candidates = Vec::new();
    for &(alpha, temperature) in &config.distill_grid {
        let name = format!("melody-student-a{alpha}-t{temperature}");
        let distill = Distill {
            teacher: &teacher_net,
            alpha,
            temperature,
        };
        let label = format!("student a={alpha} T={temperature}");
        let student = cached(work, &name, || run(&label, &student_config, Some(distill)))?;
        eprintln!("{label}: valid NLL {:.4}", student.valid_loss);
        candidates.push((alpha, temperature, student));
    }
    let (alpha, temperature, student) = candidates
        .into_iter()
        .min_by(|a, b| a.2.valid_loss.total_cmp(&b.2.valid_loss))
        .context("the distillation grid is empty")?;
    let int8 = student.net.quantized();

    let mut manifest = read_manifest(&config.out_dir)?;
    manifest
        .baselines
        .insert("ngram".into(), baseline(config, &data)?);

    let augmentation = (
        "augmentation",
        format!("transposition {:?}", TRANSPOSITIONS),
    );
    let settings = |c: &TrainConfig, extra: &[(&str, String)]| {
        c.settings(&[std::slice::from_ref(&augmentation), extra].concat())
    };
    let distilled = [
        ("distill_alpha", alpha.to_string()),
        ("distill_temperature", temperature.to_string()),
    ];
    let variants: [Variant; 4] = [
        (
            "melody-teacher",
            &teacher.net,
            None,
            settings(&teacher_config, &[]),
            teacher.valid_loss,
        ),
        (
            "melody-student-alone",
            &alone.net,
            None,
            settings(&student_config, &[]),
            alone.valid_loss,
        ),
        (
            "melody-student",
            &student.net,
            Some("melody-teacher"),
            settings(&student_config, &distilled),
            student.valid_loss,
        ),
        (
            "melody-student-int8",
            &int8,
            Some("melody-teacher"),
            settings(
                &student_config,
                &[
                    &distilled[..],
                    &[("int8", crate::requantize::INT8_METHOD.into())],
                ]
                .concat(),
            ),
            f64::NAN,
        ),
    ];
    let mut student_nll = None;
    for (name, net, teacher_name, training, valid_nll) in variants {
        let candle_net = StepNet::from_gru_net(net, &device)?;
        // int8 products quantize their inputs too: only the kernel sees that.
        let (test_nll, test_acc) = if net.is_int8() {
            kernel_nll(net, &test_set)
        } else {
            evaluate(&candle_net, &test_set, &device)?
        };
        let mut metrics = BTreeMap::from([
            ("test_nll".into(), test_nll),
            ("test_accuracy".into(), test_acc),
        ]);
        let valid_nll = if valid_nll.is_nan() {
            kernel_nll(net, &valid_set).0
        } else {
            valid_nll
        };
        metrics.insert("valid_nll".into(), valid_nll);
        if name == "melody-student" {
            student_nll = Some(test_nll);
        }
        if let (Some(f32_nll), true) = (student_nll, name.ends_with("int8")) {
            metrics.insert("test_nll_change_vs_f32".into(), test_nll / f32_nll - 1.0);
        }
        eprintln!("{name}: test NLL {test_nll:.4} nats/step, accuracy {test_acc:.4}");
        let shipping = Shipping {
            name,
            role: "melody",
            teacher: teacher_name,
            data: &data.record,
            command: &config.command,
            training,
            metrics,
        };
        let entry = write_model(&config.out_dir, net, shipping)?;
        melody_golden(&config.out_dir, name, &candle_net, &data.test, &device)?;
        manifest.upsert(entry);
    }
    write_manifest(&config.out_dir, &manifest)
}

/// A model to ship: name, weights, teacher, training settings, validation NLL.
type Variant<'a> = (
    &'a str,
    &'a GruNet,
    Option<&'a str>,
    BTreeMap<String, String>,
    f64,
);

fn train_config(
    config: &PipelineConfig,
    size: (usize, usize),
    steps: usize,
    dropout: f32,
) -> TrainConfig {
    TrainConfig {
        hidden: size.0,
        layers: size.1,
        steps,
        batch: 32,
        window: 64,
        learning_rate: 3e-3,
        dropout,
        seed: config.seed,
        eval_every: (steps / 4).max(1),
    }
}

fn baseline(config: &PipelineConfig, data: &Data) -> Result<BTreeMap<String, f64>> {
    let augmented = transposed_copies(data.train.iter());
    let mut best: Option<(f64, NGram)> = None;
    for with_position in [false, true] {
        let mut model = NGram::train(config.max_order, with_position, augmented.iter());
        let mut best_order = (f64::INFINITY, 1);
        for order in 1..=config.max_order {
            model.set_order(order);
            let (nll, acc) = model.evaluate(data.valid.iter());
            eprintln!(
                "n-gram order {order} position {with_position}: valid NLL {nll:.4} acc {acc:.3}"
            );
            if nll < best_order.0 {
                best_order = (nll, order);
            }
        }
        model.set_order(best_order.1);
        if best.as_ref().is_none_or(|b| best_order.0 < b.0) {
            best = Some((best_order.0, model));
        }
    }
    let (valid_nll, model) = best.context("no n-gram was trained")?;
    let (test_nll, test_acc) = model.evaluate(data.test.iter());
    eprintln!(
        "n-gram: order {} (position {}), test NLL {test_nll:.4}, accuracy {test_acc:.4}",
        model.order(),
        model.with_position()
    );
    Ok(BTreeMap::from([
        ("order".into(), model.order() as f64),
        ("with_position".into(), model.with_position() as u8 as f64),
        ("valid_nll".into(), valid_nll),
        ("test_nll".into(), test_nll),
        ("test_accuracy".into(), test_acc),
    ]))
}

/// Writes golden logits of candle on the first steps of a test tune.
pub(crate) fn melody_golden(
    out_dir: &std::path::Path,
    name: &str,
    net: &StepNet,
    test: &[Melody],
    device: &Device,
) -> Result<()> {
    let melody = test
        .iter()
        .find(|m| m.tokens.len() >= 48)
        .or(test.first())
        .context("no test tune")?;
    let steps = melody.tokens.len().min(48);
    let window = Melody {
        tokens: melody.tokens[..steps].to_vec(),
        ..melody.clone()
    };
    let batch = full_batch(&[&window]);
    let logits: Vec<Vec<f32>> = net.forward(&batch, None, device)?.to_vec2()?;
    let inputs = (0..steps)
        .map(|i| {
            let mut x = vec![0.0; INPUT_SIZE];
            let previous = i.checked_sub(1).map_or(Token::Rest, |p| window.tokens[p]);
            write_input(&mut x, previous, window.step_in_bar(i), window.meter);
            x
        })
        .collect();
    debug_assert!(logits.iter().all(|l| l.len() == VOCAB));
    write_golden(
        out_dir,
        &Golden {
            model: name.into(),
            inputs,
            outputs: logits,
        },
    )
}
