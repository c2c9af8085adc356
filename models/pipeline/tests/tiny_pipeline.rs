//! The whole melody pipeline on a sliver of the data: it must produce
//! models that Wren's loader accepts and a manifest that describes them.

use wren::model::manifest::Manifest;
use wren_pipeline::melody::{run, PipelineConfig};

#[test]
fn tiny_pipeline_produces_loadable_models_and_manifest() {
    let out = std::env::temp_dir().join(format!("wren-tiny-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let mut config = PipelineConfig::tiny("test".into(), out.clone());
    config.dataset = concat!(env!("CARGO_MANIFEST_DIR"), "/../data/melodies.tsv.gz").into();
    run(&config).unwrap();
    let manifest =
        Manifest::from_json(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest.models.len(), 4);
    for entry in &manifest.models {
        let bytes = std::fs::read(out.join(&entry.file)).unwrap();
        let model = wren::engine::models::load_model(&entry.name, &bytes).unwrap();
        assert_eq!(model.net.parameters(), entry.parameters);
        assert!(entry.metrics["test_nll"].is_finite());
        assert!(out
            .join("golden")
            .join(format!("{}.json", entry.name))
            .exists());
    }
    let int8 = manifest.get("melody-student-int8").unwrap();
    assert_eq!(int8.compression.precision, "int8");
    // Biases and per-column scales stay f32, and at this tiny width they are
    // a large share; the shipped models' ratio is checked in golden_onnx.rs.
    let f32_bytes = manifest.get("melody-student").unwrap().weight_bytes;
    assert!(
        int8.weight_bytes * 2 < f32_bytes,
        "int8 {} bytes vs f32 {f32_bytes}",
        int8.weight_bytes
    );
    assert!(manifest.baselines["ngram"]["test_nll"].is_finite());
    std::fs::remove_dir_all(&out).unwrap();
}
