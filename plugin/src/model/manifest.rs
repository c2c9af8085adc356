//! The model manifest: what each shipped file is, where it came from and how
//! good and how fast it measured.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Shape;

/// Everything recorded about one model file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelEntry {
    /// Short name, also the preset's reference (`melody-teacher`, ...).
    pub name: String,
    /// `melody` (the timbre network is another role).
    pub role: String,
    /// File name relative to the manifest's folder.
    pub file: String,
    /// Network sizes.
    pub shape: Shape,
    /// Number of weights and biases.
    pub parameters: usize,
    /// Bytes of the weights as stored.
    pub weight_bytes: usize,
    /// Bytes of the ONNX file.
    pub file_bytes: usize,
    /// How the model was compressed.
    pub compression: Compression,
    /// Name of the teacher it was distilled from, if any.
    pub teacher: Option<String>,
    /// The data it was trained on.
    pub data: DataRecord,
    /// The command that produced it.
    pub command: String,
    /// Training settings (seed, epochs, learning rate, ...).
    pub training: BTreeMap<String, String>,
    /// Measured quality (e.g. `test_nll`, `test_accuracy`).
    pub metrics: BTreeMap<String, f64>,
    /// SHA-256 of the ONNX file.
    pub sha256: String,
}

/// The compression applied to a model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Compression {
    /// `f32` or `int8`.
    pub precision: String,
    /// Whether it learned from a teacher's soft targets.
    pub distilled: bool,
    /// Share of weights that are zero.
    pub sparsity: f64,
    /// Rank of factorized matrices, if any.
    pub rank: Option<usize>,
}

/// Provenance of the training data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DataRecord {
    /// The dataset file, relative to the repository.
    pub file: String,
    /// Its SHA-256.
    pub sha256: String,
    /// Tunes per split.
    pub tunes: BTreeMap<String, usize>,
    /// Grid steps per split (before augmentation).
    pub steps: BTreeMap<String, usize>,
}

/// The manifest file: every model and the baseline's figures.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Models by file.
    pub models: Vec<ModelEntry>,
    /// Figures of the n-gram baseline and anything else measured beside the models.
    pub baselines: BTreeMap<String, BTreeMap<String, f64>>,
}

impl Manifest {
    /// Parses the manifest's JSON.
    pub fn from_json(text: &str) -> Result<Manifest, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// The JSON text, pretty-printed.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a manifest always serializes") + "\n"
    }

    /// The entry with this name.
    pub fn get(&self, name: &str) -> Option<&ModelEntry> {
        self.models.iter().find(|m| m.name == name)
    }

    /// Replaces the entry of the same name, or adds it.
    pub fn upsert(&mut self, entry: ModelEntry) {
        match self.models.iter_mut().find(|m| m.name == entry.name) {
            Some(slot) => *slot = entry,
            None => self.models.push(entry),
        }
    }
}
