//! Helpers of the pipeline's integration tests.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use wren_pipeline::melody::PipelineConfig;
use wren_pipeline::search::{Network, SearchConfig};
use wren_pipeline::timbre::data::SOUNDFONT;
use wren_pipeline::train::TrainConfig;

/// The repository's `models` folder.
pub fn models() -> PathBuf {
    concat!(env!("CARGO_MANIFEST_DIR"), "/..").into()
}

/// A melody search on a sliver of the data, small enough for a test.
pub fn tiny_search(teacher: PathBuf, out: &Path, widths: Vec<usize>) -> SearchConfig {
    let mut data = PipelineConfig::tiny("test".into(), out.to_path_buf());
    data.dataset = models().join("data/melodies.tsv.gz");
    SearchConfig {
        network: Network::Melody(data),
        teacher,
        start: None,
        // A budget far beyond any step (the budget grows with the buffer, but
        // so do the frames in it; a share of 100 leaves room for steps that
        // a busy machine stalls for milliseconds): the byte cap decides what
        // fits.
        block_size: 65_536,
        sample_rate: 8_000.0,
        voices: 1,
        share: 100.0,
        tempo: 300.0,
        pair: "student-int8".into(),
        max_bytes: Some(60_000),
        widths,
        energies: vec![1.0, 0.6],
        sparsities: vec![0.0, 0.3],
        int8: vec![false, true],
        finalists: 2,
        cost_steps: 50,
        train: TrainConfig {
            hidden: 0,
            layers: 0,
            steps: 8,
            batch: 4,
            window: 32,
            learning_rate: 1e-3,
            dropout: 0.0,
            seed: 3,
            eval_every: 4,
        },
        name: "melody-searched".into(),
        preset: "searched".into(),
        preset_dir: out.join("presets"),
    }
}

/// Whether the soundfont the timbre data is rendered from is installed
/// (set-up installs it; `WREN_REQUIRE_SOUNDFONT=1` makes its absence fail).
pub fn soundfont() -> bool {
    if Path::new(SOUNDFONT).exists() {
        return true;
    }
    let required = std::env::var("WREN_REQUIRE_SOUNDFONT").is_ok_and(|v| v == "1");
    assert!(!required, "{SOUNDFONT} is missing");
    eprintln!("skipped: {SOUNDFONT} is missing");
    false
}
