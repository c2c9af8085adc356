//! The symbolic side: tokens, data, the n-gram baseline and MIDI files.

pub mod dataset;
pub mod ngram;
pub mod smf;
pub mod tokens;
