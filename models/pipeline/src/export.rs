//! What every pipeline writes: ONNX files with their manifest entries,
//! golden outputs, cached stage checkpoints, and the manifest itself.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use wren::melody::dataset::file_sha256;
use wren::model::manifest::{Compression, DataRecord, Manifest, ModelEntry};
use wren::model::{onnx, GruNet};

use crate::train::Trained;

/// Everything about a model to ship besides its weights.
pub struct Shipping<'a> {
    /// Name, also the file's stem.
    pub name: &'a str,
    /// `melody` or `timbre`.
    pub role: &'a str,
    /// The teacher it learned from, if any.
    pub teacher: Option<&'a str>,
    /// The data it learned from.
    pub data: &'a DataRecord,
    /// The command that produced it.
    pub command: &'a str,
    /// Training settings.
    pub training: BTreeMap<String, String>,
    /// Measured quality.
    pub metrics: BTreeMap<String, f64>,
}

/// Writes `<out_dir>/<name>.onnx` and returns its manifest entry.
pub fn write_model(out_dir: &Path, net: &GruNet, shipping: Shipping) -> Result<ModelEntry> {
    let file = format!("{}.onnx", shipping.name);
    let int8 = net.is_int8();
    let bytes = onnx::export(
        net,
        &[
            ("role", shipping.role.into()),
            ("name", shipping.name.into()),
        ],
    );
    let path = out_dir.join(&file);
    std::fs::write(&path, &bytes).with_context(|| format!("writing {}", path.display()))?;
    Ok(ModelEntry {
        name: shipping.name.into(),
        role: shipping.role.into(),
        file,
        shape: net.shape(),
        parameters: net.parameters(),
        weight_bytes: net.bytes(),
        file_bytes: bytes.len(),
        compression: Compression {
            precision: if int8 { "int8" } else { "f32" }.into(),
            distilled: shipping.teacher.is_some(),
            sparsity: net.sparsity(),
            rank: net.rank(),
        },
        teacher: shipping.teacher.map(str::to_string),
        data: shipping.data.clone(),
        command: shipping.command.into(),
        training: shipping.training,
        metrics: shipping.metrics,
        sha256: file_sha256(&path)?,
    })
}

/// The provenance of data read from `file`: its path and checksum, with
/// counts per split (tunes or takes; steps or frames).
pub fn data_record(
    file: &Path,
    items: BTreeMap<String, usize>,
    steps: BTreeMap<String, usize>,
) -> Result<DataRecord> {
    Ok(DataRecord {
        file: file.display().to_string(),
        sha256: file_sha256(file)?,
        tunes: items,
        steps,
    })
}

/// Golden outputs of the training code on a stored input sequence.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Golden {
    /// The model's name.
    pub model: String,
    /// Input vectors, one per step, each of the input width.
    pub inputs: Vec<Vec<f32>>,
    /// Outputs the training code computed for each step.
    pub outputs: Vec<Vec<f32>>,
}

/// Writes `<out_dir>/golden/<model>.json`.
pub fn write_golden(out_dir: &Path, golden: &Golden) -> Result<()> {
    let folder = out_dir.join("golden");
    std::fs::create_dir_all(&folder)?;
    let path = folder.join(format!("{}.json", golden.model));
    std::fs::write(&path, serde_json::to_string(golden)?)
        .with_context(|| format!("writing {}", path.display()))
}

/// The manifest in `out_dir`, or an empty one if there is none yet.
pub fn read_manifest(out_dir: &Path) -> Result<Manifest> {
    let path = out_dir.join("manifest.json");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            Manifest::from_json(&text).with_context(|| format!("reading {}", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Manifest::default()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Writes `<out_dir>/manifest.json`.
pub fn write_manifest(out_dir: &Path, manifest: &Manifest) -> Result<()> {
    let path = out_dir.join("manifest.json");
    std::fs::write(&path, manifest.to_json())
        .with_context(|| format!("writing {}", path.display()))?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

/// Loads a stage's checkpoint from `work_dir`, or runs the stage and saves it.
pub fn cached(
    work_dir: &Path,
    name: &str,
    stage: impl FnOnce() -> candle_core::Result<Trained>,
) -> Result<Trained> {
    let path = work_dir.join(format!("{name}.onnx"));
    if let Ok(bytes) = std::fs::read(&path) {
        let decoded =
            onnx::import(&bytes).with_context(|| format!("reading {}", path.display()))?;
        let meta: BTreeMap<_, _> = decoded.metadata.into_iter().collect();
        let number = |k: &str| meta.get(k).and_then(|v| v.parse().ok()).unwrap_or(f64::NAN);
        eprintln!("{name}: reusing {}", path.display());
        // Checkpoints of earlier versions call the validation loss valid_nll.
        let valid_loss = Some(number("valid_loss"))
            .filter(|v| !v.is_nan())
            .unwrap_or_else(|| number("valid_nll"));
        return Ok(Trained {
            net: decoded.net,
            valid_loss,
            best_step: number("best_step") as usize,
            seconds: number("seconds"),
        });
    }
    let trained = stage()?;
    let meta = [
        ("valid_loss", trained.valid_loss.to_string()),
        ("best_step", trained.best_step.to_string()),
        ("seconds", trained.seconds.to_string()),
    ];
    std::fs::create_dir_all(work_dir)?;
    std::fs::write(&path, onnx::export(&trained.net, &meta))?;
    Ok(trained)
}
