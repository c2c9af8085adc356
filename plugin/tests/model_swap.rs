//! User models in a running engine: a good one replaces its network's
//! model, a bad one leaves the playing model alone, a state naming a
//! missing one falls back to the embedded model, the last request wins,
//! loads are time-limited and their panics contained, and a swap while a
//! note sounds adds no click.

mod model_folder;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use wren::engine::library::{contained, LoadError, ModelLibrary, Network};
use wren::engine::models::{embedded_entry, EMBEDDED_MODELS};
use wren::engine::{Engine, Mode, NoteEvent, Settings, Timbre, Transport};

const RATE: f64 = 48_000.0;
const BLOCK: usize = 256;
/// The `live` preset: int8 students for every network.
const LIVE: usize = 2;

fn folder(name: &str) -> PathBuf {
    let dir = std::env::temp_dir()
        .join(format!("wren-model-swap-{}", std::process::id()))
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes the embedded model `source` into `dir` as a user model `name`.
fn user_model(dir: &Path, source: &str, name: &str) -> String {
    let bytes = EMBEDDED_MODELS
        .iter()
        .find(|(n, _)| *n == source)
        .map(|(_, b)| b.to_vec())
        .unwrap();
    let file = format!("{name}.onnx");
    std::fs::write(dir.join(&file), &bytes).unwrap();
    let mut entry = embedded_entry(source).unwrap();
    entry.name = name.into();
    entry.file = file.clone();
    model_folder::describe(dir, entry, &bytes);
    dir.join(file).display().to_string()
}

fn started() -> (Engine, Arc<ModelLibrary>) {
    let mut engine = wren::start_engine(RATE, BLOCK).unwrap();
    let library = Arc::new(ModelLibrary::default());
    library.attach(engine.take_installer().unwrap());
    (engine, library)
}

fn settings(instrument: usize) -> Settings {
    Settings {
        variant: LIVE,
        auto: false,
        timbre: Timbre::Neural(instrument),
        mode: Mode::Thru,
        gain: 1.0,
        ..Settings::default()
    }
}

/// Plays `note` for `seconds`, offline, from the engine's current state;
/// the note is held unless `release` is set. Returns the left channel.
fn play(engine: &mut Engine, settings: &Settings, note: Option<u8>, seconds: f64) -> Vec<f32> {
    let total = (seconds * RATE) as usize;
    let mut audio = Vec::with_capacity(total);
    let (mut left, mut right) = (vec![0.0; BLOCK], vec![0.0; BLOCK]);
    while audio.len() < total {
        let events: Vec<NoteEvent> = match note {
            Some(note) if audio.is_empty() => vec![NoteEvent::On {
                offset: 0,
                note,
                velocity: 100,
            }],
            _ => Vec::new(),
        };
        engine.process(
            &Transport::default(),
            settings,
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

fn release(engine: &mut Engine, settings: &Settings, note: u8) -> Vec<f32> {
    let (mut left, mut right) = (vec![0.0; BLOCK], vec![0.0; BLOCK]);
    engine.process(
        &Transport::default(),
        settings,
        &[NoteEvent::Off { offset: 0, note }],
        true,
        &mut left,
        &mut right,
        &mut |_| {},
    );
    let mut audio = left.to_vec();
    audio.extend(play(engine, settings, None, 0.5));
    audio
}

#[test]
fn a_chosen_model_plays_and_a_bad_one_leaves_it_playing() {
    let dir = folder("choose");
    // The violin's network, offered as a flute.
    let borrowed = user_model(&dir, "timbre-violin-student-int8", "timbre-flute-borrowed");
    let (mut swapped, library) = started();
    library.choose(borrowed.clone());
    library.wait();
    assert_eq!(
        library.installed(),
        vec![(Network::Timbre(0), borrowed.clone())]
    );
    assert_eq!(library.paths(), vec![borrowed.clone()]);
    let status = library.status();
    assert!(
        status[0].outcome.as_ref().unwrap().contains("flute timbre"),
        "{:?}",
        status
    );

    let (mut violin, _) = started();
    let (mut flute, _) = started();
    let as_flute = play(&mut swapped, &settings(0), Some(67), 0.5);
    let reference = play(&mut violin, &settings(1), Some(67), 0.5);
    let embedded = play(&mut flute, &settings(0), Some(67), 0.5);
    assert_eq!(as_flute, reference, "the flute plays the violin's network");
    assert!(as_flute.iter().map(|s| s.abs()).fold(0.0, f32::max) > 0.01);
    assert_ne!(as_flute, embedded);

    // A corrupt file: refused, reported, and the borrowed network plays on.
    let corrupt = dir.join("timbre-flute-corrupt.onnx");
    std::fs::copy(&borrowed, &corrupt).unwrap();
    let mut bytes = std::fs::read(&corrupt).unwrap();
    bytes.truncate(bytes.len() / 2);
    std::fs::write(&corrupt, bytes).unwrap();
    library.choose(corrupt.display().to_string());
    library.wait();
    let status = library.status();
    let why = status[0].outcome.as_ref().unwrap_err();
    assert!(
        why.contains("SHA-256") && why.contains("keeps playing"),
        "{why}"
    );
    assert_eq!(
        library.installed(),
        vec![(Network::Timbre(0), borrowed.clone())]
    );
    assert_eq!(library.paths(), vec![borrowed]);
    let as_flute = release(&mut swapped, &settings(0), 67);
    let reference = release(&mut violin, &settings(1), 67);
    assert_eq!(as_flute, reference, "the borrowed network still plays");
}

#[test]
fn a_state_naming_a_missing_model_falls_back_to_the_embedded_model_and_says_so() {
    let dir = folder("missing");
    let borrowed = user_model(&dir, "timbre-trumpet-student-int8", "timbre-flute-borrowed");
    let melody = user_model(&dir, "melody-ultra", "melody-mine");
    let (mut engine, library) = started();
    library.restore(vec![borrowed, melody.clone()]);
    library.wait();
    assert_eq!(library.installed().len(), 2);

    let missing = dir.join("gone.onnx").display().to_string();
    library.restore(vec![missing.clone(), melody.clone()]);
    library.wait();
    assert_eq!(
        library.paths(),
        vec![missing.clone(), melody.clone()],
        "the state's names are kept"
    );
    assert_eq!(library.installed(), vec![(Network::Melody, melody)]);
    let status = library.status();
    let why = status[0].outcome.as_ref().unwrap_err();
    assert!(
        why.contains("does not exist") && why.contains("embedded"),
        "{why}"
    );

    let (mut fresh, _) = started();
    assert_eq!(
        play(&mut engine, &settings(0), Some(72), 0.4),
        play(&mut fresh, &settings(0), Some(72), 0.4),
        "the flute is the embedded flute again"
    );
}

#[test]
fn the_last_of_many_requests_wins_and_a_state_set_before_the_engine_waits_for_it() {
    let dir = folder("last");
    let violin = user_model(&dir, "timbre-violin-student-int8", "timbre-flute-violin");
    let trumpet = user_model(&dir, "timbre-trumpet-student-int8", "timbre-flute-trumpet");
    let missing = dir.join("gone.onnx").display().to_string();

    // Before the engine runs, a state only records what it names.
    let library = Arc::new(ModelLibrary::default());
    library.restore(vec![trumpet.clone()]);
    library.restore(vec![violin.clone()]);
    library.wait();
    assert!(library.installed().is_empty() && !library.settled());
    let mut engine = wren::start_engine(RATE, BLOCK).unwrap();
    library.attach(engine.take_installer().unwrap());
    library.wait();
    assert!(library.settled());
    assert_eq!(
        library.installed(),
        vec![(Network::Timbre(0), violin.clone())]
    );

    let requests = [
        vec![trumpet.clone()],
        vec![],
        vec![missing.clone()],
        vec![violin.clone()],
        vec![trumpet.clone(), missing],
        vec![],
        vec![trumpet.clone()],
    ];
    for paths in requests.iter().cycle().take(20) {
        library.restore(paths.clone());
    }
    library.restore(vec![violin.clone()]);
    library.wait();
    assert_eq!(library.installed(), vec![(Network::Timbre(0), violin)]);
    let (mut reference, _) = started();
    assert_eq!(
        play(&mut engine, &settings(0), Some(69), 0.3),
        play(&mut reference, &settings(1), Some(69), 0.3)
    );
}

#[test]
fn loads_past_the_time_limit_are_abandoned_and_panics_are_contained() {
    let dir = folder("limit");
    let teacher = user_model(&dir, "timbre-flute-teacher", "timbre-flute-big");
    let (_engine, library) = started();
    library.set_time_limit(Duration::from_micros(1));
    library.choose(teacher.clone());
    library.wait();
    let why = library.status()[0].outcome.clone().unwrap_err();
    assert!(why.contains("longer than"), "{why}");
    assert!(library.installed().is_empty());
    library.set_time_limit(Duration::from_secs(60));
    library.choose(teacher.clone());
    library.wait();
    assert_eq!(library.installed(), vec![(Network::Timbre(0), teacher)]);

    let panicked = contained(Duration::from_secs(5), || -> Result<(), LoadError> {
        panic!("a decoder bug")
    });
    assert!(
        matches!(&panicked, Err(LoadError::Panicked(m)) if m == "a decoder bug"),
        "{panicked:?}"
    );
    let slow = contained(Duration::from_millis(20), || {
        std::thread::sleep(Duration::from_millis(500));
        Ok(())
    });
    assert!(matches!(slow, Err(LoadError::TimedOut(_))));
}

#[test]
fn a_swap_while_a_note_sounds_lets_it_end_on_the_old_model_and_the_next_note_takes_the_new_one() {
    let dir = folder("click");
    for (instrument, name) in wren::timbre::INSTRUMENTS.iter().enumerate() {
        let teacher = user_model(
            &dir,
            &format!("timbre-{name}-teacher"),
            &format!("timbre-{name}-mine"),
        );
        let settings = settings(instrument);
        let note = [72, 67, 64][instrument];
        // `during` swaps while the note is held, `after` once it has ended,
        // `never` not at all; all play the same notes.
        let (mut during, during_library) = started();
        let (mut after, after_library) = started();
        let (mut never, _) = started();
        let mut held = Vec::new();
        for (engine, library) in [
            (&mut during, Some(&during_library)),
            (&mut after, None),
            (&mut never, None),
        ] {
            let mut audio = play(engine, &settings, Some(note), 0.6);
            if let Some(library) = library {
                library.choose(teacher.clone());
                library.wait();
                assert_eq!(library.installed().len(), 1);
            }
            audio.extend(play(engine, &settings, None, 0.4));
            audio.extend(release(engine, &settings, note));
            held.push(audio);
        }
        assert!(
            held[0] == held[2],
            "{name}: the sounding note ends as it would without the swap"
        );
        assert!(held[1] == held[2]);
        let peak = held[0].iter().map(|s| s.abs()).fold(0.0, f32::max);
        assert!(peak > 0.01, "{name} sounds");

        after_library.choose(teacher.clone());
        after_library.wait();
        let next: Vec<Vec<f32>> = [&mut during, &mut after, &mut never]
            .into_iter()
            .map(|engine| play(engine, &settings, Some(note + 2), 0.5))
            .collect();
        assert!(
            next[0] == next[1],
            "{name}: the next note plays the new model"
        );
        assert!(next[0] != next[2], "{name}: the new model sounds different");
    }
}

#[test]
fn auto_plans_with_what_the_chosen_models_cost() {
    let dir = folder("costs");
    // The melody teacher, chosen as every preset's melody network.
    let big = user_model(&dir, "melody-teacher", "melody-big");
    let (mut engine, library) = started();
    let cheapest = wren::presets::embedded().len() - 1;
    let step_us = |engine: &Engine, preset: usize| {
        engine
            .cost_table()
            .cost(preset)
            .map_or(0.0, |c| c.melody.median_us)
    };
    library.choose(big.clone());
    library.wait();
    // The audio thread takes the new table at its next block.
    play(&mut engine, &settings(0), None, 0.01);
    assert!(engine.cost_table().is_measured());
    let (teacher, cheapest_now) = (step_us(&engine, 0), step_us(&engine, cheapest));
    println!(
        "melody step with the chosen model: studio {teacher:.1} us, ultra {cheapest_now:.1} us"
    );
    assert!(
        cheapest_now > teacher / 3.0,
        "ultra runs the chosen teacher too: {cheapest_now} vs {teacher} us"
    );

    // Back to the embedded models: ultra's own small network again.
    library.restore(Vec::new());
    library.wait();
    play(&mut engine, &settings(0), None, 0.01);
    let (teacher, cheapest_now) = (step_us(&engine, 0), step_us(&engine, cheapest));
    println!(
        "melody step with the embedded models: studio {teacher:.1} us, ultra {cheapest_now:.1} us"
    );
    assert!(
        cheapest_now < teacher / 3.0,
        "{cheapest_now} vs {teacher} us"
    );
}
