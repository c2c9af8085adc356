//! The timbre pipeline, per instrument: render and analyse the soundfont
//! notes, train a teacher, a student alone and students distilled from the
//! teacher, quantize the best student to int8, measure every variant and the
//! static baseline on the held-out notes, and export models, manifest
//! entries and golden outputs.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result};
use candle_core::{Device, Tensor};
use wren::melody::dataset::{read_dataset, Split, Tune};
use wren::model::kernel::GruKernel;
use wren::model::manifest::DataRecord;
use wren::model::GruNet;
use wren::timbre::{decode, input, INPUT_SIZE, OUTPUT_SIZE};

use super::analysis::Analyzer;
use super::data::{self, midi_hz, Instrument, Recording};
use super::quality::{
    analysed_frames, log_spectral_distance, mrstft_distance, resynthesize, Wavetable,
};
use super::split_name;
use super::train::{kernel_loss, train, FrameSet};
use crate::compress::Teacher;
use crate::export::{
    cached, data_record, read_manifest, write_golden, write_manifest, write_model, Golden, Shipping,
};
use crate::net::StepNet;
use crate::progress::Progress;
use crate::train::TrainConfig;

/// Sizes and lengths of one timbre pipeline run.
#[derive(Clone, Debug)]
pub struct TimbreConfig {
    /// The soundfont.
    pub soundfont: PathBuf,
    /// The melody dataset the legato phrases come from.
    pub melodies: PathBuf,
    /// Where shipped models, manifest and golden files go.
    pub out_dir: PathBuf,
    /// Where intermediate checkpoints go.
    pub work_dir: PathBuf,
    /// The instruments to train.
    pub instruments: Vec<Instrument>,
    /// Teacher size `(hidden, layers)`.
    pub teacher: (usize, usize),
    /// Student size `(hidden, layers)`.
    pub student: (usize, usize),
    /// Optimizer steps for the teacher.
    pub teacher_steps: usize,
    /// Optimizer steps for each student.
    pub student_steps: usize,
    /// Blends of analysed and teacher targets tried for the students (1 =
    /// analysed only).
    pub blends: Vec<f64>,
    /// Windows per batch and frames per window.
    pub batch: (usize, usize),
    /// Legato phrases in the training split per instrument.
    pub train_phrases: usize,
    /// Keep every `n`-th take (1 = all); for quick runs.
    pub subsample: usize,
    /// Seed of every run.
    pub seed: u64,
    /// The command line that produced the run, for the manifest.
    pub command: String,
}

impl TimbreConfig {
    /// The shipped configuration.
    pub fn full(command: String) -> TimbreConfig {
        TimbreConfig {
            soundfont: data::SOUNDFONT.into(),
            melodies: "models/data/melodies.tsv.gz".into(),
            out_dir: "models".into(),
            work_dir: "models/work".into(),
            instruments: data::INSTRUMENTS.to_vec(),
            teacher: (512, 1),
            student: (96, 1),
            teacher_steps: 1200,
            student_steps: 900,
            blends: vec![0.5, 0.8],
            batch: (16, 128),
            train_phrases: 40,
            subsample: 1,
            seed: 11,
            command,
        }
    }

    /// The whole pipeline on a sliver of the data, with tiny networks.
    pub fn tiny(command: String, out_dir: PathBuf) -> TimbreConfig {
        TimbreConfig {
            work_dir: out_dir.join("work"),
            out_dir,
            instruments: vec![data::INSTRUMENTS[0]],
            teacher: (24, 1),
            student: (8, 1),
            teacher_steps: 30,
            student_steps: 20,
            blends: vec![0.5],
            batch: (8, 48),
            train_phrases: 4,
            subsample: 9,
            ..TimbreConfig::full(command)
        }
    }

    /// Chooses the instruments: those named (all when none is), and for a
    /// single one optionally a program of the soundfont and a range of
    /// one's own, which its network then learns (see
    /// [`data::own_instrument`]).
    pub fn choose(
        &mut self,
        names: &[String],
        program: Option<u8>,
        range: Option<(u8, u8)>,
    ) -> Result<()> {
        if program.is_none() && range.is_none() {
            if !names.is_empty() {
                self.instruments = names
                    .iter()
                    .map(|n| data::named(n))
                    .collect::<Result<_>>()?;
            }
            return Ok(());
        }
        let [slot] = names else {
            anyhow::bail!(
                "a program or range of your own needs one --instrument: the Wren instrument \
                 whose network learns it and which it plays as (flute, violin or trumpet)"
            );
        };
        self.instruments = vec![data::own_instrument(slot, program, range)?];
        Ok(())
    }

    fn train_config(&self, size: (usize, usize), steps: usize) -> TrainConfig {
        TrainConfig {
            hidden: size.0,
            layers: size.1,
            steps,
            batch: self.batch.0,
            window: self.batch.1,
            learning_rate: 3e-3,
            dropout: 0.0,
            seed: self.seed,
            eval_every: (steps / 4).max(1),
        }
    }
}

/// The recordings of one instrument by split.
pub struct Recordings {
    /// Training takes.
    pub train: Vec<Recording>,
    /// Validation takes.
    pub valid: Vec<Recording>,
    /// Held-out test takes.
    pub test: Vec<Recording>,
    /// What the manifest records of them.
    pub record: DataRecord,
}

/// Renders and analyses the planned takes of one instrument, by split.
pub fn record_instrument(
    config: &TimbreConfig,
    instrument: &Instrument,
    font: &std::sync::Arc<rustysynth::SoundFont>,
    tunes: &[Tune],
) -> Result<Recordings> {
    let takes: Vec<_> = data::plan(instrument, tunes, config.train_phrases)
        .into_iter()
        .step_by(config.subsample.max(1))
        .collect();
    let progress = Progress::new(&format!("{} data", instrument.name), takes.len() as u64);
    let mut analyzer = Analyzer::new();
    let (mut train, mut valid, mut test) = (Vec::new(), Vec::new(), Vec::new());
    for (i, take) in takes.into_iter().enumerate() {
        let recording = data::record(font, instrument, take, &mut analyzer)?;
        match recording.take.split {
            Split::Train => train.push(recording),
            Split::Valid => valid.push(recording),
            Split::Test => test.push(recording),
        }
        progress.set(i as u64 + 1, "");
    }
    progress.finish();
    let mut takes = BTreeMap::new();
    let mut frames = BTreeMap::new();
    for (split, set) in [
        (Split::Train, &train),
        (Split::Valid, &valid),
        (Split::Test, &test),
    ] {
        takes.insert(split_name(split).to_string(), set.len());
        frames.insert(
            split_name(split).to_string(),
            set.iter().map(|r| r.frames.len()).sum(),
        );
    }
    let record = data_record(&config.soundfont, takes, frames)?;
    Ok(Recordings {
        train,
        valid,
        test,
        record,
    })
}

/// Plays a recording's MIDI through a network in the real-time kernel and
/// the synthesizer.
pub fn play(net: &GruNet, recording: &Recording) -> Vec<f32> {
    let mut kernel = GruKernel::new(net);
    let mut state = vec![0.0; net.shape().state()];
    let mut y = vec![0.0; OUTPUT_SIZE];
    let frames: Vec<_> = recording
        .controls
        .iter()
        .map(|control| {
            kernel.step(&input(control.as_ref()), &mut state, &mut y);
            decode(control.map_or(440.0, |c| midi_hz(c.pitch)), &y)
        })
        .collect();
    resynthesize(&frames)
}

/// Peak below which a recording counts as silent: the soundfont does not
/// sound that note, so it says nothing about the instrument's timbre.
const SILENT_PEAK: f32 = 1e-4;

/// Whether the soundfont sounded a recording at all.
pub fn audible(recording: &Recording) -> bool {
    recording.audio.iter().any(|s| s.abs() > SILENT_PEAK)
}

/// Mean MR-STFT and log-spectral distances over the audible test recordings
/// of the audio `render` makes for each. (Against digital silence the
/// spectral convergence has no scale; silent takes are left out and
/// counted.)
pub fn distances(
    test: &[Recording],
    render: impl Fn(&Recording) -> Vec<f32>,
) -> BTreeMap<String, f64> {
    let (mut mr, mut lsd, mut scored) = (0.0, 0.0, 0usize);
    for recording in test.iter().filter(|r| audible(r)) {
        let audio = render(recording);
        mr += mrstft_distance(&recording.audio, &audio);
        lsd += log_spectral_distance(&recording.audio, &audio);
        scored += 1;
    }
    let n = scored.max(1) as f64;
    BTreeMap::from([
        ("test_mrstft".to_string(), mr / n),
        ("test_lsd_db".to_string(), lsd / n),
        ("test_takes_scored".to_string(), scored as f64),
        (
            "test_takes_silent".to_string(),
            (test.len() - scored) as f64,
        ),
    ])
}

/// Renders and analyses the held-out test takes of one instrument only.
pub fn test_recordings(config: &TimbreConfig, instrument: &Instrument) -> Result<Vec<Recording>> {
    let font = data::load_soundfont(&config.soundfont)?;
    let tunes = read_dataset(&config.melodies)?;
    let mut analyzer = Analyzer::new();
    data::plan(instrument, &tunes, config.train_phrases)
        .into_iter()
        .step_by(config.subsample.max(1))
        .filter(|take| take.split == Split::Test)
        .map(|take| data::record(&font, instrument, take, &mut analyzer))
        .collect()
}

/// Runs every stage for every instrument; updates the manifest in `out_dir`.
pub fn run(config: &TimbreConfig) -> Result<()> {
    std::fs::create_dir_all(&config.out_dir)?;
    let device = Device::Cpu;
    let font = data::load_soundfont(&config.soundfont)?;
    let mut manifest = read_manifest(&config.out_dir)?;
    let tunes = read_dataset(&config.melodies)?;
    for instrument in &config.instruments {
        eprintln!("{}", data::describe(&font, &config.soundfont, instrument)?);
    }
    for instrument in &config.instruments {
        let name = instrument.name;
        let recordings = record_instrument(config, instrument, &font, &tunes)?;
        eprintln!(
            "{name}: {:?} takes, {:?} frames",
            recordings.record.tunes, recordings.record.steps
        );
        let silent: Vec<String> = [&recordings.train, &recordings.valid, &recordings.test]
            .into_iter()
            .flatten()
            .filter(|r| !audible(r))
            .map(|r| format!("{}/{}", r.take.notes[0].pitch, r.take.notes[0].velocity))
            .collect();
        if !silent.is_empty() {
            eprintln!("{name}: the soundfont is silent for pitch/velocity {silent:?}");
        }
        let train_set = FrameSet::new(&recordings.train);
        let valid_set = FrameSet::new(&recordings.valid);
        anyhow::ensure!(
            !train_set.is_empty() && !valid_set.is_empty() && !recordings.test.is_empty(),
            "{name}: a split has no takes"
        );

        let run = |label: String, c: &TrainConfig, teacher: Option<(&Teacher, f64)>| {
            train(&label, c, teacher, (&train_set, &valid_set), &device)
        };
        let work = &config.work_dir;
        let teacher_config = config.train_config(config.teacher, config.teacher_steps);
        let teacher_name = format!("timbre-{name}-teacher");
        let teacher = cached(work, &teacher_name, || {
            run(format!("{name} teacher"), &teacher_config, None)
        })?;
        let teacher_net = Teacher::Gru(StepNet::from_gru_net(&teacher.net, &device)?);
        let student_config = config.train_config(config.student, config.student_steps);
        let alone = cached(work, &format!("timbre-{name}-student-alone"), || {
            run(format!("{name} student alone"), &student_config, None)
        })?;
        let mut candidates = Vec::new();
        for &blend in &config.blends {
            let label = format!("{name} student blend {blend}");
            let student = cached(work, &format!("timbre-{name}-student-b{blend}"), || {
                run(label.clone(), &student_config, Some((&teacher_net, blend)))
            })?;
            eprintln!("{label}: valid loss {:.4}", student.valid_loss);
            candidates.push((blend, student));
        }
        let (blend, student) = candidates
            .into_iter()
            .min_by(|a, b| a.1.valid_loss.total_cmp(&b.1.valid_loss))
            .context("no blend to try")?;
        let int8 = student.net.quantized();

        let table = Wavetable::learn(&recordings.train);
        let test = &recordings.test;
        manifest.baselines.insert(
            format!("timbre-{name}-wavetable"),
            distances(test, |r| resynthesize(&table.frames_for(r))),
        );
        manifest.baselines.insert(
            format!("timbre-{name}-analysis"),
            distances(test, |r| resynthesize(&analysed_frames(r))),
        );
        let instrument_name = (
            "instrument",
            data::describe(&font, &config.soundfont, instrument)?,
        );
        let settings = |c: &TrainConfig, extra: &[(&str, String)]| {
            c.settings(&[std::slice::from_ref(&instrument_name), extra].concat())
        };
        let blended = [("distill_blend", blend.to_string())];
        let variants = [
            (
                teacher_name.clone(),
                &teacher.net,
                None,
                settings(&teacher_config, &[]),
                teacher.valid_loss,
            ),
            (
                format!("timbre-{name}-student-alone"),
                &alone.net,
                None,
                settings(&student_config, &[]),
                alone.valid_loss,
            ),
            (
                format!("timbre-{name}-student"),
                &student.net,
                Some(teacher_name.as_str()),
                settings(&student_config, &blended),
                student.valid_loss,
            ),
            (
                format!("timbre-{name}-student-int8"),
                &int8,
                Some(teacher_name.as_str()),
                settings(
                    &student_config,
                    &[
                        &blended[..],
                        &[("int8", crate::requantize::INT8_METHOD.into())],
                    ]
                    .concat(),
                ),
                f64::NAN,
            ),
        ];
        for (model, net, teacher_of, training, valid_loss) in variants {
            let mut metrics = distances(test, |r| play(net, r));
            let valid_loss = if valid_loss.is_nan() {
                kernel_loss(net, &valid_set, &device)?
            } else {
                valid_loss
            };
            metrics.insert("valid_loss".into(), valid_loss);
            eprintln!(
                "{model}: test MR-STFT {:.3}, LSD {:.2} dB",
                metrics["test_mrstft"], metrics["test_lsd_db"]
            );
            let shipping = Shipping {
                name: &model,
                role: "timbre",
                teacher: teacher_of,
                data: &recordings.record,
                command: &config.command,
                training,
                metrics,
            };
            manifest.upsert(write_model(&config.out_dir, net, shipping)?);
            timbre_golden(config, &model, net, &recordings.test[0], &device)?;
        }
    }
    write_manifest(&config.out_dir, &manifest)
}

/// Golden outputs: candle's on the first 48 frames of a test take.
pub fn timbre_golden(
    config: &TimbreConfig,
    model: &str,
    net: &GruNet,
    recording: &Recording,
    device: &Device,
) -> Result<()> {
    let inputs: Vec<Vec<f32>> = recording
        .controls
        .iter()
        .take(48)
        .map(|c| input(c.as_ref()).to_vec())
        .collect();
    let flat: Vec<f32> = inputs.iter().flatten().copied().collect();
    let x = Tensor::from_vec(flat, (1, inputs.len(), INPUT_SIZE), device)?;
    let outputs = StepNet::from_gru_net(net, device)?
        .forward_dense(&x, None, device)?
        .to_vec2()?;
    write_golden(
        &config.out_dir,
        &Golden {
            model: model.into(),
            inputs,
            outputs,
        },
    )
}
