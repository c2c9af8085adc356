//! Turning the network's logits into the next token: temperature, key and
//! scale lock, pitch range and note density, with a seeded generator.

use crate::melody::tokens::{Token, HIGHEST_PITCH, LOWEST_PITCH, VOCAB};

/// Scales a melody can be locked to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Scale {
    /// All twelve pitch classes.
    Chromatic,
    /// Ionian.
    #[default]
    Major,
    /// Aeolian.
    Minor,
    /// Dorian, common in Irish tunes.
    Dorian,
    /// Mixolydian, common in Irish tunes.
    Mixolydian,
    /// Major pentatonic.
    Pentatonic,
    /// Harmonic minor.
    HarmonicMinor,
}

impl Scale {
    /// Every scale, in parameter order.
    pub const ALL: [Scale; 7] = [
        Scale::Chromatic,
        Scale::Major,
        Scale::Minor,
        Scale::Dorian,
        Scale::Mixolydian,
        Scale::Pentatonic,
        Scale::HarmonicMinor,
    ];

    /// Pitch classes above the tonic, as a 12-bit mask.
    pub fn intervals(self) -> u16 {
        let steps: &[u8] = match self {
            Scale::Chromatic => &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
            Scale::Major => &[0, 2, 4, 5, 7, 9, 11],
            Scale::Minor => &[0, 2, 3, 5, 7, 8, 10],
            Scale::Dorian => &[0, 2, 3, 5, 7, 9, 10],
            Scale::Mixolydian => &[0, 2, 4, 5, 7, 9, 10],
            Scale::Pentatonic => &[0, 2, 4, 7, 9],
            Scale::HarmonicMinor => &[0, 2, 3, 5, 7, 8, 11],
        };
        steps.iter().fold(0, |mask, s| mask | 1 << s)
    }

    /// Whether a MIDI pitch belongs to this scale on `key` (0 = C).
    pub fn contains(self, key: u8, pitch: u8) -> bool {
        let class = (pitch as i32 - key as i32).rem_euclid(12);
        self.intervals() & (1 << class) != 0
    }
}

/// Everything that shapes sampling; small and `Copy` so it travels in requests.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SamplingControls {
    /// Softmax temperature; near zero picks the most likely token.
    pub temperature: f32,
    /// Tonic pitch class, 0 = C.
    pub key: u8,
    /// Scale notes are locked to.
    pub scale: Scale,
    /// Lowest pitch allowed.
    pub low: u8,
    /// Highest pitch allowed.
    pub high: u8,
    /// 0 to 1: below 0.5 fewer note onsets, above 0.5 more.
    pub density: f32,
}

impl Default for SamplingControls {
    fn default() -> Self {
        SamplingControls {
            temperature: 0.9,
            key: 2,
            scale: Scale::Major,
            low: 60,
            high: 84,
            density: 0.5,
        }
    }
}

/// A counter-free PCG generator: same seed, same sequence.
#[derive(Clone, Debug)]
pub struct Pcg(u64);

impl Pcg {
    /// A generator for a seed and a stream position.
    pub fn new(seed: u64, stream: i64) -> Pcg {
        let mut pcg = Pcg(seed ^ (stream as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        pcg.next_u32();
        pcg
    }

    /// A generator whose internal state is exactly `state`.
    pub fn from_state(state: u64) -> Pcg {
        Pcg(state)
    }

    /// The next 32 random bits.
    pub fn next_u32(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let x = self.0;
        ((((x >> 18) ^ x) >> 27) as u32).rotate_right((x >> 59) as u32)
    }

    /// A uniform number in `[0, 1)`.
    pub fn unit(&mut self) -> f32 {
        (self.next_u32() >> 8) as f32 / (1u32 << 24) as f32
    }
}

/// Samples a token from logits under the controls. `scratch` has [`VOCAB`] slots.
///
/// Real-time safe: no allocation, no locks. If the controls leave no pitch
/// (an empty range), only hold and rest remain.
pub fn sample(
    logits: &[f32],
    controls: &SamplingControls,
    previous: Token,
    rng: &mut Pcg,
    scratch: &mut [f32],
) -> Token {
    debug_assert!(logits.len() == VOCAB && scratch.len() == VOCAB);
    let temperature = controls.temperature.clamp(0.05, 3.0);
    let onset_bias = 6.0 * (controls.density.clamp(0.0, 1.0) - 0.5);
    let low = controls.low.max(LOWEST_PITCH);
    let high = controls.high.min(HIGHEST_PITCH);
    let mut best = f32::NEG_INFINITY;
    for (index, (out, logit)) in scratch.iter_mut().zip(logits).enumerate() {
        let allowed = match Token::from_index(index) {
            Token::Hold | Token::Rest => true,
            Token::Note(p) => p >= low && p <= high && controls.scale.contains(controls.key, p),
        };
        let bias = if index >= 2 { onset_bias } else { 0.0 };
        let value = if allowed && logit.is_finite() {
            (logit + bias) / temperature
        } else {
            f32::NEG_INFINITY
        };
        *out = value;
        best = best.max(value);
    }
    if !best.is_finite() {
        return if previous == Token::Rest {
            Token::Hold
        } else {
            Token::Rest
        };
    }
    let mut total = 0.0;
    for value in scratch.iter_mut() {
        *value = (*value - best).exp();
        total += *value;
    }
    let mut target = rng.unit() * total;
    for (index, weight) in scratch.iter().enumerate() {
        target -= weight;
        if target < 0.0 && *weight > 0.0 {
            return Token::from_index(index);
        }
    }
    Token::from_index(scratch.iter().rposition(|w| *w > 0.0).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locked_samples_stay_in_scale_and_range() {
        let logits: Vec<f32> = (0..VOCAB).map(|i| (i as f32 * 0.7).sin()).collect();
        let controls = SamplingControls {
            key: 9,
            scale: Scale::Minor,
            low: 57,
            high: 76,
            density: 0.9,
            ..Default::default()
        };
        let mut rng = Pcg::new(3, 0);
        let mut scratch = vec![0.0; VOCAB];
        let mut notes = 0;
        for _ in 0..2000 {
            if let Token::Note(p) = sample(&logits, &controls, Token::Rest, &mut rng, &mut scratch)
            {
                notes += 1;
                assert!((57..=76).contains(&p) && Scale::Minor.contains(9, p), "{p}");
            }
        }
        assert!(notes > 500);
    }

    #[test]
    fn same_seed_same_tokens_and_density_moves_onsets() {
        let logits = vec![0.0; VOCAB];
        let mut scratch = vec![0.0; VOCAB];
        let run = |density: f32, seed: u64, scratch: &mut [f32]| -> Vec<Token> {
            let controls = SamplingControls {
                density,
                ..Default::default()
            };
            let mut rng = Pcg::new(seed, 0);
            (0..500)
                .map(|_| sample(&logits, &controls, Token::Rest, &mut rng, scratch))
                .collect()
        };
        assert_eq!(run(0.5, 1, &mut scratch), run(0.5, 1, &mut scratch));
        assert_ne!(run(0.5, 1, &mut scratch), run(0.5, 2, &mut scratch));
        let onsets = |t: Vec<Token>| t.iter().filter(|t| t.pitch().is_some()).count();
        assert!(onsets(run(0.1, 1, &mut scratch)) < onsets(run(0.9, 1, &mut scratch)));
    }

    #[test]
    fn low_temperature_picks_the_most_likely_token() {
        let mut logits = vec![0.0; VOCAB];
        logits[Token::Note(62).index()] = 5.0;
        let controls = SamplingControls {
            temperature: 0.05,
            ..Default::default()
        };
        let mut scratch = vec![0.0; VOCAB];
        let token = sample(
            &logits,
            &controls,
            Token::Rest,
            &mut Pcg::new(0, 0),
            &mut scratch,
        );
        assert_eq!(token, Token::Note(62));
    }

    #[test]
    fn empty_range_falls_back_to_rest() {
        let logits = vec![0.0; VOCAB];
        let controls = SamplingControls {
            low: 80,
            high: 70,
            ..Default::default()
        };
        let mut scratch = vec![0.0; VOCAB];
        let token = sample(
            &logits,
            &controls,
            Token::Note(60),
            &mut Pcg::new(0, 0),
            &mut scratch,
        );
        assert!(matches!(token, Token::Hold | Token::Rest));
    }
}
