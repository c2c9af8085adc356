//! The README's guide to a timbre model of one's own, end to end on tiny
//! settings: the soundfont's cello, over a cello's range, is learnt by the
//! violin's network (train-timbre), compressed for a buffer (compress),
//! loaded into a running engine as a user model, and played below the
//! violin's range.

mod common;

use std::path::Path;
use std::sync::Arc;

use wren::engine::library::{ModelLibrary, Network};
use wren::engine::{Engine, Mode, NoteEvent, Settings, Timbre, Transport};
use wren::model::manifest::Manifest;
use wren_pipeline::search::{self, SearchConfig};
use wren_pipeline::timbre::pipeline::{self, TimbreConfig};
use wren_pipeline::train::TrainConfig;

const RATE: f64 = 48_000.0;
const BLOCK: usize = 256;
/// General MIDI's cello, numbered from 0.
const CELLO: u8 = 42;
/// A cello's range from the lowest pitch the analysis parts, half of it
/// below the violin's (55 and up).
const RANGE: (u8, u8) = (43, 67);
/// G2, which the shipped violin never learnt.
const LOW_G: u8 = 43;
/// The violin's place among Wren's instruments.
const VIOLIN: usize = 1;
/// The `live` preset.
const LIVE: usize = 2;

/// `train-timbre --tiny --instrument violin --program 42 --range 43-67`.
fn cello_config(out: &Path) -> TimbreConfig {
    let mut config = TimbreConfig::tiny("test".into(), out.to_path_buf());
    config.melodies = common::models().join("data/melodies.tsv.gz");
    config
        .choose(&["violin".into()], Some(CELLO), Some(RANGE))
        .unwrap();
    config
}

/// `compress --network timbre --instrument violin --program 42 --range 43-67
/// --teacher <out>/timbre-violin-teacher.onnx --name cello`, with a budget
/// any candidate fits, so that a busy machine's timings decide nothing.
fn compress_config(data: TimbreConfig, out: &Path) -> SearchConfig {
    let base = common::tiny_search(out.join("timbre-violin-teacher.onnx"), out, vec![8]);
    SearchConfig {
        network: search::Network::Timbre(data),
        pair: "melody-student-int8".into(),
        max_bytes: None,
        sparsities: vec![0.0],
        int8: vec![true],
        finalists: 1,
        train: TrainConfig {
            window: 48,
            ..base.train
        },
        name: "cello".into(),
        preset: "cello".into(),
        ..base
    }
}

fn engine() -> (Engine, Arc<ModelLibrary>) {
    let mut engine = wren::start_engine(RATE, BLOCK).unwrap();
    let library = Arc::new(ModelLibrary::default());
    library.attach(engine.take_installer().unwrap());
    (engine, library)
}

/// One second of `note` on the violin, offline; the left channel.
fn play(engine: &mut Engine, note: u8) -> Vec<f32> {
    let settings = Settings {
        variant: LIVE,
        auto: false,
        timbre: Timbre::Neural(VIOLIN),
        mode: Mode::Thru,
        gain: 1.0,
        ..Settings::default()
    };
    let (mut left, mut right) = (vec![0.0; BLOCK], vec![0.0; BLOCK]);
    let mut audio = Vec::new();
    while audio.len() < RATE as usize {
        let events = if audio.is_empty() {
            vec![NoteEvent::On {
                offset: 0,
                note,
                velocity: 100,
            }]
        } else {
            Vec::new()
        };
        let transport = Transport::default();
        engine.process(
            &transport,
            &settings,
            &events,
            true,
            &mut left,
            &mut right,
            &mut |_| {},
        );
        audio.extend_from_slice(&left);
    }
    audio
}

#[test]
fn a_cello_from_the_soundfont_trains_compresses_loads_and_plays_as_the_violin() {
    if !common::soundfont() {
        return;
    }
    let out = std::env::temp_dir().join(format!("wren-own-instrument-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let config = cello_config(&out);
    assert_eq!(
        (config.instruments.len(), config.instruments[0].name),
        (1, "violin")
    );

    // Train: the manifest says what the network learnt.
    pipeline::run(&config).unwrap();
    let read = || {
        let text = std::fs::read_to_string(out.join("manifest.json")).unwrap();
        Manifest::from_json(&text).unwrap()
    };
    let teacher = read().get("timbre-violin-teacher").unwrap().clone();
    let learnt = &teacher.training["instrument"];
    assert!(
        learnt.contains("program 42 Cello") && learnt.contains("pitches 43-67"),
        "{learnt}"
    );

    // Compress for a buffer, fine-tuning on the same cello notes.
    let outcomes = search::run(&compress_config(config, &out)).unwrap();
    assert_eq!(outcomes.len(), 1);
    assert_eq!(outcomes[0].model, "timbre-violin-cello");
    let entry = read().get("timbre-violin-cello").unwrap().clone();
    assert_eq!(entry.compression.precision, "int8");
    assert!(entry.training["instrument"].contains("Cello"));
    assert!(entry.metrics["test_lsd_db"].is_finite());

    // Load it as the editor's Load button does, and play below the violin.
    let path = out.join(&entry.file).display().to_string();
    let (mut mine, library) = engine();
    library.choose(path.clone());
    library.wait();
    assert_eq!(
        library.installed(),
        vec![(Network::Timbre(VIOLIN), path.clone())]
    );
    let status = library.status();
    let outcome = status[0].outcome.as_ref().unwrap();
    assert!(outcome.contains("violin timbre"), "{outcome}");

    let cello = play(&mut mine, LOW_G);
    let (mut shipped, _) = engine();
    let violin = play(&mut shipped, LOW_G);
    assert!(cello.iter().all(|s| s.is_finite()));
    let peak = cello.iter().fold(0.0f32, |m, s| m.max(s.abs()));
    assert!(peak > 1e-3 && peak < 4.0, "peak {peak}");
    assert_ne!(cello, violin, "the violin plays its own network");
    std::fs::remove_dir_all(&out).unwrap();
}
