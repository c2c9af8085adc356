//! Golden files: logits the training code (candle) computed on stored inputs
//! must match what tract and the real-time kernel compute from the shipped
//! ONNX files.

use serde::Deserialize;
use wren::engine::models::EMBEDDED_MODELS;
use wren::model::kernel::GruKernel;
use wren::model::onnx::{import, TractStep};

/// Largest absolute logit difference allowed, f32 weights: the three
/// implementations sum in different orders over 48 recurrent steps.
const F32_TOLERANCE: f32 = 2e-3;
/// int8 models: the golden logits come from the dequantized weights with
/// f32 inputs, while tract and the kernel also quantize each product's
/// input to u8 (as ONNX's DynamicQuantizeLinear does). That moves outputs
/// by a few thousandths on average; a rounding that lands on the other side
/// of a step carries through the recurrent state, hence the larger bound on
/// the worst value.
const INT8_MEAN_TOLERANCE: f32 = 5e-3;
/// A factorized int8 matrix quantizes twice per product (its input, then
/// the rank-wide inner vector), so its outputs move further on average.
const FACTORIZED_INT8_MEAN_TOLERANCE: f32 = 3e-2;
const INT8_MAX_TOLERANCE: f32 = 5e-2;
/// Against the golden logits, int8 errors also grow with the size of the
/// values: the input quantization's step is a share of each input's range,
/// and a factorized matrix quantizes its inner product's input once more.
const INT8_RELATIVE_TOLERANCE: f32 = 1e-2;

#[derive(Deserialize)]
struct Golden {
    model: String,
    inputs: Vec<Vec<f32>>,
    outputs: Vec<Vec<f32>>,
}

/// Every model the manifest lists, read from `models/`: (name, bytes).
fn shipped_models() -> Vec<(String, Vec<u8>)> {
    let manifest = wren::engine::models::embedded_manifest();
    manifest
        .models
        .iter()
        .map(|entry| {
            let path = format!("{}/../models/{}", env!("CARGO_MANIFEST_DIR"), entry.file);
            let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            (entry.name.clone(), bytes)
        })
        .collect()
}

#[test]
fn shipped_models_match_training_outputs_in_tract_and_kernel() {
    let models = shipped_models();
    for (name, _) in EMBEDDED_MODELS {
        assert!(
            models.iter().any(|(n, _)| n == name),
            "{name} is embedded but not listed"
        );
    }
    for (name, bytes) in &models {
        let path = format!(
            "{}/../models/golden/{name}.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let golden: Golden = serde_json::from_str(&text).unwrap();
        assert_eq!(&golden.model, name);
        assert!(golden.inputs.len() >= 16, "{name}: too few golden steps");
        let net = import(bytes).unwrap().net;
        let int8 = net.is_int8();
        let tolerance = if int8 {
            INT8_MAX_TOLERANCE
        } else {
            F32_TOLERANCE
        };
        let (mut total, mut count) = (0f64, 0usize);
        let shape = net.shape();
        let tract = TractStep::load(bytes, shape).unwrap();
        let mut kernel = GruKernel::new(&net);
        let mut tract_state = vec![0.0; shape.state()];
        let mut kernel_state = vec![0.0; shape.state()];
        let mut y = vec![0.0; shape.output];
        for (step, (x, expected)) in golden.inputs.iter().zip(&golden.outputs).enumerate() {
            let (tract_y, next) = tract.run(x, &tract_state).unwrap();
            tract_state = next;
            kernel.step(x, &mut kernel_state, &mut y);
            let size = expected.iter().fold(1f32, |m, v| m.max(v.abs()));
            for (i, e) in expected.iter().enumerate() {
                let (t, k) = (tract_y[i], y[i]);
                total += (k - e).abs() as f64;
                count += 1;
                let tolerance = if int8 {
                    tolerance + INT8_RELATIVE_TOLERANCE * size
                } else {
                    tolerance
                };
                assert!(
                    (t - e).abs() <= tolerance,
                    "{name} step {step} output {i}: tract {t} vs {e}"
                );
                assert!(
                    (k - e).abs() <= tolerance,
                    "{name} step {step} output {i}: kernel {k} vs {e}"
                );
            }
        }
        let mean = (total / count.max(1) as f64) as f32;
        let bound = if int8 && net.rank().is_some() {
            FACTORIZED_INT8_MEAN_TOLERANCE
        } else if int8 {
            INT8_MEAN_TOLERANCE
        } else {
            F32_TOLERANCE
        };
        assert!(mean <= bound, "{name}: mean difference {mean} over {bound}");
    }
}

#[test]
fn manifest_matches_the_shipped_files() {
    use sha2::{Digest, Sha256};
    let manifest = wren::engine::models::embedded_manifest();
    for (name, bytes) in &shipped_models() {
        let entry = manifest
            .get(name)
            .unwrap_or_else(|| panic!("{name} missing from manifest"));
        assert_eq!(entry.sha256, hex::encode(Sha256::digest(bytes)), "{name}");
        assert_eq!(entry.file_bytes, bytes.len(), "{name}");
        let net = import(bytes).unwrap().net;
        assert_eq!(entry.parameters, net.parameters(), "{name}");
        assert_eq!(entry.shape, net.shape(), "{name}");
        assert_eq!(entry.weight_bytes, net.bytes(), "{name}");
        let metrics: &[&str] = match entry.role.as_str() {
            "timbre" => &["test_mrstft", "test_lsd_db", "valid_loss"],
            _ => &["test_nll", "test_accuracy", "valid_nll"],
        };
        for &metric in metrics {
            assert!(
                entry.metrics.get(metric).is_some_and(|v| v.is_finite()),
                "{name}: {metric}"
            );
        }
    }
    let data = std::fs::read(format!(
        "{}/../models/data/melodies.tsv.gz",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let checksum = hex::encode(Sha256::digest(&data));
    assert!(
        manifest
            .models
            .iter()
            .filter(|m| m.role == "melody")
            .all(|m| m.data.sha256 == checksum),
        "dataset checksum"
    );
    assert!(manifest.baselines["ngram"]["test_nll"].is_finite());
    for family in ["melody".to_string()]
        .into_iter()
        .chain(wren::timbre::INSTRUMENTS.map(|i| format!("timbre-{i}")))
    {
        let Some(f32) = manifest.get(&format!("{family}-student")) else {
            continue;
        };
        let int8 = manifest.get(&format!("{family}-student-int8")).unwrap();
        assert!(
            int8.weight_bytes * 3 < f32.weight_bytes,
            "{family}: int8 student takes {} bytes, f32 {}",
            int8.weight_bytes,
            f32.weight_bytes
        );
    }
}

#[test]
fn every_timbre_teacher_clearly_beats_the_static_baseline() {
    let manifest = wren::engine::models::embedded_manifest();
    let mut checked = 0;
    for instrument in wren::timbre::INSTRUMENTS {
        let Some(teacher) = manifest.get(&format!("timbre-{instrument}-teacher")) else {
            continue;
        };
        let baseline = &manifest.baselines[&format!("timbre-{instrument}-wavetable")];
        let int8 = &manifest
            .get(&format!("timbre-{instrument}-student-int8"))
            .unwrap()
            .metrics;
        let (lsd, mrstft) = (
            teacher.metrics["test_lsd_db"],
            teacher.metrics["test_mrstft"],
        );
        // Clearly: at least 3 dB and a fifth of the baseline's STFT distance.
        assert!(
            lsd + 3.0 < baseline["test_lsd_db"] && mrstft < 0.8 * baseline["test_mrstft"],
            "{instrument}: teacher {lsd:.2} dB / {mrstft:.3}, baseline {:.2} dB / {:.3}",
            baseline["test_lsd_db"],
            baseline["test_mrstft"]
        );
        // The int8 student beats the baseline too.
        assert!(
            int8["test_lsd_db"] < baseline["test_lsd_db"],
            "{instrument}"
        );
        checked += 1;
    }
    assert!(checked >= 1, "a neural instrument ships");
}

/// Over a long run the kernel computes, step by step, what tract computes
/// from the same file and the same state. (Left to run free, two int8
/// implementations part ways: a last-bit difference in the gates can round
/// a quantized input to the neighbouring step, about 3e-3 in the state,
/// which the recurrence carries on. So each step starts from the kernel's
/// state here.)
#[test]
fn kernel_tracks_tract_step_by_step_over_long_runs() {
    use wren::engine::models::Role;
    for (name, bytes) in shipped_models() {
        let net = import(&bytes).unwrap().net;
        if !net.is_int8() && net.shape().hidden > 200 {
            continue; // Teachers are slow in tract; the golden test covers them.
        }
        let shape = net.shape();
        let role = Role::of(&name);
        let tract = TractStep::load(&bytes, shape).unwrap();
        let mut kernel = GruKernel::new(&net);
        let (mut x, mut y) = (vec![0.0; shape.input], vec![0.0; shape.output]);
        let mut state = vec![0.0; shape.state()];
        // A rounding flip moves one quantized input by 1/255 of its range:
        // the bound scales with the size of the outputs.
        let (mut worst, mut close) = (0f32, 0usize);
        const STEPS: usize = 2000;
        for step in 0..STEPS {
            role.write_example(step, &mut x);
            let (tract_y, tract_state) = tract.run(&x, &state).unwrap();
            kernel.step(&x, &mut state, &mut y);
            let error = y
                .iter()
                .zip(&tract_y)
                .chain(state.iter().zip(&tract_state))
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            let size = tract_y.iter().fold(1f32, |m, v| m.max(v.abs()));
            worst = worst.max(error / size);
            close += (error <= 1e-4) as usize;
        }
        assert!(
            worst <= 1e-2,
            "{name}: a step differs by {worst} of the outputs' size"
        );
        assert!(
            close * 100 >= STEPS * 99,
            "{name}: only {close} of {STEPS} steps within 1e-4"
        );
    }
}
