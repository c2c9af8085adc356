//! Offline renders do not depend on how the host cuts the timeline into
//! blocks: random block sizes from 0 to the largest (1, 3, 63 and 1023
//! among them) give the same audio and the same MIDI, sample for sample,
//! as fixed blocks; and a re-activated instance plays at every common
//! buffer and sample rate.

use wren::engine::{Engine, NoteEvent, Settings, Timbre, Transport};

const RATE: f64 = 48_000.0;
const MAX_BLOCK: usize = 1024;
const SECONDS: f64 = 4.0;
const TEMPO: f64 = 132.0;

/// A note event at an absolute sample time.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Timed {
    at: usize,
    event: NoteEvent,
}

/// Renders `SECONDS` offline in blocks of the given sizes (repeated);
/// returns both channels and the MIDI sent, at absolute times.
fn render(sizes: &[usize], settings: &Settings) -> (Vec<f32>, Vec<f32>, Vec<Timed>) {
    let mut engine: Engine = wren::start_engine(RATE, MAX_BLOCK).unwrap();
    let total = (SECONDS * RATE) as usize;
    let (mut left, mut right) = (Vec::with_capacity(total), Vec::with_capacity(total));
    let mut midi = Vec::new();
    let (mut block_left, mut block_right) = (vec![0.0; MAX_BLOCK], vec![0.0; MAX_BLOCK]);
    let mut position = 0;
    for &size in sizes.iter().cycle() {
        if position >= total {
            break;
        }
        let size = size.min(total - position);
        let transport = Transport {
            playing: true,
            tempo: Some(TEMPO),
            pos_beats: Some(position as f64 / RATE * TEMPO / 60.0),
            time_signature: Some((4, 4)),
            loop_beats: None,
        };
        let start = position;
        engine.process(
            &transport,
            settings,
            &[],
            true,
            &mut block_left[..size],
            &mut block_right[..size],
            &mut |event| {
                let offset = match event {
                    NoteEvent::On { offset, .. }
                    | NoteEvent::Off { offset, .. }
                    | NoteEvent::AllOff { offset, .. } => offset as usize,
                };
                midi.push(Timed {
                    at: start + offset,
                    event,
                });
            },
        );
        left.extend_from_slice(&block_left[..size]);
        right.extend_from_slice(&block_right[..size]);
        position += size;
    }
    (left, right, midi)
}

/// Sizes from 0 to `MAX_BLOCK`, drawn by a fixed generator, with the odd
/// sizes hosts are known to send.
fn random_sizes() -> Vec<usize> {
    let mut seed = 0x5eed_u64;
    let mut sizes = vec![1, 3, 0, 63, 1023, MAX_BLOCK, 0, 2];
    sizes.extend((0..400).map(|_| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) as usize % (MAX_BLOCK + 1)
    }));
    sizes
}

/// Drops the block offsets, which differ with the blocks by design.
fn absolute(midi: &[Timed]) -> Vec<(usize, u8, bool)> {
    midi.iter()
        .filter_map(|t| match t.event {
            NoteEvent::On { note, .. } => Some((t.at, note, true)),
            NoteEvent::Off { note, .. } => Some((t.at, note, false)),
            NoteEvent::AllOff { .. } => None,
        })
        .collect()
}

#[test]
fn offline_output_does_not_depend_on_the_block_sizes() {
    for timbre in [Timbre::Neural(0), Timbre::Additive] {
        let settings = Settings {
            variant: 2,
            timbre,
            seed: 7,
            ..Settings::default()
        };
        let (fixed_left, fixed_right, fixed_midi) = render(&[512], &settings);
        let (left, right, midi) = render(&random_sizes(), &settings);
        let notes = absolute(&fixed_midi);
        assert!(notes.len() > 8, "{timbre:?}: only {} notes", notes.len());
        assert!(
            fixed_left.iter().any(|s| s.abs() > 1e-3),
            "{timbre:?}: silent"
        );
        assert_eq!(absolute(&midi), notes, "{timbre:?}: MIDI differs");
        for (i, (a, b)) in fixed_left.iter().zip(&left).enumerate() {
            assert!(a == b, "{timbre:?}: left differs at sample {i}: {a} vs {b}");
        }
        assert_eq!(fixed_right, right, "{timbre:?}: right differs");
    }
}

#[test]
fn reactivation_at_other_buffers_and_sample_rates_keeps_playing() {
    let mut engine: Engine = wren::start_engine(44_100.0, 512).unwrap();
    let settings = Settings {
        variant: 2,
        timbre: Timbre::Neural(0),
        seed: 3,
        ..Settings::default()
    };
    // As a host re-activates: each configuration in turn on one instance.
    for (rate, block) in [
        (44_100.0, 512),
        (48_000.0, 2048),
        (48_000.0, 4096),
        (22_050.0, 256),
        (88_200.0, 1024),
        (192_000.0, 64),
        (96_000.0, 4096),
    ] {
        engine.configure(rate, block);
        assert_eq!(engine.latency(), block, "{block} at {rate}");
        let (mut left, mut right) = (vec![0.0; block], vec![0.0; block]);
        let (mut notes, mut peak) = (0, 0.0f32);
        let mut position = 0;
        while position < (3.0 * rate) as usize {
            let transport = Transport {
                playing: true,
                tempo: Some(TEMPO),
                pos_beats: Some(position as f64 / rate * TEMPO / 60.0),
                time_signature: Some((4, 4)),
                loop_beats: None,
            };
            engine.process(
                &transport,
                &settings,
                &[],
                true,
                &mut left,
                &mut right,
                &mut |event| notes += matches!(event, NoteEvent::On { .. }) as usize,
            );
            for sample in left.iter().chain(&right) {
                assert!(sample.is_finite(), "{block} at {rate}");
                peak = peak.max(sample.abs());
            }
            position += block;
        }
        assert!(notes > 4, "{block} at {rate}: {notes} notes");
        assert!(
            peak > 1e-3 && peak <= wren::engine::OUTPUT_LIMIT,
            "{block} at {rate}: peak {peak}"
        );
    }
}

#[test]
fn odd_sample_rates_with_eight_voices_render_every_frame_offline() {
    // At 1234.5678 Hz a frame lasts 3 samples: eight voices ask for more
    // frames in one 512-sample block than the request ring holds. Offline,
    // the engine waits for room instead of leaving frames behind.
    for rate in [1234.5678, 8000.0, 12_345.678, 44_100.0, 768_000.0] {
        let mut engine = wren::start_engine(rate, 512).unwrap();
        let settings = Settings {
            timbre: Timbre::Neural(0),
            ..Settings::default()
        };
        let (mut left, mut right) = (vec![0.0; 512], vec![0.0; 512]);
        let mut loudest = 0f32;
        for block in 0..8u8 {
            let notes: Vec<NoteEvent> = (0..8u8)
                .map(|i| NoteEvent::On {
                    offset: i as u32 * 60,
                    note: 60 + 2 * i + block,
                    velocity: 100,
                })
                .collect();
            engine.process(
                &Transport::default(),
                &settings,
                &notes,
                true,
                &mut left,
                &mut right,
                &mut |_| {},
            );
            assert!(left.iter().all(|s| s.is_finite()), "{rate} Hz");
            loudest = left.iter().fold(loudest, |m, s| m.max(s.abs()));
        }
        assert_eq!(
            engine.stats().late_frames,
            0,
            "{rate} Hz: frames left behind"
        );
        assert!(loudest > 0.0, "{rate} Hz: silent");
    }
}
