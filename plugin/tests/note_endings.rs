//! Generated notes end where the host says, not a latency later: a stop,
//! a jump back, a loop's end inside a block, bypass and MIDI all-notes-off
//! each give the sounding note its note-off in that very block. A loop's
//! end inside a block plays as if the host had split the block there.

use wren::engine::{Engine, NoteEvent, Settings, Transport};

const RATE: f64 = 48_000.0;
const BLOCK: usize = 512;
const TEMPO: f64 = 120.0;

fn engine() -> Engine {
    let engine = wren::start_engine(RATE, BLOCK).unwrap();
    assert_eq!(
        engine.latency(),
        BLOCK,
        "notes and their MIDI come a block late"
    );
    engine
}

fn settings() -> Settings {
    Settings {
        auto: false,
        variant: 2,
        ..Settings::default()
    }
}

fn at(beats: f64, playing: bool) -> Transport {
    Transport {
        playing,
        tempo: Some(TEMPO),
        pos_beats: Some(beats),
        time_signature: Some((4, 4)),
        loop_beats: None,
    }
}

/// One block, offline; returns the left channel and the MIDI sent.
fn block(
    engine: &mut Engine,
    transport: &Transport,
    settings: &Settings,
    midi_in: &[NoteEvent],
    frames: usize,
) -> (Vec<f32>, Vec<NoteEvent>) {
    let (mut left, mut right) = (vec![0.0; frames], vec![0.0; frames]);
    let mut out = Vec::new();
    engine.process(
        transport,
        settings,
        midi_in,
        true,
        &mut left,
        &mut right,
        &mut |e| out.push(e),
    );
    (left, out)
}

const BEATS_PER_BLOCK: f64 = BLOCK as f64 / RATE * TEMPO / 60.0;

/// Plays from the top until a generated note is out and sounding at the
/// end of a block; returns the beat position after that block and the note.
fn play_until_a_note_sounds(engine: &mut Engine, settings: &Settings) -> (f64, u8) {
    let mut beats = 0.0;
    let mut out_sounding: Option<u8> = None;
    for _ in 0..400 {
        let (_, midi) = block(engine, &at(beats, true), settings, &[], BLOCK);
        beats += BEATS_PER_BLOCK;
        for event in midi {
            match event {
                NoteEvent::On { note, .. } => out_sounding = Some(note),
                NoteEvent::Off { note, .. } if out_sounding == Some(note) => out_sounding = None,
                _ => {}
            }
        }
        if let Some(note) = out_sounding {
            return (beats, note);
        }
    }
    panic!("no note in 400 blocks");
}

fn offs(midi: &[NoteEvent], note: u8) -> Vec<u32> {
    midi.iter()
        .filter_map(|e| match e {
            NoteEvent::Off { offset, note: n } if *n == note => Some(*offset),
            _ => None,
        })
        .collect()
}

#[test]
fn a_stop_ends_the_sounding_note_in_the_block_that_stops() {
    let mut engine = engine();
    let (beats, note) = play_until_a_note_sounds(&mut engine, &settings());
    let (audio, midi) = block(&mut engine, &at(beats, false), &settings(), &[], BLOCK);
    assert_eq!(offs(&midi, note), vec![0], "{midi:?}");
    assert!(
        midi.iter().all(|e| !matches!(e, NoteEvent::On { .. })),
        "nothing starts: {midi:?}"
    );
    assert!(audio.iter().all(|s| s.is_finite()));
    // Nothing more comes later: no second note-off, no stray note-on.
    for _ in 0..4 {
        let (_, midi) = block(&mut engine, &at(beats, false), &settings(), &[], BLOCK);
        assert!(midi.is_empty(), "{midi:?}");
    }
}

#[test]
fn a_jump_back_ends_the_sounding_note_in_the_block_that_jumps() {
    let mut engine = engine();
    let (_, note) = play_until_a_note_sounds(&mut engine, &settings());
    let (_, midi) = block(&mut engine, &at(0.0, true), &settings(), &[], BLOCK);
    assert_eq!(offs(&midi, note).first(), Some(&0), "{midi:?}");
}

#[test]
fn all_notes_off_ends_the_generated_note_in_its_block() {
    let mut engine = engine();
    let (beats, note) = play_until_a_note_sounds(&mut engine, &settings());
    let all_off = [NoteEvent::AllOff { offset: 100 }];
    let (_, midi) = block(&mut engine, &at(beats, true), &settings(), &all_off, BLOCK);
    assert_eq!(offs(&midi, note).first(), Some(&100), "{midi:?}");
}

#[test]
fn bypass_silences_and_ends_the_sounding_note_in_the_block_that_bypasses() {
    let mut engine = engine();
    let (mut beats, note) = play_until_a_note_sounds(&mut engine, &settings());
    let bypassed = Settings {
        bypass: true,
        ..settings()
    };
    let (audio, midi) = block(&mut engine, &at(beats, true), &bypassed, &[], BLOCK);
    beats += BEATS_PER_BLOCK;
    assert_eq!(offs(&midi, note), vec![0], "{midi:?}");
    assert!(
        audio.iter().all(|s| *s == 0.0),
        "a bypassed block is silent"
    );
    for _ in 0..20 {
        let (audio, midi) = block(&mut engine, &at(beats, true), &bypassed, &[], BLOCK);
        beats += BEATS_PER_BLOCK;
        assert!(midi.is_empty() && audio.iter().all(|s| *s == 0.0));
    }
    // Back on: the melody plays again.
    let mut notes = 0;
    let mut loudest = 0f32;
    for _ in 0..100 {
        let (audio, midi) = block(&mut engine, &at(beats, true), &settings(), &[], BLOCK);
        beats += BEATS_PER_BLOCK;
        notes += midi
            .iter()
            .filter(|e| matches!(e, NoteEvent::On { .. }))
            .count();
        loudest = audio.iter().fold(loudest, |m, s| m.max(s.abs()));
    }
    assert!(notes > 0 && loudest > 0.01, "{notes} notes, peak {loudest}");
}

/// Plays blocks over a loop of 2 beats starting at beat 4, from beat 3.3
/// on, either handing the engine whole blocks that cross the loop's end or
/// splitting them there as some hosts do; returns the audio and the MIDI
/// with offsets from the start.
fn looped(split_by_host: bool) -> (Vec<f32>, Vec<(usize, NoteEvent)>) {
    let mut engine = engine();
    let (start, end) = (4.0, 6.0);
    let mut beats = 3.3;
    let mut audio = Vec::new();
    let mut midi = Vec::new();
    let samples_per_beat = RATE * 60.0 / TEMPO;
    for _ in 0..400 {
        let transport = Transport {
            loop_beats: Some((start, end)),
            ..at(beats, true)
        };
        let crossing = beats + BEATS_PER_BLOCK > end;
        let split = ((end - beats) * samples_per_beat).round() as usize;
        let parts: Vec<(Transport, usize)> = if split_by_host && crossing && split > 0 {
            vec![
                (transport, split),
                (
                    Transport {
                        pos_beats: Some(start),
                        ..transport
                    },
                    BLOCK - split,
                ),
            ]
        } else {
            vec![(transport, BLOCK)]
        };
        for (transport, frames) in parts {
            let (left, out) = block(&mut engine, &transport, &settings(), &[], frames);
            midi.extend(
                out.into_iter()
                    .map(|e| (audio.len() + e.offset() as usize, e.at(0))),
            );
            audio.extend(left);
        }
        beats += BEATS_PER_BLOCK;
        if crossing {
            beats -= end - start;
        }
    }
    (audio, midi)
}

#[test]
fn a_loop_end_inside_a_block_plays_as_if_the_host_split_the_block_there() {
    let (whole, whole_midi) = looped(false);
    let (split, split_midi) = looped(true);
    assert!(
        whole_midi
            .iter()
            .filter(|(_, e)| matches!(e, NoteEvent::On { .. }))
            .count()
            > 4
    );
    assert_eq!(whole_midi, split_midi);
    assert!(whole == split, "the audio differs");
    // Every note that starts ends, and none ends twice.
    let mut sounding = [false; 128];
    for (_, event) in &whole_midi {
        match *event {
            NoteEvent::On { note, .. } => {
                assert!(!sounding[note as usize], "{note} starts twice");
                sounding[note as usize] = true;
            }
            NoteEvent::Off { note, .. } => {
                assert!(sounding[note as usize], "{note} ends without starting");
                sounding[note as usize] = false;
            }
            NoteEvent::AllOff { .. } => {}
        }
    }
}
