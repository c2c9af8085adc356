//! Training windows and evaluation batches from the melody dataset.

use wren::engine::sampling::Pcg;
use wren::melody::tokens::{input_rows, Melody, Token, BAR_POSITIONS, VOCAB};

/// Transpositions used for augmentation: every key, where the range allows.
pub const TRANSPOSITIONS: std::ops::RangeInclusive<i32> = -5..=6;

/// Every melody in every key its notes fit, for the n-gram baseline.
pub fn transposed_copies<'a>(melodies: impl Iterator<Item = &'a Melody>) -> Vec<Melody> {
    melodies
        .flat_map(|m| TRANSPOSITIONS.filter_map(move |s| m.transposed(s)))
        .collect()
}

/// A batch of sequences as flat index arrays, `batch * len` each.
pub struct Batch {
    /// Sequences in the batch.
    pub batch: usize,
    /// Steps per sequence.
    pub len: usize,
    /// Token index of the previous step.
    pub previous: Vec<u32>,
    /// `VOCAB + step_in_bar % BAR_POSITIONS`: the position row of the input.
    pub position: Vec<u32>,
    /// `VOCAB + BAR_POSITIONS + meter class`: the meter row of the input.
    pub meter: Vec<u32>,
    /// Token index to predict.
    pub target: Vec<u32>,
    /// 1 where the step counts, 0 for padding.
    pub mask: Vec<f32>,
}

/// Input rows of step `i` of a melody: previous token, position, meter.
fn rows(melody: &Melody, i: usize) -> [u32; 3] {
    let previous = i.checked_sub(1).map_or(Token::Rest, |p| melody.tokens[p]);
    input_rows(previous, melody.step_in_bar(i), melody.meter).map(|r| r as u32)
}

/// Whole melodies, padded to the longest, for evaluation.
pub fn full_batch(melodies: &[&Melody]) -> Batch {
    let len = melodies.iter().map(|m| m.tokens.len()).max().unwrap_or(0);
    let mut batch = empty(melodies.len(), len);
    for (b, melody) in melodies.iter().enumerate() {
        for i in 0..melody.tokens.len() {
            put(&mut batch, b * len + i, melody, i);
        }
    }
    batch
}

fn empty(batch: usize, len: usize) -> Batch {
    Batch {
        batch,
        len,
        previous: vec![1; batch * len],
        position: vec![VOCAB as u32; batch * len],
        meter: vec![(VOCAB + BAR_POSITIONS) as u32; batch * len],
        target: vec![0; batch * len],
        mask: vec![0.0; batch * len],
    }
}

fn put(batch: &mut Batch, at: usize, melody: &Melody, i: usize) {
    let [previous, position, meter] = rows(melody, i);
    batch.previous[at] = previous;
    batch.position[at] = position;
    batch.meter[at] = meter;
    batch.target[at] = melody.tokens[i].index() as u32;
    batch.mask[at] = 1.0;
}

/// A small deterministic generator (PCG-XSH-RR) so runs repeat exactly.
pub struct Rng(Pcg);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Rng {
        Rng(Pcg::from_state(
            seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x853c_49e6_748f_ea9b,
        ))
    }

    /// A uniform integer below `n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        ((self.0.next_u32() as u64 * n as u64) >> 32) as usize
    }

    /// A uniform number in `[0, 1)` with 32 random bits.
    pub fn unit(&mut self) -> f64 {
        self.0.next_u32() as f64 / 4_294_967_296.0
    }
}

/// Draws random training windows of `len` steps from transposed melodies.
///
/// A quarter of the windows start at a melody's first step, so the network
/// also learns to begin from its zero state.
pub struct WindowSampler<'a> {
    melodies: Vec<&'a Melody>,
    rng: Rng,
}

impl<'a> WindowSampler<'a> {
    /// A sampler over melodies long enough for one window, seeded.
    pub fn new(melodies: &[&'a Melody], len: usize, seed: u64) -> Self {
        let melodies = melodies
            .iter()
            .copied()
            .filter(|m| m.tokens.len() >= len)
            .collect();
        WindowSampler {
            melodies,
            rng: Rng::new(seed),
        }
    }

    /// Number of melodies it draws from.
    pub fn melodies(&self) -> usize {
        self.melodies.len()
    }

    /// The next batch of `batch` windows of `len` steps.
    pub fn next_batch(&mut self, batch: usize, len: usize) -> Batch {
        let mut out = empty(batch, len);
        for b in 0..batch {
            let source = self.melodies[self.rng.below(self.melodies.len())];
            let melody = loop {
                let shift = *TRANSPOSITIONS.start() + self.rng.below(12) as i32;
                if let Some(m) = source.transposed(shift) {
                    break m;
                }
            };
            let room = melody.tokens.len() - len + 1;
            let start = if self.rng.below(4) == 0 {
                0
            } else {
                self.rng.below(room)
            };
            let window = Melody {
                tokens: melody.tokens[..start + len].to_vec(),
                ..melody
            };
            for i in 0..len {
                put(&mut out, b * len + i, &window, start + i);
            }
        }
        out
    }
}
