//! The GRU step networks (melody and timbre) in candle, for training.
//!
//! Same parameterization as `wren::model::GruNet`: input-major matrices
//! `x W`, gates reset, update, candidate, so trained weights export as they
//! are. A weight matrix may be factorized (`W = L R`), carry a pruning mask
//! and be fake-quantized to int8 while it trains.

use std::cell::{Cell, RefCell};

use candle_core::{DType, Device, Result, Tensor, Var, D};

use candle_nn::ops::{log_softmax, sigmoid};
use wren::melody::tokens::{INPUT_SIZE, VOCAB};
use wren::model::{GruLayer, GruNet, Matrix};

use crate::batches::{Batch, Rng};

/// A trainable weight matrix: one factor (dense) or two (`W = L R`).
///
/// Each factor may carry a mask of kept weights (pruned ones read as zero
/// and get no gradient). With fake int8 on, each factor is rounded to the
/// int8 grid the exporter will use (a calibrated scale per output column)
/// in the forward pass, and the gradient passes straight through.
pub struct Weight {
    factors: Vec<Var>,
    masks: RefCell<Vec<Option<Tensor>>>,
}

impl Weight {
    fn dense(var: Var) -> Weight {
        Weight {
            factors: vec![var],
            masks: RefCell::new(vec![None]),
        }
    }

    fn from_matrix(m: &Matrix, device: &Device) -> Result<Weight> {
        let var = |m: &Matrix| {
            Var::from_tensor(&Tensor::from_vec(m.to_f32(), (m.rows(), m.cols()), device)?)
        };
        let factors = match m {
            Matrix::LowRank { left, right } => vec![var(left)?, var(right)?],
            _ => vec![var(m)?],
        };
        let masks = RefCell::new(vec![None; factors.len()]);
        Ok(Weight { factors, masks })
    }

    /// The factors' current values with their masks applied.
    pub fn masked_factors(&self) -> Result<Vec<Tensor>> {
        let masks = self.masks.borrow();
        self.factors
            .iter()
            .zip(masks.iter())
            .map(|(v, m)| match m {
                Some(m) => v.as_tensor().mul(m),
                None => Ok(v.as_tensor().clone()),
            })
            .collect()
    }

    /// The matrix the forward pass multiplies with.
    fn effective(&self, fake_int8: bool) -> Result<Tensor> {
        let mut parts = self.masked_factors()?;
        if fake_int8 {
            parts = parts.iter().map(fake_int8_columns).collect::<Result<_>>()?;
        }
        match &parts[..] {
            [w] => Ok(w.clone()),
            [l, r] => l.matmul(r),
            _ => unreachable!("a weight has one or two factors"),
        }
    }

    /// Sets the masks of the factors (`None` keeps every weight).
    pub fn set_masks(&self, masks: Vec<Option<Tensor>>) {
        assert_eq!(masks.len(), self.factors.len());
        *self.masks.borrow_mut() = masks;
    }

    /// The trainable factors.
    pub fn factors(&self) -> &[Var] {
        &self.factors
    }

    fn to_matrix(&self) -> Result<Matrix> {
        let matrix = |t: &Tensor| -> Result<Matrix> {
            let (rows, cols) = t.dims2()?;
            Ok(Matrix::F32 {
                rows,
                cols,
                values: t.flatten_all()?.to_vec1()?,
            })
        };
        let parts = self.masked_factors()?;
        match &parts[..] {
            [w] => matrix(w),
            [l, r] => Ok(Matrix::LowRank {
                left: Box::new(matrix(l)?),
                right: Box::new(matrix(r)?),
            }),
            _ => unreachable!("a weight has one or two factors"),
        }
    }
}

/// Rounds `w` to the int8 grid of [`Matrix::quantize_int8`] in the forward
/// pass, with a straight-through gradient.
fn fake_int8_columns(w: &Tensor) -> Result<Tensor> {
    let (rows, cols) = w.dims2()?;
    let values: Vec<f32> = w.flatten_all()?.to_vec1()?;
    let scales: Vec<f32> = (0..cols)
        .map(|c| {
            let column: Vec<f32> = (0..rows).map(|r| values[r * cols + c]).collect();
            wren::model::calibrate_scale(&column).max(1e-12)
        })
        .collect();
    let scale = Tensor::from_vec(scales, (1, cols), w.device())?;
    let rounded = w
        .detach()
        .broadcast_div(&scale)?
        .round()?
        .clamp(-127f32, 127f32)?
        .broadcast_mul(&scale)?;
    w + (rounded - w.detach())?
}

/// Trainable weights of one layer.
pub struct LayerVars {
    w_input: Weight,
    w_hidden: Weight,
    b_input: Var,
    b_hidden: Var,
}

/// A trainable GRU network: stacked layers and a linear output.
pub struct StepNet {
    /// Units per layer.
    pub hidden: usize,
    layers: Vec<LayerVars>,
    w_out: Weight,
    b_out: Var,
    fake_int8: Cell<bool>,
}

fn uniform(rows: usize, cols: usize, bound: f64, rng: &mut Rng, device: &Device) -> Result<Var> {
    let shape: Vec<usize> = if rows == 1 {
        vec![cols]
    } else {
        vec![rows, cols]
    };
    let values: Vec<f32> = (0..rows * cols)
        .map(|_| ((rng.unit() * 2.0 - 1.0) * bound) as f32)
        .collect();
    Var::from_tensor(&Tensor::from_vec(values, shape, device)?)
}

impl StepNet {
    /// A freshly initialized melody network.
    pub fn melody(hidden: usize, layers: usize, seed: u64, device: &Device) -> Result<StepNet> {
        StepNet::new(INPUT_SIZE, hidden, layers, VOCAB, seed, device)
    }

    /// A freshly initialized network of `input` features and `output` values
    /// (uniform in `1/sqrt(H)`, as is usual for GRUs).
    pub fn new(
        input: usize,
        hidden: usize,
        layers: usize,
        output: usize,
        seed: u64,
        device: &Device,
    ) -> Result<StepNet> {
        let rng = &mut Rng::new(seed);
        let bound = 1.0 / (hidden as f64).sqrt();
        let mut vars = Vec::new();
        for k in 0..layers {
            let rows = if k == 0 { input } else { hidden };
            vars.push(LayerVars {
                w_input: Weight::dense(uniform(rows, 3 * hidden, bound, rng, device)?),
                w_hidden: Weight::dense(uniform(hidden, 3 * hidden, bound, rng, device)?),
                b_input: uniform(1, 3 * hidden, bound, rng, device)?,
                b_hidden: uniform(1, 3 * hidden, bound, rng, device)?,
            });
        }
        Ok(StepNet {
            hidden,
            layers: vars,
            w_out: Weight::dense(uniform(hidden, output, bound, rng, device)?),
            b_out: uniform(1, output, bound, rng, device)?,
            fake_int8: Cell::new(false),
        })
    }

    /// Sets the output layer's bias, e.g. to the mean target, so that
    /// training starts from plausible outputs.
    pub fn set_output_bias(&self, bias: &[f32]) -> Result<()> {
        let device = self.b_out.device().clone();
        self.b_out
            .set(&Tensor::from_slice(bias, bias.len(), &device)?)
    }

    /// Every trainable variable.
    pub fn vars(&self) -> Vec<Var> {
        let mut out = Vec::new();
        for l in &self.layers {
            out.extend(l.w_input.factors.iter().cloned());
            out.extend(l.w_hidden.factors.iter().cloned());
            out.extend([&l.b_input, &l.b_hidden].map(|v| v.clone()));
        }
        out.extend(self.w_out.factors.iter().cloned());
        out.push(self.b_out.clone());
        out
    }

    /// Every weight matrix, in the order of `GruNet::matrices`.
    pub fn weights(&self) -> Vec<&Weight> {
        let mut out: Vec<&Weight> = Vec::new();
        for l in &self.layers {
            out.extend([&l.w_input, &l.w_hidden]);
        }
        out.push(&self.w_out);
        out
    }

    /// Turns quantization-aware training on or off: with it on, every
    /// forward pass sees int8-rounded weights.
    pub fn set_fake_int8(&self, on: bool) {
        self.fake_int8.set(on);
    }

    /// Logits `[batch * len, VOCAB]` for a melody batch; `dropout` applies
    /// between layers.
    pub fn forward(
        &self,
        batch: &Batch,
        dropout: Option<(f32, &mut Rng)>,
        device: &Device,
    ) -> Result<Tensor> {
        let (b, t) = (batch.batch, batch.len);
        let index = |v: &[u32]| Tensor::from_slice(v, b * t, device);
        let w0 = self.layers[0].w_input.effective(self.fake_int8.get())?;
        // One-hot inputs: the product with W is a sum of its rows.
        let projected = w0
            .index_select(&index(&batch.previous)?, 0)?
            .add(&w0.index_select(&index(&batch.position)?, 0)?)?
            .add(&w0.index_select(&index(&batch.meter)?, 0)?)?;
        self.run_stack(projected, (b, t), dropout, device)
    }

    /// Outputs `[batch * len, output]` for dense inputs `[batch, len, input]`.
    pub fn forward_dense(
        &self,
        x: &Tensor,
        dropout: Option<(f32, &mut Rng)>,
        device: &Device,
    ) -> Result<Tensor> {
        let (b, t, input) = x.dims3()?;
        let projected = x
            .reshape((b * t, input))?
            .matmul(&self.layers[0].w_input.effective(self.fake_int8.get())?)?;
        self.run_stack(projected, (b, t), dropout, device)
    }

    /// The layers and the output, from the first layer's input projection
    /// `[b * t, 3H]` (without its bias).
    fn run_stack(
        &self,
        projected: Tensor,
        (b, t): (usize, usize),
        mut dropout: Option<(f32, &mut Rng)>,
        device: &Device,
    ) -> Result<Tensor> {
        let h = self.hidden;
        let mut projected = projected
            .broadcast_add(self.layers[0].b_input.as_tensor())?
            .reshape((b, t, 3 * h))?;
        let mut outputs = Tensor::zeros((b, t, h), DType::F32, device)?;
        for (k, layer) in self.layers.iter().enumerate() {
            if k > 0 {
                let input = drop(&outputs, &mut dropout)?.reshape((b * t, h))?;
                projected = input
                    .matmul(&layer.w_input.effective(self.fake_int8.get())?)?
                    .broadcast_add(layer.b_input.as_tensor())?
                    .reshape((b, t, 3 * h))?;
            }
            outputs = self.run_layer(layer, &projected, device)?;
        }
        drop(&outputs, &mut dropout)?
            .reshape((b * t, h))?
            .matmul(&self.w_out.effective(self.fake_int8.get())?)?
            .broadcast_add(self.b_out.as_tensor())
    }

    fn run_layer(&self, layer: &LayerVars, projected: &Tensor, device: &Device) -> Result<Tensor> {
        let (b, t, _) = projected.dims3()?;
        let h = self.hidden;
        let mut state = Tensor::zeros((b, h), DType::F32, device)?;
        let mut states = Vec::with_capacity(t);
        let w_hidden = layer.w_hidden.effective(self.fake_int8.get())?;
        for step in 0..t {
            let gi = projected.narrow(1, step, 1)?.squeeze(1)?;
            let gh = state
                .matmul(&w_hidden)?
                .broadcast_add(layer.b_hidden.as_tensor())?;
            let r = sigmoid(&(gi.narrow(1, 0, h)? + gh.narrow(1, 0, h)?)?)?;
            let z = sigmoid(&(gi.narrow(1, h, h)? + gh.narrow(1, h, h)?)?)?;
            let n = (gi.narrow(1, 2 * h, h)? + r.mul(&gh.narrow(1, 2 * h, h)?)?)?.tanh()?;
            state = (&n + z.mul(&(state - &n)?)?)?;
            states.push(state.clone());
        }
        Tensor::stack(&states, 1)
    }

    /// The weights as a `wren` step model (masks applied, f32).
    pub fn to_gru_net(&self) -> Result<GruNet> {
        let vector = |v: &Var| v.as_tensor().to_vec1::<f32>();
        let mut layers = Vec::new();
        for l in &self.layers {
            layers.push(GruLayer {
                w_input: l.w_input.to_matrix()?,
                w_hidden: l.w_hidden.to_matrix()?,
                b_input: vector(&l.b_input)?,
                b_hidden: vector(&l.b_hidden)?,
            });
        }
        Ok(GruNet {
            layers,
            w_out: self.w_out.to_matrix()?,
            b_out: vector(&self.b_out)?,
        })
    }

    /// Loads weights from a `wren` step model, dequantizing int8 and keeping
    /// factorized matrices factorized.
    pub fn from_gru_net(net: &GruNet, device: &Device) -> Result<StepNet> {
        let vector = |v: &[f32]| Var::from_tensor(&Tensor::from_slice(v, v.len(), device)?);
        let mut layers = Vec::new();
        for l in &net.layers {
            layers.push(LayerVars {
                w_input: Weight::from_matrix(&l.w_input, device)?,
                w_hidden: Weight::from_matrix(&l.w_hidden, device)?,
                b_input: vector(&l.b_input)?,
                b_hidden: vector(&l.b_hidden)?,
            });
        }
        Ok(StepNet {
            hidden: net.shape().hidden,
            layers,
            w_out: Weight::from_matrix(&net.w_out, device)?,
            b_out: vector(&net.b_out)?,
            fake_int8: Cell::new(false),
        })
    }
}

/// Inverted dropout with a seeded mask, so training runs repeat exactly.
fn drop(x: &Tensor, dropout: &mut Option<(f32, &mut Rng)>) -> Result<Tensor> {
    let Some((p, rng)) = dropout.as_mut().filter(|(p, _)| *p > 0.0) else {
        return Ok(x.clone());
    };
    let keep = 1.0 - *p as f64;
    let mask: Vec<f32> = (0..x.elem_count())
        .map(|_| {
            if rng.unit() < keep {
                (1.0 / keep) as f32
            } else {
                0.0
            }
        })
        .collect();
    x.mul(&Tensor::from_vec(mask, x.shape(), x.device())?)
}

/// Masked mean cross-entropy (nats per step) of logits against the batch's targets.
pub fn cross_entropy(logits: &Tensor, batch: &Batch, device: &Device) -> Result<Tensor> {
    let n = batch.batch * batch.len;
    let targets = Tensor::from_slice(&batch.target, n, device)?;
    let mask = Tensor::from_slice(&batch.mask, n, device)?;
    let nll = log_softmax(logits, D::Minus1)?
        .gather(&targets.unsqueeze(1)?, 1)?
        .squeeze(1)?
        .neg()?;
    (nll * &mask)?.sum_all()? / batch.mask.iter().sum::<f32>().max(1.0) as f64
}

/// `T^2 * KL(softmax(teacher/T) || softmax(student/T))`, masked mean per step.
pub fn distillation_loss(
    student: &Tensor,
    teacher: &Tensor,
    temperature: f64,
    batch: &Batch,
    device: &Device,
) -> Result<Tensor> {
    let n = batch.batch * batch.len;
    let mask = Tensor::from_slice(&batch.mask, n, device)?;
    let log_p = log_softmax(&(teacher / temperature)?, D::Minus1)?;
    let log_q = log_softmax(&(student / temperature)?, D::Minus1)?;
    let kl = (log_p.exp()? * (log_p - log_q)?)?.sum(D::Minus1)?;
    ((kl * &mask)?.sum_all()? * (temperature * temperature))?
        / batch.mask.iter().sum::<f32>().max(1.0) as f64
}

/// Summed NLL and correct predictions over a batch: `(nll_sum, correct, steps)`.
pub fn score(logits: &Tensor, batch: &Batch, device: &Device) -> Result<(f64, usize, usize)> {
    let n = batch.batch * batch.len;
    let targets = Tensor::from_slice(&batch.target, n, device)?;
    let nll: Vec<f32> = log_softmax(logits, D::Minus1)?
        .gather(&targets.unsqueeze(1)?, 1)?
        .squeeze(1)?
        .neg()?
        .to_vec1()?;
    let best: Vec<u32> = logits.argmax(D::Minus1)?.to_vec1()?;
    let mut sum = 0.0;
    let (mut correct, mut steps) = (0, 0);
    for i in 0..n {
        if batch.mask[i] > 0.0 {
            sum += nll[i] as f64;
            correct += (best[i] == batch.target[i]) as usize;
            steps += 1;
        }
    }
    Ok((sum, correct, steps))
}
