//! A smoothed n-gram baseline over melody tokens.
//!
//! Interpolated absolute discounting (the smoothing behind Kneser-Ney,
//! without continuation counts): the context of order `n` is the last `n - 1`
//! tokens, optionally joined by the step's position in the bar. The chain
//! ends in an add-one unigram, so no token has zero probability.

use std::collections::HashMap;

use super::tokens::{Melody, Token, VOCAB};

const DISCOUNT: f64 = 0.75;

#[derive(Default, Clone)]
struct ContextCounts {
    total: u32,
    next: HashMap<u16, u32>,
}

/// A trained n-gram model.
pub struct NGram {
    order: usize,
    with_position: bool,
    unigram: Vec<f64>,
    /// `levels[k]` holds contexts of `k + 1` previous tokens.
    levels: Vec<HashMap<u64, ContextCounts>>,
}

impl NGram {
    /// Counts every melody; `order` is at least 1 (a unigram).
    pub fn train<'a>(
        order: usize,
        with_position: bool,
        melodies: impl Iterator<Item = &'a Melody>,
    ) -> NGram {
        let order = order.max(1);
        let mut unigram = vec![1.0; VOCAB];
        let mut levels = vec![HashMap::<u64, ContextCounts>::new(); order - 1];
        let mut history = Vec::new();
        for melody in melodies {
            history.clear();
            for (i, token) in melody.tokens.iter().enumerate() {
                let next = token.index() as u16;
                unigram[next as usize] += 1.0;
                let position = melody.step_in_bar(i);
                for (k, level) in levels.iter_mut().enumerate() {
                    let key = context_key(&history, k + 1, with_position.then_some(position));
                    let counts = level.entry(key).or_default();
                    counts.total += 1;
                    *counts.next.entry(next).or_default() += 1;
                }
                history.push(next);
            }
        }
        let sum: f64 = unigram.iter().sum();
        unigram.iter_mut().for_each(|c| *c /= sum);
        NGram {
            order,
            with_position,
            unigram,
            levels,
        }
    }

    /// The order `n` of the model.
    pub fn order(&self) -> usize {
        self.order
    }

    /// Uses only contexts up to `order - 1` tokens, as if trained at that
    /// order (at most the trained one). Lets one training serve every order.
    pub fn set_order(&mut self, order: usize) {
        self.order = order.clamp(1, self.levels.len() + 1);
    }

    /// Whether contexts include the position in the bar.
    pub fn with_position(&self) -> bool {
        self.with_position
    }

    /// Probabilities of every token after `history` at `position`.
    pub fn distribution(&self, history: &[u16], position: u32, out: &mut [f64]) {
        out.copy_from_slice(&self.unigram);
        for (k, level) in self.levels.iter().enumerate().take(self.order - 1) {
            let key = context_key(history, k + 1, self.with_position.then_some(position));
            let Some(counts) = level.get(&key) else {
                continue;
            };
            let total = counts.total as f64;
            let backoff = DISCOUNT * counts.next.len() as f64 / total;
            for p in out.iter_mut() {
                *p *= backoff;
            }
            for (&token, &count) in &counts.next {
                out[token as usize] += (count as f64 - DISCOUNT).max(0.0) / total;
            }
        }
    }

    /// Mean negative log-likelihood (nats per step) and next-step accuracy.
    pub fn evaluate<'a>(&self, melodies: impl Iterator<Item = &'a Melody>) -> (f64, f64) {
        let mut nll = 0.0;
        let mut correct = 0usize;
        let mut steps = 0usize;
        let mut dist = vec![0.0; VOCAB];
        let mut history = Vec::new();
        for melody in melodies {
            history.clear();
            for (i, token) in melody.tokens.iter().enumerate() {
                self.distribution(&history, melody.step_in_bar(i), &mut dist);
                let truth = token.index();
                nll -= dist[truth].max(1e-12).ln();
                if argmax(&dist) == truth {
                    correct += 1;
                }
                steps += 1;
                history.push(truth as u16);
            }
        }
        (
            nll / steps.max(1) as f64,
            correct as f64 / steps.max(1) as f64,
        )
    }
}

/// Index of the largest value (the first one on ties).
pub fn argmax<T: PartialOrd + Copy>(values: &[T]) -> usize {
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if *v > values[best] {
            best = i;
        }
    }
    best
}

/// Hash of the last `len` tokens (padded with rests before the start).
fn context_key(history: &[u16], len: usize, position: Option<u32>) -> u64 {
    let mut key: u64 = 0xcbf2_9ce4_8422_2325 ^ len as u64;
    let mut mix = |v: u64| {
        key ^= v.wrapping_add(0x9e37_79b9_7f4a_7c15);
        key = key.wrapping_mul(0x0100_0000_01b3).rotate_left(23);
    };
    mix(position.map_or(u64::MAX, u64::from));
    for back in 1..=len {
        let token = history
            .len()
            .checked_sub(back)
            .map_or(Token::Rest.index() as u16, |i| history[i]);
        mix(token as u64);
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::melody::tokens::Meter;

    fn scale_run() -> Melody {
        let events: Vec<_> = [60u8, 62, 64, 65, 67, 65, 64, 62]
            .iter()
            .map(|p| (Some(*p), 2))
            .collect();
        Melody::from_events(Meter::default(), 0, &events)
    }

    #[test]
    fn distribution_sums_to_one() {
        let m = scale_run();
        let model = NGram::train(3, true, std::iter::once(&m));
        let mut dist = vec![0.0; VOCAB];
        model.distribution(&[Token::Note(60).index() as u16], 1, &mut dist);
        assert!((dist.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        assert!(dist.iter().all(|p| *p > 0.0));
    }

    #[test]
    fn higher_order_learns_a_repeated_pattern() {
        let m = scale_run();
        let data = vec![m.clone(); 20];
        let (nll1, _) = NGram::train(1, false, data.iter()).evaluate(std::iter::once(&m));
        let mut model = NGram::train(4, false, data.iter());
        let (nll4, acc4) = model.evaluate(std::iter::once(&m));
        assert!(nll4 < nll1 * 0.5, "{nll4} vs {nll1}");
        model.set_order(1);
        let (truncated, _) = model.evaluate(std::iter::once(&m));
        assert!(
            (truncated - nll1).abs() < 1e-9,
            "order 1 view equals a unigram"
        );
        // Only the two steps after "64, hold" are ambiguous at order 4.
        assert!(acc4 >= 14.0 / 16.0 - 1e-9, "{acc4}");
    }
}
