//! The melody dataset: tunes extracted from public-domain collections.
//!
//! The file is gzip-compressed text, one tune per line:
//! `source<TAB>title<TAB>bar_steps<TAB>pickup_steps<TAB>pitch:steps ...`, with
//! `r` for a rest. `models/pipeline/melody_data.py` writes it.

use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::tokens::{Melody, Meter};

/// Which part of the data a tune belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Split {
    /// Fitting the weights.
    Train,
    /// Choosing hyper-parameters and early stopping.
    Valid,
    /// Touched only for the final figures.
    Test,
}

/// One tune of the dataset.
#[derive(Clone, Debug)]
pub struct Tune {
    /// The collection it came from.
    pub source: String,
    /// Its title in the collection.
    pub title: String,
    /// Its melody on the grid.
    pub melody: Melody,
    /// Its split, fixed by a seeded hash of its content.
    pub split: Split,
}

/// Errors reading the dataset.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// The file could not be read or decompressed.
    #[error("cannot read melody dataset {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A line does not follow the format.
    #[error("melody dataset line {line}: {reason}")]
    Format {
        /// One-based line number.
        line: usize,
        /// What is wrong.
        reason: &'static str,
    },
}

/// The seed of the train/valid/test split.
pub const SPLIT_SEED: &str = "wren-split-v1";

/// Reads every tune of a `.tsv.gz` dataset file.
pub fn read_dataset(path: &Path) -> Result<Vec<Tune>, DatasetError> {
    let io = |source| DatasetError::Io {
        path: path.display().to_string(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut text = String::new();
    flate2::read::GzDecoder::new(file)
        .read_to_string(&mut text)
        .map_err(io)?;
    parse_dataset(&text)
}

/// Parses the decompressed text of a dataset.
pub fn parse_dataset(text: &str) -> Result<Vec<Tune>, DatasetError> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            parse_line(l).map_err(|reason| DatasetError::Format {
                line: i + 1,
                reason,
            })
        })
        .collect()
}

fn parse_line(line: &str) -> Result<Tune, &'static str> {
    let fields: Vec<&str> = line.split('\t').collect();
    let [source, title, bar_steps, pickup, events] = fields[..] else {
        return Err("expected five tab-separated fields");
    };
    let bar_steps: u32 = bar_steps.parse().map_err(|_| "bad bar length")?;
    let pickup: u32 = pickup.parse().map_err(|_| "bad pickup length")?;
    if bar_steps == 0 || bar_steps > 64 || pickup >= bar_steps.max(1) {
        return Err("bar length or pickup out of range");
    }
    let mut parsed = Vec::new();
    for event in events.split_whitespace() {
        let (pitch, steps) = event.split_once(':').ok_or("event without ':'")?;
        let steps: u32 = steps.parse().map_err(|_| "bad duration")?;
        let pitch = match pitch {
            "r" => None,
            p => Some(
                p.parse::<u8>()
                    .ok()
                    .filter(|p| *p < 128)
                    .ok_or("bad pitch")?,
            ),
        };
        parsed.push((pitch, steps));
    }
    let first_step_in_bar = (bar_steps - pickup) % bar_steps;
    let melody = Melody::from_events(Meter { bar_steps }, first_step_in_bar, &parsed);
    Ok(Tune {
        source: source.to_string(),
        title: title.to_string(),
        melody,
        split: split_of(line),
    })
}

fn split_of(line: &str) -> Split {
    let digest = Sha256::new()
        .chain_update(SPLIT_SEED)
        .chain_update(line)
        .finalize();
    match digest[0] as u32 * 100 / 256 {
        0..=79 => Split::Train,
        80..=89 => Split::Valid,
        _ => Split::Test,
    }
}

/// SHA-256 of a file, as lowercase hex.
pub fn file_sha256(path: &Path) -> std::io::Result<String> {
    Ok(crate::model::files::sha256_hex(&std::fs::read(path)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::melody::tokens::Token;

    #[test]
    fn line_parses_into_grid_melody() {
        let tunes = parse_dataset("oneills1850\tA Reel\t16\t2\t62:1 64:1 r:2 66:4\n").unwrap();
        let m = &tunes[0].melody;
        assert_eq!(m.meter.bar_steps, 16);
        assert_eq!(m.first_step_in_bar, 14);
        assert_eq!(
            m.tokens[..3],
            [Token::Note(62), Token::Note(64), Token::Rest]
        );
        assert_eq!(m.tokens.len(), 8);
    }

    #[test]
    fn malformed_lines_are_refused_with_line_number() {
        let err = parse_dataset("a\tb\t16\t0\t60:1\nbroken line\n").unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
        assert!(parse_dataset("a\tb\t0\t0\t60:1").is_err());
        assert!(parse_dataset("a\tb\t16\t0\t200:1").is_err());
    }

    #[test]
    fn split_is_a_fixed_function_of_content() {
        let line = "bach\tChorale\t16\t0\t60:4 62:4";
        assert_eq!(split_of(line), split_of(line));
        let splits: Vec<Split> = (0..1000).map(|i| split_of(&format!("x{i}"))).collect();
        let train = splits.iter().filter(|s| **s == Split::Train).count();
        assert!((700..900).contains(&train), "{train}");
    }
}
