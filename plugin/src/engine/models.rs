//! The installed model variants: loaded, checked against tract, made into kernels.
//!
//! Loading parses ONNX, compares the allocation-free kernel against tract on
//! probe inputs and refuses the model if they disagree. It allocates and
//! takes milliseconds: it runs off the real-time threads.

use crate::melody::tokens::{write_input, Meter, Token, INPUT_SIZE};
use crate::model::kernel::GruKernel;
use crate::model::manifest::{Manifest, ModelEntry};
use crate::model::onnx::{import, ModelError, TractStep};
use crate::model::GruNet;

/// The manifest shipped with the embedded models.
pub const EMBEDDED_MANIFEST: &str = include_str!("../../../models/manifest.json");

/// Embedded ONNX files by name.
pub const EMBEDDED_MODELS: [(&str, &[u8]); 4] = [
    (
        "melody-teacher",
        include_bytes!("../../../models/melody-teacher.onnx"),
    ),
    (
        "melody-student",
        include_bytes!("../../../models/melody-student.onnx"),
    ),
    (
        "melody-student-int8",
        include_bytes!("../../../models/melody-student-int8.onnx"),
    ),
    (
        "melody-student-alone",
        include_bytes!("../../../models/melody-student-alone.onnx"),
    ),
];

/// Largest disagreement between kernel and tract a model may show.
pub const KERNEL_TOLERANCE: f32 = 1e-3;

/// A model ready to run.
pub struct LoadedModel {
    /// Its name.
    pub name: String,
    /// Its weights.
    pub net: GruNet,
    /// Largest kernel-vs-tract difference seen on the probe inputs.
    pub kernel_error: f32,
}

/// Loads and checks one model from ONNX bytes.
pub fn load_model(name: &str, bytes: &[u8]) -> Result<LoadedModel, ModelError> {
    let decoded = import(bytes)?;
    let shape = decoded.net.shape();
    if shape.input != INPUT_SIZE {
        return Err(ModelError::Contract(format!(
            "a melody model reads {INPUT_SIZE} inputs, this one {}",
            shape.input
        )));
    }
    let tract = TractStep::load(bytes, shape)?;
    let kernel_error = compare_with_tract(&decoded.net, &tract)?;
    if kernel_error > KERNEL_TOLERANCE {
        return Err(ModelError::Mismatch(kernel_error));
    }
    Ok(LoadedModel {
        name: name.into(),
        net: decoded.net,
        kernel_error,
    })
}

/// Runs kernel and tract side by side over a short probe melody.
pub fn compare_with_tract(net: &GruNet, tract: &TractStep) -> Result<f32, ModelError> {
    let shape = net.shape();
    let mut kernel = GruKernel::new(net);
    let mut state = vec![0.0; shape.state()];
    let mut reference_state = state.clone();
    let mut y = vec![0.0; shape.output];
    let mut x = vec![0.0; INPUT_SIZE];
    let probe = [62u8, 0, 66, 69, 0, 0, 74, 1];
    let mut worst = 0f32;
    for (i, p) in probe.iter().enumerate() {
        let previous = match p {
            0 => Token::Hold,
            1 => Token::Rest,
            p => Token::Note(*p),
        };
        write_input(&mut x, previous, i as u32, Meter::default());
        kernel.step(&x, &mut state, &mut y);
        let (ty, th) = tract.run(&x, &reference_state)?;
        reference_state = th;
        for (a, b) in y.iter().zip(&ty).chain(state.iter().zip(&reference_state)) {
            worst = worst.max((a - b).abs());
            if !a.is_finite() {
                return Err(ModelError::Contract(
                    "the model's outputs are not finite".into(),
                ));
            }
        }
    }
    Ok(worst)
}

/// The shipped manifest.
pub fn embedded_manifest() -> Manifest {
    Manifest::from_json(EMBEDDED_MANIFEST).unwrap_or_default()
}

/// The manifest entry of an embedded model.
pub fn embedded_entry(name: &str) -> Option<ModelEntry> {
    embedded_manifest().get(name).cloned()
}

/// Loads every embedded model named in `names`, in that order.
pub fn load_embedded(names: &[&str]) -> Result<Vec<LoadedModel>, ModelError> {
    names
        .iter()
        .map(|name| {
            let (_, bytes) = EMBEDDED_MODELS
                .iter()
                .find(|(n, _)| n == name)
                .ok_or_else(|| ModelError::Contract(format!("no embedded model {name}")))?;
            load_model(name, bytes)
        })
        .collect()
}
