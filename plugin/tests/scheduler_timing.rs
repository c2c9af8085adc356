//! The melody scheduler against the host's transport: sample-accurate
//! notes, any block size, reproducible seeds.

use wren::engine::sampling::SamplingControls;
use wren::engine::{Engine, NoteEvent, Settings, Transport};
use wren::melody::tokens::{Token, INPUT_SIZE, VOCAB};
use wren::model::kernel::GruKernel;
use wren::model::{GruLayer, GruNet, Matrix};

/// A network whose every step is a note-on of `pitch`.
fn always_note(pitch: u8) -> GruKernel {
    let zeros = |rows, cols| Matrix::F32 {
        rows,
        cols,
        values: vec![0.0; rows * cols],
    };
    let mut b_out = vec![-50.0; VOCAB];
    b_out[Token::Note(pitch).index()] = 50.0;
    let net = GruNet {
        layers: vec![GruLayer {
            w_input: zeros(INPUT_SIZE, 12),
            w_hidden: zeros(4, 12),
            b_input: vec![0.0; 12],
            b_hidden: vec![0.0; 12],
        }],
        w_out: zeros(4, VOCAB),
        b_out,
    };
    GruKernel::new(&net)
}

fn settings() -> Settings {
    Settings {
        controls: SamplingControls {
            key: 0,
            low: 48,
            high: 96,
            ..Default::default()
        },
        ..Settings::default()
    }
}

/// Plays `total` samples at `tempo` in `meter`, in blocks sized by `block`;
/// returns note-ons at absolute sample positions, and the left channel.
fn play(
    engine: &mut Engine,
    sample_rate: f64,
    (tempo, meter): (f64, (u32, u32)),
    total: usize,
    block: impl FnMut(usize) -> usize,
) -> (Vec<(usize, u8)>, Vec<f32>) {
    let host = |position: usize| Transport {
        playing: true,
        tempo: Some(tempo),
        pos_beats: Some(position as f64 / sample_rate * tempo / 60.0),
        time_signature: Some(meter),
        loop_beats: None,
    };
    let (notes, audio) = play_with(engine, host, total, block);
    let ons = notes
        .into_iter()
        .filter_map(|(at, e)| match e {
            NoteEvent::On { note, .. } => Some((at, note)),
            _ => None,
        })
        .collect();
    (ons, audio)
}

/// Plays `total` samples offline in blocks sized by `block`, asking `host`
/// for the transport at each block's first sample; returns every generated
/// event at its absolute sample position, and the left channel.
fn play_with(
    engine: &mut Engine,
    mut host: impl FnMut(usize) -> Transport,
    total: usize,
    mut block: impl FnMut(usize) -> usize,
) -> (Vec<(usize, NoteEvent)>, Vec<f32>) {
    let (mut left, mut right) = (vec![0.0; 8192], vec![0.0; 8192]);
    let (mut events, mut audio) = (Vec::new(), Vec::with_capacity(total));
    let mut position = 0;
    for index in 0.. {
        if position >= total {
            break;
        }
        let frames = block(index).min(total - position);
        let transport = host(position);
        let (l, r) = (&mut left[..frames], &mut right[..frames]);
        engine.process(&transport, &settings(), &[], true, l, r, &mut |e| {
            events.push((position + e.offset() as usize, e));
        });
        audio.extend_from_slice(&left[..frames]);
        position += frames;
    }
    (events, audio)
}

/// The transport of a host at `beats`, 4/4.
fn at_beats(playing: bool, tempo: f64, beats: f64) -> Transport {
    Transport {
        playing,
        tempo: Some(tempo),
        pos_beats: Some(beats),
        time_signature: Some((4, 4)),
        loop_beats: None,
    }
}

/// Pitches of the note-ons among `events`, with their step on a grid of
/// `samples_per_step` that starts at sample `origin` (rounded).
fn steps_and_pitches(
    events: &[(usize, NoteEvent)],
    origin: usize,
    samples_per_step: f64,
) -> Vec<(i64, u8)> {
    events
        .iter()
        .filter_map(|(at, e)| match *e {
            NoteEvent::On { note, .. } if *at >= origin => Some((
                ((*at - origin) as f64 / samples_per_step).round() as i64,
                note,
            )),
            _ => None,
        })
        .collect()
}

/// Note-ons of [`play`] in 4/4.
fn note_on_samples(
    engine: &mut Engine,
    sample_rate: f64,
    tempo: f64,
    total: usize,
    block: impl FnMut(usize) -> usize,
) -> Vec<(usize, u8)> {
    play(engine, sample_rate, (tempo, (4, 4)), total, block).0
}

#[test]
fn note_ons_land_on_chosen_offsets_of_a_2048_block() {
    let sample_rate = 48_000.0;
    let tempo = 120.0;
    let samples_per_step = sample_rate * 60.0 / tempo / 4.0;
    for offset in [0usize, 1, 17, 2047] {
        let mut engine = Engine::new(vec![always_note(62)], sample_rate).unwrap();
        // Start the block so that step 8 falls `offset` samples into it.
        let start_beats = 8.0 * 0.25 - offset as f64 / (samples_per_step * 4.0);
        let transport = Transport {
            playing: true,
            tempo: Some(tempo),
            pos_beats: Some(start_beats),
            time_signature: Some((4, 4)),
            loop_beats: None,
        };
        let (mut left, mut right) = (vec![0.0; 2048], vec![0.0; 2048]);
        let mut ons = Vec::new();
        engine.process(
            &transport,
            &settings(),
            &[],
            true,
            &mut left,
            &mut right,
            &mut |e| {
                if let NoteEvent::On { offset, .. } = e {
                    ons.push(offset as i64);
                }
            },
        );
        assert!(
            ons.iter().any(|o| (o - offset as i64).abs() <= 1),
            "offset {offset}: got {ons:?}"
        );
    }
}

#[test]
fn notes_land_on_their_grid_sample_at_any_block_size() {
    let (sample_rate, tempo) = (44_100.0, 123.456);
    let samples_per_step = sample_rate * 60.0 / tempo / 4.0;
    for block in [64usize, 100, 512, 1000, 4096] {
        let mut engine = Engine::new(vec![always_note(64)], sample_rate).unwrap();
        let notes = note_on_samples(&mut engine, sample_rate, tempo, 44_100 * 3, |_| block);
        assert!(notes.len() >= 24, "block {block}: {} notes", notes.len());
        for (k, (sample, _)) in notes.iter().enumerate() {
            let grid = (k as f64 * samples_per_step).round() as i64;
            assert!(
                (*sample as i64 - grid).abs() <= 1,
                "block {block}, step {k}: {sample} vs {grid}"
            );
        }
    }
}

#[test]
fn same_seed_gives_same_midi_at_block_sizes_64_and_2048() {
    let sample_rate = 48_000.0;
    let run = |block: usize| {
        let mut engine = wren::start_engine(sample_rate, 0).unwrap();
        note_on_samples(&mut engine, sample_rate, 132.0, 48_000 * 8, |_| block)
    };
    let small = run(64);
    let large = run(2048);
    assert!(small.len() > 10, "the model should play notes: {small:?}");
    assert_eq!(small, large);
}

#[test]
fn random_block_sizes_render_identical_audio_offline() {
    let sample_rate = 48_000.0;
    let render = |sizes: &mut dyn FnMut(usize) -> usize| -> Vec<f32> {
        // Blocks of up to 1024 samples: the neural voice's latency.
        let mut engine = wren::start_engine(sample_rate, 1024).unwrap();
        play(&mut engine, sample_rate, (140.0, (6, 8)), 48_000 * 3, sizes).1
    };
    let fixed = render(&mut |_| 512);
    let mut seed = 99u64;
    let random = render(&mut |_| {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        1 + (seed >> 33) as usize % 1024
    });
    assert!(
        fixed.iter().any(|s| s.abs() > 1e-3),
        "render should not be silent"
    );
    assert_eq!(fixed.len(), random.len());
    let mismatch = fixed.iter().zip(&random).position(|(a, b)| a != b);
    assert_eq!(mismatch, None, "first differing sample");
}

#[test]
fn an_event_out_of_order_takes_effect_at_the_offset_before_it() {
    let mut engine = Engine::new(vec![always_note(62)], 48_000.0).unwrap();
    let thru = Settings {
        mode: wren::engine::Mode::Thru,
        ..settings()
    };
    let events = [
        NoteEvent::On {
            offset: 40,
            note: 69,
            velocity: 100,
        },
        NoteEvent::Off {
            offset: 10,
            note: 50,
        },
        NoteEvent::On {
            offset: 5,
            note: 72,
            velocity: 100,
        },
    ];
    let (mut left, mut right) = (vec![0.0; 64], vec![0.0; 64]);
    let transport = Transport::default();
    engine.process(
        &transport,
        &thru,
        &events,
        false,
        &mut left,
        &mut right,
        &mut |_| {},
    );
    assert!(
        left[..40].iter().all(|s| *s == 0.0),
        "nothing sounds before the first event"
    );
    assert!(
        left[41..].iter().any(|s| *s != 0.0),
        "both notes sound from offset 40"
    );
}

const RATE: f64 = 48_000.0;
/// Samples per 16th at 120 BPM and 48 kHz.
const STEP_120: f64 = 6_000.0;

#[test]
fn a_loop_back_replays_the_same_notes() {
    let mut engine = wren::start_engine(RATE, 0).unwrap();
    // Two bars of 4/4 at 120 BPM, looped twice; blocks of 512 fit them exactly.
    let loop_samples = (32.0 * STEP_120) as usize;
    let host = |at: usize| at_beats(true, 120.0, (at % loop_samples) as f64 / 24_000.0);
    let (events, _) = play_with(&mut engine, host, 2 * loop_samples, |_| 512);
    let first: Vec<_> = steps_and_pitches(&events, 0, STEP_120)
        .into_iter()
        .filter(|(step, _)| *step < 32)
        .collect();
    let second = steps_and_pitches(&events, loop_samples, STEP_120);
    assert!(first.len() >= 6, "the model should play: {first:?}");
    assert_eq!(first, second);
}

#[test]
fn a_jump_plays_what_a_fresh_start_there_plays() {
    let (bar_8, samples) = (32.0, (32.0 * STEP_120) as usize);
    let mut jumped = wren::start_engine(RATE, 0).unwrap();
    // One bar from the start, then a jump to bar 8.
    let host = |at: usize| {
        let beats = at as f64 / 24_000.0;
        at_beats(
            true,
            120.0,
            if beats < 4.0 {
                beats
            } else {
                beats - 4.0 + bar_8
            },
        )
    };
    let (events, _) = play_with(&mut jumped, host, samples / 2 + samples, |_| 500);
    let after_jump = steps_and_pitches(&events, samples / 2, STEP_120);
    let mut fresh = wren::start_engine(RATE, 0).unwrap();
    let host = |at: usize| at_beats(true, 120.0, bar_8 + at as f64 / 24_000.0);
    let (events, _) = play_with(&mut fresh, host, samples, |_| 500);
    let from_start = steps_and_pitches(&events, 0, STEP_120);
    assert!(
        from_start.len() >= 6,
        "the model should play: {from_start:?}"
    );
    assert_eq!(after_jump, from_start);
}

#[test]
fn a_tempo_change_moves_the_grid_and_keeps_the_melody() {
    // 120 BPM for two bars, then 90 BPM; the host's beat position runs on.
    let change_at = (32.0 * STEP_120) as usize;
    let beats_at = |at: usize| {
        if at < change_at {
            at as f64 / 24_000.0
        } else {
            8.0 + (at - change_at) as f64 / 32_000.0
        }
    };
    let tempo_at = |at: usize| if at < change_at { 120.0 } else { 90.0 };
    let total = change_at + 32 * 8_000;
    let mut changing = wren::start_engine(RATE, 0).unwrap();
    let host = |at: usize| at_beats(true, tempo_at(at), beats_at(at));
    let (events, _) = play_with(&mut changing, host, total, |_| 480);
    let mut steady = wren::start_engine(RATE, 0).unwrap();
    let host = |at: usize| at_beats(true, 120.0, at as f64 / 24_000.0);
    let (reference, _) = play_with(&mut steady, host, 64 * STEP_120 as usize, |_| 480);

    let ons: Vec<(usize, u8)> = events
        .iter()
        .filter_map(|(at, e)| match *e {
            NoteEvent::On { note, .. } => Some((*at, note)),
            _ => None,
        })
        .collect();
    assert!(
        ons.iter().any(|(at, _)| *at > change_at),
        "notes after the change"
    );
    // Every note lands on its 16th of the tempo map, to the sample.
    let mut steps = Vec::new();
    for (at, note) in &ons {
        let step = (beats_at(*at) * 4.0).round();
        let grid = if step < 32.0 {
            step * STEP_120
        } else {
            change_at as f64 + (step - 32.0) * 8_000.0
        };
        assert!(
            (*at as f64 - grid).abs() <= 1.0,
            "note at {at}, grid {grid}"
        );
        steps.push((step as i64, *note));
    }
    // The tokens belong to steps, not seconds: the melody is the same.
    assert_eq!(steps, steps_and_pitches(&reference, 0, STEP_120));
}

#[test]
fn stopping_silences_and_play_resumes_the_same_melody() {
    let (stop_at, pause) = ((20.0 * STEP_120) as usize + 100, 48_000);
    let total = (64.0 * STEP_120) as usize + pause;
    let mut engine = wren::start_engine(RATE, 0).unwrap();
    let host = |at: usize| {
        let moving = if at < stop_at {
            at
        } else if at < stop_at + pause {
            stop_at
        } else {
            at - pause
        };
        at_beats(
            at < stop_at || at >= stop_at + pause,
            120.0,
            moving as f64 / 24_000.0,
        )
    };
    // Blocks of 100 samples: the stop and the restart fall on block starts.
    let (events, audio) = play_with(&mut engine, host, total, |_| 100);
    let mut steady = wren::start_engine(RATE, 0).unwrap();
    let host = |at: usize| at_beats(true, 120.0, at as f64 / 24_000.0);
    let (reference, _) = play_with(&mut steady, host, total - pause, |_| 100);

    let during_pause: Vec<_> = events
        .iter()
        .filter(|(at, _)| (stop_at + 1..stop_at + pause).contains(at))
        .collect();
    assert!(
        during_pause.is_empty(),
        "events while stopped: {during_pause:?}"
    );
    // The voice's release ends well within 0.8 s.
    let quiet_from = stop_at + 40_000;
    assert!(
        audio[quiet_from..stop_at + pause].iter().all(|s| *s == 0.0),
        "a stopped transport is silent once the release has passed"
    );
    // Generated notes are balanced: whatever sounded at the stop was ended.
    let ons_before = events
        .iter()
        .filter(|(at, e)| *at <= stop_at && matches!(e, NoteEvent::On { .. }))
        .count();
    let offs_before = events
        .iter()
        .filter(|(at, e)| *at <= stop_at && matches!(e, NoteEvent::Off { .. }))
        .count();
    assert_eq!(ons_before, offs_before, "a note left hanging at the stop");
    // Shifted back by the pause, the notes are the uninterrupted run's.
    let shifted: Vec<(i64, u8)> = events
        .iter()
        .filter_map(|(at, e)| match *e {
            NoteEvent::On { note, .. } => {
                let at = if *at >= stop_at + pause {
                    at - pause
                } else {
                    *at
                };
                Some(((at as f64 / STEP_120).round() as i64, note))
            }
            _ => None,
        })
        .collect();
    let resumed: Vec<_> = shifted.iter().filter(|(s, _)| *s > 21).collect();
    assert!(resumed.len() >= 6, "the melody should go on: {shifted:?}");
    let expected = steps_and_pitches(&reference, 0, STEP_120);
    assert_eq!(
        shifted.iter().filter(|(s, _)| *s > 21).collect::<Vec<_>>(),
        expected.iter().filter(|(s, _)| *s > 21).collect::<Vec<_>>()
    );
}

/// One block of 256 samples of `transport`; returns the events Wren sent.
fn one_block(engine: &mut Engine, transport: &Transport, offline: bool) -> Vec<NoteEvent> {
    let (mut left, mut right) = ([0.0; 256], [0.0; 256]);
    let mut events = Vec::new();
    let settings = settings();
    engine.process(
        transport,
        &settings,
        &[],
        offline,
        &mut left,
        &mut right,
        &mut |e| events.push(e),
    );
    events
}

/// Processes one real-time block of `transport`, then waits until the
/// inference thread has computed `steps` steps.
fn process_and_wait(engine: &mut Engine, transport: &Transport, steps: u64) {
    one_block(engine, transport, false);
    let computed = |e: &Engine| {
        e.inference_stats()
            .steps
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let started = std::time::Instant::now();
    while computed(engine) < steps {
        assert!(
            started.elapsed().as_secs() < 10,
            "the inference thread computed no cued step"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

#[test]
fn the_first_step_after_play_is_ready_in_real_time() {
    let mut engine = wren::start_engine(RATE, 0).unwrap();
    // Stopped at bar 3: Wren cues the steps there while the host stands still.
    process_and_wait(&mut engine, &at_beats(false, 120.0, 8.0), 4);
    assert_eq!(engine.stats().played_steps, 0);
    one_block(&mut engine, &at_beats(true, 120.0, 8.0), false);
    assert_eq!(engine.stats().late_steps, 0);
    assert_eq!(engine.stats().played_steps, 1);
}

#[test]
fn a_free_running_start_cues_one_block_and_plays_its_first_step_on_time() {
    let mut engine = wren::start_engine(RATE, 0).unwrap();
    let no_host = Transport::default();
    // The first block only cues; its steps wait for the next block.
    process_and_wait(&mut engine, &no_host, 4);
    assert_eq!(engine.stats().played_steps, 0);
    one_block(&mut engine, &no_host, false);
    assert_eq!(engine.stats().played_steps, 1);
    assert_eq!(engine.stats().late_steps, 0);
    // Offline there is nothing to cue: the first block plays.
    let mut offline = wren::start_engine(RATE, 0).unwrap();
    one_block(&mut offline, &no_host, true);
    assert_eq!(offline.stats().played_steps, 1);
}

#[test]
fn continue_mode_answers_after_half_a_bar_of_silence_for_as_long_as_the_call() {
    let mut engine = Engine::new(vec![always_note(62)], RATE).unwrap();
    let follow = Settings {
        mode: wren::engine::Mode::Continue,
        ..settings()
    };
    let step = STEP_120 as usize;
    // The user plays four quarter notes, each held three 16ths: steps 0 to 14.
    let mut user = Vec::new();
    for (k, note) in [60u8, 62, 64, 65].into_iter().enumerate() {
        user.push((
            k * 4 * step,
            NoteEvent::On {
                offset: 0,
                note,
                velocity: 90,
            },
        ));
        user.push((k * 4 * step + 3 * step, NoteEvent::Off { offset: 0, note }));
    }
    let (mut left, mut right) = (vec![0.0; 500], vec![0.0; 500]);
    let mut answer = Vec::new();
    for block in 0..(64 * step / 500) {
        let start = block * 500;
        let events: Vec<NoteEvent> = user
            .iter()
            .filter(|(at, _)| (start..start + 500).contains(at))
            .map(|(at, e)| match *e {
                NoteEvent::On { note, velocity, .. } => NoteEvent::On {
                    offset: (at - start) as u32,
                    note,
                    velocity,
                },
                NoteEvent::Off { note, .. } => NoteEvent::Off {
                    offset: (at - start) as u32,
                    note,
                },
                other => other,
            })
            .collect();
        let host = at_beats(true, 120.0, start as f64 / 24_000.0);
        engine.process(
            &host,
            &follow,
            &events,
            true,
            &mut left,
            &mut right,
            &mut |e| {
                if let NoteEvent::On { offset, note, .. } = e {
                    answer.push((((start + offset as usize) / step) as i64, note));
                }
            },
        );
    }
    // Silence from step 15; half a bar later (step 22) Wren starts to answer,
    // for one bar, the length of the call: steps 23 to 37, then it listens again.
    let steps: Vec<i64> = answer.iter().map(|(s, _)| *s).collect();
    assert_eq!(steps, (23..38).collect::<Vec<_>>(), "answer steps");
    assert!(answer.iter().all(|(_, n)| *n == 62));
}
