//! Model files are untrusted input: a corpus of broken, hostile and merely
//! unusual files, each of which must load or be refused with a clear
//! message, never crash.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

mod model_folder;

use prost::Message;
use tract_onnx::pb;
use wren::engine::library::{load_user_model, LoadError, Network};
use wren::engine::models::{embedded_entry, EMBEDDED_MODELS};
use wren::melody::tokens::{INPUT_SIZE, VOCAB};
use wren::model::files::{FileError, MANIFEST};
use wren::model::onnx::{export, ModelError, MAX_MODEL_BYTES};
use wren::model::{GruLayer, GruNet, Matrix};

/// A fresh, empty folder for one test.
fn folder(name: &str) -> PathBuf {
    let dir = std::env::temp_dir()
        .join(format!("wren-model-files-{}", std::process::id()))
        .join(name);
    if dir.exists() {
        make_writable(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
    }
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn make_writable(dir: &Path) {
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755));
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            make_writable(&entry.path());
        }
    }
}

fn embedded(name: &str) -> Vec<u8> {
    EMBEDDED_MODELS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, b)| b.to_vec())
        .unwrap()
}

/// Writes `bytes` as `file` in `dir` and describes it in the folder's
/// manifest under `name` with `role`, recording the SHA-256 of `recorded`
/// (the bytes themselves unless a test wants a mismatch).
fn write_model(
    dir: &Path,
    file: &str,
    name: &str,
    role: &str,
    bytes: &[u8],
    recorded: &[u8],
) -> PathBuf {
    let path = dir.join(file);
    std::fs::write(&path, bytes).unwrap();
    let mut entry = embedded_entry("melody-student-int8").unwrap();
    entry.name = name.into();
    entry.role = role.into();
    entry.file = file.into();
    entry.file_bytes = bytes.len();
    model_folder::describe(dir, entry, recorded);
    path
}

fn model(dir: &Path, file: &str, name: &str, role: &str, bytes: &[u8]) -> PathBuf {
    write_model(dir, file, name, role, bytes, bytes)
}

/// Writes a model proto as a melody model.
fn melody(dir: &Path, file: &str, proto: &pb::ModelProto) -> PathBuf {
    model(dir, file, "melody-test", "melody", &proto.encode_to_vec())
}

fn matrix(rows: usize, cols: usize, salt: usize) -> Matrix {
    Matrix::F32 {
        rows,
        cols,
        values: (0..rows * cols)
            .map(|i| (((i * 31 + salt) % 17) as f32 - 8.0) * 0.02)
            .collect(),
    }
}

/// A small GRU step model with the given widths.
fn net(input: usize, output: usize) -> GruNet {
    GruNet {
        layers: vec![GruLayer {
            w_input: matrix(input, 24, 1),
            w_hidden: matrix(8, 24, 2),
            b_input: vec![0.01; 24],
            b_hidden: vec![-0.02; 24],
        }],
        w_out: matrix(8, output, 3),
        b_out: vec![0.1; output],
    }
}

fn decode(bytes: &[u8]) -> pb::ModelProto {
    pb::ModelProto::decode(bytes).unwrap()
}

fn error_of(path: &Path) -> LoadError {
    match load_user_model(path) {
        Ok(user) => panic!("{} loaded as {:?}", path.display(), user.network),
        Err(error) => error,
    }
}

#[test]
fn good_models_load_from_read_only_folders_with_spaces_and_non_ascii_names() {
    let dir = folder("Mes modèles/ünï cødé 声音");
    let melody = model(
        &dir,
        "mélodie 1.onnx",
        "melody-mine",
        "melody",
        &embedded("melody-student-int8"),
    );
    let flute = model(
        &dir,
        "flûte douce.onnx",
        "timbre-flute-mine",
        "timbre",
        &embedded("timbre-violin-student-int8"),
    );
    for file in [&melody, &flute, &dir.join(MANIFEST)] {
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o444)).unwrap();
    }
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o555)).unwrap();
    let user = load_user_model(&melody).unwrap();
    assert_eq!(user.network, Network::Melody);
    assert_eq!(user.model.name, "melody-mine");
    let user = load_user_model(&flute).unwrap();
    assert_eq!(user.network, Network::Timbre(0));
    assert!(user.model.kernel_error < 1e-3);
    make_writable(&dir);
}

#[test]
fn empty_and_truncated_files_are_refused_at_every_offset() {
    let dir = folder("truncated");
    let empty = model(&dir, "empty.onnx", "melody-empty", "melody", &[]);
    assert!(
        matches!(error_of(&empty), LoadError::Model(_)),
        "{}",
        error_of(&empty)
    );
    let bytes = embedded("melody-student-int8");
    let mut cuts: Vec<usize> = (1..64).collect();
    cuts.extend((1..200).map(|i| bytes.len() * i / 200));
    cuts.extend(bytes.len() - 16..bytes.len());
    for cut in cuts {
        let path = model(&dir, "cut.onnx", "melody-cut", "melody", &bytes[..cut]);
        let error = error_of(&path);
        assert!(
            matches!(error, LoadError::Model(_)),
            "cut at {cut}: {error}"
        );
        assert!(!error.to_string().is_empty());
    }
}

#[test]
fn a_file_that_differs_from_its_manifest_is_refused() {
    let dir = folder("checksum");
    let bytes = embedded("melody-student-int8");
    let mut changed = bytes.clone();
    let at = changed.len() - 100;
    changed[at] ^= 1;
    let path = write_model(&dir, "m.onnx", "melody-changed", "melody", &changed, &bytes);
    let error = error_of(&path);
    assert!(
        matches!(error, LoadError::File(FileError::Checksum { .. })),
        "{error}"
    );
    assert!(error.to_string().contains("SHA-256"), "{error}");

    // No manifest, no entry, a broken manifest: the checksum cannot be
    // checked, so nothing is read.
    let dir = folder("no-manifest");
    let lone = dir.join("lone.onnx");
    std::fs::write(&lone, &bytes).unwrap();
    let error = error_of(&lone);
    assert!(
        matches!(error, LoadError::File(FileError::Missing(ref m)) if m.ends_with(MANIFEST)),
        "{error}"
    );
    model(&dir, "other.onnx", "melody-other", "melody", &bytes);
    assert!(matches!(
        error_of(&lone),
        LoadError::File(FileError::NoEntry(_))
    ));
    std::fs::write(dir.join(MANIFEST), "{\"models\": [").unwrap();
    assert!(matches!(
        error_of(&lone),
        LoadError::File(FileError::Manifest { .. })
    ));
    std::fs::write(dir.join(MANIFEST), [0xff, 0xfe, 0x00]).unwrap();
    assert!(matches!(
        error_of(&lone),
        LoadError::File(FileError::Manifest { .. })
    ));
}

#[test]
fn wrong_shapes_roles_and_non_finite_weights_are_refused() {
    let dir = folder("contract");
    // A melody model that reads the timbre network's inputs.
    let timbre_widths = export(
        &net(wren::timbre::INPUT_SIZE, wren::timbre::OUTPUT_SIZE),
        &[],
    );
    let path = model(&dir, "a.onnx", "melody-wrong", "melody", &timbre_widths);
    let error = error_of(&path);
    assert!(error.to_string().contains("inputs"), "{error}");
    // The same file as a timbre model of a known instrument loads.
    let path = model(
        &dir,
        "a.onnx",
        "timbre-trumpet-small",
        "timbre",
        &timbre_widths,
    );
    assert_eq!(load_user_model(&path).unwrap().network, Network::Timbre(2));
    // An instrument Wren does not have, and a role it has no network for.
    let path = model(
        &dir,
        "a.onnx",
        "timbre-oboe-small",
        "timbre",
        &timbre_widths,
    );
    assert!(matches!(error_of(&path), LoadError::Role(_)));
    let path = model(&dir, "a.onnx", "drums", "drums", &timbre_widths);
    assert!(matches!(error_of(&path), LoadError::Role(_)));

    let mut broken = net(INPUT_SIZE, VOCAB);
    for value in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        if let Matrix::F32 { values, .. } = &mut broken.layers[0].w_hidden {
            values[5] = value;
        }
        let path = model(
            &dir,
            "n.onnx",
            "melody-nan",
            "melody",
            &export(&broken, &[]),
        );
        let error = error_of(&path);
        assert!(error.to_string().contains("NaN or infinite"), "{error}");
    }
}

#[test]
fn absurd_dimensions_are_refused_before_anything_is_allocated_for_them() {
    let dir = folder("dimensions");
    let good = export(&net(INPUT_SIZE, VOCAB), &[]);
    let cases: [(&str, i64, i64); 4] = [
        ("out.w", 1 << 40, 4),
        ("out.w", 8, -1),
        ("l0.w_hidden", 8, 1 << 31),
        ("l0.w_input", 0, 24),
    ];
    for (tensor, rows, cols) in cases {
        let mut proto = decode(&good);
        let graph = proto.graph.as_mut().unwrap();
        let t = graph
            .initializer
            .iter_mut()
            .find(|t| t.name == tensor)
            .unwrap();
        t.dims = vec![rows, cols];
        let path = melody(&dir, "d.onnx", &proto);
        let error = error_of(&path);
        assert!(
            matches!(error, LoadError::Model(ModelError::Contract(_))),
            "{tensor} {rows}x{cols}: {error}"
        );
    }
    // An input declared a trillion wide.
    let mut proto = decode(&good);
    let graph = proto.graph.as_mut().unwrap();
    let x = graph.input.iter_mut().find(|i| i.name == "x").unwrap();
    let Some(pb::type_proto::Value::TensorType(t)) = x.r#type.as_mut().unwrap().value.as_mut()
    else {
        unreachable!()
    };
    t.shape.as_mut().unwrap().dim[1].value =
        Some(pb::tensor_shape_proto::dimension::Value::DimValue(1 << 40));
    let path = melody(&dir, "d.onnx", &proto);
    assert!(error_of(&path).to_string().contains("x must be f32"));
}

#[test]
fn unsupported_operators_and_operator_sets_are_refused() {
    let dir = folder("operators");
    let good = export(&net(INPUT_SIZE, VOCAB), &[]);
    let mut proto = decode(&good);
    let graph = proto.graph.as_mut().unwrap();
    let node = graph.node.iter_mut().find(|n| n.op_type == "Tanh").unwrap();
    node.op_type = "Relu".into();
    let path = melody(&dir, "o.onnx", &proto);
    let error = error_of(&path);
    assert!(
        error
            .to_string()
            .contains("operator \"Relu\" is not supported"),
        "{error}"
    );

    let mut proto = decode(&good);
    proto.graph.as_mut().unwrap().node[0].domain = "com.example.custom".into();
    let path = melody(&dir, "o.onnx", &proto);
    assert!(error_of(&path).to_string().contains("not supported"));

    for (domain, version) in [("", 1), ("", 99), ("com.microsoft", 1)] {
        let mut proto = decode(&good);
        proto.opset_import.push(pb::OperatorSetIdProto {
            domain: domain.into(),
            version,
        });
        let path = melody(&dir, "o.onnx", &proto);
        let error = error_of(&path);
        assert!(
            error.to_string().contains("operator set"),
            "{domain} {version}: {error}"
        );
    }
}

/// The model with the values of `out.b` moved to an external data entry
/// pointing at `location`.
fn with_external_bias(bytes: &[u8], location: &str, offset: usize) -> (Vec<u8>, Vec<u8>) {
    let mut proto = decode(bytes);
    let graph = proto.graph.as_mut().unwrap();
    let t = graph
        .initializer
        .iter_mut()
        .find(|t| t.name == "out.b")
        .unwrap();
    let data = std::mem::take(&mut t.raw_data);
    t.data_location = Some(pb::tensor_proto::DataLocation::External as i32);
    let entry = |key: &str, value: String| pb::StringStringEntryProto {
        key: key.into(),
        value,
    };
    t.external_data = vec![
        entry("location", location.into()),
        entry("offset", offset.to_string()),
        entry("length", data.len().to_string()),
    ];
    (proto.encode_to_vec(), data)
}

#[test]
fn external_data_loads_from_inside_the_folder_and_never_from_outside() {
    let root = folder("external");
    let dir = root.join("models");
    std::fs::create_dir_all(dir.join("weights")).unwrap();
    let good = export(&net(INPUT_SIZE, VOCAB), &[]);

    // Inside the folder, at an offset: loads, and runs like the original.
    let (bytes, data) = with_external_bias(&good, "weights/bias.bin", 7);
    let mut padded = vec![0u8; 7];
    padded.extend(&data);
    std::fs::write(dir.join("weights/bias.bin"), &padded).unwrap();
    let path = model(&dir, "e.onnx", "melody-external", "melody", &bytes);
    let original = model(&dir, "g.onnx", "melody-original", "melody", &good);
    assert_eq!(
        load_user_model(&path).unwrap().model.net,
        load_user_model(&original).unwrap().model.net
    );

    // Out of the folder: by `..`, by an absolute path, by a symbolic link,
    // and a link inside the folder to a file outside it.
    std::fs::write(root.join("outside.bin"), &padded).unwrap();
    std::os::unix::fs::symlink(&root, dir.join("up")).unwrap();
    std::os::unix::fs::symlink(root.join("outside.bin"), dir.join("weights/link.bin")).unwrap();
    let absolute = root.join("outside.bin").display().to_string();
    for location in [
        "../outside.bin",
        "weights/../../outside.bin",
        absolute.as_str(),
        "/etc/passwd",
        "up/outside.bin",
        "weights/link.bin",
    ] {
        let (bytes, _) = with_external_bias(&good, location, 7);
        let path = model(&dir, "e.onnx", "melody-escape", "melody", &bytes);
        let error = error_of(&path);
        assert!(
            matches!(error, LoadError::File(FileError::ExternalData { .. })),
            "{location}: {error}"
        );
        let message = error.to_string();
        assert!(
            message.contains("outside")
                || message.contains("absolute")
                || message.contains("out of"),
            "{location}: {message}"
        );
    }

    // Missing, too short, a folder, a byte count that is not one.
    for (location, offset) in [
        ("weights/none.bin", 0),
        ("weights/bias.bin", 1 << 20),
        ("weights", 0),
    ] {
        let (bytes, _) = with_external_bias(&good, location, offset);
        let path = model(&dir, "e.onnx", "melody-broken", "melody", &bytes);
        assert!(
            matches!(
                error_of(&path),
                LoadError::File(FileError::ExternalData { .. })
            ),
            "{location}"
        );
    }
    let (bytes, _) = with_external_bias(&good, "weights/bias.bin", 7);
    let mut proto = decode(&bytes);
    let t = &mut proto.graph.as_mut().unwrap().initializer;
    let t = t.iter_mut().find(|t| t.name == "out.b").unwrap();
    t.external_data[2].value = "-3".into();
    let path = melody(&dir, "e.onnx", &proto);
    assert!(error_of(&path).to_string().contains("not a byte count"));

    // Bytes with external data handed over without their folder.
    assert!(
        wren::model::onnx::import(&with_external_bias(&good, "weights/bias.bin", 7).0).is_err()
    );
}

#[test]
fn oversized_files_fifos_and_devices_are_never_read() {
    let dir = folder("special");
    let bytes = embedded("melody-student-int8");
    let path = model(&dir, "big.onnx", "melody-big", "melody", &bytes);
    // Sparse: over the limit on disk without taking the space.
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(MAX_MODEL_BYTES as u64 + 1)
        .unwrap();
    assert!(matches!(
        error_of(&path),
        LoadError::File(FileError::TooLarge { .. })
    ));

    let manifest = dir.join(MANIFEST);
    std::fs::File::options()
        .write(true)
        .open(&manifest)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    assert!(matches!(
        error_of(&path),
        LoadError::File(FileError::TooLarge { .. })
    ));

    let dir = folder("fifo");
    model(&dir, "m.onnx", "melody-fifo", "melody", &bytes);
    std::fs::remove_file(dir.join("m.onnx")).unwrap();
    let status = std::process::Command::new("mkfifo")
        .arg(dir.join("m.onnx"))
        .status()
        .unwrap();
    assert!(status.success());
    // Opening a FIFO for reading would wait for a writer forever.
    assert!(matches!(
        error_of(&dir.join("m.onnx")),
        LoadError::File(FileError::NotAFile(_))
    ));
    std::fs::create_dir(dir.join("folder.onnx")).unwrap();
    assert!(matches!(
        error_of(&dir.join("folder.onnx")),
        LoadError::File(FileError::NotAFile(_))
    ));
    assert!(matches!(
        error_of(Path::new("/dev/zero")),
        LoadError::File(_)
    ));
    assert!(matches!(
        error_of(Path::new("/no/such/model.onnx")),
        LoadError::File(FileError::Missing(_))
    ));
    assert!(matches!(error_of(Path::new("")), LoadError::File(_)));
}
