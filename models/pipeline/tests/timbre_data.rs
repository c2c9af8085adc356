//! The timbre data: a plan whose held-out notes training never hears, and
//! real soundfont renders whose analysis finds the played pitch.

use std::path::Path;

use wren::melody::dataset::Split;
use wren_pipeline::timbre::analysis::{Analyzer, HOP, SAMPLE_RATE};
use wren_pipeline::timbre::data::{self, Note, Take, TakeKind, HELD_OUT_VELOCITY, INSTRUMENTS};

fn tunes() -> Vec<wren::melody::dataset::Tune> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../data/melodies.tsv.gz");
    wren::melody::dataset::read_dataset(Path::new(path)).unwrap()
}

#[test]
fn training_never_hears_a_held_out_pitch_or_velocity() {
    let tunes = tunes();
    for instrument in INSTRUMENTS {
        let takes = data::plan(&instrument, &tunes, 20);
        let count = |split, kind| {
            takes
                .iter()
                .filter(|t| t.split == split && t.kind == kind)
                .count()
        };
        for split in [Split::Train, Split::Valid, Split::Test] {
            assert!(count(split, TakeKind::Single) > 0, "{}", instrument.name);
            let phrases = if split == Split::Train { 20 } else { 5 };
            assert_eq!(
                count(split, TakeKind::Phrase),
                phrases,
                "{}",
                instrument.name
            );
        }
        let test_pitches: Vec<u8> = (instrument.low..=instrument.high)
            .filter(|p| data::pitch_split(*p) == Split::Test)
            .collect();
        assert!(test_pitches.len() >= 4, "{}", instrument.name);
        for take in takes.iter().filter(|t| t.split == Split::Train) {
            for note in &take.notes {
                assert_eq!(data::pitch_split(note.pitch), Split::Train, "{take:?}");
                assert_ne!(note.velocity, HELD_OUT_VELOCITY, "{take:?}");
                assert!((instrument.low..=instrument.high).contains(&note.pitch));
            }
        }
        // Phrases are legato: a note starts before the one before it ends.
        let phrase = takes.iter().find(|t| t.kind == TakeKind::Phrase).unwrap();
        assert!(phrase
            .notes
            .windows(2)
            .any(|w| w[1].start < w[0].start + w[0].length));
    }
}

#[test]
fn controls_follow_the_notes() {
    let take = Take {
        split: Split::Train,
        kind: TakeKind::Single,
        notes: vec![Note {
            start: 0.1,
            pitch: 69,
            velocity: 127,
            length: 0.2,
        }],
    };
    let frames = Analyzer::frames_for((take.seconds() * SAMPLE_RATE) as usize);
    let controls = data::controls(&take, frames);
    let at = |seconds: f32| controls[(seconds * SAMPLE_RATE) as usize / HOP];
    assert_eq!(at(0.05), None);
    let held = at(0.2).unwrap();
    assert!(held.gate && held.velocity == 1.0 && held.pitch == 69.0);
    assert!((held.since_on - 0.1).abs() < 0.01);
    let released = at(0.5).unwrap();
    assert!(!released.gate && (released.since_off - 0.2).abs() < 0.01);
}

/// The soundfont is installed by scripts/setup.sh; without it the render test
/// is skipped unless `WREN_REQUIRE_SOUNDFONT=1`.
fn soundfont() -> Option<std::sync::Arc<rustysynth::SoundFont>> {
    let path = Path::new(data::SOUNDFONT);
    if !path.exists() {
        let required = std::env::var("WREN_REQUIRE_SOUNDFONT").is_ok_and(|v| v == "1");
        assert!(!required, "{} is missing", path.display());
        eprintln!("skipped: {} is missing", path.display());
        return None;
    }
    Some(data::load_soundfont(path).unwrap())
}

#[test]
fn rendered_notes_sound_at_their_pitch_and_release_to_silence() {
    let Some(font) = soundfont() else { return };
    let mut analyzer = Analyzer::new();
    for instrument in INSTRUMENTS {
        let pitch = (instrument.low + instrument.high) / 2;
        let take = Take::single(Split::Test, pitch, 100, 0.6);
        let recording = data::record(&font, &instrument, take, &mut analyzer).unwrap();
        let middle = (0.4 * SAMPLE_RATE) as usize;
        let frame = &recording.frames[middle / HOP];
        assert!(
            frame.loudness_db > -40.0,
            "{}: {}",
            instrument.name,
            frame.loudness_db
        );
        // The partials of the played pitch hold most of the frame's energy,
        // and far more than those of a pitch a tritone away: the render is in
        // tune and the analysis finds it.
        let f0 = data::midi_hz(pitch as f32);
        let energy = |frame: &wren_pipeline::timbre::analysis::Frame| {
            frame.harmonics.iter().map(|a| a * a / 2.0).sum::<f32>()
        };
        let total = 10f32.powf(frame.loudness_db / 10.0);
        let off = analyzer.frame(&recording.audio, middle, Some(f0 * 2f32.sqrt()));
        assert!(
            energy(frame) > 0.5 * total && energy(frame) > 4.0 * energy(&off),
            "{}: {} of {total}, tritone {}",
            instrument.name,
            energy(frame),
            energy(&off)
        );
        let last = recording.frames.last().unwrap();
        assert!(
            last.loudness_db < frame.loudness_db - 30.0,
            "{}: release",
            instrument.name
        );
    }
}

#[test]
fn a_tiny_timbre_network_learns_and_its_export_runs_in_the_kernel() {
    use candle_core::{Device, Tensor};
    use wren::model::kernel::GruKernel;
    use wren_pipeline::net::StepNet;
    use wren_pipeline::timbre::train::{kernel_loss, train, FrameSet};
    use wren_pipeline::train::TrainConfig;

    let Some(font) = soundfont() else { return };
    let flute = INSTRUMENTS[0];
    let mut analyzer = Analyzer::new();
    let note = |pitch, velocity, split| Take::single(split, pitch, velocity, 0.3);
    let mut record = |takes: Vec<Take>| -> Vec<_> {
        takes
            .into_iter()
            .map(|t| data::record(&font, &flute, t, &mut analyzer).unwrap())
            .collect()
    };
    let train_set = FrameSet::new(&record(
        [62, 65, 70, 74, 77, 82]
            .into_iter()
            .flat_map(|p| [note(p, 60, Split::Train), note(p, 120, Split::Train)])
            .collect(),
    ));
    let valid_set = FrameSet::new(&record(vec![
        note(66, 85, Split::Valid),
        note(72, 85, Split::Valid),
    ]));
    let device = Device::Cpu;
    let config = TrainConfig {
        hidden: 24,
        layers: 1,
        steps: 80,
        batch: 8,
        window: 48,
        learning_rate: 1e-2,
        dropout: 0.0,
        seed: 3,
        eval_every: 40,
    };
    let untrained = StepNet::new(
        wren::timbre::INPUT_SIZE,
        24,
        1,
        wren::timbre::OUTPUT_SIZE,
        3,
        &device,
    )
    .unwrap();
    let before = kernel_loss(&untrained.to_gru_net().unwrap(), &valid_set, &device).unwrap();
    let trained = train(
        "tiny timbre",
        &config,
        None,
        (&train_set, &valid_set),
        &device,
    )
    .unwrap();
    assert!(
        trained.valid_loss < 0.5 * before,
        "valid loss {} from {before}",
        trained.valid_loss
    );
    // The exported step model gives what candle computes, frame by frame.
    let bytes = wren::model::onnx::export(&trained.net, &[]);
    let net = wren::model::onnx::import(&bytes).unwrap().net;
    let candle = StepNet::from_gru_net(&net, &device).unwrap();
    let inputs: Vec<[f32; wren::timbre::INPUT_SIZE]> = (0..40)
        .map(|k| {
            let control = wren::timbre::Control {
                pitch: 69.0,
                velocity: 0.7,
                gate: k < 30,
                since_on: k as f32 * 0.00267,
                since_off: (k as f32 - 30.0).max(0.0) * 0.00267,
            };
            wren::timbre::input(Some(&control))
        })
        .collect();
    let flat: Vec<f32> = inputs.iter().flatten().copied().collect();
    let x = Tensor::from_vec(flat, (1, 40, wren::timbre::INPUT_SIZE), &device).unwrap();
    let expected: Vec<Vec<f32>> = candle
        .forward_dense(&x, None, &device)
        .unwrap()
        .to_vec2()
        .unwrap();
    let mut kernel = GruKernel::new(&net);
    let mut state = vec![0.0; net.shape().state()];
    let mut y = vec![0.0; wren::timbre::OUTPUT_SIZE];
    for (input, want) in inputs.iter().zip(&expected) {
        kernel.step(input, &mut state, &mut y);
        for (a, b) in y.iter().zip(want) {
            assert!((a - b).abs() < 1e-3, "kernel {a} vs candle {b}");
        }
    }
}

#[test]
fn resynthesis_of_the_analysis_comes_closer_than_the_static_baseline() {
    use wren_pipeline::timbre::quality::{
        analysed_frames, log_spectral_distance, mrstft_distance, resynthesize, Wavetable,
    };

    let Some(font) = soundfont() else { return };
    let flute = INSTRUMENTS[0];
    let mut analyzer = Analyzer::new();
    let mut record = |pitch, velocity, split| {
        let take = Take::single(split, pitch, velocity, 0.5);
        data::record(&font, &flute, take, &mut analyzer).unwrap()
    };
    let train: Vec<_> = [64u8, 65, 67, 68, 70]
        .into_iter()
        .flat_map(|p| [60, 120].map(|v| (p, v)))
        .map(|(p, v)| record(p, v, Split::Train))
        .collect();
    let table = Wavetable::learn(&train);
    let held_out = record(69, HELD_OUT_VELOCITY, Split::Test);
    assert_eq!(data::pitch_split(69), Split::Test);
    let real = &held_out.audio;
    let resynthesis = resynthesize(&analysed_frames(&held_out));
    let baseline = resynthesize(&table.frames_for(&held_out));
    let scores = |audio: &[f32]| {
        (
            mrstft_distance(real, audio),
            log_spectral_distance(real, audio),
        )
    };
    let (resynth_mr, resynth_lsd) = scores(&resynthesis);
    let (table_mr, table_lsd) = scores(&baseline);
    eprintln!(
        "held-out flute A4: analysis-resynthesis MR-STFT {resynth_mr:.3}, LSD {resynth_lsd:.1} dB; \
         static baseline MR-STFT {table_mr:.3}, LSD {table_lsd:.1} dB"
    );
    assert!(resynth_mr < table_mr && resynth_lsd < table_lsd);
    assert!(resynth_lsd < 12.0, "resynthesis far from the recording");
}
