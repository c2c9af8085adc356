//! Wren's window: presets against the buffer's budget, the controls, a
//! piano roll of what sounds, the models and their status, MIDI export.
//!
//! GUI thread only. The editor reads the parameters (atomics), the
//! [`Monitor`](crate::monitor::Monitor) the audio thread publishes (atomics
//! and a lock-free note log) and the
//! [`ModelLibrary`](crate::engine::library::ModelLibrary) (its own lock,
//! never taken by the audio thread); it changes parameters through the
//! host, so that automation and undo see every change. Each instance has its
//! own editor and size; the size is saved with the state. The window is
//! built with the `editor` feature (on by default); the size always is, so
//! a state saved with or without it keeps the same fields.

#[cfg(feature = "editor")]
mod roll;
mod size;
#[cfg(feature = "editor")]
mod window;

pub use size::{EditorSize, SavedSize, DEFAULT_SIZE, MAX_SIZE, MIN_SIZE};
#[cfg(feature = "editor")]
pub use window::*;
