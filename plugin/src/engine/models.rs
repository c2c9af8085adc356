//! The installed model variants: loaded, checked against tract, made into kernels.
//!
//! Loading parses ONNX, compares the allocation-free kernel against tract on
//! probe inputs and refuses the model if they disagree. It allocates and
//! takes milliseconds: it runs off the real-time threads.

use crate::melody::tokens::{self, write_input, Meter, Token};
use crate::model::kernel::GruKernel;
use crate::model::manifest::{Manifest, ModelEntry};
use crate::model::onnx::{import, ModelError, TractStep};
use crate::model::GruNet;

/// The manifest shipped with the embedded models.
pub const EMBEDDED_MANIFEST: &str = include_str!("../../../models/manifest.json");

include!(concat!(env!("OUT_DIR"), "/models.rs"));

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

/// What a step model is for; each reads and writes its own widths.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The melody network: a token in, a distribution over tokens out.
    Melody,
    /// A timbre network: MIDI controls in, synthesizer parameters out.
    Timbre,
}

impl Role {
    /// The role of a shipped model, from its manifest name.
    pub fn of(name: &str) -> Role {
        if name.starts_with("timbre-") {
            Role::Timbre
        } else {
            Role::Melody
        }
    }

    /// Input and output widths.
    pub fn widths(self) -> (usize, usize) {
        match self {
            Role::Melody => (tokens::INPUT_SIZE, tokens::VOCAB),
            Role::Timbre => (crate::timbre::INPUT_SIZE, crate::timbre::OUTPUT_SIZE),
        }
    }

    /// Writes the `i`-th input of an example sequence into `x` (the
    /// role's input width): a melody wandering over a bar, or notes that
    /// start, hold and release. Used to probe and to time models.
    pub fn write_example(self, i: usize, x: &mut [f32]) {
        match self {
            Role::Melody => {
                let previous = match [62u8, 0, 66, 69, 0, 0, 74, 1][i % 8] {
                    0 => Token::Hold,
                    1 => Token::Rest,
                    p => Token::Note(p + (i / 8 % 5) as u8),
                };
                write_input(x, previous, (i % 16) as u32, Meter::default());
            }
            Role::Timbre => {
                // Notes of 48 frames, released after 36.
                let frame = i % 48;
                let control = crate::timbre::Control {
                    pitch: 62.0 + (i / 48 % 12) as f32,
                    velocity: 0.7,
                    gate: frame < 36,
                    since_on: 0.003 * frame as f32,
                    since_off: 0.003 * frame.saturating_sub(36) as f32,
                };
                x.copy_from_slice(&crate::timbre::input((i > 0).then_some(&control)));
            }
        }
    }
}

/// Loads and checks one model from ONNX bytes; its role comes from its
/// name (see [`Role::of`]).
pub fn load_model(name: &str, bytes: &[u8]) -> Result<LoadedModel, ModelError> {
    load_model_as(name, Role::of(name), bytes)
}

/// Loads and checks one model of a given role from ONNX bytes: decoded,
/// its widths checked against the role's, optimized under tract, and the
/// kernel compared with tract on probe inputs.
pub fn load_model_as(name: &str, role: Role, bytes: &[u8]) -> Result<LoadedModel, ModelError> {
    let decoded = import(bytes)?;
    let shape = decoded.net.shape();
    let (input, output) = role.widths();
    if (shape.input, shape.output) != (input, output) {
        return Err(ModelError::Contract(format!(
            "a {role:?} model reads {input} inputs and writes {output} outputs, this one {} and {}",
            shape.input, shape.output
        )));
    }
    let tract = TractStep::load(bytes, shape)?;
    let kernel_error = compare_with_tract(&decoded.net, &tract, role)?;
    if kernel_error > KERNEL_TOLERANCE {
        return Err(ModelError::Mismatch(kernel_error));
    }
    Ok(LoadedModel {
        name: name.into(),
        net: decoded.net,
        kernel_error,
    })
}

/// Runs kernel and tract side by side over a short probe sequence.
pub fn compare_with_tract(net: &GruNet, tract: &TractStep, role: Role) -> Result<f32, ModelError> {
    let shape = net.shape();
    let mut kernel = GruKernel::new(net);
    let mut state = vec![0.0; shape.state()];
    let mut reference_state = state.clone();
    let mut y = vec![0.0; shape.output];
    let mut worst = 0f32;
    let mut x = vec![0.0; shape.input];
    for i in 0..8 {
        role.write_example(i, &mut x);
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
