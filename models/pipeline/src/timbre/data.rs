//! Notes of real instruments, rendered from a sampled General MIDI soundfont
//! (FluidR3_GM, MIT licence, from Debian's `fluid-soundfont-gm`).
//!
//! Per instrument: every pitch of its range at several velocities and
//! lengths, and legato phrases from the melody dataset so that transitions
//! between notes are heard. Every sixth pitch and one velocity are held out
//! for the test split: training never hears them.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use rustysynth::{SoundFont, Synthesizer, SynthesizerSettings};
use wren::melody::dataset::{Split, Tune};
use wren::melody::tokens::Token;
pub use wren::timbre::Control;

use super::analysis::{Analyzer, Frame, HOP, SAMPLE_RATE};

/// Where Debian's `fluid-soundfont-gm` puts the soundfont.
pub const SOUNDFONT: &str = "/usr/share/sounds/sf2/FluidR3_GM.sf2";

/// An instrument of the soundfont and the range it plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Instrument {
    /// Short name, also used in model names.
    pub name: &'static str,
    /// General MIDI program (zero-based).
    pub program: u8,
    /// Lowest MIDI pitch rendered.
    pub low: u8,
    /// Highest MIDI pitch rendered.
    pub high: u8,
}

/// Three families: woodwind, bowed string, brass.
pub const INSTRUMENTS: [Instrument; 3] = [
    Instrument {
        name: "flute",
        program: 73,
        low: 60,
        high: 96,
    },
    Instrument {
        name: "violin",
        program: 40,
        low: 55,
        high: 96,
    },
    Instrument {
        name: "trumpet",
        program: 56,
        low: 54,
        high: 82,
    },
];

/// The instrument with this name.
pub fn instrument(name: &str) -> Option<Instrument> {
    INSTRUMENTS.iter().copied().find(|i| i.name == name)
}

/// The instrument with this name, or an error naming those there are.
pub fn named(name: &str) -> Result<Instrument> {
    instrument(name).with_context(|| {
        let names: Vec<&str> = INSTRUMENTS.iter().map(|i| i.name).collect();
        format!("no instrument {name:?}: there are {}", names.join(", "))
    })
}

/// The fewest semitones of its range: an octave, so that every split has
/// pitches of its own.
pub const OWN_MIN_SPAN: u8 = 12;

/// An instrument of one's own: `slot`'s network (the instrument it plays
/// as in Wren), trained on another program of the soundfont and over
/// another range where given.
pub fn own_instrument(
    slot: &str,
    program: Option<u8>,
    range: Option<(u8, u8)>,
) -> Result<Instrument> {
    let mut instrument = named(slot)?;
    if let Some(program) = program {
        anyhow::ensure!(program < 128, "program {program}: programs run 0 to 127");
        instrument.program = program;
    }
    if let Some((low, high)) = range {
        let lowest = super::analysis::lowest_pitch();
        anyhow::ensure!(
            low >= lowest && high <= 127,
            "range {low}-{high}: the analysis parts harmonics from pitch {lowest} up, \
             and pitches end at 127"
        );
        anyhow::ensure!(
            high >= low + OWN_MIN_SPAN,
            "range {low}-{high}: give at least an octave, so that notes can be held out to test it"
        );
        (instrument.low, instrument.high) = (low, high);
    }
    Ok(instrument)
}

/// The name of the soundfont's preset at `program` of bank 0 (the bank
/// rendered), or an error listing the presets the soundfont has.
pub fn preset_name(font: &SoundFont, path: &Path, program: u8) -> Result<String> {
    let presets = font.get_presets();
    if let Some(preset) = presets
        .iter()
        .find(|p| p.get_bank_number() == 0 && p.get_patch_number() == program as i32)
    {
        return Ok(preset.get_name().trim().to_string());
    }
    let mut offered: Vec<(i32, &str)> = presets
        .iter()
        .filter(|p| p.get_bank_number() == 0)
        .map(|p| (p.get_patch_number(), p.get_name().trim()))
        .collect();
    offered.sort();
    let listed: Vec<String> = offered
        .iter()
        .map(|(n, name)| format!("{n} {name}"))
        .collect();
    let others = presets.len() - offered.len();
    anyhow::bail!(
        "{} has no program {program} in bank 0, the bank Wren renders; bank 0 has {}{}",
        path.display(),
        if listed.is_empty() {
            "none".to_string()
        } else {
            listed.join(", ")
        },
        if others > 0 {
            format!("; {others} presets lie in other banks (move one to bank 0 to use it)")
        } else {
            String::new()
        }
    )
}

/// What a manifest says an instrument's network was trained on.
pub fn describe(font: &SoundFont, path: &Path, instrument: &Instrument) -> Result<String> {
    let preset = preset_name(font, path, instrument.program)?;
    let file = path
        .file_name()
        .unwrap_or(path.as_os_str())
        .to_string_lossy();
    Ok(format!(
        "{} (program {} {preset} of {file}, pitches {}-{})",
        instrument.name, instrument.program, instrument.low, instrument.high
    ))
}

/// Velocities of the training notes.
pub const TRAIN_VELOCITIES: [u8; 4] = [30, 60, 85, 120];
/// A velocity only the test split has.
pub const HELD_OUT_VELOCITY: u8 = 100;
/// How long single notes are held, in seconds.
pub const LENGTHS: [f32; 3] = [0.15, 0.5, 1.2];
/// Silence rendered after the last note-off, for the release.
pub const RELEASE_TAIL: f32 = 0.5;
/// Tempo of the legato phrases, one 16th = 0.15 s.
const PHRASE_STEP_SECONDS: f32 = 0.15;
/// How much a phrase note overlaps the next one (legato), in seconds.
const LEGATO_OVERLAP: f32 = 0.03;
/// Phrase length in grid steps (four bars of 4/4).
const PHRASE_STEPS: usize = 64;

/// The split of a pitch: every sixth is test-only, the one after the
/// neighbour below it valid-only.
pub fn pitch_split(pitch: u8) -> Split {
    match pitch % 6 {
        3 => Split::Test,
        0 => Split::Valid,
        _ => Split::Train,
    }
}

/// One note of a take.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Note {
    /// Note-on time in seconds from the take's start.
    pub start: f32,
    /// MIDI pitch.
    pub pitch: u8,
    /// MIDI velocity.
    pub velocity: u8,
    /// Seconds until the note-off.
    pub length: f32,
}

/// What a take holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TakeKind {
    /// One note and its release.
    Single,
    /// A legato phrase from a tune.
    Phrase,
}

/// A planned recording: notes for one instrument.
#[derive(Clone, Debug, PartialEq)]
pub struct Take {
    /// The split it belongs to.
    pub split: Split,
    /// What it holds.
    pub kind: TakeKind,
    /// Its notes, in time order.
    pub notes: Vec<Note>,
}

impl Take {
    /// A single note starting 50 ms into the take.
    pub fn single(split: Split, pitch: u8, velocity: u8, length: f32) -> Take {
        Take {
            split,
            kind: TakeKind::Single,
            notes: vec![Note {
                start: 0.05,
                pitch,
                velocity,
                length,
            }],
        }
    }

    /// Length in seconds, release tail included.
    pub fn seconds(&self) -> f32 {
        self.notes
            .iter()
            .map(|n| n.start + n.length)
            .fold(0.0, f32::max)
            + RELEASE_TAIL
    }
}

/// Every take of an instrument: single notes over its range, then up to
/// `train_phrases` phrases from the training tunes and a quarter as many from
/// the tunes of each held-out split.
pub fn plan(instrument: &Instrument, tunes: &[Tune], train_phrases: usize) -> Vec<Take> {
    let mut takes = Vec::new();
    let velocities = TRAIN_VELOCITIES.iter().chain([&HELD_OUT_VELOCITY]);
    for pitch in instrument.low..=instrument.high {
        for &velocity in velocities.clone() {
            for length in LENGTHS {
                let split = if velocity == HELD_OUT_VELOCITY {
                    Split::Test
                } else {
                    pitch_split(pitch)
                };
                takes.push(Take::single(split, pitch, velocity, length));
            }
        }
    }
    for split in [Split::Train, Split::Valid, Split::Test] {
        let count = match split {
            Split::Train => train_phrases,
            _ => train_phrases.div_ceil(4),
        };
        let phrases = tunes
            .iter()
            .filter(|t| t.split == split)
            .filter_map(|t| phrase(instrument, &t.melody.tokens, split))
            .take(count);
        takes.extend(phrases);
    }
    takes
}

/// The first bars of a melody as a legato phrase in the instrument's range,
/// or `None` if it has too few notes. Training phrases move held-out pitches
/// up a semitone, so training never hears them.
fn phrase(instrument: &Instrument, tokens: &[Token], split: Split) -> Option<Take> {
    let mut notes: Vec<Note> = Vec::new();
    let mut sounding = false;
    for (step, token) in tokens.iter().take(PHRASE_STEPS).enumerate() {
        let time = 0.05 + step as f32 * PHRASE_STEP_SECONDS;
        match token {
            Token::Note(pitch) => {
                if let Some(last) = notes.last_mut().filter(|_| sounding) {
                    last.length = time - last.start + LEGATO_OVERLAP;
                }
                let velocity = if step % 4 == 0 { 85 } else { 60 };
                notes.push(Note {
                    start: time,
                    pitch: *pitch,
                    velocity,
                    length: 0.0,
                });
                sounding = true;
            }
            Token::Rest => {
                if let Some(last) = notes.last_mut().filter(|_| sounding) {
                    last.length = time - last.start;
                }
                sounding = false;
            }
            Token::Hold => {}
        }
    }
    if let Some(last) = notes.last_mut().filter(|_| sounding) {
        let end = 0.05 + tokens.len().min(PHRASE_STEPS) as f32 * PHRASE_STEP_SECONDS;
        last.length = end - last.start;
    }
    if notes.len() < 8 {
        return None;
    }
    // Octaves that centre the phrase in the instrument's range.
    let (low, high) = notes
        .iter()
        .fold((u8::MAX, 0), |(l, h), n| (l.min(n.pitch), h.max(n.pitch)));
    let middle = (instrument.low as i32 + instrument.high as i32) / 2;
    let shift = 12 * ((middle - (low as i32 + high as i32) / 2) as f32 / 12.0).round() as i32;
    for note in &mut notes {
        let mut pitch =
            (note.pitch as i32 + shift).clamp(instrument.low as i32, instrument.high as i32);
        if split == Split::Train && pitch_split(pitch as u8) != Split::Train {
            pitch = if pitch < instrument.high as i32 {
                pitch + 1
            } else {
                pitch - 1
            };
        }
        note.pitch = pitch as u8;
    }
    Some(Take {
        split,
        kind: TakeKind::Phrase,
        notes,
    })
}

/// Loads the soundfont.
pub fn load_soundfont(path: &Path) -> Result<Arc<SoundFont>> {
    let mut file = std::fs::File::open(path).with_context(|| {
        format!(
            "cannot open the soundfont {} (scripts/setup.sh installs fluid-soundfont-gm)",
            path.display()
        )
    })?;
    let font = SoundFont::new(&mut file)
        .map_err(|e| anyhow::anyhow!("cannot read the soundfont {}: {e:?}", path.display()))?;
    Ok(Arc::new(font))
}

/// Renders a take, dry (no reverb or chorus), mono, at [`SAMPLE_RATE`].
pub fn render(font: &Arc<SoundFont>, program: u8, take: &Take) -> Result<Vec<f32>> {
    let mut settings = SynthesizerSettings::new(SAMPLE_RATE as i32);
    settings.enable_reverb_and_chorus = false;
    let mut synth = Synthesizer::new(font, &settings)
        .map_err(|e| anyhow::anyhow!("cannot start the soundfont synthesizer: {e:?}"))?;
    synth.process_midi_message(0, 0xC0, program as i32, 0);
    // Note events at their sample, offs before ons at the same sample.
    let at = |seconds: f32| (seconds * SAMPLE_RATE).round() as usize;
    let mut events: Vec<(usize, bool, &Note)> = take
        .notes
        .iter()
        .flat_map(|n| [(at(n.start), true, n), (at(n.start + n.length), false, n)])
        .collect();
    events.sort_by_key(|(sample, on, _)| (*sample, *on));
    let total = at(take.seconds());
    let (mut left, mut right) = (vec![0.0f32; total], vec![0.0f32; total]);
    let mut cursor = 0;
    for (sample, on, note) in events {
        let sample = sample.min(total);
        if sample > cursor {
            synth.render(&mut left[cursor..sample], &mut right[cursor..sample]);
            cursor = sample;
        }
        if on {
            synth.note_on(0, note.pitch as i32, note.velocity as i32);
        } else {
            synth.note_off(0, note.pitch as i32);
        }
    }
    if total > cursor {
        synth.render(&mut left[cursor..], &mut right[cursor..]);
    }
    Ok(left
        .iter()
        .zip(&right)
        .map(|(l, r)| 0.5 * (l + r))
        .collect())
}

/// The control of every frame of a take, and its fundamental (`None` before
/// the first note).
pub fn controls(take: &Take, frames: usize) -> Vec<Option<Control>> {
    (0..frames)
        .map(|k| {
            let t = (k * HOP) as f32 / SAMPLE_RATE;
            let note = take.notes.iter().rev().find(|n| n.start <= t)?;
            let off = note.start + note.length;
            let gate = t < off;
            Some(Control {
                pitch: note.pitch as f32,
                velocity: note.velocity as f32 / 127.0,
                gate,
                since_on: t - note.start,
                since_off: if gate { 0.0 } else { t - off },
            })
        })
        .collect()
}

pub use wren::timbre::pitch_hz as midi_hz;

/// A rendered and analysed take.
pub struct Recording {
    /// The plan it was made from.
    pub take: Take,
    /// The soundfont's audio.
    pub audio: Vec<f32>,
    /// Per frame: what the MIDI says.
    pub controls: Vec<Option<Control>>,
    /// Per frame: the analysis.
    pub frames: Vec<Frame>,
}

/// Renders and analyses one take.
pub fn record(
    font: &Arc<SoundFont>,
    instrument: &Instrument,
    take: Take,
    analyzer: &mut Analyzer,
) -> Result<Recording> {
    let audio = render(font, instrument.program, &take)?;
    let controls = controls(&take, Analyzer::frames_for(audio.len()));
    let frames = analyzer.analyze(&audio, |k| controls[k].map(|c| midi_hz(c.pitch)));
    Ok(Recording {
        take,
        audio,
        controls,
        frames,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instrument_of_ones_own_takes_a_slot_a_program_and_a_range() {
        let cello = own_instrument("violin", Some(42), Some((43, 67))).unwrap();
        assert_eq!((cello.name, cello.program), ("violin", 42));
        assert_eq!((cello.low, cello.high), (43, 67));
        let flute = own_instrument("flute", None, None).unwrap();
        assert_eq!(flute, INSTRUMENTS[0]);
        let refused = |slot: &str, program: Option<u8>, range: Option<(u8, u8)>| {
            own_instrument(slot, program, range)
                .unwrap_err()
                .to_string()
        };
        assert!(refused("cello", None, None).contains("flute, violin, trumpet"));
        assert!(refused("violin", Some(128), None).contains("0 to 127"));
        assert!(refused("violin", None, Some((50, 55))).contains("an octave"));
        assert!(refused("violin", None, Some((30, 60))).contains("from pitch 43"));
        assert!(refused("violin", None, Some((60, 130))).contains("127"));
        // Every split keeps pitches of its own over the shortest range.
        let splits: Vec<Split> = (43..=55).map(pitch_split).collect();
        for split in [Split::Train, Split::Valid, Split::Test] {
            assert!(splits.contains(&split));
        }
    }
}
