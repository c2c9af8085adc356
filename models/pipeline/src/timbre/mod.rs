//! The timbre model's data: notes rendered from a sampled soundfont and
//! their harmonic-plus-noise analysis.

pub mod analysis;
pub mod data;
pub mod pipeline;
pub mod quality;
pub mod train;

use std::collections::BTreeMap;

use wren::melody::dataset::Split;

use data::{Recording, TakeKind};

/// Counts of a set of recordings, per split.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Summary {
    /// Single-note takes per split.
    pub notes: BTreeMap<String, usize>,
    /// Phrase takes per split.
    pub phrases: BTreeMap<String, usize>,
    /// Seconds of audio per split.
    pub seconds: BTreeMap<String, f64>,
    /// Analysed frames per split.
    pub frames: BTreeMap<String, usize>,
}

/// The name of a split as the summaries write it.
pub fn split_name(split: Split) -> &'static str {
    match split {
        Split::Train => "train",
        Split::Valid => "valid",
        Split::Test => "test",
    }
}

impl Summary {
    /// Adds one recording.
    pub fn add(&mut self, recording: &Recording) {
        let split = split_name(recording.take.split).to_string();
        let kind = match recording.take.kind {
            TakeKind::Single => &mut self.notes,
            TakeKind::Phrase => &mut self.phrases,
        };
        *kind.entry(split.clone()).or_default() += 1;
        *self.seconds.entry(split.clone()).or_default() +=
            recording.audio.len() as f64 / analysis::SAMPLE_RATE as f64;
        *self.frames.entry(split).or_default() += recording.frames.len();
    }
}
