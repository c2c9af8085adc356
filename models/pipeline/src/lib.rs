//! Wren's offline model pipeline: from the melody dataset to shipped,
//! measured, compressed step models.

pub mod batches;
pub mod compress;
pub mod export;
pub mod melody;
pub mod net;
pub mod progress;
pub mod requantize;
pub mod search;
pub mod timbre;
pub mod train;
