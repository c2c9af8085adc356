//! The training loop: plain, or distilled from a teacher's soft targets.

use candle_core::{Device, Result, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use wren::melody::tokens::Melody;
use wren::model::GruNet;

use crate::batches::{full_batch, Rng, WindowSampler};
use crate::net::{cross_entropy, distillation_loss, score, StepNet};
use crate::progress::Progress;

/// Settings of one training run.
#[derive(Clone, Debug)]
pub struct TrainConfig {
    /// Units per layer.
    pub hidden: usize,
    /// Number of GRU layers.
    pub layers: usize,
    /// Optimizer steps.
    pub steps: usize,
    /// Windows per batch.
    pub batch: usize,
    /// Steps per window.
    pub window: usize,
    /// Peak learning rate (AdamW, linear warm-up then cosine decay).
    pub learning_rate: f64,
    /// Dropout between layers.
    pub dropout: f32,
    /// Seed of the initialization and of the batch stream.
    pub seed: u64,
    /// Validate every this many steps and keep the best weights.
    pub eval_every: usize,
}

impl TrainConfig {
    /// The settings as the manifest records them, with `extra` ones added.
    pub fn settings(&self, extra: &[(&str, String)]) -> std::collections::BTreeMap<String, String> {
        let mut map = std::collections::BTreeMap::from([
            ("seed".to_string(), self.seed.to_string()),
            ("optimizer_steps".to_string(), self.steps.to_string()),
            (
                "batch".to_string(),
                format!("{}x{}", self.batch, self.window),
            ),
            ("learning_rate".to_string(), self.learning_rate.to_string()),
            ("dropout".to_string(), self.dropout.to_string()),
        ]);
        map.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
        map
    }
}

/// Distillation settings: `L = a CE + (1 - a) T^2 KL`.
#[derive(Clone, Copy)]
pub struct Distill<'a> {
    /// The teacher network.
    pub teacher: &'a StepNet,
    /// Weight `a` of the ground-truth cross-entropy.
    pub alpha: f64,
    /// Softmax temperature `T`.
    pub temperature: f64,
}

/// What a run produced.
pub struct Trained {
    /// The weights with the best validation NLL.
    pub net: GruNet,
    /// Its validation loss: NLL in nats per step for the melody, the
    /// timbre loss for the timbre.
    pub valid_loss: f64,
    /// Optimizer step where it was reached.
    pub best_step: usize,
    /// Seconds the run took.
    pub seconds: f64,
}

/// NLL (nats per step) and accuracy of a network over whole melodies.
pub fn evaluate(net: &StepNet, melodies: &[&Melody], device: &Device) -> Result<(f64, f64)> {
    let mut sorted: Vec<&Melody> = melodies.to_vec();
    sorted.sort_by_key(|m| m.tokens.len());
    let (mut nll, mut correct, mut steps) = (0.0, 0, 0);
    for chunk in sorted.chunks(32) {
        let batch = full_batch(chunk);
        let logits = net.forward(&batch, None, device)?;
        let (n, c, s) = score(&logits, &batch, device)?;
        nll += n;
        correct += c;
        steps += s;
    }
    Ok((
        nll / steps.max(1) as f64,
        correct as f64 / steps.max(1) as f64,
    ))
}

/// Linear warm-up over the first 5% of steps, then cosine decay to 5%.
fn learning_rate(config: &TrainConfig, step: usize) -> f64 {
    let warmup = (config.steps / 20).max(1);
    if step < warmup {
        return config.learning_rate * (step + 1) as f64 / warmup as f64;
    }
    let progress = (step - warmup) as f64 / (config.steps - warmup).max(1) as f64;
    config.learning_rate * (0.05 + 0.95 * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()))
}

/// Trains a network on `train`, keeping the weights best on `valid`.
pub fn train(
    label: &str,
    config: &TrainConfig,
    distill: Option<Distill>,
    train: &[&Melody],
    valid: &[&Melody],
    device: &Device,
) -> Result<Trained> {
    let net = StepNet::melody(config.hidden, config.layers, config.seed, device)?;
    let mut dropout_rng = Rng::new(config.seed ^ 0xd0d0);
    let mut sampler = WindowSampler::new(train, config.window, config.seed);
    let loss = |net: &StepNet| -> Result<(Tensor, f64)> {
        let batch = sampler.next_batch(config.batch, config.window);
        let logits = net.forward(&batch, Some((config.dropout, &mut dropout_rng)), device)?;
        let hard = cross_entropy(&logits, &batch, device)?;
        let reported = hard.to_scalar::<f32>()? as f64;
        let loss = match distill {
            None => hard,
            Some(d) => {
                let soft_targets = d.teacher.forward(&batch, None, device)?.detach();
                let soft =
                    distillation_loss(&logits, &soft_targets, d.temperature, &batch, device)?;
                ((&hard * d.alpha)? + (soft * (1.0 - d.alpha))?)?
            }
        };
        Ok((loss, reported))
    };
    let validate = |net: &StepNet| -> Result<(f64, String)> {
        let (nll, accuracy) = evaluate(net, valid, device)?;
        Ok((nll, format!("valid NLL {nll:.4} acc {accuracy:.3}")))
    };
    fit(label, config, net, loss, validate)
}

/// The loop every network trains with: AdamW with warm-up and cosine decay,
/// gradients clipped to norm 1, validation every `eval_every` steps (and at
/// the end) keeping the best weights. `loss` draws a batch and returns the
/// loss to minimize with the value to report; `validate` returns the
/// validation loss with a line to show.
pub(crate) fn fit(
    label: &str,
    config: &TrainConfig,
    net: StepNet,
    mut loss: impl FnMut(&StepNet) -> Result<(Tensor, f64)>,
    mut validate: impl FnMut(&StepNet) -> Result<(f64, String)>,
) -> Result<Trained> {
    let started = std::time::Instant::now();
    let params = ParamsAdamW {
        lr: config.learning_rate,
        weight_decay: 1e-5,
        ..Default::default()
    };
    let mut optimizer = AdamW::new(net.vars(), params)?;
    let mut best = (f64::INFINITY, 0, net.to_gru_net()?);
    let progress = Progress::new(label, config.steps as u64);
    let mut running = f64::NAN;
    for step in 0..config.steps {
        optimizer.set_learning_rate(learning_rate(config, step));
        let (value, reported) = loss(&net)?;
        let mut grads = value.backward()?;
        clip_gradients(&net, &mut grads, 1.0)?;
        optimizer.step(&grads)?;
        running = if running.is_nan() {
            reported
        } else {
            0.98 * running + 0.02 * reported
        };
        if (step + 1) % config.eval_every == 0 || step + 1 == config.steps {
            let (valid, line) = validate(&net)?;
            if valid < best.0 {
                best = (valid, step + 1, net.to_gru_net()?);
            }
            progress.note(&format!(
                "step {} train {running:.4} {line} (best {:.4})",
                step + 1,
                best.0
            ));
        }
        progress.set(step as u64 + 1, &format!("train {running:.3}"));
        if step + 1 == 10 {
            let per_step = started.elapsed().as_secs_f64() / 10.0;
            progress.note(&format!(
                "{per_step:.2} s per step, about {:.0} min in all",
                per_step * config.steps as f64 / 60.0
            ));
        }
    }
    progress.finish();
    Ok(Trained {
        net: best.2,
        valid_loss: best.0,
        best_step: best.1,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Scales all gradients so that their global L2 norm is at most `max_norm`.
fn clip_gradients(
    net: &StepNet,
    grads: &mut candle_core::backprop::GradStore,
    max_norm: f64,
) -> Result<()> {
    let vars = net.vars();
    let mut total = 0.0f64;
    for var in &vars {
        if let Some(g) = grads.get(var.as_tensor()) {
            total += g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
        }
    }
    let norm = total.sqrt();
    if norm > max_norm {
        let scale = max_norm / norm;
        for var in &vars {
            if let Some(g) = grads.remove(var.as_tensor()) {
                let scaled: Tensor = (g * scale)?;
                grads.insert(var.as_tensor(), scaled);
            }
        }
    }
    Ok(())
}
