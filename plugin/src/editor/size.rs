//! The window's size, saved with each instance's state.

use std::sync::atomic::{AtomicU32, Ordering};

use serde::{Deserialize, Serialize};

/// The window's size when nobody has resized it, in logical pixels.
pub const DEFAULT_SIZE: (u32, u32) = (980, 680);
/// The smallest size the window may take.
pub const MIN_SIZE: (u32, u32) = (760, 560);
/// The largest size the window may take.
pub const MAX_SIZE: (u32, u32) = (3840, 2160);
/// The window's size in logical pixels, saved with the state.
#[derive(Debug)]
pub struct EditorSize {
    width: AtomicU32,
    height: AtomicU32,
}

impl Default for EditorSize {
    fn default() -> Self {
        EditorSize {
            width: AtomicU32::new(DEFAULT_SIZE.0),
            height: AtomicU32::new(DEFAULT_SIZE.1),
        }
    }
}

/// The saved form of [`EditorSize`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedSize {
    /// Width in logical pixels.
    pub width: u32,
    /// Height in logical pixels.
    pub height: u32,
}

impl EditorSize {
    /// The size, within [`MIN_SIZE`] and [`MAX_SIZE`].
    pub fn get(&self) -> SavedSize {
        SavedSize {
            width: self
                .width
                .load(Ordering::Relaxed)
                .clamp(MIN_SIZE.0, MAX_SIZE.0),
            height: self
                .height
                .load(Ordering::Relaxed)
                .clamp(MIN_SIZE.1, MAX_SIZE.1),
        }
    }

    /// Sets the size, brought within [`MIN_SIZE`] and [`MAX_SIZE`].
    pub fn set(&self, size: SavedSize) {
        self.width
            .store(size.width.clamp(MIN_SIZE.0, MAX_SIZE.0), Ordering::Relaxed);
        self.height
            .store(size.height.clamp(MIN_SIZE.1, MAX_SIZE.1), Ordering::Relaxed);
    }
}
