//! `cargo xtask render`: an offline render of the instrument, the way a host
//! bouncing a track would run it.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use wren::engine::cost::measure;
use wren::engine::models::Role;
use wren::engine::sampling::{SamplingControls, Scale};
use wren::engine::{Engine, Mode, NoteEvent, Settings, Timbre, Transport};
use wren::melody::smf::{read_melody, write_notes, TimedNote};
use wren::melody::tokens::{Meter, Token};
use wren::model::kernel::GruKernel;
use wren::presets::Selection;

/// What to render.
#[derive(clap::Args, Debug)]
pub struct RenderArgs {
    /// Length in bars.
    #[arg(long, default_value_t = 16)]
    pub bars: u32,
    /// Tempo in beats per minute.
    #[arg(long, default_value_t = 112.0)]
    pub tempo: f64,
    /// Key tonic, e.g. D, F#, Bb.
    #[arg(long, default_value = "D")]
    pub key: String,
    /// Scale: chromatic, major, minor, dorian, mixolydian, pentatonic, harmonic-minor.
    #[arg(long, default_value = "major")]
    pub scale: String,
    /// Seed of the generator.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Compression preset: auto (here, offline and without a buffer, studio),
    /// studio, balanced, live or ultra.
    #[arg(long, default_value = wren::presets::DEFAULT)]
    pub preset: String,
    /// Sampling temperature.
    #[arg(long, default_value_t = 0.9)]
    pub temperature: f32,
    /// A MIDI file whose top line is played first; Wren answers it.
    #[arg(long)]
    pub primer: Option<PathBuf>,
    /// Time signature numerator/denominator.
    #[arg(long, default_value = "4/4")]
    pub meter: String,
    /// Sample rate of the output.
    #[arg(long, default_value_t = 48_000)]
    pub sample_rate: u32,
    /// The voice: flute, violin, trumpet (neural) or additive.
    #[arg(long, default_value = "flute")]
    pub instrument: String,
    /// Output folder.
    #[arg(long, default_value = "target/render")]
    pub out: PathBuf,
}

/// Parses a key name into a pitch class (0 = C).
/// The voice named on the command line.
pub fn parse_instrument(name: &str) -> Result<Timbre> {
    if name == "additive" {
        return Ok(Timbre::Additive);
    }
    wren::timbre::INSTRUMENTS
        .iter()
        .position(|i| *i == name)
        .map(Timbre::Neural)
        .with_context(|| format!("no instrument {name:?}: flute, violin, trumpet or additive"))
}

pub fn parse_key(name: &str) -> Result<u8> {
    let mut chars = name.trim().chars();
    let letter = chars.next().context("empty key")?.to_ascii_uppercase();
    let base: i32 = match letter {
        'C' => 0,
        'D' => 2,
        'E' => 4,
        'F' => 5,
        'G' => 7,
        'A' => 9,
        'B' => 11,
        _ => bail!("unknown key {name:?}; use C, C#, Db, ... B"),
    };
    let shift: i32 = chars
        .map(|c| match c {
            '#' => 1,
            'b' => -1,
            _ => 0,
        })
        .sum();
    Ok((base + shift).rem_euclid(12) as u8)
}

/// Parses a scale name.
pub fn parse_scale(name: &str) -> Result<Scale> {
    let names = [
        "chromatic",
        "major",
        "minor",
        "dorian",
        "mixolydian",
        "pentatonic",
        "harmonic-minor",
    ];
    let index = names
        .iter()
        .position(|n| *n == name.to_ascii_lowercase())
        .with_context(|| format!("unknown scale {name:?}; one of {}", names.join(", ")))?;
    Ok(Scale::ALL[index])
}

fn key_name(key: u8) -> &'static str {
    [
        "C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B",
    ][key as usize % 12]
}

/// Notes and audio of a finished render.
pub struct Rendered {
    /// Mono samples.
    pub audio: Vec<f32>,
    /// Generated notes with times in seconds.
    pub notes: Vec<TimedNote>,
    /// Late steps (none are expected offline).
    pub late_steps: u64,
}

/// The timeline of a render.
pub struct Timeline {
    /// Time signature.
    pub meter: (u32, u32),
    /// Beats per minute.
    pub tempo: f64,
    /// Length in seconds.
    pub seconds: f64,
    /// Output sample rate.
    pub sample_rate: u32,
}

/// Renders with an engine in offline mode, blocks of `block` samples.
pub fn render_engine(
    engine: &mut Engine,
    settings: &Settings,
    timeline: &Timeline,
    primer: &[NoteEvent],
    block: usize,
) -> Rendered {
    let Timeline {
        meter,
        tempo,
        seconds,
        sample_rate,
    } = *timeline;
    let total = (seconds * sample_rate as f64).round() as usize;
    let (mut left, mut right) = (vec![0.0; block], vec![0.0; block]);
    let mut audio = Vec::with_capacity(total);
    let mut open: Vec<(u8, u8, f64)> = Vec::new();
    let mut notes = Vec::new();
    let mut block_events = Vec::new();
    let mut position = 0usize;
    while position < total {
        let frames = block.min(total - position);
        let transport = Transport {
            playing: true,
            tempo: Some(tempo),
            pos_beats: Some(position as f64 / sample_rate as f64 * tempo / 60.0),
            time_signature: Some(meter),
            loop_beats: None,
        };
        block_events.clear();
        block_events.extend(primer.iter().filter_map(|e| shift(e, position, frames)));
        let mut out_events = Vec::new();
        engine.process(
            &transport,
            settings,
            &block_events,
            true,
            &mut left[..frames],
            &mut right[..frames],
            &mut |e| out_events.push(e),
        );
        for event in out_events {
            let at = (position + event.offset() as usize) as f64 / sample_rate as f64;
            match event {
                NoteEvent::On { note, velocity, .. } => open.push((note, velocity, at)),
                NoteEvent::Off { note, .. } => {
                    if let Some(i) = open.iter().position(|o| o.0 == note) {
                        let (pitch, velocity, start) = open.remove(i);
                        notes.push(TimedNote {
                            start,
                            length: at - start,
                            pitch,
                            velocity,
                        });
                    }
                }
                NoteEvent::AllOff { .. } => {}
            }
        }
        audio.extend_from_slice(&left[..frames]);
        position += frames;
    }
    let end = total as f64 / sample_rate as f64;
    for (pitch, velocity, start) in open {
        notes.push(TimedNote {
            start,
            length: end - start,
            pitch,
            velocity,
        });
    }
    notes.sort_by(|a, b| a.start.total_cmp(&b.start));
    Rendered {
        audio,
        notes,
        late_steps: engine.stats().late_steps,
    }
}

/// A primer event moved into a block, if it falls inside it.
fn shift(event: &NoteEvent, position: usize, frames: usize) -> Option<NoteEvent> {
    let at = event.offset() as usize;
    if at < position || at >= position + frames {
        return None;
    }
    Some(event.at((at - position) as u32))
}

/// The primer's top line as note events at absolute sample positions.
fn primer_events(path: &Path, tempo: f64, sample_rate: u32) -> Result<(Vec<NoteEvent>, f64)> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let melody = read_melody(&bytes).with_context(|| format!("reading {}", path.display()))?;
    let samples_per_step = sample_rate as f64 * 60.0 / tempo / 4.0;
    let at = |step: usize| (step as f64 * samples_per_step).round() as u32;
    let mut events = Vec::new();
    let mut sounding: Option<u8> = None;
    for (step, token) in melody.tokens.iter().enumerate() {
        match *token {
            Token::Hold => {}
            Token::Rest | Token::Note(_) => {
                if let Some(note) = sounding.take() {
                    events.push(NoteEvent::Off {
                        offset: at(step),
                        note,
                    });
                }
                if let Token::Note(note) = *token {
                    events.push(NoteEvent::On {
                        offset: at(step),
                        note,
                        velocity: 96,
                    });
                    sounding = Some(note);
                }
            }
        }
    }
    if let Some(note) = sounding {
        events.push(NoteEvent::Off {
            offset: at(melody.tokens.len()),
            note,
        });
    }
    Ok((
        events,
        melody.tokens.len() as f64 * samples_per_step / sample_rate as f64,
    ))
}

/// Runs the command: writes `wren.wav` and `wren.mid` and prints a summary.
pub fn run(args: &RenderArgs) -> Result<()> {
    let selection = wren::presets::select(&args.preset)?;
    let (numerator, denominator) = args
        .meter
        .split_once('/')
        .and_then(|(n, d)| Some((n.parse::<u32>().ok()?, d.parse::<u32>().ok()?)))
        .filter(|(n, d)| (1..=32).contains(n) && [1, 2, 4, 8, 16].contains(d))
        .context("meter must look like 4/4 or 6/8")?;
    if !(20.0..=400.0).contains(&args.tempo) {
        bail!("tempo must be 20 to 400 BPM");
    }
    if args.bars == 0 || args.bars > 1000 {
        bail!("bars must be 1 to 1000");
    }
    if !(8_000..=384_000).contains(&args.sample_rate) {
        bail!("the sample rate must be 8000 to 384000 Hz");
    }
    if !(args.temperature > 0.0 && args.temperature <= 10.0) {
        bail!("the temperature must be above 0 and at most 10");
    }
    let key = parse_key(&args.key)?;
    let scale = parse_scale(&args.scale)?;
    let loading = Instant::now();
    // Offline, frames are waited for: the neural voice needs no latency.
    let mut engine = wren::start_engine(args.sample_rate as f64, 0).map_err(anyhow::Error::msg)?;
    let timbre = parse_instrument(&args.instrument)?;
    if let Timbre::Neural(i) = timbre {
        if !engine.has_timbre(i) {
            bail!("the {} model is not installed", args.instrument);
        }
    }
    let load_ms = loading.elapsed().as_secs_f64() * 1e3;
    let (primer, primer_seconds) = match &args.primer {
        Some(path) => primer_events(path, args.tempo, args.sample_rate)?,
        None => (Vec::new(), 0.0),
    };
    let settings = Settings {
        variant: match selection {
            Selection::Fixed(index) => index,
            Selection::Auto => 0,
        },
        auto: selection == Selection::Auto,
        timbre,
        controls: SamplingControls {
            temperature: args.temperature,
            key,
            scale,
            ..Default::default()
        },
        seed: args.seed,
        mode: if primer.is_empty() {
            Mode::Generate
        } else {
            Mode::Continue
        },
        ..Settings::default()
    };
    let meter = Meter::from_signature(numerator, denominator);
    let seconds = args.bars as f64 * meter.bar_steps as f64 / 4.0 * 60.0 / args.tempo;
    let seconds = seconds.max(primer_seconds);
    let started = Instant::now();
    let timeline = Timeline {
        meter: (numerator, denominator),
        tempo: args.tempo,
        seconds,
        sample_rate: args.sample_rate,
    };
    let rendered = render_engine(&mut engine, &settings, &timeline, &primer, 512);
    let render_seconds = started.elapsed().as_secs_f64();

    std::fs::create_dir_all(&args.out)?;
    let wav = args.out.join("wren.wav");
    write_wav(&wav, &rendered.audio, args.sample_rate)?;
    let mid = args.out.join("wren.mid");
    std::fs::write(&mid, write_notes(&rendered.notes, args.tempo, meter))?;

    let index = engine.variant();
    let preset = &wren::presets::embedded()[index];
    let entry = wren::engine::models::embedded_entry(&preset.melody);
    let latency = step_latency(index)?;
    let budget_us = 64.0 / 48_000.0 * 1e6;
    let chosen = if selection == Selection::Auto {
        "auto: "
    } else {
        ""
    };
    println!("Wren render");
    println!(
        "  preset      {chosen}{} ({})",
        preset.name, preset.description
    );
    if let Some(e) = &entry {
        println!(
            "  model       {}: {} parameters, {} KiB, test NLL {:.3} nats/step",
            e.name,
            e.parameters,
            e.weight_bytes / 1024,
            e.metrics.get("test_nll").copied().unwrap_or(f64::NAN)
        );
    }
    match timbre {
        Timbre::Neural(_) => {
            let name = preset.timbre_model(&args.instrument);
            let distance = wren::engine::models::embedded_entry(&name)
                .and_then(|e| e.metrics.get("test_lsd_db").copied())
                .unwrap_or(f64::NAN);
            println!(
                "  voice       {name}: log-spectral distance {distance:.1} dB on held-out notes"
            );
        }
        Timbre::Additive => println!("  voice       additive"),
    }
    println!(
        "  key         {} {:?}, {}/{} at {:.1} BPM, seed {}",
        key_name(key),
        scale,
        numerator,
        denominator,
        args.tempo,
        args.seed
    );
    println!(
        "  length      {} bars, {:.1} s, {} notes",
        args.bars,
        seconds,
        rendered.notes.len()
    );
    println!(
        "  step        p50 {:.1} us, p99 {:.1} us (real-time kernel)",
        latency.0, latency.1
    );
    println!(
        "  budget      {:.2}% of a 64-sample buffer at 48 kHz ({budget_us:.0} us) at p99",
        latency.1 / budget_us * 100.0
    );
    println!(
        "  speed       {:.0}x real time, models loaded in {load_ms:.0} ms, {} late steps, {} late frames",
        seconds / render_seconds,
        rendered.late_steps,
        engine.stats().late_frames
    );
    println!("  wrote       {} and {}", wav.display(), mid.display());
    Ok(())
}

/// Median and 99th percentile of the real-time kernel's step, in microseconds.
pub fn step_latency(variant: usize) -> Result<(f64, f64)> {
    let preset = &wren::presets::embedded()[variant];
    let loaded = wren::engine::models::load_embedded(&[preset.melody.as_str()])?;
    let cost = measure(&mut GruKernel::new(&loaded[0].net), Role::Melody, 2000);
    Ok((cost.median_us, cost.p99_us))
}

/// Writes mono audio as a 16-bit WAV file.
pub fn write_wav(path: &Path, audio: &[f32], sample_rate: u32) -> Result<()> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(path, spec)
        .with_context(|| format!("creating {}", path.display()))?;
    for s in audio {
        writer.write_sample((s.clamp(-1.0, 1.0) * 32767.0) as i16)?;
    }
    writer.finalize()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use wren::melody::smf::read_melody;
    use wren_pipeline::timbre::analysis::{Analyzer, Frame, SAMPLE_RATE};
    use wren_pipeline::timbre::data::midi_hz;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        render: RenderArgs,
    }

    #[test]
    fn the_rendered_midi_is_what_the_audio_plays() {
        let out = std::env::temp_dir().join(format!("wren-render-{}", std::process::id()));
        let args =
            Cli::parse_from(["render", "--bars", "8", "--out", out.to_str().unwrap()]).render;
        run(&args).unwrap();
        let midi = std::fs::read(out.join("wren.mid")).unwrap();
        let melody = read_melody(&midi).unwrap();
        let mut reader = hound::WavReader::open(out.join("wren.wav")).unwrap();
        assert_eq!(reader.spec().sample_rate as f32, SAMPLE_RATE);
        let audio: Vec<f32> = reader
            .samples::<i16>()
            .map(|s| s.unwrap() as f32 / 32768.0)
            .collect();
        let step_samples = SAMPLE_RATE as f64 * 60.0 / args.tempo / 4.0;
        let energy = |f: &Frame| f.harmonics.iter().map(|a| a * a / 2.0).sum::<f32>();
        let mut analyzer = Analyzer::new();
        let mut checked = 0;
        for (step, token) in melody.tokens.iter().enumerate() {
            let Token::Note(pitch) = *token else { continue };
            // Notes of two steps or more, heard one step after their onset.
            if melody.tokens.get(step + 1) != Some(&Token::Hold) {
                continue;
            }
            let at = ((step + 1) as f64 * step_samples) as usize;
            let f0 = midi_hz(pitch as f32);
            let frame = analyzer.frame(&audio, at, Some(f0));
            let tritone = analyzer.frame(&audio, at, Some(f0 * 2f32.sqrt()));
            let total = 10f32.powf(frame.loudness_db / 10.0);
            assert!(
                energy(&frame) > 0.7 * total && energy(&frame) > 4.0 * energy(&tritone),
                "step {step}, MIDI pitch {pitch}: {} of {total} in its partials, {} a tritone up",
                energy(&frame),
                energy(&tritone)
            );
            // Wren's voice is strongest at its fundamental: not an octave off.
            let strongest = frame.harmonics[1..].iter().copied().fold(0.0, f32::max);
            assert!(
                frame.harmonics[0] >= strongest,
                "step {step}, MIDI pitch {pitch}: the fundamental is not the strongest partial"
            );
            checked += 1;
        }
        assert!(checked >= 8, "only {checked} notes long enough to check");
        std::fs::remove_dir_all(&out).unwrap();
    }
}
