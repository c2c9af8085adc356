//! The whole timbre pipeline on a sliver of the soundfont data: it must
//! produce models the loader accepts, golden files, and manifest entries
//! with their spectral distances beside the baselines'.

use wren::model::manifest::Manifest;
use wren_pipeline::timbre::data::SOUNDFONT;
use wren_pipeline::timbre::pipeline::{run, TimbreConfig};

#[test]
fn tiny_timbre_pipeline_produces_models_and_measures_them() {
    if !std::path::Path::new(SOUNDFONT).exists() {
        let required = std::env::var("WREN_REQUIRE_SOUNDFONT").is_ok_and(|v| v == "1");
        assert!(!required, "{SOUNDFONT} is missing");
        eprintln!("skipped: {SOUNDFONT} is missing");
        return;
    }
    let out = std::env::temp_dir().join(format!("wren-tiny-timbre-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let mut config = TimbreConfig::tiny("test".into(), out.clone());
    config.melodies = concat!(env!("CARGO_MANIFEST_DIR"), "/../data/melodies.tsv.gz").into();
    run(&config).unwrap();
    let text = std::fs::read_to_string(out.join("manifest.json")).unwrap();
    let manifest = Manifest::from_json(&text).unwrap();
    assert_eq!(manifest.models.len(), 4);
    for entry in &manifest.models {
        assert_eq!(entry.role, "timbre");
        let bytes = std::fs::read(out.join(&entry.file)).unwrap();
        // The plugin's loader takes it: contract, and kernel against tract.
        let loaded = wren::engine::models::load_model(&entry.name, &bytes).unwrap();
        assert_eq!(loaded.net.shape().input, wren::timbre::INPUT_SIZE);
        assert_eq!(loaded.net.shape().output, wren::timbre::OUTPUT_SIZE);
        assert!(entry.metrics["test_takes_scored"] >= 1.0, "{}", entry.name);
        for metric in ["test_mrstft", "test_lsd_db"] {
            assert!(
                entry.metrics[metric].is_finite(),
                "{}: {metric}",
                entry.name
            );
        }
        assert!(out
            .join("golden")
            .join(format!("{}.json", entry.name))
            .exists());
    }
    let int8 = manifest.get("timbre-flute-student-int8").unwrap();
    assert_eq!(int8.compression.precision, "int8");
    assert_eq!(int8.teacher.as_deref(), Some("timbre-flute-teacher"));
    for baseline in ["timbre-flute-wavetable", "timbre-flute-analysis"] {
        assert!(manifest.baselines[baseline]["test_lsd_db"].is_finite());
    }
    std::fs::remove_dir_all(&out).unwrap();
}
