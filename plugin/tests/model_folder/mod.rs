//! Model folders for tests: ONNX files with the `manifest.json` that
//! describes them, as the pipeline writes them.

use std::path::Path;

use wren::model::files::{sha256_hex, MANIFEST};
use wren::model::manifest::{Manifest, ModelEntry};

/// Records `entry` in the manifest of `dir` (created if missing), with the
/// SHA-256 of `recorded`, in place of any entry for the same file.
pub fn describe(dir: &Path, mut entry: ModelEntry, recorded: &[u8]) {
    let path = dir.join(MANIFEST);
    let mut manifest = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| Manifest::from_json(&t).ok())
        .unwrap_or_default();
    entry.sha256 = sha256_hex(recorded);
    manifest.models.retain(|m| m.file != entry.file);
    manifest.upsert(entry);
    std::fs::write(&path, manifest.to_json()).unwrap();
}
