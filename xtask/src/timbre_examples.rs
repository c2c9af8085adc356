//! `cargo xtask timbre-examples`: for every shipped neural instrument, a
//! held-out legato phrase as the soundfont plays it and as Wren's engine
//! plays the same MIDI (presets studio and live: the teacher and the int8
//! student, with the plugin's voices, frames and synthesizer): WAV files and
//! one PNG of the three spectrograms stacked, real at the top.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use wren::engine::{Engine, Mode, NoteEvent, Settings, Timbre, Transport};
use wren::melody::dataset::{read_dataset, Split};
use wren_pipeline::timbre::analysis::{Analyzer, SAMPLE_RATE};
use wren_pipeline::timbre::data::{self, Take, TakeKind};
use wren_pipeline::timbre::quality::{log_spectral_distance, mrstft_distance, stft};

/// Options of `cargo xtask timbre-examples`.
#[derive(clap::Args)]
pub struct TimbreExamplesArgs {
    /// Where the WAV and PNG files go.
    #[arg(long, default_value = "docs/timbre")]
    pub out: PathBuf,
    /// Longest example in seconds.
    #[arg(long, default_value_t = 4.0)]
    pub seconds: f32,
    /// The soundfont.
    #[arg(long, default_value = data::SOUNDFONT)]
    pub soundfont: PathBuf,
}

/// The presets shown after the real recording.
const PRESETS: [&str; 2] = ["studio", "live"];
/// STFT of the pictures: window and hop in samples.
const WINDOW: usize = 2048;
const HOP: usize = 256;
/// Rows per panel, log-spaced from `LOW_HZ` to `HIGH_HZ`.
const ROWS: usize = 200;
const LOW_HZ: f32 = 100.0;
const HIGH_HZ: f32 = 12_000.0;
/// Colour range in dB below the loudest bin of the real recording.
const RANGE_DB: f32 = 80.0;
/// Pixels between panels.
const GAP: usize = 4;

pub fn run(args: &TimbreExamplesArgs) -> Result<()> {
    if !(args.seconds >= 0.5 && args.seconds <= 60.0) {
        anyhow::bail!("--seconds must be 0.5 to 60");
    }
    let font = data::load_soundfont(&args.soundfont)?;
    let tunes = read_dataset(Path::new("models/data/melodies.tsv.gz"))?;
    std::fs::create_dir_all(&args.out)?;
    let mut analyzer = Analyzer::new();
    let mut engine = wren::start_engine(SAMPLE_RATE as f64, 0).map_err(anyhow::Error::msg)?;
    for (index, name) in wren::timbre::INSTRUMENTS.into_iter().enumerate() {
        if !engine.has_timbre(index) {
            println!("{name}: not shipped, skipped");
            continue;
        }
        let instrument = data::instrument(name).context("the pipeline knows every instrument")?;
        let take = data::plan(&instrument, &tunes, 40)
            .into_iter()
            .find(|t| t.split == Split::Test && t.kind == TakeKind::Phrase)
            .context("a held-out phrase")?;
        let recording = data::record(&font, &instrument, take, &mut analyzer)?;
        let keep = (args.seconds * SAMPLE_RATE) as usize;
        let mut tracks = vec![("real".to_string(), recording.audio.clone())];
        for preset in PRESETS {
            let (variant, preset) = wren::presets::find(preset)?;
            let settings = Settings {
                variant,
                timbre: Timbre::Neural(index),
                mode: Mode::Thru,
                gain: 1.0,
                ..Settings::default()
            };
            let audio = play(
                &mut engine,
                &settings,
                &recording.take,
                recording.audio.len(),
            );
            tracks.push((preset.timbre, audio));
        }
        for (_, audio) in &mut tracks {
            audio.truncate(keep.min(recording.audio.len()));
        }
        for (label, audio) in &tracks {
            let path = args.out.join(format!("{name}-{label}.wav"));
            crate::render::write_wav(&path, audio, SAMPLE_RATE as u32)?;
            if label != "real" {
                println!(
                    "{name} {label:<13} MR-STFT {:.3}, LSD {:.1} dB against the real phrase",
                    mrstft_distance(&tracks[0].1, audio),
                    log_spectral_distance(&tracks[0].1, audio)
                );
            }
        }
        let picture = args.out.join(format!("{name}.png"));
        let panels: Vec<&[f32]> = tracks.iter().map(|(_, a)| a.as_slice()).collect();
        write_spectrograms(&picture, &panels)?;
        println!(
            "{name}: wrote {} and {} WAV files",
            picture.display(),
            tracks.len()
        );
    }
    Ok(())
}

/// Plays a take's notes through the engine, offline, for `samples`.
fn play(engine: &mut Engine, settings: &Settings, take: &Take, samples: usize) -> Vec<f32> {
    let at = |seconds: f32| (seconds * SAMPLE_RATE) as usize;
    let mut events: Vec<(usize, NoteEvent)> = take
        .notes
        .iter()
        .flat_map(|n| {
            let (note, velocity) = (n.pitch, n.velocity);
            [
                (
                    at(n.start),
                    NoteEvent::On {
                        offset: 0,
                        note,
                        velocity,
                    },
                ),
                (at(n.start + n.length), NoteEvent::Off { offset: 0, note }),
            ]
        })
        .collect();
    events.sort_by_key(|(time, _)| *time);
    let block = 512;
    let (mut left, mut right) = (vec![0.0; block], vec![0.0; block]);
    let mut audio = Vec::with_capacity(samples + block);
    let mut input = Vec::new();
    // Let a previous phrase's release end first.
    for _ in 0..SAMPLE_RATE as usize / block {
        engine.process(
            &Transport::default(),
            settings,
            &[],
            true,
            &mut left,
            &mut right,
            &mut |_| {},
        );
    }
    while audio.len() < samples {
        let start = audio.len();
        input.clear();
        input.extend(
            events
                .iter()
                .filter(|(time, _)| (start..start + block).contains(time))
                .map(|(time, e)| e.at((time - start) as u32)),
        );
        engine.process(
            &Transport::default(),
            settings,
            &input,
            true,
            &mut left,
            &mut right,
            &mut |_| {},
        );
        audio.extend_from_slice(&left);
    }
    audio.truncate(samples);
    audio
}

/// Magnitudes in dB, `[frame][row]`, on log-spaced rows.
fn spectrogram(audio: &[f32]) -> Vec<[f32; ROWS]> {
    let bin_hz = SAMPLE_RATE / WINDOW as f32;
    let rows: Vec<(usize, usize)> = (0..ROWS)
        .map(|r| {
            let hz = |r: f32| LOW_HZ * (HIGH_HZ / LOW_HZ).powf(r / ROWS as f32);
            let lo = (hz(r as f32) / bin_hz) as usize;
            let hi = ((hz(r as f32 + 1.0) / bin_hz) as usize).max(lo + 1);
            (lo, hi)
        })
        .collect();
    stft(audio, WINDOW, HOP)
        .iter()
        .map(|frame| {
            std::array::from_fn(|r| {
                let (lo, hi) = rows[r];
                let peak = frame[lo..hi.min(frame.len())]
                    .iter()
                    .fold(0.0f32, |m, v| m.max(*v));
                20.0 * (peak + 1e-9).log10()
            })
        })
        .collect()
}

/// A dark-to-bright colour map: black, purple, orange, pale yellow.
fn colour(level: f32) -> [u8; 3] {
    const STOPS: [[f32; 3]; 4] = [
        [0.0, 0.0, 0.02],
        [0.45, 0.1, 0.5],
        [0.95, 0.45, 0.2],
        [0.99, 0.98, 0.75],
    ];
    let x = level.clamp(0.0, 1.0) * (STOPS.len() - 1) as f32;
    let i = (x as usize).min(STOPS.len() - 2);
    let t = x - i as f32;
    std::array::from_fn(|c| ((STOPS[i][c] + (STOPS[i + 1][c] - STOPS[i][c]) * t) * 255.0) as u8)
}

/// Writes the spectrograms of `panels` stacked top to bottom, on one colour
/// scale set by the first.
fn write_spectrograms(path: &Path, panels: &[&[f32]]) -> Result<()> {
    let grams: Vec<_> = panels.iter().map(|a| spectrogram(a)).collect();
    let top = grams[0]
        .iter()
        .flatten()
        .copied()
        .fold(f32::NEG_INFINITY, f32::max);
    let width = grams.iter().map(Vec::len).max().unwrap_or(0).max(1);
    let height = grams.len() * ROWS + (grams.len() - 1) * GAP;
    let mut pixels = vec![255u8; width * height * 3];
    for (p, gram) in grams.iter().enumerate() {
        for (x, column) in gram.iter().enumerate() {
            for (r, db) in column.iter().enumerate() {
                let y = p * (ROWS + GAP) + (ROWS - 1 - r);
                let rgb = colour((db - top + RANGE_DB) / RANGE_DB);
                pixels[(y * width + x) * 3..][..3].copy_from_slice(&rgb);
            }
        }
    }
    let file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut encoder = png::Encoder::new(file, width as u32, height as u32);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.write_header()?.write_image_data(&pixels)?;
    Ok(())
}
