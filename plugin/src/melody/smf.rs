//! Reading melodies from Standard MIDI files and writing generated notes.
//!
//! A track's melody is its top line: at every grid step the highest note
//! that starts there or still sounds, once the notes are quantized to 16ths.

use midly::{Format, Header, MetaMessage, MidiMessage, Smf, Timing, TrackEvent, TrackEventKind};

use super::tokens::{fold_into_range, Melody, Meter, Token};

/// Errors reading a MIDI file.
#[derive(Debug, thiserror::Error)]
pub enum SmfError {
    /// Not a Standard MIDI file, or a damaged one.
    #[error("not a readable Standard MIDI file: {0}")]
    Parse(#[from] midly::Error),
    /// SMPTE timing has no beats to put on a grid.
    #[error("MIDI files with SMPTE timing are not supported")]
    Smpte,
    /// No track holds a note.
    #[error("the MIDI file holds no notes")]
    NoNotes,
}

/// A note with start and end in grid steps.
#[derive(Clone, Copy, Debug, PartialEq)]
struct GridNote {
    start: u64,
    end: u64,
    pitch: u8,
}

/// Reads the top line of the track with the most notes.
pub fn read_melody(bytes: &[u8]) -> Result<Melody, SmfError> {
    let smf = Smf::parse(bytes)?;
    let ticks_per_quarter = match smf.header.timing {
        Timing::Metrical(t) => t.as_int().max(1) as u64,
        Timing::Timecode(..) => return Err(SmfError::Smpte),
    };
    let meter = smf
        .tracks
        .iter()
        .flat_map(|t| t.iter())
        .find_map(|e| match e.kind {
            TrackEventKind::Meta(MetaMessage::TimeSignature(num, den_pow, _, _)) => {
                Some(Meter::from_signature(num as u32, 1u32 << den_pow.min(4)))
            }
            _ => None,
        })
        .unwrap_or_default();
    let notes = smf
        .tracks
        .iter()
        .map(|t| track_notes(t, ticks_per_quarter))
        .max_by_key(|n| n.len())
        .filter(|n| !n.is_empty())
        .ok_or(SmfError::NoNotes)?;
    Ok(top_line(&notes, meter))
}

fn track_notes(track: &[TrackEvent], ticks_per_quarter: u64) -> Vec<GridNote> {
    let to_step = |tick: u64| (tick * 4 + ticks_per_quarter / 2) / ticks_per_quarter;
    let mut sounding: [Option<u64>; 128] = [None; 128];
    let mut notes = Vec::new();
    let mut tick = 0u64;
    for event in track {
        tick += event.delta.as_int() as u64;
        let TrackEventKind::Midi { message, .. } = event.kind else {
            continue;
        };
        let (key, on) = match message {
            MidiMessage::NoteOn { key, vel } => (key.as_int(), vel.as_int() > 0),
            MidiMessage::NoteOff { key, .. } => (key.as_int(), false),
            _ => continue,
        };
        if let Some(start) = sounding[key as usize].take() {
            let (start, end) = (to_step(start), to_step(tick));
            notes.push(GridNote {
                start,
                end: end.max(start + 1),
                pitch: key,
            });
        }
        if on {
            sounding[key as usize] = Some(tick);
        }
    }
    notes.sort_by_key(|n| (n.start, std::cmp::Reverse(n.pitch)));
    notes
}

fn top_line(notes: &[GridNote], meter: Meter) -> Melody {
    let first = notes.iter().map(|n| n.start).min().unwrap_or(0);
    let last = notes.iter().map(|n| n.end).max().unwrap_or(0);
    let mut tokens = Vec::with_capacity((last - first) as usize);
    let mut current: Option<GridNote> = None;
    for step in first..last {
        let starting = notes
            .iter()
            .filter(|n| n.start == step)
            .map(|n| n.pitch)
            .max();
        let still = current.filter(|n| n.end > step);
        let token = match (starting, still) {
            (Some(p), Some(s)) if p < s.pitch => Token::Hold,
            (Some(p), _) => {
                current = notes
                    .iter()
                    .find(|n| n.start == step && n.pitch == p)
                    .copied();
                Token::Note(fold_into_range(p))
            }
            (None, Some(_)) => Token::Hold,
            (None, None) => {
                let was_rest = current.is_none();
                current = None;
                if was_rest && !tokens.is_empty() {
                    Token::Hold
                } else {
                    Token::Rest
                }
            }
        };
        tokens.push(token);
    }
    let first_step_in_bar = (first % meter.bar_steps as u64) as u32;
    Melody {
        meter,
        first_step_in_bar,
        tokens,
    }
}

/// The pitches of a file's note-ons (velocity above 0), track by track,
/// in file order.
pub fn note_on_pitches(bytes: &[u8]) -> Result<Vec<u8>, SmfError> {
    let smf = Smf::parse(bytes)?;
    Ok(smf
        .tracks
        .iter()
        .flatten()
        .filter_map(|event| match event.kind {
            TrackEventKind::Midi {
                message: MidiMessage::NoteOn { key, vel },
                ..
            } if vel > 0 => Some(key.as_int()),
            _ => None,
        })
        .collect())
}

/// A note to write: start and length in seconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TimedNote {
    /// Onset in seconds from the start.
    pub start: f64,
    /// Length in seconds.
    pub length: f64,
    /// MIDI pitch.
    pub pitch: u8,
    /// MIDI velocity, 1 to 127.
    pub velocity: u8,
}

/// Writes notes as a one-track Standard MIDI file at a fixed tempo.
pub fn write_notes(notes: &[TimedNote], bpm: f64, meter: Meter) -> Vec<u8> {
    const PPQ: u16 = 480;
    let seconds_to_tick = |s: f64| (s * bpm / 60.0 * PPQ as f64).round().max(0.0) as u64;
    let mut events: Vec<(u64, u8, bool, u8)> = Vec::new();
    for n in notes {
        let on = seconds_to_tick(n.start);
        let off = seconds_to_tick(n.start + n.length).max(on + 1);
        events.push((on, n.pitch, true, n.velocity.clamp(1, 127)));
        events.push((off, n.pitch, false, 0));
    }
    events.sort_by_key(|e| (e.0, e.2));
    let tempo = (60_000_000.0 / bpm.max(1.0)).round() as u32;
    let (num, den_pow) = signature_of(meter);
    let mut track = vec![
        meta(0, MetaMessage::Tempo(tempo.min(0xFF_FFFF).into())),
        meta(0, MetaMessage::TimeSignature(num, den_pow, 24, 8)),
    ];
    let mut last = 0;
    for (tick, pitch, on, vel) in events {
        let message = if on {
            MidiMessage::NoteOn {
                key: pitch.into(),
                vel: vel.into(),
            }
        } else {
            MidiMessage::NoteOff {
                key: pitch.into(),
                vel: 64.into(),
            }
        };
        let delta = ((tick - last) as u32).into();
        track.push(TrackEvent {
            delta,
            kind: TrackEventKind::Midi {
                channel: 0.into(),
                message,
            },
        });
        last = tick;
    }
    track.push(meta(0, MetaMessage::EndOfTrack));
    let smf = Smf {
        header: Header::new(Format::SingleTrack, Timing::Metrical(PPQ.into())),
        tracks: vec![track],
    };
    let mut out = Vec::new();
    smf.write_std(&mut out)
        .expect("writing to a Vec cannot fail");
    out
}

fn meta(delta: u32, message: MetaMessage<'static>) -> TrackEvent<'static> {
    TrackEvent {
        delta: delta.into(),
        kind: TrackEventKind::Meta(message),
    }
}

fn signature_of(meter: Meter) -> (u8, u8) {
    match meter.bar_steps {
        12 => (6, 3),
        24 => (12, 3),
        s if s % 4 == 0 => ((s / 4) as u8, 2),
        s => (s as u8, 4),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_notes_read_back_as_top_line() {
        let beat = 0.5; // one quarter at 120 BPM
        let notes = [
            TimedNote {
                start: 0.0,
                length: beat,
                pitch: 60,
                velocity: 100,
            },
            TimedNote {
                start: 0.0,
                length: beat,
                pitch: 55,
                velocity: 100,
            },
            TimedNote {
                start: beat,
                length: beat / 2.0,
                pitch: 64,
                velocity: 100,
            },
            TimedNote {
                start: 2.0 * beat,
                length: beat / 4.0,
                pitch: 67,
                velocity: 100,
            },
        ];
        let bytes = write_notes(&notes, 120.0, Meter::default());
        let melody = read_melody(&bytes).unwrap();
        use Token::*;
        assert_eq!(
            melody.tokens,
            vec![
                Note(60),
                Hold,
                Hold,
                Hold,
                Note(64),
                Hold,
                Rest,
                Hold,
                Note(67)
            ]
        );
        assert_eq!(melody.meter, Meter::default());
    }

    #[test]
    fn garbage_is_a_clear_error() {
        assert!(matches!(read_melody(b"not midi"), Err(SmfError::Parse(_))));
        let empty = write_notes(&[], 120.0, Meter::default());
        assert!(matches!(read_melody(&empty), Err(SmfError::NoNotes)));
    }
}
