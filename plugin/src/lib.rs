//! Wren: a neural melody instrument.
//!
//! A small recurrent network, compressed to fit the audio buffer's time
//! budget, generates melodies on a 16th-note grid in time with the host and
//! plays them. The crate has three rooms:
//!
//! - [`melody`] and [`model`]: data, tokens, step models, ONNX and kernels;
//!   usable anywhere, no threads of their own.
//! - [`engine`]: the host-free instrument. `engine::audio` runs on the audio
//!   thread, `engine::inference` on the inference thread; both are real-time
//!   safe. Loading happens off both.
//! - the plugin wrapper (nice-plug: VST3, CLAP, standalone).

pub mod melody;
pub mod model;
