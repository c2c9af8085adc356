//! The timbre network's contract: what it reads every frame and how its
//! outputs become synthesizer parameters. Training encodes its targets with
//! [`encode`]; the plugin decodes the network's outputs with [`decode`].
//!
//! Outputs per frame: the log of the summed harmonic amplitude, one logit
//! per harmonic (their softmax is how that amplitude is shared out), and the
//! log of each noise band's magnitude.

use crate::engine::harmonic::{FrameParams, HARMONICS, NOISE_BANDS};

/// The neural instruments, in the order of the plugin's instrument choice.
pub const INSTRUMENTS: [&str; 3] = ["flute", "violin", "trumpet"];

/// Features the network reads per frame.
pub const INPUT_SIZE: usize = 6;
/// Values it writes per frame.
pub const OUTPUT_SIZE: usize = 1 + HARMONICS + NOISE_BANDS;
/// Added to amplitudes before their logarithm: -80 dB, silence.
pub const AMPLITUDE_FLOOR: f32 = 1e-4;
/// Added to noise magnitudes before their logarithm.
pub const NOISE_FLOOR: f32 = 1e-6;
/// Largest log level decoded (amplitude and noise at most e, about +9 dBFS):
/// louder than any note, so it only stops broken outputs.
const MAX_LOG_LEVEL: f32 = 1.0;
/// Time constant of the log-compressed note clocks, in seconds.
const CLOCK_SECONDS: f32 = 0.01;

/// What the MIDI says about a voice at one frame.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Control {
    /// Pitch of the note sounding or last released (MIDI, fractional allowed).
    pub pitch: f32,
    /// Its velocity, 0 to 1.
    pub velocity: f32,
    /// Whether its key is down.
    pub gate: bool,
    /// Seconds since its note-on.
    pub since_on: f32,
    /// Seconds since its note-off (0 while the key is down).
    pub since_off: f32,
}

/// Frequency in Hz of a MIDI pitch (A4 = 69 = 440 Hz).
pub fn pitch_hz(pitch: f32) -> f32 {
    440.0 * ((pitch - 69.0) / 12.0).exp2()
}

/// The network's input for a frame; `None` before a voice's first note.
pub fn input(control: Option<&Control>) -> [f32; INPUT_SIZE] {
    let clock = |seconds: f32| (1.0 + seconds.max(0.0) / CLOCK_SECONDS).ln() / 6.0;
    match control {
        None => [0.0, 0.0, 0.0, 0.0, clock(10.0), 0.0],
        Some(c) => [
            (c.pitch - 60.0) / 24.0,
            c.velocity.clamp(0.0, 1.0),
            c.gate as u8 as f32,
            clock(c.since_on),
            clock(c.since_off),
            1.0,
        ],
    }
}

/// Training targets of one analysed frame.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Target {
    /// `ln(sum of harmonic amplitudes + AMPLITUDE_FLOOR)`.
    pub log_amplitude: f32,
    /// Each harmonic's share of that sum (uniform when silent).
    pub distribution: [f32; HARMONICS],
    /// `ln(noise magnitude + NOISE_FLOOR)` per band.
    pub log_noise: [f32; NOISE_BANDS],
}

/// The targets for harmonic amplitudes and noise magnitudes.
pub fn encode(harmonics: &[f32; HARMONICS], noise: &[f32; NOISE_BANDS]) -> Target {
    let sum: f32 = harmonics.iter().map(|a| a.max(0.0)).sum();
    let distribution = if sum > 0.0 {
        harmonics.map(|a| a.max(0.0) / sum)
    } else {
        [1.0 / HARMONICS as f32; HARMONICS]
    };
    Target {
        log_amplitude: (sum + AMPLITUDE_FLOOR).ln(),
        distribution,
        log_noise: noise.map(|m| (m.max(0.0) + NOISE_FLOOR).ln()),
    }
}

/// Synthesizer parameters at `f0` from the network's outputs `y`
/// ([`OUTPUT_SIZE`] values). Real-time safe; non-finite outputs give silence.
pub fn decode(f0: f32, y: &[f32]) -> FrameParams {
    let mut frame = FrameParams::silent(f0);
    if y.len() < OUTPUT_SIZE || y[..OUTPUT_SIZE].iter().any(|v| !v.is_finite()) {
        return frame;
    }
    let amplitude = (y[0].min(MAX_LOG_LEVEL).exp() - AMPLITUDE_FLOOR).max(0.0);
    let logits = &y[1..1 + HARMONICS];
    let top = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut total = 0.0;
    for (h, l) in frame.harmonics.iter_mut().zip(logits) {
        *h = (l - top).exp();
        total += *h;
    }
    for h in &mut frame.harmonics {
        *h *= amplitude / total;
    }
    for (n, l) in frame.noise.iter_mut().zip(&y[1 + HARMONICS..OUTPUT_SIZE]) {
        *n = (l.min(MAX_LOG_LEVEL).exp() - NOISE_FLOOR).max(0.0);
    }
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_inverts_encode() {
        let mut harmonics = [0.0f32; HARMONICS];
        for (k, a) in harmonics.iter_mut().enumerate().take(20) {
            *a = 0.3 / (k + 1) as f32;
        }
        let noise: [f32; NOISE_BANDS] = std::array::from_fn(|i| 0.001 * i as f32);
        let target = encode(&harmonics, &noise);
        let mut y = vec![target.log_amplitude];
        y.extend(target.distribution.iter().map(|p| (p + 1e-30).ln()));
        y.extend(target.log_noise);
        let frame = decode(220.0, &y);
        for (got, want) in frame.harmonics.iter().zip(&harmonics) {
            assert!((got - want).abs() < 1e-5, "{got} vs {want}");
        }
        for (got, want) in frame.noise.iter().zip(&noise) {
            assert!((got - want).abs() < 1e-6, "{got} vs {want}");
        }
    }

    #[test]
    fn broken_outputs_decode_to_silence() {
        let mut y = vec![0.0f32; OUTPUT_SIZE];
        y[7] = f32::NAN;
        let frame = decode(440.0, &y);
        assert!(frame.harmonics.iter().all(|a| *a == 0.0));
        assert!(decode(440.0, &[1.0; 3]).noise.iter().all(|n| *n == 0.0));
        // Huge outputs are capped, never infinite.
        let loud = decode(440.0, &[1e30; OUTPUT_SIZE]);
        assert!(loud.harmonics.iter().all(|a| a.is_finite()));
    }

    #[test]
    fn inputs_stay_in_a_small_range() {
        let control = Control {
            pitch: 96.0,
            velocity: 1.0,
            gate: true,
            since_on: 30.0,
            since_off: 0.0,
        };
        for value in input(Some(&control)).into_iter().chain(input(None)) {
            assert!((-1.5..=1.5).contains(&value), "{value}");
        }
    }
}
