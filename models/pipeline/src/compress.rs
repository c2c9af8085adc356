//! The compression toolkit: structured and magnitude pruning, low-rank
//! factorization, quantization-aware fine-tuning and distillation from any
//! ONNX teacher that meets the step-model contract.
//!
//! Each technique maps a `GruNet` (or the masks of a trainable `StepNet`) to
//! a smaller one; [`fine_tune`] then recovers quality with the teacher's
//! soft targets, keeping the structure (masks, factors, int8 grid) fixed.

use candle_core::{Device, Result as CandleResult, Tensor};
use wren::melody::ngram::argmax;
use wren::melody::tokens::{write_input, Melody, Token, INPUT_SIZE, VOCAB};
use wren::model::kernel::GruKernel;
use wren::model::onnx::{import, ModelError, TractStep};
use wren::model::{GruLayer, GruNet, Matrix};

use crate::batches::{Batch, Rng, WindowSampler};
use crate::net::{cross_entropy, distillation_loss, StepNet};
use crate::train::{fit, TrainConfig, Trained};

/// Test NLL (nats per step) and accuracy as the real-time kernel computes
/// them: the figures of what the plugin plays, int8 arithmetic included.
pub fn kernel_nll(net: &GruNet, melodies: &[&Melody]) -> (f64, f64) {
    let shape = net.shape();
    let mut kernel = GruKernel::new(net);
    let (mut x, mut y) = (vec![0.0; INPUT_SIZE], vec![0.0; VOCAB]);
    let mut state = vec![0.0; shape.state()];
    let (mut nll, mut correct, mut steps) = (0.0, 0usize, 0usize);
    for melody in melodies {
        state.fill(0.0);
        for (i, target) in melody.tokens.iter().enumerate() {
            let previous = i.checked_sub(1).map_or(Token::Rest, |p| melody.tokens[p]);
            write_input(&mut x, previous, melody.step_in_bar(i), melody.meter);
            kernel.step(&x, &mut state, &mut y);
            let max = y.iter().fold(f32::NEG_INFINITY, |m, v| m.max(*v));
            let log_sum = y.iter().map(|v| ((v - max) as f64).exp()).sum::<f64>().ln();
            nll += log_sum - (y[target.index()] - max) as f64;
            correct += (argmax(&y) == target.index()) as usize;
            steps += 1;
        }
    }
    (
        nll / steps.max(1) as f64,
        correct as f64 / steps.max(1) as f64,
    )
}

/// Keeps the `hidden` units of every layer that matter most, dropping the
/// rest with their rows and columns: a smaller dense network that runs
/// faster in every kernel. A unit's importance is the norm of the weights
/// that read it (the next layer's inputs or the readout, and its own
/// recurrent row).
pub fn shrink(net: &GruNet, hidden: usize) -> GruNet {
    let h = net.shape().hidden;
    if hidden >= h {
        return net.clone();
    }
    let dense = |m: &Matrix| (m.rows(), m.cols(), m.to_f32());
    let row_norm = |m: &Matrix, r: usize| -> f64 {
        let (_, cols, v) = dense(m);
        v[r * cols..(r + 1) * cols]
            .iter()
            .map(|w| (*w as f64).powi(2))
            .sum()
    };
    let mut keep_per_layer = Vec::new();
    for (k, layer) in net.layers.iter().enumerate() {
        let reader = net.layers.get(k + 1).map_or(&net.w_out, |l| &l.w_input);
        let mut units: Vec<(f64, usize)> = (0..h)
            .map(|u| (row_norm(reader, u) + row_norm(&layer.w_hidden, u), u))
            .collect();
        units.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut keep: Vec<usize> = units[..hidden].iter().map(|(_, u)| *u).collect();
        keep.sort_unstable();
        keep_per_layer.push(keep);
    }
    let gate_columns = |keep: &[usize]| -> Vec<usize> {
        (0..3)
            .flat_map(|g| keep.iter().map(move |u| g * h + u))
            .collect()
    };
    let select = |m: &Matrix, rows: Option<&[usize]>, cols: Option<&[usize]>| -> Matrix {
        let (r, c, v) = dense(m);
        let rows: Vec<usize> = rows.map_or_else(|| (0..r).collect(), <[usize]>::to_vec);
        let cols: Vec<usize> = cols.map_or_else(|| (0..c).collect(), <[usize]>::to_vec);
        Matrix::F32 {
            rows: rows.len(),
            cols: cols.len(),
            values: rows
                .iter()
                .flat_map(|i| cols.iter().map(|j| v[i * c + j]).collect::<Vec<_>>())
                .collect(),
        }
    };
    let pick = |v: &[f32], idx: &[usize]| idx.iter().map(|i| v[*i]).collect::<Vec<f32>>();
    let layers = net
        .layers
        .iter()
        .enumerate()
        .map(|(k, l)| {
            let keep = &keep_per_layer[k];
            let columns = gate_columns(keep);
            let input_rows = (k > 0).then(|| keep_per_layer[k - 1].as_slice());
            GruLayer {
                w_input: select(&l.w_input, input_rows, Some(&columns)),
                w_hidden: select(&l.w_hidden, Some(keep), Some(&columns)),
                b_input: pick(&l.b_input, &columns),
                b_hidden: pick(&l.b_hidden, &columns),
            }
        })
        .collect();
    let last = keep_per_layer.last().map(Vec::as_slice);
    GruNet {
        layers,
        w_out: select(&net.w_out, last, None),
        b_out: net.b_out.clone(),
    }
}

/// Truncated SVD of a dense matrix: the smallest rank whose singular values
/// keep `energy` of the squared total, as `L = U S^1/2`, `R = S^1/2 V^T`.
/// Returns the matrix unchanged when the factors would not be smaller.
pub fn factorize(m: &Matrix, energy: f64) -> Matrix {
    let (rows, cols) = (m.rows(), m.cols());
    let values = m.to_f32();
    let a = faer::Mat::<f64>::from_fn(rows, cols, |i, j| values[i * cols + j] as f64);
    let Ok(svd) = a.thin_svd() else {
        return m.clone();
    };
    let s = svd.S().column_vector();
    let squares: Vec<f64> = (0..s.nrows()).map(|k| s[k] * s[k]).collect();
    let total: f64 = squares.iter().sum();
    let mut kept = 0.0;
    let mut rank = squares.len();
    for (k, sq) in squares.iter().enumerate() {
        kept += sq;
        if kept >= energy * total {
            rank = k + 1;
            break;
        }
    }
    if rank * (rows + cols) >= rows * cols || total == 0.0 {
        return m.clone();
    }
    let (u, v) = (svd.U(), svd.V());
    let root: Vec<f64> = (0..rank).map(|k| s[k].sqrt()).collect();
    let left = (0..rows)
        .flat_map(|i| (0..rank).map(move |k| (i, k)))
        .map(|(i, k)| (u[(i, k)] * root[k]) as f32)
        .collect();
    let right = (0..rank)
        .flat_map(|k| (0..cols).map(move |j| (k, j)))
        .map(|(k, j)| (v[(j, k)] * root[k]) as f32)
        .collect();
    Matrix::LowRank {
        left: Box::new(Matrix::F32 {
            rows,
            cols: rank,
            values: left,
        }),
        right: Box::new(Matrix::F32 {
            rows: rank,
            cols,
            values: right,
        }),
    }
}

/// Factorizes every recurrent and readout matrix at `energy`. The first
/// layer's input matrix stays dense: its inputs are mostly zero (one-hot
/// tokens, few controls), so the dense product already skips most rows.
pub fn factorize_net(net: &GruNet, energy: f64) -> GruNet {
    let mut out = net.clone();
    for (k, layer) in out.layers.iter_mut().enumerate() {
        if k > 0 {
            layer.w_input = factorize(&layer.w_input, energy);
        }
        layer.w_hidden = factorize(&layer.w_hidden, energy);
    }
    out.w_out = factorize(&out.w_out, energy);
    out
}

/// Where magnitude pruning draws its threshold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PruneScope {
    /// One threshold over all weight matrices.
    Global,
    /// Each matrix (each factor) pruned to the same share on its own.
    PerLayer,
}

/// Masks out the smallest-magnitude weights (`|w| < t -> 0`) so that
/// `sparsity` of them are zero. Biases are never pruned.
pub fn prune_by_magnitude(net: &StepNet, sparsity: f64, scope: PruneScope) -> CandleResult<()> {
    let weights = net.weights();
    let factors: Vec<Vec<Vec<f32>>> = weights
        .iter()
        .map(|w| {
            w.factors()
                .iter()
                .map(|v| v.as_tensor().flatten_all()?.to_vec1::<f32>())
                .collect::<CandleResult<_>>()
        })
        .collect::<CandleResult<_>>()?;
    let threshold = |values: &mut Vec<f32>| -> f32 {
        let cut = ((values.len() as f64 * sparsity) as usize).min(values.len());
        if cut == 0 {
            return 0.0;
        }
        values.iter_mut().for_each(|v| *v = v.abs());
        let (_, t, _) = values.select_nth_unstable_by(cut - 1, |a, b| a.total_cmp(b));
        *t
    };
    let global = match scope {
        PruneScope::Global => {
            let mut all: Vec<f32> = factors.iter().flatten().flatten().copied().collect();
            Some(threshold(&mut all))
        }
        PruneScope::PerLayer => None,
    };
    for (weight, values) in weights.iter().zip(&factors) {
        let masks = weight
            .factors()
            .iter()
            .zip(values)
            .map(|(var, v)| {
                let t = global.unwrap_or_else(|| threshold(&mut v.clone()));
                let keep: Vec<f32> = v.iter().map(|w| (w.abs() > t) as u8 as f32).collect();
                Tensor::from_vec(keep, var.as_tensor().shape(), var.as_tensor().device()).map(Some)
            })
            .collect::<CandleResult<_>>()?;
        weight.set_masks(masks);
    }
    Ok(())
}

/// The gradual schedule `s_t = s (1 - (1 - t / T)^3)`: fast early, when the
/// network recovers easily, slow near the target. Reaches `target` at 3/4
/// of the run, leaving the rest to recover.
pub fn sparsity_at(step: usize, steps: usize, target: f64) -> f64 {
    let end = (steps * 3 / 4).max(1);
    let t = (step as f64 / end as f64).min(1.0);
    target * (1.0 - (1.0 - t).powi(3))
}

/// A teacher for distillation: any ONNX step model with the student's input
/// and output widths.
pub enum Teacher {
    /// A Wren GRU file, run batched in candle (fast).
    Gru(StepNet),
    /// Any other graph that meets the contract, run step by step in tract.
    Onnx(TractStep),
}

impl Teacher {
    /// Reads a teacher from ONNX bytes for a network that reads `input` and
    /// writes `output` values: a Wren GRU runs in candle; any other graph
    /// with inputs `x [1, I]`, `h [1, S]` and outputs `y [1, O]`,
    /// `h_next [1, S]` runs in tract.
    pub fn load(
        bytes: &[u8],
        (input, output): (usize, usize),
        device: &Device,
    ) -> Result<Teacher, ModelError> {
        let (teacher, widths) = match import(bytes) {
            Ok(decoded) => {
                let shape = decoded.net.shape();
                let net = StepNet::from_gru_net(&decoded.net, device)
                    .map_err(|e| ModelError::Tract(e.to_string()))?;
                (Teacher::Gru(net), (shape.input, shape.output))
            }
            Err(_) => {
                let tract = TractStep::load_any(bytes)?;
                let widths = tract.widths();
                (Teacher::Onnx(tract), widths)
            }
        };
        if widths != (input, output) {
            return Err(ModelError::Contract(format!(
                "the student reads {input} and writes {output} values, this teacher {} and {}",
                widths.0, widths.1
            )));
        }
        Ok(teacher)
    }

    /// Outputs `[batch * len, O]` for dense inputs `[batch, len, I]`, each
    /// sequence run from the zero state.
    pub fn outputs(&self, x: &Tensor, device: &Device) -> CandleResult<Tensor> {
        match self {
            Teacher::Gru(net) => Ok(net.forward_dense(x, None, device)?.detach()),
            Teacher::Onnx(tract) => {
                let (batch, len, _) = x.dims3()?;
                let mut out = Vec::new();
                for sequence in x.to_vec3::<f32>()? {
                    let mut state = vec![0.0; tract.state_width()];
                    for row in &sequence {
                        let (y, next) = tract
                            .run(row, &state)
                            .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
                        out.extend(y);
                        state = next;
                    }
                }
                let width = out.len() / (batch * len).max(1);
                Tensor::from_vec(out, (batch * len, width), device)
            }
        }
    }

    /// Melody logits `[batch * len, VOCAB]` for a batch of tokens.
    pub fn logits(&self, batch: &Batch, device: &Device) -> CandleResult<Tensor> {
        match self {
            Teacher::Gru(net) => Ok(net.forward(batch, None, device)?.detach()),
            Teacher::Onnx(_) => {
                let steps = batch.batch * batch.len;
                let mut x = vec![0.0f32; steps * INPUT_SIZE];
                for (at, row) in x.chunks_exact_mut(INPUT_SIZE).enumerate() {
                    for one in [batch.previous[at], batch.position[at], batch.meter[at]] {
                        row[one as usize] = 1.0;
                    }
                }
                let x = Tensor::from_vec(x, (batch.batch, batch.len, INPUT_SIZE), device)?;
                self.outputs(&x, device)
            }
        }
    }
}

/// How a fine-tuning run keeps the structure it was given.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    /// Final share of zero weights (0 for none), reached gradually.
    pub sparsity: f64,
    /// Where pruning draws its threshold.
    pub scope: PruneScope,
    /// Quantization-aware: forward passes see int8-rounded weights.
    pub int8: bool,
}

/// What a fine-tuning run learns from and how it scores weights.
pub trait Objective {
    /// The loss of one training batch (the teacher's targets included) and
    /// the figure to report.
    fn loss(&mut self, net: &StepNet, config: &TrainConfig) -> CandleResult<(Tensor, f64)>;
    /// The validation loss of weights as they ship (lower is better),
    /// computed by the real-time kernel, with a line to show.
    fn score(&self, net: &GruNet) -> CandleResult<(f64, String)>;
}

/// The melody objective: cross-entropy on the melodies blended with the
/// teacher's soft targets, scored by kernel NLL.
pub struct MelodyObjective<'a> {
    teacher: &'a Teacher,
    sampler: WindowSampler<'a>,
    valid: &'a [&'a Melody],
    dropout_rng: Rng,
    alpha: f64,
    temperature: f64,
    device: Device,
}

impl<'a> MelodyObjective<'a> {
    /// Weight `alpha` goes to the ground-truth cross-entropy, `1 - alpha` to
    /// the teacher's soft targets at `temperature`.
    pub fn new(
        teacher: &'a Teacher,
        (alpha, temperature): (f64, f64),
        (train, valid): (&'a [&'a Melody], &'a [&'a Melody]),
        config: &TrainConfig,
        device: &Device,
    ) -> Self {
        MelodyObjective {
            teacher,
            sampler: WindowSampler::new(train, config.window, config.seed),
            valid,
            dropout_rng: Rng::new(config.seed ^ 0xd0d0),
            alpha,
            temperature,
            device: device.clone(),
        }
    }
}

impl Objective for MelodyObjective<'_> {
    fn loss(&mut self, net: &StepNet, config: &TrainConfig) -> CandleResult<(Tensor, f64)> {
        let device = &self.device;
        let batch = self.sampler.next_batch(config.batch, config.window);
        let dropout = Some((config.dropout, &mut self.dropout_rng));
        let logits = net.forward(&batch, dropout, device)?;
        let hard = cross_entropy(&logits, &batch, device)?;
        let reported = hard.to_scalar::<f32>()? as f64;
        let soft_targets = self.teacher.logits(&batch, device)?;
        let soft = distillation_loss(&logits, &soft_targets, self.temperature, &batch, device)?;
        let loss = ((&hard * self.alpha)? + (soft * (1.0 - self.alpha))?)?;
        Ok((loss, reported))
    }

    fn score(&self, net: &GruNet) -> CandleResult<(f64, String)> {
        let (nll, accuracy) = kernel_nll(net, self.valid);
        Ok((nll, format!("valid NLL {nll:.4} acc {accuracy:.3}")))
    }
}

/// Fine-tunes `start` on an objective, keeping its factors, pruning to the
/// plan's sparsity and (for an int8 plan) training through the int8 grid.
/// Returns the weights best on the objective's validation score (as the
/// real-time kernel computes it, int8 arithmetic included) with masks
/// applied and, for an int8 plan, quantized.
pub fn fine_tune(
    label: &str,
    config: &TrainConfig,
    start: &GruNet,
    plan: Plan,
    objective: &mut impl Objective,
    device: &Device,
) -> CandleResult<Trained> {
    let net = StepNet::from_gru_net(start, device)?;
    net.set_fake_int8(plan.int8);
    let objective = std::cell::RefCell::new(objective);
    let step = std::cell::Cell::new(0usize);
    let loss = |net: &StepNet| -> CandleResult<(Tensor, f64)> {
        let now = step.get();
        if plan.sparsity > 0.0 && now.is_multiple_of(10) {
            let target = sparsity_at(now, config.steps, plan.sparsity);
            prune_by_magnitude(net, target, plan.scope)?;
        }
        step.set(now + 1);
        objective.borrow_mut().loss(net, config)
    };
    let finish = |net: &StepNet| -> CandleResult<GruNet> {
        // fit keeps f32 checkpoints (masks applied); int8 is applied last.
        let dense = net.to_gru_net()?;
        Ok(if plan.int8 { dense.quantized() } else { dense })
    };
    let validate = |net: &StepNet| -> CandleResult<(f64, String)> {
        let (score, line) = objective.borrow().score(&finish(net)?)?;
        // Until pruning reaches its target, a checkpoint is not a candidate.
        let pruned = plan.sparsity == 0.0 || step.get() >= (config.steps * 3 / 4).max(1);
        Ok((if pruned { score } else { f64::INFINITY }, line))
    };
    let trained = fit(label, config, net, loss, validate)?;
    Ok(Trained {
        net: if plan.int8 {
            trained.net.quantized()
        } else {
            trained.net
        },
        ..trained
    })
}
