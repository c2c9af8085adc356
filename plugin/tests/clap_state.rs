//! Saved state in a real host (clack-host): the states every release saved
//! (kept in `tests/golden/`) load to the same values; states set again and
//! again, before activation and while processing, end with the last one; a
//! state naming a model that is not there loads, plays the embedded model
//! and keeps the name; four instances in one process stay independent.

mod common;

use common::{entry, peak, process, run, state_bytes, state_json, Instance, Notes, Playhead, Send};

use serde_json::Value;

/// Saved states of each release: the release and the state's JSON.
const GOLDEN: &[(&str, &str)] = &[("0.1.0", include_str!("golden/state-0.1.0.json"))];

/// Plays `seconds` from beat 0 at 48 kHz in 512-sample blocks.
fn play(wren: &mut Instance, seconds: f64) -> (Vec<f32>, Notes) {
    let mut processor = wren.activate(48_000.0, 512).start_processing().unwrap();
    let played = run(&mut processor, 48_000.0, seconds, &[512], |_| Vec::new());
    wren.instance.deactivate(processor.stop_processing());
    played
}

/// A state like the golden one, generating melodies and sending them out,
/// with some parameters changed.
fn variant(changes: &[(&str, Value)]) -> Value {
    let mut state: Value = serde_json::from_str(GOLDEN[0].1).unwrap();
    state["params"]["mode"] = serde_json::json!({"string": "generate"});
    state["params"]["midi_out"] = serde_json::json!({"bool": true});
    state["params"]["range_low"] = serde_json::json!({"i32": 60});
    state["params"]["range_high"] = serde_json::json!({"i32": 84});
    state["params"]["level"] = serde_json::json!({"f32": -6.0});
    state["params"]["density"] = serde_json::json!({"f32": 0.8});
    state["params"]["temperature"] = serde_json::json!({"f32": 0.9});
    state["fields"]["models"] = Value::String("[]".into());
    for (id, value) in changes {
        state["params"][id] = value.clone();
    }
    state
}

/// Saved fields added after 0.1.0's golden state, and their defaults.
const NEWER_FIELDS: [(&str, &str); 1] = [("editor-size", r#"{"width":980,"height":680}"#)];

fn seed(n: i64) -> (&'static str, Value) {
    ("seed", serde_json::json!({ "i32": n }))
}

#[test]
fn the_states_of_every_release_load_to_the_same_values() {
    let Some(entry) = entry() else { return };
    for (release, json) in GOLDEN {
        let golden: Value = serde_json::from_str(json).unwrap();
        let mut wren = Instance::new(&entry);
        assert!(
            wren.load(&state_bytes(&golden)),
            "{release}: the state loads"
        );
        let saved = state_json(&wren.save());
        assert_eq!(saved["params"], golden["params"], "{release}: parameters");
        for (field, value) in golden["fields"].as_object().unwrap() {
            assert_eq!(&saved["fields"][field], value, "{release}: field {field}");
        }
        // Fields added since the release hold their defaults.
        for (field, value) in saved["fields"].as_object().unwrap() {
            if golden["fields"].get(field).is_none() {
                let default = NEWER_FIELDS.iter().find(|(name, _)| name == field);
                let (_, expected) = default.unwrap_or_else(|| panic!("unknown field {field}"));
                assert_eq!(
                    value.as_str(),
                    Some(*expected),
                    "{release}: new field {field}"
                );
            }
        }
        // And it plays.
        let (audio, _) = play(&mut wren, 1.0);
        assert!(audio.iter().all(|s| s.is_finite()), "{release}");
        println!(
            "{release}: {} parameters and the models field restored",
            golden["params"].as_object().unwrap().len()
        );
    }
}

#[test]
fn states_set_again_and_again_end_with_the_last_one() {
    let Some(entry) = entry() else { return };
    let states = [
        variant(&[seed(11)]),
        variant(&[
            seed(22),
            ("instrument", serde_json::json!({"string": "violin"})),
        ]),
        variant(&[seed(33), ("level", serde_json::json!({"f32": -20.0}))]),
    ];
    let bytes: Vec<Vec<u8>> = states.iter().map(state_bytes).collect();
    let mut wren = Instance::new(&entry);
    // Before activation.
    for index in [0, 1, 2, 0, 1] {
        assert!(wren.load(&bytes[index]));
    }
    assert_eq!(state_json(&wren.save())["params"], states[1]["params"]);

    // While processing on an audio thread.
    let mut processor = wren.activate(48_000.0, 512).start_processing().unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let finite = std::thread::scope(|scope| {
        let audio = scope.spawn(|| {
            let mut playhead = Playhead::new(48_000.0);
            let mut finite = true;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let (audio, _) = playhead.next(&mut processor, 512, &[]);
                finite &= audio.iter().all(|s| s.is_finite());
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            finite
        });
        for index in [0, 2, 1, 0, 2, 1, 1, 0, 2] {
            assert!(wren.load(&bytes[index]));
            std::thread::sleep(std::time::Duration::from_millis(30));
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        audio.join().unwrap()
    });
    wren.instance.deactivate(processor.stop_processing());
    assert!(finite);
    assert_eq!(state_json(&wren.save())["params"], states[2]["params"]);
}

#[test]
fn a_state_naming_a_missing_model_loads_plays_and_keeps_the_name() {
    let Some(entry) = entry() else { return };
    let missing = std::env::temp_dir().join("wren-no-such-folder/melody-mine.onnx");
    let models = serde_json::to_string(&[missing.display().to_string()]).unwrap();
    let mut state = variant(&[]);
    state["fields"]["models"] = Value::String(models.clone());
    let mut wren = Instance::new(&entry);
    assert!(wren.load(&state_bytes(&state)));
    wren.offline();
    let (audio, notes) = play(&mut wren, 3.0);
    assert!(peak(&audio) > 0.01, "the embedded models play");
    assert!(notes.iter().any(|n| n.2));
    assert_eq!(
        state_json(&wren.save())["fields"]["models"],
        Value::String(models)
    );
}

#[test]
fn four_instances_in_one_process_stay_independent() {
    let Some(entry) = entry() else { return };
    let states: Vec<Value> = [(5, "flute"), (6, "violin"), (7, "trumpet"), (8, "additive")]
        .iter()
        .map(|(n, instrument)| {
            variant(&[
                seed(*n),
                ("instrument", serde_json::json!({ "string": instrument })),
            ])
        })
        .collect();
    // Each alone, offline (renders are reproducible).
    let alone: Vec<_> = states
        .iter()
        .map(|state| {
            let mut wren = Instance::new(&entry);
            assert!(wren.load(&state_bytes(state)));
            wren.offline();
            play(&mut wren, 3.0)
        })
        .collect();
    // All four at once, block by block.
    let mut instances: Vec<Instance> = states
        .iter()
        .map(|state| {
            let mut wren = Instance::new(&entry);
            assert!(wren.load(&state_bytes(state)));
            wren.offline();
            wren
        })
        .collect();
    let mut processors: Vec<_> = instances
        .iter_mut()
        .map(|wren| wren.activate(48_000.0, 512).start_processing().unwrap())
        .collect();
    let mut together: Vec<(Vec<f32>, Notes)> = vec![(Vec::new(), Vec::new()); 4];
    let mut playheads: Vec<Playhead> = (0..4).map(|_| Playhead::new(48_000.0)).collect();
    while together[0].0.len() < 3 * 48_000 {
        for ((processor, playhead), (audio, notes)) in processors
            .iter_mut()
            .zip(&mut playheads)
            .zip(together.iter_mut())
        {
            let (left, out) = playhead.next(processor, 512, &[]);
            audio.extend(left);
            notes.extend(out);
        }
    }
    for (wren, processor) in instances.iter_mut().zip(processors) {
        wren.instance.deactivate(processor.stop_processing());
    }
    for (index, ((audio, notes), (solo_audio, solo_notes))) in
        together.iter().zip(&alone).enumerate()
    {
        assert!(
            notes.iter().filter(|n| n.2).count() >= 3,
            "instance {index} plays"
        );
        let length = audio.len().min(solo_audio.len());
        let within =
            |notes: &Notes| -> Notes { notes.iter().filter(|n| n.0 < length).copied().collect() };
        assert_eq!(
            within(notes),
            within(solo_notes),
            "instance {index}: its notes"
        );
        assert!(length >= 3 * 48_000 - 512);
        assert!(
            audio[..length] == solo_audio[..length],
            "instance {index}: its audio"
        );
    }
    assert_ne!(
        together[0].1, together[1].1,
        "different seeds, different melodies"
    );
    println!("four instances together play exactly what each plays alone");
}

/// Writes the current release's golden state when `WREN_WRITE_GOLDEN=1`:
/// every parameter away from its default, and a models field.
#[test]
fn write_the_golden_state_of_this_release() {
    if std::env::var("WREN_WRITE_GOLDEN").as_deref() != Ok("1") {
        return;
    }
    let Some(entry) = entry() else { return };
    let version = env!("CARGO_PKG_VERSION");
    let mut wren = Instance::new(&entry);
    let models = serde_json::to_string(&["/Users/me/Wren models/melody-mine.onnx"]).unwrap();
    let mut seeded = state_json(&wren.save());
    seeded["fields"]["models"] = Value::String(models);
    assert!(wren.load(&state_bytes(&seeded)));
    let ids = wren.params();
    let mut processor = wren.activate(48_000.0, 512).start_processing().unwrap();
    let changes: Vec<(u32, Send)> = ids
        .iter()
        .filter(|(name, _)| name.as_str() != "Bypass")
        .map(|(name, id)| {
            // Normalized for continuous parameters, a step for stepped ones.
            let value = match name.as_str() {
                "Preset" | "Mode" | "Voices" => 2.0,
                "Key" => 9.0,
                "Scale" => 5.0,
                "Instrument" => 1.0,
                "Range low" | "Range high" => 50.0,
                "Seed" => 1234.0,
                "MIDI out" => 0.0,
                _ => 0.3,
            };
            (0, Send::Param(*id, value))
        })
        .collect();
    process(&mut processor, 0, &changes, 0, None);
    wren.instance.deactivate(processor.stop_processing());
    let state = state_json(&wren.save());
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("tests/golden/state-{version}.json"));
    std::fs::write(&path, serde_json::to_string_pretty(&state).unwrap() + "\n").unwrap();
    println!("wrote {}", path.display());
}
