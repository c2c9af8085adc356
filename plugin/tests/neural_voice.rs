//! The neural voice in the engine: pitch, block-size independence, voice
//! stealing, late frames and hostile inputs. Each test runs on every
//! shipped neural instrument, and on a hand-built network whose output is
//! known, so that the engine's plumbing is checked apart from training.

use wren::engine::harmonic::{hann_spectrum, FrameParams, HarmonicSynth, HARMONICS, NOISE_BANDS};
use wren::engine::inference::TimbreKernels;
use wren::engine::{Engine, Mode, NoteEvent, Settings, Timbre, Transport, OUTPUT_LIMIT};
use wren::melody::tokens::{INPUT_SIZE as MELODY_INPUT, VOCAB};
use wren::model::kernel::GruKernel;
use wren::model::{GruLayer, GruNet, Matrix};
use wren::timbre::{decode, INPUT_SIZE, OUTPUT_SIZE};

fn zeros(rows: usize, cols: usize) -> Matrix {
    Matrix::F32 {
        rows,
        cols,
        values: vec![0.0; rows * cols],
    }
}

fn constant_net(input: usize, output: Vec<f32>) -> GruNet {
    GruNet {
        layers: vec![GruLayer {
            w_input: zeros(input, 12),
            w_hidden: zeros(4, 12),
            b_input: vec![0.0; 12],
            b_hidden: vec![0.0; 12],
        }],
        w_out: zeros(4, output.len()),
        b_out: output,
    }
}

/// A timbre network that always answers the same spectrum: harmonics
/// falling 6 dB per octave, summing to 0.2, and faint noise.
fn steady_timbre() -> GruKernel {
    let mut y = vec![0.2f32.ln()];
    y.extend((1..=HARMONICS).map(|k| -(k as f32).ln() * 2.0));
    y.extend([1e-4f32.ln(); NOISE_BANDS]);
    assert_eq!(y.len(), OUTPUT_SIZE);
    GruKernel::new(&constant_net(INPUT_SIZE, y))
}

/// A melody network that rests: the tests play only user notes.
fn resting_melody() -> GruKernel {
    GruKernel::new(&constant_net(MELODY_INPUT, vec![0.0; VOCAB]))
}

/// Engines to test at a sample rate and largest block: the hand-built
/// network, and each shipped instrument.
fn engines(sample_rate: f64, max_block: usize) -> Vec<(String, Engine, Timbre)> {
    let timbres: TimbreKernels = vec![vec![steady_timbre()]];
    let mut engines = vec![(
        "steady network".to_string(),
        Engine::with_timbres(vec![resting_melody()], timbres, sample_rate, max_block).unwrap(),
        Timbre::Neural(0),
    )];
    for (index, name) in wren::timbre::INSTRUMENTS.iter().enumerate() {
        let engine = wren::start_engine(sample_rate, max_block).unwrap();
        if engine.has_timbre(index) {
            engines.push((name.to_string(), engine, Timbre::Neural(index)));
        }
    }
    engines
}

fn settings(timbre: Timbre) -> Settings {
    Settings {
        timbre,
        mode: Mode::Thru,
        gain: 1.0,
        ..Settings::default()
    }
}

/// Plays note events (at absolute samples) for `total` samples in blocks
/// sized by `block`; returns the left channel.
fn play(
    engine: &mut Engine,
    settings: &Settings,
    events: &[(usize, NoteEvent)],
    total: usize,
    offline: bool,
    mut block: impl FnMut() -> usize,
) -> Vec<f32> {
    let mut audio = Vec::with_capacity(total);
    let (mut left, mut right) = (vec![0.0; 4096], vec![0.0; 4096]);
    let mut block_events = Vec::new();
    while audio.len() < total {
        let start = audio.len();
        let n = block().clamp(1, 4096).min(total - start);
        block_events.clear();
        for &(at, event) in events
            .iter()
            .filter(|(at, _)| (start..start + n).contains(at))
        {
            block_events.push(event.at((at - start) as u32));
        }
        engine.process(
            &Transport::default(),
            settings,
            &block_events,
            offline,
            &mut left[..n],
            &mut right[..n],
            &mut |_| {},
        );
        audio.extend_from_slice(&left[..n]);
    }
    audio
}

fn on(at: usize, note: u8, velocity: u8) -> (usize, NoteEvent) {
    (
        at,
        NoteEvent::On {
            offset: 0,
            note,
            velocity,
        },
    )
}

fn off(at: usize, note: u8) -> (usize, NoteEvent) {
    (at, NoteEvent::Off { offset: 0, note })
}

/// Magnitude spectrum (Hann window) and bin width in Hz.
fn spectrum(signal: &[f32], sample_rate: f64) -> (Vec<f32>, f64) {
    (hann_spectrum(signal), sample_rate / signal.len() as f64)
}

/// The MIDI pitch whose first eight partials hold the most energy.
fn heard_pitch(signal: &[f32], sample_rate: f64) -> u8 {
    let (magnitude, bin_hz) = spectrum(signal, sample_rate);
    let energy = |pitch: u8| -> f32 {
        let f0 = 440.0 * 2f64.powf((pitch as f64 - 69.0) / 12.0);
        (1..=8)
            .map(|k| {
                let centre = k as f64 * f0 / bin_hz;
                let (lo, hi) = ((centre * 0.985) as usize, (centre * 1.015).ceil() as usize);
                magnitude[lo.min(magnitude.len() - 1)..=hi.min(magnitude.len() - 1)]
                    .iter()
                    .fold(0.0f32, |m, v| m.max(*v))
                    .powi(2)
            })
            .sum()
    };
    (36..=96)
        .max_by(|a, b| energy(*a).total_cmp(&energy(*b)))
        .unwrap()
}

#[test]
fn notes_sound_at_their_pitch_at_every_sample_rate() {
    for sample_rate in [44_100.0, 48_000.0, 96_000.0] {
        for (name, mut engine, timbre) in engines(sample_rate, 256) {
            for note in [62u8, 69, 76] {
                let second = sample_rate as usize;
                // Released at 0.8 s; the release is over before the next note.
                let events = [on(100, note, 100), off(second * 4 / 5, note)];
                let total = second * 3 / 2;
                let audio = play(&mut engine, &settings(timbre), &events, total, true, || 256);
                let steady = &audio[second / 4..second / 4 + 16_384.min(second / 2)];
                assert!(
                    steady.iter().any(|s| s.abs() > 1e-3),
                    "{name} at {sample_rate}: note {note} is silent"
                );
                assert_eq!(
                    heard_pitch(steady, sample_rate),
                    note,
                    "{name} at {sample_rate} Hz"
                );
                assert_eq!(engine.stats().late_frames, 0, "{name}: offline frames wait");
            }
        }
    }
}

#[test]
fn blocks_of_any_size_render_the_same_offline() {
    let events = [
        on(300, 64, 90),
        on(5_000, 67, 60),
        off(20_000, 64),
        on(20_000, 71, 110),
        off(30_001, 67),
        off(40_000, 71),
        on(41_234, 60, 30),
    ];
    let total = 60_000;
    for (name, mut fixed_engine, timbre) in engines(48_000.0, 1024) {
        let fixed = play(
            &mut fixed_engine,
            &settings(timbre),
            &events,
            total,
            true,
            || 512,
        );
        let mut random_engine = engines(48_000.0, 1024)
            .into_iter()
            .find(|(n, ..)| *n == name)
            .unwrap()
            .1;
        let mut seed = 5u64;
        let random = play(
            &mut random_engine,
            &settings(timbre),
            &events,
            total,
            true,
            || {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                1 + (seed >> 33) as usize % 1024
            },
        );
        assert!(fixed.iter().any(|s| s.abs() > 1e-3), "{name} is silent");
        let first = fixed.iter().zip(&random).position(|(a, b)| a != b);
        assert_eq!(first, None, "{name}: first differing sample");
    }
}

#[test]
fn the_voice_sounds_one_latency_after_its_note() {
    for (name, mut engine, timbre) in engines(48_000.0, 64) {
        assert_eq!(engine.latency(), 64, "{name}: one block of latency");
        // 64 samples at 48 kHz is 1.3 ms.
        let audio = play(
            &mut engine,
            &settings(timbre),
            &[on(1000, 69, 120)],
            4000,
            true,
            || 64,
        );
        let first = audio.iter().position(|s| s.abs() > 1e-6).unwrap();
        assert!(
            (1064..1064 + 16).contains(&first),
            "{name}: sound starts at {first}"
        );
    }
}

/// Largest sample-to-sample step in `signal`.
fn largest_step(signal: &[f32]) -> f32 {
    signal
        .windows(2)
        .map(|w| (w[1] - w[0]).abs())
        .fold(0.0, f32::max)
}

#[test]
fn eight_voice_chords_steal_voices_without_clicks() {
    let rate = 48_000usize;
    let first: [u8; 8] = [60, 64, 67, 71, 72, 76, 79, 83];
    let second: [u8; 8] = [62, 65, 69, 72, 74, 77, 81, 84];
    let mut events: Vec<_> = first.iter().map(|n| on(rate / 10, *n, 90)).collect();
    // The second chord comes while the first is held: it steals every voice.
    events.extend(second.iter().map(|n| on(rate / 2, *n, 90)));
    events.extend(second.iter().map(|n| off(rate, *n)));
    events.extend(first.iter().map(|n| off(rate, *n)));
    // The same second chord on free voices: the instrument's own attack.
    let fresh: Vec<_> = second
        .iter()
        .map(|n| on(rate / 2, *n, 90))
        .chain(second.iter().map(|n| off(rate, *n)))
        .collect();
    for ((name, mut engine, timbre), (_, mut alone, _)) in engines(48_000.0, 128)
        .into_iter()
        .zip(engines(48_000.0, 128))
    {
        let total = rate * 3 / 2;
        let audio = play(&mut engine, &settings(timbre), &events, total, true, || 128);
        let attack = play(&mut alone, &settings(timbre), &fresh, total, true, || 128);
        let latency = engine.latency();
        let at = |seconds: f64| (seconds * rate as f64) as usize + latency;
        // A click is a jump between samples: the largest step at the steal
        // may exceed neither the steady chords' nor the plain attack's by
        // much. (Brass attacks are steep: the attack sets the scale there.)
        let steady =
            largest_step(&audio[at(0.3)..at(0.5)]).max(largest_step(&audio[at(0.7)..at(1.0)]));
        let own_attack = largest_step(&attack[at(0.49)..at(0.56)]);
        let steal = largest_step(&audio[at(0.49)..at(0.56)]);
        assert!(steady > 1e-4, "{name}: the chords should sound");
        assert!(
            steal <= 1.5 * steady.max(own_attack),
            "{name}: a step of {steal} at the steal, {steady} while steady, \
             {own_attack} in the chord's own attack"
        );
        assert!(audio.iter().all(|s| s.is_finite()));
    }
}

#[test]
fn frames_not_computed_in_time_hold_the_previous_ones_and_are_counted() {
    // Without latency a frame is asked for in the block that plays it: in
    // real time it cannot be there yet.
    let timbres: TimbreKernels = vec![vec![steady_timbre()]];
    let mut engine = Engine::with_timbres(vec![resting_melody()], timbres, 48_000.0, 0).unwrap();
    let audio = play(
        &mut engine,
        &settings(Timbre::Neural(0)),
        &[on(10, 69, 100)],
        9600,
        false,
        || 64,
    );
    assert!(engine.stats().late_frames > 0);
    assert!(audio.iter().all(|s| s.is_finite()));
}

#[test]
fn extreme_inputs_give_finite_sound() {
    let hostile = [1e6f32, -1e6, 1e30, -1e30, f32::MAX, 0.0];
    let mut kernels = vec![("steady network".to_string(), steady_timbre())];
    for &(name, bytes) in wren::engine::models::EMBEDDED_MODELS {
        if name.starts_with("timbre-") {
            let model = wren::engine::models::load_model(name, bytes).unwrap();
            kernels.push((name.to_string(), GruKernel::new(&model.net)));
        }
    }
    for (name, mut kernel) in kernels {
        let mut state = vec![0.0; kernel.shape().state()];
        let mut y = vec![0.0; OUTPUT_SIZE];
        let mut synth = HarmonicSynth::new(48_000.0);
        let mut out = vec![0.0; 128];
        for (i, value) in hostile.iter().cycle().take(60).enumerate() {
            let mut x = [0.5f32; INPUT_SIZE];
            x[i % INPUT_SIZE] = *value;
            kernel.step(&x, &mut state, &mut y);
            let frame: FrameParams = decode(440.0 * (1 + i % 40) as f32, &y);
            // Decoding caps every level at e (about +9 dB).
            let cap = std::f32::consts::E * 1.0001;
            assert!(
                frame.harmonics.iter().sum::<f32>() <= cap
                    && frame.noise.iter().all(|v| (0.0..=cap).contains(v)),
                "{name}: frame {i}"
            );
            synth.render(&mut out, &mut || frame);
            assert!(out.iter().all(|s| s.is_finite()), "{name}: frame {i}");
        }
    }
    // Notes at the ends of the MIDI range, held long, in the engine.
    for (name, mut engine, timbre) in engines(44_100.0, 512) {
        let events = [on(0, 0, 127), on(0, 127, 127), on(10, 1, 1)];
        let audio = play(
            &mut engine,
            &settings(timbre),
            &events,
            44_100 * 12,
            true,
            || 512,
        );
        assert!(
            audio
                .iter()
                .all(|s| s.is_finite() && s.abs() <= OUTPUT_LIMIT),
            "{name}"
        );
    }
}

#[test]
fn more_notes_at_once_than_voices_all_play_the_last_eight() {
    // Sixteen note-ons in the same sample: the last eight take the voices.
    let notes: Vec<u8> = (0..16).map(|i| 60 + 2 * i).collect();
    let events: Vec<_> = notes.iter().map(|n| on(1000, *n, 100)).collect();
    for (name, mut engine, timbre) in engines(48_000.0, 512) {
        let audio = play(
            &mut engine,
            &settings(timbre),
            &events,
            48_000,
            true,
            || 512,
        );
        let steady = &audio[12_000..12_000 + 16_384];
        let (magnitude, bin_hz) = spectrum(steady, 48_000.0);
        let level = |pitch: u8| {
            let bin = (440.0 * 2f64.powf((pitch as f64 - 69.0) / 12.0) / bin_hz).round() as usize;
            magnitude[bin - 2..=bin + 2]
                .iter()
                .fold(0.0f32, |m, v| m.max(*v))
        };
        let loudest = notes[8..].iter().map(|n| level(*n)).fold(0.0, f32::max);
        assert!(loudest > 0.0, "{name}: silent");
        for note in &notes[8..] {
            assert!(
                level(*note) > loudest * 0.01,
                "{name}: note {note} is missing ({} against {loudest})",
                level(*note)
            );
        }
        assert_eq!(engine.stats().late_frames, 0, "{name}");
    }
}

#[test]
fn noise_sounds_at_the_same_frequencies_at_every_sample_rate() {
    let edges = wren::engine::harmonic::noise_band_edges();
    let band = 26;
    let mut shares = Vec::new();
    for sample_rate in [48_000.0f32, 96_000.0] {
        let mut frame = FrameParams::silent(440.0);
        frame.noise[band] = 0.01;
        let mut synth = HarmonicSynth::new(sample_rate);
        let mut out = vec![0.0; 65_536];
        synth.render(&mut out, &mut || frame);
        let (magnitude, bin_hz) = spectrum(&out, sample_rate as f64);
        let power = |keep: &dyn Fn(f64) -> bool| -> f32 {
            (0..magnitude.len())
                .filter(|b| keep(*b as f64 * bin_hz))
                .map(|b| magnitude[b].powi(2))
                .sum()
        };
        let (lo, hi) = (edges[band - 1] as f64, edges[band + 2] as f64);
        shares.push(power(&|hz| (lo..hi).contains(&hz)) / power(&|_| true));
    }
    for share in shares {
        assert!(share > 0.9, "{share} of the noise near its band");
    }
}
