//! Single-step ONNX models: writing, reading and running them under tract.
//!
//! The contract: inputs `x [1, I]` and `h [1, L*H]` (f32), outputs
//! `y [1, O]` and `h_next [1, L*H]`, static shapes. The graph is built from
//! standard operators (MatMul, Add, Mul, Sub, Slice, Sigmoid, Tanh, Concat;
//! DynamicQuantizeLinear, MatMulInteger and Cast for int8 weights), so any
//! ONNX runtime runs it. Weight initializers are named `l{k}.w_input`,
//! `l{k}.w_hidden`, `l{k}.b_input`, `l{k}.b_hidden`, `out.w`, `out.b`.
//! An int8 matrix is stored as `NAME.q` (int8, zero point 0) with
//! `NAME.scale` (f32, one per output column); its product quantizes the
//! input dynamically to u8, as the real-time kernel does. A factorized
//! matrix `W = L R` is stored as `NAME.left` and `NAME.right`, each f32 or
//! int8, and multiplied as two products.

use prost::Message;
use tract_onnx::pb;
use tract_onnx::prelude::*;

use super::{GruLayer, GruNet, Matrix, Shape};

/// Largest model file Wren reads.
pub const MAX_MODEL_BYTES: usize = 256 << 20;
/// Largest width of any dimension Wren accepts.
pub const MAX_DIMENSION: usize = 8192;
/// The operators a step model may use: those [`export`] writes. Anything
/// else is refused before tract sees the graph.
pub const OPERATORS: &[&str] = &[
    "Add",
    "Cast",
    "Concat",
    "DynamicQuantizeLinear",
    "MatMul",
    "MatMulInteger",
    "Mul",
    "Sigmoid",
    "Slice",
    "Sub",
    "Tanh",
];
/// The versions of the default ONNX operator set a step model may declare.
pub const OPSETS: std::ops::RangeInclusive<i64> = 11..=21;

/// Errors reading or checking a step model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The bytes are not an ONNX protobuf.
    #[error("not an ONNX model: {0}")]
    Decode(String),
    /// The model breaks the step-model contract.
    #[error("not a Wren step model: {0}")]
    Contract(String),
    /// tract could not load or run it.
    #[error("tract could not run the model: {0}")]
    Tract(String),
    /// The kernel and tract disagree on the model's outputs.
    #[error("kernel and tract disagree by {0} on probe inputs")]
    Mismatch(f32),
}

fn contract(msg: impl Into<String>) -> ModelError {
    ModelError::Contract(msg.into())
}

const FLOAT: i32 = pb::tensor_proto::DataType::Float as i32;
const INT8: i32 = pb::tensor_proto::DataType::Int8 as i32;
const INT64: i32 = pb::tensor_proto::DataType::Int64 as i32;
const EXTERNAL: i32 = pb::tensor_proto::DataLocation::External as i32;

/// Builds the ONNX bytes of a step model; `metadata` goes into the file.
pub fn export(net: &GruNet, metadata: &[(&str, String)]) -> Vec<u8> {
    let mut graph = GraphBuilder::default();
    let shape = net.shape();
    let h = shape.hidden as i64;
    graph.value_info(true, "x", [1, shape.input as i64]);
    graph.value_info(true, "h", [1, shape.state() as i64]);
    let mut input = "x".to_string();
    let mut next_states = Vec::new();
    for (k, layer) in net.layers.iter().enumerate() {
        let prefix = format!("l{k}");
        let k = k as i64;
        let state = graph.slice("h", k * h, (k + 1) * h);
        let b_input = graph.floats(&format!("{prefix}.b_input"), &[3 * h], &layer.b_input);
        let b_hidden = graph.floats(&format!("{prefix}.b_hidden"), &[3 * h], &layer.b_hidden);
        let gi = graph.product(&input, &format!("{prefix}.w_input"), &layer.w_input);
        let gi = graph.node("Add", &[&gi, &b_input]);
        let gh = graph.product(&state, &format!("{prefix}.w_hidden"), &layer.w_hidden);
        let gh = graph.node("Add", &[&gh, &b_hidden]);
        let [gi_r, gi_z, gi_n] = [0, 1, 2].map(|g| graph.slice(&gi, g * h, (g + 1) * h));
        let [gh_r, gh_z, gh_n] = [0, 1, 2].map(|g| graph.slice(&gh, g * h, (g + 1) * h));
        let r = graph.node("Add", &[&gi_r, &gh_r]);
        let r = graph.node("Sigmoid", &[&r]);
        let z = graph.node("Add", &[&gi_z, &gh_z]);
        let z = graph.node("Sigmoid", &[&z]);
        let n = graph.node("Mul", &[&r, &gh_n]);
        let n = graph.node("Add", &[&gi_n, &n]);
        let n = graph.node("Tanh", &[&n]);
        let delta = graph.node("Sub", &[&state, &n]);
        let delta = graph.node("Mul", &[&z, &delta]);
        let next = graph.node("Add", &[&n, &delta]);
        next_states.push(next.clone());
        input = next;
    }
    let b_out = graph.floats("out.b", &[shape.output as i64], &net.b_out);
    let y = graph.product(&input, "out.w", &net.w_out);
    graph.named_node("Add", &[&y, &b_out], "y", vec![]);
    let refs: Vec<&str> = next_states.iter().map(|s| s.as_str()).collect();
    graph.named_node("Concat", &refs, "h_next", vec![int_attribute("axis", 1)]);
    graph.value_info(false, "y", [1, shape.output as i64]);
    graph.value_info(false, "h_next", [1, shape.state() as i64]);

    let model = pb::ModelProto {
        ir_version: 8,
        opset_import: vec![pb::OperatorSetIdProto {
            domain: String::new(),
            version: 13,
        }],
        producer_name: "wren".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: Some(graph.finish()),
        metadata_props: metadata
            .iter()
            .map(|(k, v)| pb::StringStringEntryProto {
                key: k.to_string(),
                value: v.clone(),
            })
            .collect(),
        ..Default::default()
    };
    model.encode_to_vec()
}

fn int_attribute(name: &str, value: i64) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: pb::attribute_proto::AttributeType::Int as i32,
        i: value,
        ..Default::default()
    }
}

#[derive(Default)]
struct GraphBuilder {
    nodes: Vec<pb::NodeProto>,
    initializers: Vec<pb::TensorProto>,
    inputs: Vec<pb::ValueInfoProto>,
    outputs: Vec<pb::ValueInfoProto>,
    counter: usize,
}

impl GraphBuilder {
    fn value_info(&mut self, input: bool, name: &str, dims: [i64; 2]) {
        use pb::tensor_shape_proto::{dimension::Value, Dimension};
        let shape = pb::TensorShapeProto {
            dim: dims
                .iter()
                .map(|d| Dimension {
                    value: Some(Value::DimValue(*d)),
                    ..Default::default()
                })
                .collect(),
        };
        let tensor = pb::type_proto::Tensor {
            elem_type: FLOAT,
            shape: Some(shape),
        };
        let info = pb::ValueInfoProto {
            name: name.into(),
            r#type: Some(pb::TypeProto {
                value: Some(pb::type_proto::Value::TensorType(tensor)),
                ..Default::default()
            }),
            ..Default::default()
        };
        if input {
            self.inputs.push(info)
        } else {
            self.outputs.push(info)
        }
    }

    fn tensor(&mut self, name: &str, dims: &[i64], data_type: i32, raw: Vec<u8>) -> String {
        self.initializers.push(pb::TensorProto {
            name: name.into(),
            dims: dims.to_vec(),
            data_type,
            raw_data: raw,
            ..Default::default()
        });
        name.to_string()
    }

    fn floats(&mut self, name: &str, dims: &[i64], values: &[f32]) -> String {
        let raw = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.tensor(name, dims, FLOAT, raw)
    }

    /// `input W`, with the weights of `m` stored under `name`.
    fn product(&mut self, input: &str, name: &str, m: &Matrix) -> String {
        let dims = [m.rows() as i64, m.cols() as i64];
        match m {
            Matrix::F32 { values, .. } => {
                let w = self.floats(name, &dims, values);
                self.node("MatMul", &[input, &w])
            }
            Matrix::Int8 { values, scales, .. } => {
                let raw = values.iter().map(|v| *v as u8).collect();
                let q = self.tensor(&format!("{name}.q"), &dims, INT8, raw);
                let scale = self.floats(&format!("{name}.scale"), &[dims[1]], scales);
                let [xq, xs, xz] = [0, 1, 2].map(|_| self.fresh());
                self.nodes.push(pb::NodeProto {
                    input: vec![input.to_string()],
                    output: vec![xq.clone(), xs.clone(), xz.clone()],
                    name: format!("n{}", self.nodes.len()),
                    op_type: "DynamicQuantizeLinear".into(),
                    ..Default::default()
                });
                let sums = self.node("MatMulInteger", &[&xq, &q, &xz]);
                let cast = self.fresh();
                let to_float = int_attribute("to", FLOAT as i64);
                self.named_node("Cast", &[&sums], &cast, vec![to_float]);
                let y = self.node("Mul", &[&cast, &xs]);
                self.node("Mul", &[&y, &scale])
            }
            Matrix::LowRank { left, right } => {
                let inner = self.product(input, &format!("{name}.left"), left);
                self.product(&inner, &format!("{name}.right"), right)
            }
        }
    }

    fn slice(&mut self, source: &str, start: i64, end: i64) -> String {
        let names = [("starts", start), ("ends", end), ("axes", 1)].map(|(what, v)| {
            let name = format!("{}.{what}", self.fresh());
            self.tensor(&name, &[1], INT64, v.to_le_bytes().to_vec())
        });
        self.node("Slice", &[source, &names[0], &names[1], &names[2]])
    }

    fn fresh(&mut self) -> String {
        self.counter += 1;
        format!("t{}", self.counter)
    }

    fn node(&mut self, op: &str, inputs: &[&str]) -> String {
        let output = self.fresh();
        self.named_node(op, inputs, &output, vec![])
    }

    fn named_node(
        &mut self,
        op: &str,
        inputs: &[&str],
        output: &str,
        attribute: Vec<pb::AttributeProto>,
    ) -> String {
        self.nodes.push(pb::NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.to_string()],
            name: format!("n{}", self.nodes.len()),
            op_type: op.into(),
            attribute,
            ..Default::default()
        });
        output.to_string()
    }

    fn finish(self) -> pb::GraphProto {
        pb::GraphProto {
            name: "wren_step".into(),
            node: self.nodes,
            initializer: self.initializers,
            input: self.inputs,
            output: self.outputs,
            ..Default::default()
        }
    }
}

/// A decoded step model: its weights and the metadata stored in the file.
pub struct Decoded {
    /// The network's weights.
    pub net: GruNet,
    /// Key-value metadata from the file.
    pub metadata: Vec<(String, String)>,
}

/// Reads the weights of a step model written by [`export`].
pub fn import(bytes: &[u8]) -> Result<Decoded, ModelError> {
    if bytes.len() > MAX_MODEL_BYTES {
        return Err(contract(format!(
            "file of {} bytes is over the limit",
            bytes.len()
        )));
    }
    let model = pb::ModelProto::decode(bytes).map_err(|e| ModelError::Decode(e.to_string()))?;
    let graph = model.graph.as_ref().ok_or_else(|| contract("no graph"))?;
    check_operators(&model, graph)?;
    let find = |name: &str| graph.initializer.iter().find(|t| t.name == name);
    let single = |name: &str| -> Result<Matrix, ModelError> {
        if let Some(t) = find(name) {
            let (rows, cols) = dims2(t)?;
            return Ok(Matrix::F32 {
                rows,
                cols,
                values: floats(t, rows * cols)?,
            });
        }
        let q = find(&format!("{name}.q")).ok_or_else(|| contract(format!("no weight {name}")))?;
        let (rows, cols) = dims2(q)?;
        if q.data_type != INT8 || q.raw_data.len() != rows * cols {
            return Err(contract(format!("{name}.q is not raw int8 of its shape")));
        }
        let scale =
            find(&format!("{name}.scale")).ok_or_else(|| contract(format!("no {name}.scale")))?;
        let values = q.raw_data.iter().map(|b| *b as i8).collect();
        Ok(Matrix::Int8 {
            rows,
            cols,
            values,
            scales: floats(scale, cols)?,
        })
    };
    let stored = |name: &str| find(name).or_else(|| find(&format!("{name}.q"))).is_some();
    let matrix = |name: &str| -> Result<Matrix, ModelError> {
        let (left, right) = (format!("{name}.left"), format!("{name}.right"));
        if !stored(name) && stored(&left) {
            return Ok(Matrix::LowRank {
                left: Box::new(single(&left)?),
                right: Box::new(single(&right)?),
            });
        }
        single(name)
    };
    let vector = |name: &str, len: usize| -> Result<Vec<f32>, ModelError> {
        floats(
            find(name).ok_or_else(|| contract(format!("no bias {name}")))?,
            len,
        )
    };
    let mut layers = Vec::new();
    for k in 0.. {
        let prefix = format!("l{k}");
        if find(&format!("{prefix}.b_input")).is_none() {
            break;
        }
        let w_input = matrix(&format!("{prefix}.w_input"))?;
        let w_hidden = matrix(&format!("{prefix}.w_hidden"))?;
        let gates = w_hidden.cols();
        layers.push(GruLayer {
            b_input: vector(&format!("{prefix}.b_input"), gates)?,
            b_hidden: vector(&format!("{prefix}.b_hidden"), gates)?,
            w_input,
            w_hidden,
        });
    }
    let w_out = matrix("out.w")?;
    let b_out = vector("out.b", w_out.cols())?;
    let net = GruNet {
        layers,
        w_out,
        b_out,
    };
    net.validate().map_err(contract)?;
    check_io(graph, net.shape())?;
    check_int8_products(graph)?;
    let metadata = model
        .metadata_props
        .iter()
        .map(|e| (e.key.clone(), e.value.clone()))
        .collect();
    Ok(Decoded { net, metadata })
}

fn dims2(t: &pb::TensorProto) -> Result<(usize, usize), ModelError> {
    match t.dims[..] {
        [rows, cols]
            if (1..=MAX_DIMENSION as i64).contains(&rows)
                && (1..=MAX_DIMENSION as i64).contains(&cols) =>
        {
            Ok((rows as usize, cols as usize))
        }
        _ => Err(contract(format!(
            "{} must be a matrix of sane size",
            t.name
        ))),
    }
}

fn floats(t: &pb::TensorProto, len: usize) -> Result<Vec<f32>, ModelError> {
    let values: Vec<f32> = if t.data_type != FLOAT {
        return Err(contract(format!("{} is not float", t.name)));
    } else if !t.raw_data.is_empty() {
        t.raw_data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    } else {
        t.float_data.clone()
    };
    if values.len() != len || t.dims.iter().product::<i64>() != len as i64 {
        return Err(contract(format!(
            "{} has {} values, expected {len}",
            t.name,
            values.len()
        )));
    }
    if values.iter().any(|v| !v.is_finite()) {
        return Err(contract(format!("{} holds NaN or infinite values", t.name)));
    }
    Ok(values)
}

/// The operator set and every node's operator must be ones Wren runs, and
/// every weight must lie in the file itself.
fn check_operators(model: &pb::ModelProto, graph: &pb::GraphProto) -> Result<(), ModelError> {
    for set in &model.opset_import {
        let default = set.domain.is_empty() || set.domain == "ai.onnx";
        if !default {
            return Err(contract(format!(
                "operator set {:?} is not supported (only the default ONNX set)",
                set.domain
            )));
        }
        if !OPSETS.contains(&set.version) {
            return Err(contract(format!(
                "ONNX operator set version {} is not supported ({} to {})",
                set.version,
                OPSETS.start(),
                OPSETS.end()
            )));
        }
    }
    for node in &graph.node {
        let default = node.domain.is_empty() || node.domain == "ai.onnx";
        if !default || !OPERATORS.contains(&node.op_type.as_str()) {
            return Err(contract(format!(
                "operator {:?} is not supported (a step model uses {})",
                node.op_type,
                OPERATORS.join(", ")
            )));
        }
    }
    let external = graph
        .initializer
        .iter()
        .find(|t| t.data_location == Some(EXTERNAL) || !t.external_data.is_empty());
    if let Some(t) = external {
        return Err(contract(format!(
            "{} keeps its values in another file, which only a model folder provides",
            t.name
        )));
    }
    Ok(())
}

/// Every int8 weight must be read by a `MatMulInteger`: a file that only
/// casts it to float would compute something other than the kernel.
fn check_int8_products(graph: &pb::GraphProto) -> Result<(), ModelError> {
    for t in graph.initializer.iter().filter(|t| t.data_type == INT8) {
        let integer = graph
            .node
            .iter()
            .any(|n| n.op_type == "MatMulInteger" && n.input.get(1) == Some(&t.name));
        if !integer {
            return Err(contract(format!(
                "{} is int8 but no MatMulInteger reads it (an older int8 format?)",
                t.name
            )));
        }
    }
    Ok(())
}

/// The static dimensions of an f32 graph input or output.
fn value_dims(info: &pb::ValueInfoProto) -> Option<Vec<i64>> {
    let pb::type_proto::Value::TensorType(t) = info.r#type.as_ref()?.value.as_ref()?;
    if t.elem_type != FLOAT {
        return None;
    }
    t.shape
        .as_ref()?
        .dim
        .iter()
        .map(|d| match d.value {
            Some(pb::tensor_shape_proto::dimension::Value::DimValue(v)) => Some(v),
            _ => None,
        })
        .collect()
}

fn check_io(graph: &pb::GraphProto, shape: Shape) -> Result<(), ModelError> {
    let dims = value_dims;
    let expect =
        |list: &[pb::ValueInfoProto], names: [(&str, usize); 2]| -> Result<(), ModelError> {
            for (name, width) in names {
                let info = list
                    .iter()
                    .find(|i| i.name == name)
                    .ok_or_else(|| contract(format!("no {name}")))?;
                if dims(info) != Some(vec![1, width as i64]) {
                    return Err(contract(format!("{name} must be f32 [1, {width}]")));
                }
            }
            Ok(())
        };
    let inputs: Vec<_> = graph
        .input
        .iter()
        .filter(|i| i.name == "x" || i.name == "h")
        .cloned()
        .collect();
    expect(&inputs, [("x", shape.input), ("h", shape.state())])?;
    expect(
        &graph.output,
        [("y", shape.output), ("h_next", shape.state())],
    )
}

/// A step model running under tract: the reference the kernels are checked against.
///
/// Allocates on every run; never use it on a real-time thread.
pub struct TractStep {
    plan: Arc<TypedSimplePlan>,
    input: usize,
    state: usize,
    output: usize,
}

impl TractStep {
    /// Loads and optimizes a Wren step model of a known shape.
    pub fn load(bytes: &[u8], shape: Shape) -> Result<TractStep, ModelError> {
        Self::load_widths(bytes, (shape.input, shape.state(), shape.output))
    }

    /// Loads any graph that meets the step-model contract (`x [1, I]`,
    /// `h [1, S]` in; `y [1, O]`, `h_next [1, S]` out), whatever is inside.
    pub fn load_any(bytes: &[u8]) -> Result<TractStep, ModelError> {
        if bytes.len() > MAX_MODEL_BYTES {
            return Err(contract("file over the size limit"));
        }
        let model = pb::ModelProto::decode(bytes).map_err(|e| ModelError::Decode(e.to_string()))?;
        let graph = model.graph.as_ref().ok_or_else(|| contract("no graph"))?;
        let width = |list: &[pb::ValueInfoProto], name: &str| -> Result<usize, ModelError> {
            let info = list
                .iter()
                .find(|i| i.name == name)
                .ok_or_else(|| contract(format!("no {name}")))?;
            match value_dims(info).as_deref() {
                Some([1, w]) if (1..=MAX_DIMENSION as i64).contains(w) => Ok(*w as usize),
                _ => Err(contract(format!("{name} must be f32 [1, width]"))),
            }
        };
        let (input, state) = (width(&graph.input, "x")?, width(&graph.input, "h")?);
        let output = width(&graph.output, "y")?;
        if width(&graph.output, "h_next")? != state {
            return Err(contract("h and h_next differ in width"));
        }
        Self::load_widths(bytes, (input, state, output))
    }

    /// Input, output widths.
    pub fn widths(&self) -> (usize, usize) {
        (self.input, self.output)
    }

    /// Width of the recurrent state.
    pub fn state_width(&self) -> usize {
        self.state
    }

    fn load_widths(
        bytes: &[u8],
        (input, state, output): (usize, usize, usize),
    ) -> Result<TractStep, ModelError> {
        let tract = |e: TractError| ModelError::Tract(format!("{e:#}"));
        let plan = tract_onnx::onnx()
            .model_for_read(&mut std::io::Cursor::new(bytes))
            .map_err(tract)?
            .into_optimized()
            .map_err(tract)?
            .into_runnable()
            .map_err(tract)?;
        Ok(TractStep {
            plan,
            input,
            state,
            output,
        })
    }

    /// One step: returns `(y, h_next)`.
    pub fn run(&self, x: &[f32], state: &[f32]) -> Result<(Vec<f32>, Vec<f32>), ModelError> {
        let tract = |e: TractError| ModelError::Tract(format!("{e:#}"));
        let x = tract_ndarray::Array2::from_shape_vec((1, self.input), x.to_vec())
            .map_err(|e| ModelError::Tract(e.to_string()))?;
        let h = tract_ndarray::Array2::from_shape_vec((1, self.state), state.to_vec())
            .map_err(|e| ModelError::Tract(e.to_string()))?;
        let out = self
            .plan
            .run(tvec!(x.into_tvalue(), h.into_tvalue()))
            .map_err(tract)?;
        let y: Vec<f32> = out[0]
            .to_plain_array_view::<f32>()
            .map_err(tract)?
            .iter()
            .copied()
            .collect();
        let next = out[1]
            .to_plain_array_view::<f32>()
            .map_err(tract)?
            .iter()
            .copied()
            .collect::<Vec<f32>>();
        if y.len() != self.output {
            return Err(ModelError::Contract(format!(
                "y has {} values, expected {}",
                y.len(),
                self.output
            )));
        }
        Ok((y, next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::kernel::GruKernel;

    fn small_net() -> GruNet {
        let matrix = |rows: usize, cols: usize, salt: usize| Matrix::F32 {
            rows,
            cols,
            values: (0..rows * cols)
                .map(|i| (((i * 31 + salt) % 17) as f32 - 8.0) * 0.05)
                .collect(),
        };
        let layer = |input: usize, salt: usize| GruLayer {
            w_input: matrix(input, 24, salt),
            w_hidden: matrix(8, 24, salt + 1),
            b_input: vec![0.01; 24],
            b_hidden: vec![-0.02; 24],
        };
        GruNet {
            layers: vec![layer(6, 0), layer(8, 3)],
            w_out: matrix(8, 5, 7),
            b_out: vec![0.5; 5],
        }
    }

    #[test]
    fn exported_model_reads_back_and_runs_in_tract_like_the_kernel() {
        let factorized = {
            let mut net = small_net();
            let Matrix::F32 { values, .. } = &net.layers[1].w_hidden else {
                unreachable!()
            };
            let left: Vec<f32> = values[..8 * 3].to_vec();
            let right: Vec<f32> = values[..3 * 24].iter().map(|v| v * 0.5).collect();
            net.layers[1].w_hidden = Matrix::LowRank {
                left: Box::new(Matrix::F32 {
                    rows: 8,
                    cols: 3,
                    values: left,
                }),
                right: Box::new(Matrix::F32 {
                    rows: 3,
                    cols: 24,
                    values: right,
                }),
            };
            net
        };
        for net in [
            small_net(),
            small_net().quantized(),
            factorized.clone(),
            factorized.quantized(),
        ] {
            let bytes = export(&net, &[("role", "test".into())]);
            let decoded = import(&bytes).unwrap();
            assert_eq!(decoded.net, net);
            assert_eq!(
                decoded.metadata,
                vec![("role".to_string(), "test".to_string())]
            );
            let tract = TractStep::load(&bytes, net.shape()).unwrap();
            let mut kernel = GruKernel::new(&net);
            let mut state = vec![0.0; 16];
            let mut y = vec![0.0; 5];
            for t in 0..5 {
                let x: Vec<f32> = (0..6).map(|i| if i == t { 1.0 } else { 0.0 }).collect();
                let (ty, th) = tract.run(&x, &state).unwrap();
                kernel.step(&x, &mut state, &mut y);
                for (a, b) in y.iter().zip(&ty).chain(state.iter().zip(&th)) {
                    assert!((a - b).abs() < 1e-5, "{a} vs {b}");
                }
            }
        }
    }

    #[test]
    fn garbage_and_broken_contracts_are_refused() {
        assert!(matches!(
            import(b"\x00\x01garbage"),
            Err(ModelError::Decode(_)) | Err(ModelError::Contract(_))
        ));
        assert!(import(&[]).is_err());
        let bytes = export(&small_net(), &[]);
        for cut in [1, 10, bytes.len() / 2, bytes.len() - 1] {
            assert!(import(&bytes[..cut]).is_err(), "truncated at {cut}");
        }
        let mut nan = small_net();
        if let Matrix::F32 { values, .. } = &mut nan.layers[0].w_input {
            values[3] = f32::NAN;
        }
        assert!(matches!(
            import(&export(&nan, &[])),
            Err(ModelError::Contract(_))
        ));
    }
}
