//! The last bars of what Wren played, as a Standard MIDI file.
//!
//! Works on the monitor's note log (see [`crate::monitor`]): note-ons are
//! paired with their note-offs, notes still sounding end now, and the file
//! covers whole bars that end at the bar line after the last note.

use std::path::{Path, PathBuf};

use crate::melody::smf::{write_notes, TimedNote};
use crate::melody::tokens::Meter;
use crate::monitor::{played_notes, LoggedNote, PlayedNote, Source};

/// What to export.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ExportRequest {
    /// Bars to keep, counted back from the bar line after the last note.
    pub bars: u32,
    /// Also the notes that came in through MIDI (played by the host or the
    /// player), not only Wren's.
    pub include_played: bool,
    /// Beats per bar.
    pub bar_beats: f64,
    /// Tempo written into the file, beats per minute.
    pub tempo: f64,
    /// The timeline's time now (see [`LoggedNote::time`]): notes still
    /// sounding end here.
    pub now: f64,
}

/// A note in beats from the start of the exported bars.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BeatNote {
    /// Onset, beats from the first bar line.
    pub start: f64,
    /// Length in beats.
    pub length: f64,
    /// MIDI pitch.
    pub pitch: u8,
    /// MIDI velocity.
    pub velocity: u8,
}

/// Why nothing was exported.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The log holds no note of the kind asked for.
    #[error("nothing to export yet: press play and let Wren play a phrase first")]
    Empty,
    /// The file could not be written.
    #[error("could not write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// The last `bars` bars of the log: notes in beats from the first exported
/// bar line, cut at it. Errors when no note qualifies.
pub fn last_bars(
    log: &[LoggedNote],
    request: &ExportRequest,
) -> Result<Vec<BeatNote>, ExportError> {
    let notes: Vec<PlayedNote> = played_notes(log, request.now)
        .into_iter()
        .filter(|n| request.include_played || n.source == Source::Generated)
        .collect();
    let bar = request.bar_beats.max(0.25);
    // The bar line after the last note's end, found from the last onset's
    // place in its bar.
    let (onset, end, phase) = notes
        .iter()
        .map(|n| (n.start, n.end, n.bar_phase as f64))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .ok_or(ExportError::Empty)?;
    let first_bar_line = onset - phase;
    let bars_to_end = ((end - first_bar_line) / bar).ceil().max(1.0);
    let window_end = first_bar_line + bars_to_end * bar;
    let window_start = window_end - request.bars.max(1) as f64 * bar;
    let kept: Vec<BeatNote> = notes
        .iter()
        .filter(|n| n.end > window_start)
        .map(|n| {
            let start = n.start.max(window_start);
            BeatNote {
                start: start - window_start,
                length: (n.end - start).max(1.0 / 64.0),
                pitch: n.note,
                velocity: n.velocity,
            }
        })
        .collect();
    if kept.is_empty() {
        return Err(ExportError::Empty);
    }
    Ok(kept)
}

/// The Standard MIDI file of the last bars (see [`last_bars`]).
pub fn midi_file(log: &[LoggedNote], request: &ExportRequest) -> Result<Vec<u8>, ExportError> {
    let notes = last_bars(log, request)?;
    let seconds_per_beat = 60.0 / request.tempo.clamp(1.0, 999.0);
    let timed: Vec<TimedNote> = notes
        .iter()
        .map(|n| TimedNote {
            start: n.start * seconds_per_beat,
            length: n.length * seconds_per_beat,
            pitch: n.pitch,
            velocity: n.velocity,
        })
        .collect();
    let meter = Meter {
        bar_steps: (request.bar_beats * 4.0).round().clamp(1.0, 64.0) as u32,
    };
    Ok(write_notes(&timed, request.tempo, meter))
}

/// The first `wren-phrase-NNN.mid` in `folder` that does not exist yet.
pub fn next_file_name(folder: &Path) -> PathBuf {
    (1..)
        .map(|n| folder.join(format!("wren-phrase-{n:03}.mid")))
        .find(|path| !path.exists())
        .expect("some number is free")
}

/// Writes the last bars into a new file in `folder` (created if needed)
/// and returns its path.
pub fn save(
    log: &[LoggedNote],
    request: &ExportRequest,
    folder: &Path,
) -> Result<PathBuf, ExportError> {
    let bytes = midi_file(log, request)?;
    let write_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ExportError::Write { path, source }
    };
    std::fs::create_dir_all(folder).map_err(write_error(folder))?;
    let path = next_file_name(folder);
    std::fs::write(&path, bytes).map_err(write_error(&path))?;
    Ok(path)
}

/// Where exports go unless the user says otherwise: `$WREN_EXPORT_DIR` if
/// set, else `~/Music/Wren`, or the temporary folder without a home.
pub fn default_folder() -> PathBuf {
    if let Some(folder) = std::env::var_os("WREN_EXPORT_DIR").filter(|f| !f.is_empty()) {
        return PathBuf::from(folder);
    }
    std::env::var_os("HOME")
        .map(|home| PathBuf::from(home).join("Music").join("Wren"))
        .unwrap_or_else(|| std::env::temp_dir().join("Wren"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(time: f64, note: u8, velocity: u8, source: Source) -> LoggedNote {
        LoggedNote {
            time,
            bar_phase: (time % 4.0) as f32,
            note,
            velocity,
            source,
        }
    }

    /// A note each beat from beat 0 to beat 15 (four bars of 4/4), pitch
    /// 60 + beat, half a beat long; a played note at beat 2.
    fn four_bars() -> Vec<LoggedNote> {
        let mut log = Vec::new();
        for beat in 0..16 {
            let t = beat as f64;
            log.push(event(t, 60 + beat, 100, Source::Generated));
            log.push(event(t + 0.5, 60 + beat, 0, Source::Generated));
        }
        log.push(event(2.0, 40, 80, Source::Played));
        log.push(event(3.0, 40, 0, Source::Played));
        log.sort_by(|a, b| a.time.total_cmp(&b.time));
        log
    }

    fn request(bars: u32) -> ExportRequest {
        ExportRequest {
            bars,
            include_played: false,
            bar_beats: 4.0,
            tempo: 120.0,
            now: 16.0,
        }
    }

    #[test]
    fn the_last_bars_start_on_a_bar_line() {
        let log = four_bars();
        let notes = last_bars(&log, &request(2)).unwrap();
        assert_eq!(notes.len(), 8);
        assert_eq!(notes[0].start, 0.0);
        assert_eq!(notes[0].pitch, 68);
        assert_eq!(notes[7].start, 7.0);
        assert!(notes.iter().all(|n| n.length == 0.5));
        let all = last_bars(&log, &request(16)).unwrap();
        assert_eq!(all.len(), 16);
        assert_eq!(all[0].start, 48.0, "sixteen bars end at beat 16");
        let with_played = ExportRequest {
            include_played: true,
            ..request(4)
        };
        let notes = last_bars(&log, &with_played).unwrap();
        assert!(notes.iter().any(|n| n.pitch == 40 && n.start == 2.0));
    }

    #[test]
    fn a_sounding_note_ends_now_and_notes_across_the_start_are_cut() {
        let mut log = four_bars();
        log.push(event(16.0, 90, 110, Source::Generated));
        log.push(event(14.5, 50, 70, Source::Generated));
        log.push(event(17.0, 50, 0, Source::Generated));
        let notes = last_bars(
            &log,
            &ExportRequest {
                now: 18.0,
                ..request(1)
            },
        )
        .unwrap();
        // The window is the bar from beat 16 to 20.
        let held = notes.iter().find(|n| n.pitch == 90).unwrap();
        assert_eq!((held.start, held.length), (0.0, 2.0));
        let across = notes.iter().find(|n| n.pitch == 50).unwrap();
        assert_eq!((across.start, across.length), (0.0, 1.0));
    }

    #[test]
    fn the_file_reads_back_with_its_notes_tempo_and_meter() {
        let log = four_bars();
        let bytes = midi_file(&log, &request(4)).unwrap();
        let ons = crate::melody::smf::note_on_pitches(&bytes).unwrap();
        assert_eq!(ons, (60..76).collect::<Vec<u8>>());
        let melody = crate::melody::smf::read_melody(&bytes).unwrap();
        assert_eq!(melody.meter.bar_steps, 16);
    }

    #[test]
    fn nothing_to_export_is_an_error_and_files_get_new_names() {
        assert!(matches!(
            midi_file(&[], &request(4)),
            Err(ExportError::Empty)
        ));
        let played_only = [event(0.0, 60, 90, Source::Played)];
        assert!(matches!(
            last_bars(&played_only, &request(4)),
            Err(ExportError::Empty)
        ));
        let folder = std::env::temp_dir().join(format!("wren-export-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&folder);
        let log = four_bars();
        let first = save(&log, &request(2), &folder).unwrap();
        let second = save(&log, &request(2), &folder).unwrap();
        assert_eq!(first.file_name().unwrap(), "wren-phrase-001.mid");
        assert_eq!(second.file_name().unwrap(), "wren-phrase-002.mid");
        assert_eq!(
            std::fs::read(&first).unwrap(),
            std::fs::read(&second).unwrap()
        );
        let blocked = folder.join("wren-phrase-001.mid").join("inside");
        assert!(matches!(
            save(&log, &request(2), &blocked),
            Err(ExportError::Write { .. })
        ));
        std::fs::remove_dir_all(&folder).unwrap();
    }
}
