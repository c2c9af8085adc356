//! Call, answer, export: a phrase played into Wren in Continue mode, Wren's
//! answer in key, and the last bars saved as a MIDI file, through the same
//! monitor the plugin's editor exports from.

use wren::engine::sampling::{SamplingControls, Scale};
use wren::engine::{Mode, NoteEvent, Settings, Transport};
use wren::export::{midi_file, ExportRequest};
use wren::melody::smf::note_on_pitches;
use wren::monitor::{Monitor, Source};

const RATE: f64 = 48_000.0;
const BLOCK: usize = 512;
const TEMPO: f64 = 120.0;
const D: u8 = 2;

/// D E F# G A, a quarter note each, from beat 0.
const CALL: [u8; 5] = [62, 64, 66, 67, 69];

/// Note events of the call that fall in the block starting at `sample`.
fn call_events(sample: usize) -> Vec<NoteEvent> {
    let samples_per_beat = (RATE * 60.0 / TEMPO) as usize;
    let mut events = Vec::new();
    for (beat, &note) in CALL.iter().enumerate() {
        let on = beat * samples_per_beat;
        let off = on + samples_per_beat * 3 / 4;
        for (at, event) in [
            (
                on,
                NoteEvent::On {
                    offset: 0,
                    note,
                    velocity: 100,
                },
            ),
            (off, NoteEvent::Off { offset: 0, note }),
        ] {
            if (sample..sample + BLOCK).contains(&at) {
                events.push(event.at((at - sample) as u32));
            }
        }
    }
    events
}

fn pitches(bytes: &[u8]) -> Vec<u8> {
    note_on_pitches(bytes).expect("a MIDI file")
}

#[test]
fn a_phrase_played_in_gets_an_answer_in_key_that_exports_as_midi() {
    let mut engine = wren::start_engine(RATE, BLOCK).unwrap();
    let monitor = Monitor::default();
    let settings = Settings {
        mode: Mode::Continue,
        controls: SamplingControls {
            key: D,
            scale: Scale::Major,
            ..SamplingControls::default()
        },
        ..Settings::default()
    };
    let (mut left, mut right) = (vec![0.0; BLOCK], vec![0.0; BLOCK]);
    let eight_bars = (RATE * 60.0 / TEMPO * 32.0) as usize;
    let mut generated = 0;
    for sample in (0..eight_bars).step_by(BLOCK) {
        let transport = Transport {
            playing: true,
            tempo: Some(TEMPO),
            pos_beats: Some(sample as f64 / RATE * TEMPO / 60.0),
            time_signature: Some((4, 4)),
            loop_beats: None,
        };
        let midi_in = call_events(sample);
        let block = monitor.begin_block(&transport, &settings, BLOCK, RATE);
        for event in &midi_in {
            monitor.log(&block, event, Source::Played);
        }
        engine.process(
            &transport,
            &settings,
            &midi_in,
            true,
            &mut left,
            &mut right,
            &mut |event| {
                generated += matches!(event, NoteEvent::On { .. }) as usize;
                monitor.log(&block, &event, Source::Generated);
            },
        );
        monitor.publish(&engine, BLOCK, RATE);
    }
    assert!(generated >= 4, "Wren answered with {generated} notes");

    let view = monitor.view();
    assert!(
        (view.time - 32.0).abs() < 0.1,
        "eight bars ran: {}",
        view.time
    );
    assert!(view.active && view.played_steps > 0);
    let mut log = Vec::new();
    monitor.notes.read_since(0, &mut log);
    let request = ExportRequest {
        bars: 8,
        include_played: false,
        bar_beats: view.bar_beats as f64,
        tempo: view.tempo as f64,
        now: view.time,
    };
    let answer = pitches(&midi_file(&log, &request).unwrap());
    assert_eq!(
        answer.len(),
        generated,
        "every note Wren played is in the file"
    );
    for pitch in &answer {
        assert!(
            Scale::Major.contains(D, *pitch),
            "{pitch} is not in D major"
        );
    }
    let with_call = ExportRequest {
        include_played: true,
        ..request
    };
    let both = pitches(&midi_file(&log, &with_call).unwrap());
    assert_eq!(&both[..CALL.len()], &CALL, "the call opens the file");
    assert_eq!(both.len(), CALL.len() + generated);
}
