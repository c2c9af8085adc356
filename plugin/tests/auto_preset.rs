//! The auto preset: for every common buffer it runs the best preset that
//! fits by the cost table, and in real time it steps down when the
//! inference thread falls behind and back up when it catches up.
//!
//! Each made-up preset's melody network plays a pitch of its own, so the
//! notes that come out tell which preset ran.

use std::time::{Duration, Instant};

use wren::engine::auto::Tuning;
use wren::engine::cost::{Cost, CostTable, PresetCost};
use wren::engine::sampling::{SamplingControls, Scale};
use wren::engine::{Engine, NoteEvent, Settings, Timbre, Transport};
use wren::melody::tokens::{Token, INPUT_SIZE, VOCAB};
use wren::model::kernel::GruKernel;
use wren::model::{GruLayer, GruNet, Matrix};

/// The pitch each made-up preset plays, best preset first.
const PITCHES: [u8; 4] = [60, 62, 64, 65];
const BLOCK_SIZES: [usize; 7] = [32, 64, 128, 256, 512, 1024, 2048];
const SAMPLE_RATES: [f64; 6] = [44_100.0, 48_000.0, 88_200.0, 96_000.0, 176_400.0, 192_000.0];
/// Neural voices the engine plays.
const VOICES: f64 = 8.0;

/// A GRU of four units whose outputs are `b_out` whatever it reads.
fn constant_net(input: usize, b_out: Vec<f32>) -> GruNet {
    let zeros = |rows, cols| Matrix::F32 {
        rows,
        cols,
        values: vec![0.0; rows * cols],
    };
    GruNet {
        layers: vec![GruLayer {
            w_input: zeros(input, 12),
            w_hidden: zeros(4, 12),
            b_input: vec![0.0; 12],
            b_hidden: vec![0.0; 12],
        }],
        w_out: zeros(4, b_out.len()),
        b_out,
    }
}

/// A melody network whose every step is a note-on of `pitch`.
fn always_note(pitch: u8) -> GruKernel {
    let mut b_out = vec![-50.0; VOCAB];
    b_out[Token::Note(pitch).index()] = 50.0;
    GruKernel::new(&constant_net(INPUT_SIZE, b_out))
}

/// A quiet timbre network.
fn quiet_timbre() -> GruKernel {
    let b_out = vec![-6.0; wren::timbre::OUTPUT_SIZE];
    GruKernel::new(&constant_net(wren::timbre::INPUT_SIZE, b_out))
}

/// A preset's cost, given the p99.9 step times the fit rule plans with.
fn cost(melody_p999_us: f64, timbre_p999_us: f64) -> PresetCost {
    let at = |p999_us: f64| Cost {
        median_us: p999_us * 0.5,
        p99_us: p999_us / 1.5,
        p999_us,
    };
    PresetCost {
        melody: at(melody_p999_us),
        timbre: at(timbre_p999_us),
    }
}

fn settings() -> Settings {
    Settings {
        auto: true,
        controls: SamplingControls {
            scale: Scale::Chromatic,
            low: 48,
            high: 96,
            ..Default::default()
        },
        ..Settings::default()
    }
}

fn transport(playing: bool, position: usize, sample_rate: f64) -> Transport {
    Transport {
        playing,
        tempo: Some(120.0),
        pos_beats: Some(position as f64 / sample_rate * 2.0),
        time_signature: Some((4, 4)),
        loop_beats: None,
    }
}

/// The fit rule, worked out here on its own: worst-case work of a buffer at
/// p99.9 (melody steps at 16th notes of the fastest planned tempo, 128-sample
/// frames at 48 kHz scaled to the rate, for every voice) against the share.
fn fits(share: f64, cost: &PresetCost, block: usize, sample_rate: f64) -> bool {
    let seconds = block as f64 / sample_rate;
    let step_seconds = 60.0 / Tuning::default().max_tempo / 4.0;
    let steps = (seconds / step_seconds).ceil();
    let hop = (sample_rate * 128.0 / 48_000.0).round();
    let frames = (block as f64 / hop).ceil();
    let work = steps * cost.melody.p999_us + VOICES * frames * cost.timbre.p999_us;
    work <= share * seconds * 1e6
}

/// Plays from a standing start until the first note comes out; returns its
/// pitch. Real time, but blocks are not paced: the steps are computed while
/// the transport stands, before they are due.
fn first_note(engine: &mut Engine, block: usize, sample_rate: f64) -> Option<u8> {
    let (mut left, mut right) = (vec![0.0; block], vec![0.0; block]);
    let note = std::cell::Cell::new(None);
    let mut midi_out = |event: NoteEvent| {
        if let NoteEvent::On { note: pitch, .. } = event {
            note.set(note.get().or(Some(pitch)));
        }
    };
    let steps = engine
        .inference_stats()
        .steps
        .load(std::sync::atomic::Ordering::Relaxed);
    let stopped = transport(false, 0, sample_rate);
    engine.process(
        &stopped,
        &settings(),
        &[],
        false,
        &mut left,
        &mut right,
        &mut midi_out,
    );
    let waited = Instant::now();
    while engine
        .inference_stats()
        .steps
        .load(std::sync::atomic::Ordering::Relaxed)
        < steps + 4
        && waited.elapsed() < Duration::from_secs(2)
    {
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut position = 0;
    while position < sample_rate as usize {
        let playing = transport(true, position, sample_rate);
        engine.process(
            &playing,
            &settings(),
            &[],
            false,
            &mut left,
            &mut right,
            &mut midi_out,
        );
        position += block;
        if note.get().is_some() {
            break;
        }
    }
    note.get()
}

#[test]
fn auto_runs_the_best_preset_that_fits_every_common_buffer() {
    let presets = [
        (0.5, cost(300.0, 60.0)),
        (0.5, cost(60.0, 12.0)),
        (0.5, cost(40.0, 6.0)),
        (0.5, cost(10.0, 2.0)),
    ];
    let kernels = PITCHES.iter().map(|p| always_note(*p)).collect();
    let mut engine = Engine::new(kernels, 48_000.0).unwrap();
    let table = CostTable::measured(&presets);
    engine.set_costs(table);
    let mut chosen = [0usize; PITCHES.len()];
    for sample_rate in SAMPLE_RATES {
        for block in BLOCK_SIZES {
            engine.configure(sample_rate, block);
            let fitting: Vec<usize> = (0..presets.len())
                .filter(|&p| fits(presets[p].0, &presets[p].1, block, sample_rate))
                .collect();
            let expected = fitting[0];
            let at = format!("{block} samples at {sample_rate} Hz, fitting {fitting:?}");
            assert_eq!(engine.auto_status().fit, expected, "{at}");
            let note = first_note(&mut engine, block, sample_rate);
            assert_eq!(
                note,
                Some(PITCHES[expected]),
                "{at}: the wrong preset plays"
            );
            assert_eq!(engine.variant(), expected, "{at}");
            assert!(
                table.fits(expected, &engine_workload(block, sample_rate)),
                "{at}"
            );
            chosen[expected] += 1;
        }
    }
    // The grid covers every preset, so each step of the rule was exercised.
    assert!(chosen.iter().all(|n| *n > 0), "{chosen:?}");
}

#[test]
fn offline_auto_plays_the_preset_planned_for_the_buffer_whatever_the_costs() {
    const RATE: f64 = 48_000.0;
    let kernels = PITCHES.iter().map(|p| always_note(*p)).collect();
    let mut engine = Engine::new(kernels, RATE).unwrap();
    // By these costs every preset fits every buffer.
    engine.set_costs(CostTable::measured(&[(0.5, cost(1.0, 0.1)); 4]));
    let stated = [1024.0, 128.0, 64.0, 32.0].map(|samples| samples / RATE);
    engine.set_preset_buffers(&stated);
    for (block, planned) in [(512, 1), (2048, 0), (64, 2), (16, 3)] {
        engine.configure(RATE, block);
        assert_eq!(
            engine.auto_status().running,
            0,
            "in real time the best fits"
        );
        let (mut left, mut right) = (vec![0.0; block], vec![0.0; block]);
        let mut notes = Vec::new();
        let mut position = 0;
        while position < 12_000 {
            let host = transport(true, position, RATE);
            let mut midi_out = |event: NoteEvent| {
                if let NoteEvent::On { note, .. } = event {
                    notes.push(note);
                }
            };
            engine.process(
                &host,
                &settings(),
                &[],
                true,
                &mut left,
                &mut right,
                &mut midi_out,
            );
            position += block;
        }
        assert!(!notes.is_empty());
        let expected = PITCHES[planned];
        assert!(notes.iter().all(|n| *n == expected), "{block}: {notes:?}");
        assert_eq!(engine.variant(), planned);
    }
}

/// One real-time block with no MIDI in, its output dropped.
fn real_time_block(
    engine: &mut Engine,
    host: &Transport,
    settings: &Settings,
    (left, right): &mut (Vec<f32>, Vec<f32>),
) {
    engine.process(host, settings, &[], false, left, right, &mut |_| {});
}

#[test]
fn fewer_voices_leave_room_for_a_better_preset() {
    const RATE: f64 = 48_000.0;
    const BLOCK: usize = 256;
    // Two frames per voice per buffer, a budget of 2667 us: the first
    // preset's frames fit for up to six voices, the second's for all eight.
    let presets = [(0.5, cost(10.0, 200.0)), (0.5, cost(10.0, 20.0))];
    let kernels = PITCHES[..2].iter().map(|p| always_note(*p)).collect();
    let mut engine = Engine::new(kernels, RATE).unwrap();
    engine.set_costs(CostTable::measured(&presets));
    engine.configure(RATE, BLOCK);
    let mut buffers = (vec![0.0; BLOCK], vec![0.0; BLOCK]);
    let mut fit_with = |voices: usize| {
        let settings = Settings {
            voices,
            ..settings()
        };
        real_time_block(
            &mut engine,
            &transport(false, 0, RATE),
            &settings,
            &mut buffers,
        );
        engine.auto_status().fit
    };
    assert_eq!(fit_with(8), 1);
    assert_eq!(fit_with(6), 0);
    assert_eq!(fit_with(7), 1);
    assert_eq!(fit_with(1), 0);
    // Out of range counts are clamped: none plans for more than eight.
    assert_eq!(fit_with(0), 0);
    assert_eq!(fit_with(64), 1);
}

fn engine_workload(block: usize, sample_rate: f64) -> wren::engine::cost::Workload {
    wren::engine::cost::Workload {
        block_size: block,
        sample_rate,
        voices: wren::engine::voices::VOICES,
        tempo: Tuning::default().max_tempo,
    }
}

#[test]
fn a_stalled_inference_thread_makes_auto_step_down_and_back_up() {
    const RATE: f64 = 48_000.0;
    const BLOCK: usize = 1024;
    let kernels = PITCHES[..3].iter().map(|p| always_note(*p)).collect();
    let timbres = vec![(0..3).map(|_| quiet_timbre()).collect()];
    let mut engine = Engine::with_timbres(kernels, timbres, RATE, BLOCK).unwrap();
    // Every preset fits with room to spare.
    engine.set_costs(CostTable::measured(&[(0.5, cost(1.0, 0.1)); 3]));
    assert_eq!(engine.auto_status().running, 0);

    let settings = Settings {
        timbre: Timbre::Neural(0),
        ..settings()
    };
    let period = Duration::from_secs_f64(BLOCK as f64 / RATE);
    let mut buffers = (vec![0.0; BLOCK], vec![0.0; BLOCK]);
    let started = Instant::now();
    let mut blocks = 0u32;
    // Plays blocks paced by the wall clock until `done` or `limit` blocks;
    // returns how many it played.
    let mut play = |engine: &mut Engine, limit: u32, done: &dyn Fn(&Engine) -> bool| {
        for played in 1..=limit {
            let position = blocks as usize * BLOCK;
            let host = transport(blocks > 0, position, RATE);
            real_time_block(engine, &host, &settings, &mut buffers);
            blocks += 1;
            if let Some(rest) = (started + period * blocks).checked_duration_since(Instant::now()) {
                std::thread::sleep(rest);
            }
            if done(engine) {
                return Some(played);
            }
        }
        None
    };

    // Half a second of normal play: the best preset runs.
    play(&mut engine, 24, &|_| false);
    assert_eq!(engine.auto_status().running, 0);
    assert!(engine.stats().played_steps > 0);

    // Every step and frame now takes 50 ms: far past its deadline.
    engine.stall_inference(50_000);
    let down = play(&mut engine, 50, &|e| e.auto_status().running > 0);
    engine.stall_inference(0);
    let down = down.expect("auto did not step down within 50 blocks of the stall");
    assert!(engine.stats().late_frames > 0);
    assert_eq!(engine.auto_status().step_downs, 1);
    assert_eq!(
        engine.latency(),
        BLOCK,
        "one block of latency at every preset"
    );

    // The wait before stepping up, doubled once, is a second.
    let up = play(&mut engine, 250, &|e| e.auto_status().running == 0);
    let up = up.expect("auto did not step back up within 250 blocks of the stall's end");
    assert!(
        up * BLOCK as u32 >= RATE as u32,
        "stepped up after {up} blocks"
    );
    assert_eq!(engine.variant(), 0);
    println!("stepped down {down} blocks into the stall, back up {up} blocks after it");
}
