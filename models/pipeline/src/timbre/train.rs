//! Training the timbre network: frames of rendered notes in, synthesizer
//! parameters out.
//!
//! The loss per frame is the squared error of the log harmonic amplitude,
//! the cross-entropy of the harmonic distribution (weighted by how audible
//! the frame is: silent frames have no distribution to learn) and half the
//! mean squared error of the log noise bands. Log errors count in decades
//! (20 dB is 1), so that no part drowns the others. A student can learn from a
//! teacher: its targets are then a blend of the analysed values and the
//! teacher's outputs.

use candle_core::{Device, Result, Tensor, D};
use candle_nn::ops::log_softmax;
use wren::engine::harmonic::{HARMONICS, NOISE_BANDS};
use wren::model::kernel::GruKernel;
use wren::model::GruNet;
use wren::timbre::{encode, input, Target, INPUT_SIZE, OUTPUT_SIZE};

use super::data::Recording;
use crate::batches::Rng;
use crate::compress::{Objective, Teacher};
use crate::net::StepNet;
use crate::train::{fit, TrainConfig, Trained};

/// Harmonic amplitude sum at which a frame's distribution counts fully.
const AUDIBLE: f32 = 0.01;

/// Network inputs and targets of one take, frame by frame.
pub struct TakeFrames {
    inputs: Vec<[f32; INPUT_SIZE]>,
    targets: Vec<Target>,
}

/// The frames of a set of takes.
pub struct FrameSet {
    takes: Vec<TakeFrames>,
}

impl FrameSet {
    /// Inputs and targets of every recording.
    pub fn new(recordings: &[Recording]) -> FrameSet {
        let takes = recordings
            .iter()
            .map(|r| TakeFrames {
                inputs: r.controls.iter().map(|c| input(c.as_ref())).collect(),
                targets: r
                    .frames
                    .iter()
                    .map(|f| encode(&f.harmonics, &f.noise))
                    .collect(),
            })
            .collect();
        FrameSet { takes }
    }

    /// Frames in all takes.
    pub fn frames(&self) -> usize {
        self.takes.iter().map(|t| t.inputs.len()).sum()
    }

    /// The mean target as output values: log amplitude, log of the mean
    /// distribution, log noise.
    pub fn mean_output(&self) -> Vec<f32> {
        let mut sum = vec![0.0f64; OUTPUT_SIZE];
        let mut count = 0usize;
        for target in self.takes.iter().flat_map(|t| &t.targets) {
            sum[0] += target.log_amplitude as f64;
            for (s, p) in sum[1..1 + HARMONICS].iter_mut().zip(&target.distribution) {
                *s += *p as f64;
            }
            for (s, n) in sum[1 + HARMONICS..].iter_mut().zip(&target.log_noise) {
                *s += *n as f64;
            }
            count += 1;
        }
        let count = count.max(1) as f64;
        sum.iter()
            .enumerate()
            .map(|(i, s)| {
                let mean = s / count;
                let value = if (1..1 + HARMONICS).contains(&i) {
                    mean.max(1e-6).ln()
                } else {
                    mean
                };
                value as f32
            })
            .collect()
    }

    /// Takes in the set.
    pub fn len(&self) -> usize {
        self.takes.len()
    }

    /// Whether the set has no takes.
    pub fn is_empty(&self) -> bool {
        self.takes.is_empty()
    }
}

/// A batch of windows: inputs `[b, t, INPUT_SIZE]` and flat targets.
struct Batch {
    x: Tensor,
    log_amplitude: Tensor,
    distribution: Tensor,
    weight: Tensor,
    log_noise: Tensor,
    mask: Tensor,
    frames: f32,
}

/// Builds a batch from `(take, start)` windows of `len` frames; frames past
/// a take's end are padding, masked out.
fn batch(set: &FrameSet, windows: &[(usize, usize)], len: usize, device: &Device) -> Result<Batch> {
    let n = windows.len() * len;
    let mut x = Vec::with_capacity(n * INPUT_SIZE);
    let mut log_amplitude = Vec::with_capacity(n);
    let mut distribution = Vec::with_capacity(n * HARMONICS);
    let mut weight = Vec::with_capacity(n);
    let mut log_noise = Vec::with_capacity(n * NOISE_BANDS);
    let mut mask = Vec::with_capacity(n);
    for &(take, start) in windows {
        let frames = &set.takes[take];
        for i in start..start + len {
            match (frames.inputs.get(i), frames.targets.get(i)) {
                (Some(input), Some(target)) => {
                    x.extend_from_slice(input);
                    log_amplitude.push(target.log_amplitude);
                    distribution.extend_from_slice(&target.distribution);
                    let sum = target.log_amplitude.exp();
                    weight.push((sum / AUDIBLE).min(1.0));
                    log_noise.extend_from_slice(&target.log_noise);
                    mask.push(1.0f32);
                }
                _ => {
                    x.extend_from_slice(&[0.0; INPUT_SIZE]);
                    log_amplitude.push(0.0);
                    distribution.extend_from_slice(&[0.0; HARMONICS]);
                    weight.push(0.0);
                    log_noise.extend_from_slice(&[0.0; NOISE_BANDS]);
                    mask.push(0.0);
                }
            }
        }
    }
    let frames = mask.iter().sum::<f32>().max(1.0);
    Ok(Batch {
        x: Tensor::from_vec(x, (windows.len(), len, INPUT_SIZE), device)?,
        log_amplitude: Tensor::from_vec(log_amplitude, n, device)?,
        distribution: Tensor::from_vec(distribution, (n, HARMONICS), device)?,
        weight: Tensor::from_vec(weight, n, device)?,
        log_noise: Tensor::from_vec(log_noise, (n, NOISE_BANDS), device)?,
        mask: Tensor::from_vec(mask, n, device)?,
        frames,
    })
}

/// Masked mean loss of outputs `y [n, OUTPUT_SIZE]`; with a teacher's
/// outputs and a blend `b`, the targets are `b * analysed + (1 - b) * teacher`.
fn loss(y: &Tensor, batch: &Batch, teacher: Option<(&Tensor, f64)>) -> Result<Tensor> {
    let amplitude = y.narrow(1, 0, 1)?.squeeze(1)?;
    let logits = y.narrow(1, 1, HARMONICS)?;
    let noise = y.narrow(1, 1 + HARMONICS, NOISE_BANDS)?;
    let (target_amplitude, target_distribution, target_noise) = match teacher {
        None => (
            batch.log_amplitude.clone(),
            batch.distribution.clone(),
            batch.log_noise.clone(),
        ),
        Some((t, blend)) => {
            let mix = |analysed: &Tensor, taught: Tensor| -> Result<Tensor> {
                (analysed * blend)? + (taught * (1.0 - blend))?
            };
            let taught_distribution =
                candle_nn::ops::softmax(&t.narrow(1, 1, HARMONICS)?, D::Minus1)?;
            (
                mix(&batch.log_amplitude, t.narrow(1, 0, 1)?.squeeze(1)?)?,
                mix(&batch.distribution, taught_distribution)?,
                mix(&batch.log_noise, t.narrow(1, 1 + HARMONICS, NOISE_BANDS)?)?,
            )
        }
    };
    let decades = 1.0 / std::f64::consts::LN_10.powi(2);
    let amplitude_error = ((amplitude - target_amplitude)?.sqr()? * decades)?;
    let cross_entropy = (target_distribution * log_softmax(&logits, D::Minus1)?)?
        .sum(D::Minus1)?
        .neg()?
        .mul(&batch.weight)?;
    let noise_error = ((noise - target_noise)?.sqr()?.mean(D::Minus1)? * decades)?;
    let per_frame = ((amplitude_error + cross_entropy)? + (noise_error * 0.5)?)?;
    (per_frame * &batch.mask)?.sum_all()? / batch.frames as f64
}

/// Mean loss of a network over every frame of a set as the real-time
/// kernel computes it (int8 arithmetic included), each take run from its
/// start.
pub fn kernel_loss(net: &GruNet, set: &FrameSet, device: &Device) -> Result<f64> {
    let mut kernel = GruKernel::new(net);
    let mut state = vec![0.0; net.shape().state()];
    let (mut total, mut frames) = (0.0, 0.0);
    for (t, take) in set.takes.iter().enumerate() {
        state.fill(0.0);
        let mut outputs = vec![0.0; take.inputs.len() * OUTPUT_SIZE];
        for (x, y) in take
            .inputs
            .iter()
            .zip(outputs.chunks_exact_mut(OUTPUT_SIZE))
        {
            kernel.step(x, &mut state, y);
        }
        let batch = batch(set, &[(t, 0)], take.inputs.len(), device)?;
        let y = Tensor::from_vec(outputs, (take.inputs.len(), OUTPUT_SIZE), device)?;
        total += loss(&y, &batch, None)?.to_scalar::<f32>()? as f64 * batch.frames as f64;
        frames += batch.frames as f64;
    }
    Ok(total / frames.max(1.0))
}

/// Random windows: a take chosen in proportion to its length, a start
/// anywhere in it (a quarter of them at its first frame, where notes begin
/// from the network's zero state).
fn sample_windows(set: &FrameSet, rng: &mut Rng, count: usize, len: usize) -> Vec<(usize, usize)> {
    let total = set.frames();
    (0..count)
        .map(|_| {
            let mut pick = rng.below(total);
            let take = set
                .takes
                .iter()
                .position(|t| {
                    let inside = pick < t.inputs.len();
                    if !inside {
                        pick -= t.inputs.len();
                    }
                    inside
                })
                .unwrap_or(0);
            let frames = set.takes[take].inputs.len();
            let start = if rng.below(4) == 0 || frames <= len {
                0
            } else {
                rng.below(frames - len)
            };
            (take, start)
        })
        .collect()
}

/// The timbre objective: the frame loss against the analysed targets,
/// blended with a teacher's outputs where there is one, scored by the
/// kernel's loss on the validation takes.
pub struct TimbreObjective<'a> {
    train: &'a FrameSet,
    valid: &'a FrameSet,
    teacher: Option<(&'a Teacher, f64)>,
    rng: Rng,
    device: Device,
}

impl<'a> TimbreObjective<'a> {
    /// With a teacher and a blend `b`, the targets are `b * analysed + (1 -
    /// b) * teacher`.
    pub fn new(
        (train, valid): (&'a FrameSet, &'a FrameSet),
        teacher: Option<(&'a Teacher, f64)>,
        seed: u64,
        device: &Device,
    ) -> Self {
        TimbreObjective {
            train,
            valid,
            teacher,
            rng: Rng::new(seed ^ 0x7173),
            device: device.clone(),
        }
    }
}

impl Objective for TimbreObjective<'_> {
    fn loss(&mut self, net: &StepNet, config: &TrainConfig) -> Result<(Tensor, f64)> {
        let device = &self.device;
        let windows = sample_windows(self.train, &mut self.rng, config.batch, config.window);
        let batch = batch(self.train, &windows, config.window, device)?;
        let y = net.forward_dense(&batch.x, Some((config.dropout, &mut self.rng)), device)?;
        let taught = match self.teacher {
            Some((t, blend)) => Some((t.outputs(&batch.x, device)?, blend)),
            None => None,
        };
        let value = loss(&y, &batch, taught.as_ref().map(|(t, b)| (t, *b)))?;
        let reported = value.to_scalar::<f32>()? as f64;
        Ok((value, reported))
    }

    fn score(&self, net: &GruNet) -> Result<(f64, String)> {
        let valid_loss = kernel_loss(net, self.valid, &self.device)?;
        Ok((valid_loss, format!("valid loss {valid_loss:.4}")))
    }
}

/// Trains a timbre network from fresh weights on `train`, keeping the
/// weights best on `valid`; with a teacher and a blend, as a student.
pub fn train(
    label: &str,
    config: &TrainConfig,
    teacher: Option<(&Teacher, f64)>,
    (train, valid): (&FrameSet, &FrameSet),
    device: &Device,
) -> Result<Trained> {
    let net = StepNet::new(
        INPUT_SIZE,
        config.hidden,
        config.layers,
        OUTPUT_SIZE,
        config.seed,
        device,
    )?;
    net.set_output_bias(&train.mean_output())?;
    let objective = std::cell::RefCell::new(TimbreObjective::new(
        (train, valid),
        teacher,
        config.seed,
        device,
    ));
    fit(
        label,
        config,
        net,
        |net| objective.borrow_mut().loss(net, config),
        |net| objective.borrow().score(&net.to_gru_net()?),
    )
}
