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
    mut block: impl FnMut(usize) -> usize,
) -> (Vec<(usize, u8)>, Vec<f32>) {
    let (mut left, mut right) = (vec![0.0; 8192], vec![0.0; 8192]);
    let (mut notes, mut audio) = (Vec::new(), Vec::with_capacity(total));
    let mut position = 0;
    for index in 0.. {
        if position >= total {
            break;
        }
        let frames = block(index).min(total - position);
        let transport = Transport {
            playing: true,
            tempo: Some(tempo),
            pos_beats: Some(position as f64 / sample_rate * tempo / 60.0),
            time_signature: Some(meter),
        };
        let (l, r) = (&mut left[..frames], &mut right[..frames]);
        engine.process(&transport, &settings(), &[], true, l, r, &mut |e| {
            if let NoteEvent::On { offset, note, .. } = e {
                notes.push((position + offset as usize, note));
            }
        });
        audio.extend_from_slice(&left[..frames]);
        position += frames;
    }
    (notes, audio)
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
        let mut engine = wren::start_engine(sample_rate).unwrap();
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
        let mut engine = wren::start_engine(sample_rate).unwrap();
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
