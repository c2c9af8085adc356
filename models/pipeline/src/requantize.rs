//! Re-exports every shipped int8 model from its f32 source and measures it
//! again: run after the int8 arithmetic or file format changes, so that the
//! files and their figures stay those of what the kernel computes.

use std::path::Path;

use anyhow::{Context, Result};
use wren::melody::dataset::file_sha256;
use wren::model::onnx::{export, import};

use crate::compress::kernel_nll;
use crate::export::{read_manifest, write_manifest};
use crate::melody::{load_data, refs, PipelineConfig};
use crate::timbre::data;
use crate::timbre::pipeline::{distances, play, test_recordings, TimbreConfig};

/// What the int8 weights are and how products run, for the manifest.
pub const INT8_METHOD: &str =
    "weights per-channel, MSE-calibrated; inputs dynamic u8 (DynamicQuantizeLinear)";

/// Re-exports `<name>-int8` from `<name>` for every int8 entry of the
/// manifest in `out_dir`; updates files, checksums and test metrics.
pub fn run(out_dir: &Path, melody: &PipelineConfig, timbre: &TimbreConfig) -> Result<()> {
    let mut manifest = read_manifest(out_dir)?;
    let int8: Vec<String> = manifest
        .models
        .iter()
        .filter(|e| e.compression.precision == "int8")
        .map(|e| e.name.clone())
        .collect();
    let melodies = load_data(melody)?;
    for name in int8 {
        let source_name = name
            .strip_suffix("-int8")
            .context("int8 model names end in -int8")?;
        let Some(source) = manifest.get(source_name).cloned() else {
            eprintln!("{name}: no f32 source {source_name} in the manifest, left as it is");
            continue;
        };
        let bytes = std::fs::read(out_dir.join(&source.file))?;
        let net = import(&bytes)
            .with_context(|| format!("reading {}", source.file))?
            .net
            .quantized();
        let mut entry = manifest.get(&name).cloned().context("listed above")?;
        let metrics = if entry.role == "timbre" {
            let instrument = source_name
                .strip_prefix("timbre-")
                .and_then(|rest| rest.split('-').next())
                .and_then(data::instrument)
                .with_context(|| format!("{name}: unknown instrument"))?;
            let test = test_recordings(timbre, &instrument)?;
            distances(&test, |r| play(&net, r))
        } else {
            let (nll, accuracy) = kernel_nll(&net, &refs(&melodies.test));
            let f32_nll = source.metrics.get("test_nll").copied().unwrap_or(f64::NAN);
            [
                ("test_nll".to_string(), nll),
                ("test_accuracy".to_string(), accuracy),
                (
                    "valid_nll".to_string(),
                    kernel_nll(&net, &refs(&melodies.valid)).0,
                ),
                ("test_nll_change_vs_f32".to_string(), nll / f32_nll - 1.0),
            ]
            .into()
        };
        for (k, v) in &metrics {
            eprintln!(
                "{name}: {k} {:.4} (was {:.4})",
                v,
                entry.metrics.get(k).copied().unwrap_or(f64::NAN)
            );
        }
        entry.metrics.extend(metrics);
        entry.training.insert("int8".into(), INT8_METHOD.into());
        let path = out_dir.join(&entry.file);
        let file = export(
            &net,
            &[("role", entry.role.clone()), ("name", name.clone())],
        );
        std::fs::write(&path, &file).with_context(|| format!("writing {}", path.display()))?;
        entry.file_bytes = file.len();
        entry.weight_bytes = net.bytes();
        entry.sha256 = file_sha256(&path)?;
        manifest.upsert(entry);
    }
    write_manifest(out_dir, &manifest)
}
