//! The compression search on a small budget, for the melody network and the
//! timbre network: from a Wren GRU teacher and from an ONNX teacher of
//! another architecture, it must write a model that Wren's loader accepts,
//! a manifest entry that describes it, golden outputs and a preset that
//! parses.

mod common;

use std::path::{Path, PathBuf};

use prost::Message;
use tract_onnx::pb;
use wren::melody::tokens::{INPUT_SIZE, VOCAB};
use wren::model::manifest::Manifest;
use wren_pipeline::search::{run, Network, SearchConfig};
use wren_pipeline::timbre::pipeline::TimbreConfig;
use wren_pipeline::train::TrainConfig;

fn config(teacher: PathBuf, out: &Path, widths: Vec<usize>) -> SearchConfig {
    common::tiny_search(teacher, out, widths)
}

/// A timbre search on a sliver of one instrument's notes.
fn timbre_config(teacher: PathBuf, out: &Path, widths: Vec<usize>) -> SearchConfig {
    let mut data = TimbreConfig::tiny("test".into(), out.to_path_buf());
    data.melodies = common::models().join("data/melodies.tsv.gz");
    SearchConfig {
        network: Network::Timbre(data),
        pair: "melody-student-int8".into(),
        name: "searched".into(),
        max_bytes: Some(30_000),
        train: TrainConfig {
            window: 48,
            ..config(teacher.clone(), out, widths.clone()).train
        },
        ..config(teacher, out, widths)
    }
}

/// Checks everything the search wrote into `out` for `model`.
fn check_outputs(out: &Path, model: &str, max_bytes: usize) -> wren::model::GruNet {
    let manifest =
        Manifest::from_json(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    let entry = manifest.get(model).expect("a manifest entry");
    let bytes = std::fs::read(out.join(&entry.file)).unwrap();
    let model = wren::engine::models::load_model(&entry.name, &bytes).unwrap();
    assert!(
        entry.weight_bytes <= max_bytes,
        "{} bytes",
        entry.weight_bytes
    );
    assert_eq!(entry.weight_bytes, model.net.bytes());
    assert_eq!(entry.parameters, model.net.parameters());
    assert_eq!(entry.compression.sparsity, model.net.sparsity());
    assert_eq!(entry.compression.rank, model.net.rank());
    use sha2::Digest;
    assert_eq!(entry.sha256, hex_digest(&sha2::Sha256::digest(&bytes)));
    if entry.role == "melody" {
        let nll = entry.metrics["test_nll"];
        assert!(
            nll.is_finite() && nll < (VOCAB as f64).ln(),
            "test NLL {nll}"
        );
    } else {
        let lsd = entry.metrics["test_lsd_db"];
        assert!(lsd.is_finite() && lsd > 0.0, "test LSD {lsd}");
        assert!(entry.metrics["test_takes_scored"] > 0.0);
        assert!(entry.metrics["valid_loss"].is_finite());
    }
    assert!(entry.metrics["step_p99_us"] > 0.0);
    assert!(out.join(format!("golden/{}.json", entry.name)).exists());
    let preset = std::fs::read_to_string(out.join("presets/searched.toml")).unwrap();
    let preset = wren::presets::parse(&preset).unwrap();
    if entry.role == "melody" {
        assert_eq!(preset.melody, entry.name);
    } else {
        assert_eq!(preset.melody, "melody-student-int8");
        assert_eq!(format!("timbre-flute-{}", preset.timbre), entry.name);
    }
    assert_eq!(preset.block_size, 65_536);
    model.net
}

/// An empty folder of this process for one test's outputs.
fn fresh_dir(name: &str) -> PathBuf {
    let out = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    out
}

fn hex_digest(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn search_from_a_wren_teacher_writes_a_model_that_loads() {
    let out = fresh_dir("wren-search");
    let teacher = common::models().join("melody-student.onnx");
    let outcomes = run(&config(teacher, &out, vec![48, 24])).unwrap();
    assert_eq!(outcomes.len(), 1);
    assert_eq!(outcomes[0].measured.len(), 2 * 2 * 2 * 2);
    // The byte cap leaves out the wide f32 candidates.
    assert!(outcomes[0].measured.iter().any(|m| !m.fits));
    let net = check_outputs(&out, "melody-searched", 60_000);
    assert!(net.shape().hidden <= 48);
    std::fs::remove_dir_all(&out).unwrap();
}

/// A step model that is no GRU: `h' = tanh(x A + h B)`, `y = h' C`, reading
/// `input` and writing `output` values.
fn tanh_rnn_teacher(input: usize, state: usize, output: usize) -> Vec<u8> {
    let mut seed = 99u64;
    let mut weights = |rows: usize, cols: usize, name: &str| {
        let values: Vec<u8> = (0..rows * cols)
            .flat_map(|_| {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                (((seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.4).to_le_bytes()
            })
            .collect();
        pb::TensorProto {
            name: name.into(),
            dims: vec![rows as i64, cols as i64],
            data_type: pb::tensor_proto::DataType::Float as i32,
            raw_data: values,
            ..Default::default()
        }
    };
    let info = |name: &str, width: usize| {
        use pb::tensor_shape_proto::{dimension::Value, Dimension};
        let dim = |v: i64| Dimension {
            value: Some(Value::DimValue(v)),
            ..Default::default()
        };
        pb::ValueInfoProto {
            name: name.into(),
            r#type: Some(pb::TypeProto {
                value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                    elem_type: pb::tensor_proto::DataType::Float as i32,
                    shape: Some(pb::TensorShapeProto {
                        dim: vec![dim(1), dim(width as i64)],
                    }),
                })),
                ..Default::default()
            }),
            ..Default::default()
        }
    };
    let node = |op: &str, inputs: &[&str], output: &str| pb::NodeProto {
        op_type: op.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        name: output.into(),
        ..Default::default()
    };
    let graph = pb::GraphProto {
        name: "tanh_rnn".into(),
        node: vec![
            node("MatMul", &["x", "A"], "xa"),
            node("MatMul", &["h", "B"], "hb"),
            node("Add", &["xa", "hb"], "pre"),
            node("Tanh", &["pre"], "h_next"),
            node("MatMul", &["h_next", "C"], "y"),
        ],
        initializer: vec![
            weights(input, state, "A"),
            weights(state, state, "B"),
            weights(state, output, "C"),
        ],
        input: vec![info("x", input), info("h", state)],
        output: vec![info("y", output), info("h_next", state)],
        ..Default::default()
    };
    pb::ModelProto {
        ir_version: 8,
        opset_import: vec![pb::OperatorSetIdProto {
            domain: String::new(),
            version: 13,
        }],
        graph: Some(graph),
        ..Default::default()
    }
    .encode_to_vec()
}

#[test]
fn search_distills_from_an_onnx_teacher_of_another_architecture() {
    let out = fresh_dir("wren-search-onnx");
    let teacher = out.join("tanh-rnn.onnx");
    std::fs::write(&teacher, tanh_rnn_teacher(INPUT_SIZE, 40, VOCAB)).unwrap();
    assert!(wren::model::onnx::import(&std::fs::read(&teacher).unwrap()).is_err());
    run(&config(teacher, &out, vec![24])).unwrap();
    let net = check_outputs(&out, "melody-searched", 60_000);
    assert_eq!(net.shape().hidden, 24);
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn a_teacher_of_the_other_network_is_refused() {
    let out = fresh_dir("wren-search-wrong");
    let teacher = common::models().join("timbre-flute-student.onnx");
    let error = run(&config(teacher, &out, vec![24]))
        .err()
        .expect("refused");
    assert!(
        format!("{error:#}").contains("reads 80 and writes 51 values, this teacher 6 and 97"),
        "{error:#}"
    );
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn timbre_search_from_a_wren_teacher_prunes_factorizes_and_quantizes() {
    if !common::soundfont() {
        return;
    }
    let out = fresh_dir("wren-search-timbre");
    let teacher = common::models().join("timbre-{instrument}-student.onnx");
    let outcomes = run(&timbre_config(teacher, &out, vec![64, 32])).unwrap();
    assert_eq!(outcomes.len(), 1);
    assert_eq!(outcomes[0].model, "timbre-flute-searched");
    assert_eq!(outcomes[0].measured.len(), 2 * 2 * 2 * 2);
    assert!(outcomes[0].measured.iter().any(|m| !m.fits));
    let net = check_outputs(&out, "timbre-flute-searched", 30_000);
    assert!(net.shape().hidden <= 64);
    let manifest =
        Manifest::from_json(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    let entry = manifest.get("timbre-flute-searched").unwrap();
    assert_eq!(entry.teacher.as_deref(), Some("timbre-flute-student"));
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn timbre_search_distills_from_an_onnx_teacher_of_another_architecture() {
    if !common::soundfont() {
        return;
    }
    let out = fresh_dir("wren-search-timbre-onnx");
    let widths = (wren::timbre::INPUT_SIZE, wren::timbre::OUTPUT_SIZE);
    std::fs::write(
        out.join("tanh-flute.onnx"),
        tanh_rnn_teacher(widths.0, 40, widths.1),
    )
    .unwrap();
    run(&timbre_config(
        out.join("tanh-{instrument}.onnx"),
        &out,
        vec![24],
    ))
    .unwrap();
    let net = check_outputs(&out, "timbre-flute-searched", 30_000);
    assert_eq!(net.shape().hidden, 24);
    std::fs::remove_dir_all(&out).unwrap();
}
