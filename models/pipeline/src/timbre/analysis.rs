//! Harmonic-plus-noise analysis of a monophonic note whose pitch is known.
//!
//! Every [`HOP`] samples a Hann window of [`WINDOW`] samples centred on the
//! frame is transformed (zero-padded to [`FFT_SIZE`]). Each harmonic's
//! amplitude is the interpolated spectral peak nearest its frequency; the
//! noise is the magnitude left between the harmonics, averaged in
//! [`NOISE_BANDS`] bands spaced evenly in log frequency. These are the
//! synthesizer parameters the timbre network learns to predict.

use std::sync::Arc;

use realfft::num_complex::Complex;
use realfft::{RealFftPlanner, RealToComplex};
pub use wren::engine::harmonic::{noise_band_edges, HARMONICS, NOISE_BANDS, NOISE_LOW_HZ};
use wren::engine::harmonic::{ANALYSIS_WINDOW_SECONDS, FRAME_SECONDS};

/// Sample rate the analysis (and the rendered data) runs at.
pub const SAMPLE_RATE: f32 = 48_000.0;
/// Samples between frames: the synthesizer's frame period.
pub const HOP: usize = (FRAME_SECONDS * SAMPLE_RATE as f64) as usize;
/// Analysis window in samples: long enough to part the harmonics of C3.
pub const WINDOW: usize = (ANALYSIS_WINDOW_SECONDS * SAMPLE_RATE as f64) as usize;
/// Transform size: the window zero-padded four times for finer peaks.
pub const FFT_SIZE: usize = 4 * WINDOW;
/// Harmonics stop this far below Nyquist, where the soundfont's own
/// interpolation leaves little of the partials.
pub const HARMONIC_CEILING: f32 = 0.95;

/// The lowest MIDI pitch whose harmonics the analysis can part: each
/// harmonic is looked for within a quarter of the fundamental of where it
/// should be, and that reach must span the window's main lobe.
pub fn lowest_pitch() -> u8 {
    let bin_hz = SAMPLE_RATE / FFT_SIZE as f32;
    let half_lobe = (FFT_SIZE / WINDOW) as f32;
    (0..128u8)
        .find(|&p| 0.25 * wren::timbre::pitch_hz(p as f32) / bin_hz >= half_lobe)
        .unwrap_or(127)
}

/// One analysed frame.
#[derive(Clone, Debug, PartialEq)]
pub struct Frame {
    /// RMS level of the windowed frame in dBFS (floor -120).
    pub loudness_db: f32,
    /// Peak amplitude of each harmonic, in the units of a sine's amplitude;
    /// zero when silent, unpitched or above the ceiling.
    pub harmonics: [f32; HARMONICS],
    /// Mean magnitude between harmonics in each band, as the amplitude of a
    /// sine per bin (so a flat noise reads the same in every band).
    pub noise: [f32; NOISE_BANDS],
}

/// Frames of a signal: reusable buffers and a planned transform.
pub struct Analyzer {
    fft: Arc<dyn RealToComplex<f32>>,
    window: Vec<f32>,
    input: Vec<f32>,
    spectrum: Vec<Complex<f32>>,
    magnitude: Vec<f32>,
    scratch: Vec<Complex<f32>>,
    band_bins: Vec<(usize, usize)>,
}

impl Default for Analyzer {
    fn default() -> Self {
        Analyzer::new()
    }
}

impl Analyzer {
    /// Plans the transform and the band layout for [`SAMPLE_RATE`].
    pub fn new() -> Analyzer {
        let fft = RealFftPlanner::<f32>::new().plan_fft_forward(FFT_SIZE);
        let window: Vec<f32> = (0..WINDOW)
            .map(|i| 0.5 - 0.5 * (2.0 * std::f32::consts::PI * i as f32 / WINDOW as f32).cos())
            .collect();
        let bin_hz = SAMPLE_RATE / FFT_SIZE as f32;
        let edges = noise_band_edges();
        let band_bins = edges
            .windows(2)
            .map(|e| {
                let low = (e[0] / bin_hz).round() as usize;
                let high = ((e[1] / bin_hz).round() as usize).max(low + 1);
                (low, high.min(FFT_SIZE / 2 + 1))
            })
            .collect();
        Analyzer {
            input: fft.make_input_vec(),
            spectrum: fft.make_output_vec(),
            scratch: fft.make_scratch_vec(),
            magnitude: vec![0.0; FFT_SIZE / 2 + 1],
            fft,
            window,
            band_bins,
        }
    }

    /// Number of frames for a signal of `samples` samples: one per hop, the
    /// first centred on sample 0.
    pub fn frames_for(samples: usize) -> usize {
        samples.div_ceil(HOP)
    }

    /// Analyses `audio` at [`SAMPLE_RATE`]; `f0` gives the fundamental in Hz
    /// of each frame (`None` or non-positive where nothing is pitched).
    pub fn analyze(&mut self, audio: &[f32], f0: impl Fn(usize) -> Option<f32>) -> Vec<Frame> {
        (0..Self::frames_for(audio.len()))
            .map(|k| self.frame(audio, k * HOP, f0(k)))
            .collect()
    }

    /// One frame centred on sample `center`.
    pub fn frame(&mut self, audio: &[f32], center: usize, f0: Option<f32>) -> Frame {
        let start = center as isize - (WINDOW / 2) as isize;
        let mut energy = 0.0f64;
        for (i, slot) in self.input.iter_mut().enumerate() {
            *slot = if i < WINDOW {
                let at = start + i as isize;
                let x = if at >= 0 && (at as usize) < audio.len() {
                    audio[at as usize]
                } else {
                    0.0
                };
                energy += (x * x) as f64;
                x * self.window[i]
            } else {
                0.0
            };
        }
        let rms = (energy / WINDOW as f64).sqrt() as f32;
        let loudness_db = (20.0 * rms.max(1e-6).log10()).max(-120.0);
        self.fft
            .process_with_scratch(&mut self.input, &mut self.spectrum, &mut self.scratch)
            .expect("buffers sized by the planner");
        // A sine of amplitude a peaks at a * sum(window) / 2.
        let to_amplitude = 2.0 / self.window.iter().sum::<f32>();
        for (m, c) in self.magnitude.iter_mut().zip(&self.spectrum) {
            *m = c.norm() * to_amplitude;
        }
        let bin_hz = SAMPLE_RATE / FFT_SIZE as f32;
        let mut harmonics = [0.0f32; HARMONICS];
        let mut peaks = [f32::NAN; HARMONICS];
        if let Some(f0) = f0.filter(|f| *f > 0.0 && f.is_finite()) {
            let half_lobe = (FFT_SIZE / WINDOW) as f32;
            for (k, amplitude) in harmonics.iter_mut().enumerate() {
                let frequency = f0 * (k + 1) as f32;
                if frequency > HARMONIC_CEILING * SAMPLE_RATE / 2.0 {
                    break;
                }
                let center_bin = frequency / bin_hz;
                let reach = (0.03 * center_bin).clamp(half_lobe, 0.25 * f0 / bin_hz);
                let (peak, height) = self.peak(center_bin - reach, center_bin + reach);
                *amplitude = height;
                peaks[k] = peak;
            }
        }
        // The noise is what the harmonics leave: each harmonic's window
        // response is taken off the magnitude spectrum.
        let pad = (FFT_SIZE / WINDOW) as f32;
        for (k, &peak) in peaks.iter().enumerate() {
            if peak.is_nan() {
                break;
            }
            let span = 8.0 * pad;
            let from = (peak - span).max(0.0) as usize;
            let to = ((peak + span) as usize).min(self.magnitude.len() - 1);
            for b in from..=to {
                let response = harmonics[k] * hann_response((b as f32 - peak) / pad);
                self.magnitude[b] = (self.magnitude[b] - response).max(0.0);
            }
        }
        let mut noise = [0.0f32; NOISE_BANDS];
        for (band, &(low, high)) in noise.iter_mut().zip(&self.band_bins) {
            let power: f32 = self.magnitude[low..high].iter().map(|m| m * m).sum();
            *band = (power / (high - low) as f32).sqrt();
        }
        Frame {
            loudness_db,
            harmonics,
            noise,
        }
    }

    /// The highest magnitude between two fractional bins, refined by a
    /// parabola through its neighbours (in log magnitude): (bin, height).
    fn peak(&self, from: f32, to: f32) -> (f32, f32) {
        let last = self.magnitude.len() - 2;
        let from = (from.floor().max(1.0) as usize).min(last);
        let to = (to.ceil() as usize).clamp(from, last);
        let (mut best, mut height) = (from, self.magnitude[from]);
        for b in from..=to {
            if self.magnitude[b] > height {
                best = b;
                height = self.magnitude[b];
            }
        }
        let (a, b, c) = (
            self.magnitude[best - 1].max(1e-12).ln(),
            height.max(1e-12).ln(),
            self.magnitude[best + 1].max(1e-12).ln(),
        );
        let curve = a - 2.0 * b + c;
        if curve >= 0.0 {
            return (best as f32, height);
        }
        let shift = (0.5 * (a - c) / curve).clamp(-0.5, 0.5);
        (best as f32 + shift, (b - 0.25 * (a - c) * shift).exp())
    }
}

/// The magnitude of a Hann window's spectrum `x` bins (of the unpadded
/// window) from its centre, relative to the centre.
fn hann_response(x: f32) -> f32 {
    let x = x.abs();
    if x < 1e-4 {
        return 1.0;
    }
    if (x - 1.0).abs() < 1e-4 {
        return 0.5;
    }
    let pi_x = std::f32::consts::PI * x;
    (pi_x.sin() / pi_x / (1.0 - x * x)).abs()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn harmonic_tone(f0: f32, amplitudes: &[f32], samples: usize) -> Vec<f32> {
        (0..samples)
            .map(|n| {
                let t = n as f32 / SAMPLE_RATE;
                amplitudes
                    .iter()
                    .enumerate()
                    .map(|(k, a)| a * (2.0 * std::f32::consts::PI * f0 * (k + 1) as f32 * t).sin())
                    .sum()
            })
            .collect()
    }

    #[test]
    fn harmonic_amplitudes_are_recovered_and_noise_is_near_zero() {
        for f0 in [130.81f32, 440.0, 1046.5] {
            let amplitudes: Vec<f32> = (1..=12).map(|k| 0.5 / k as f32).collect();
            let audio = harmonic_tone(f0, &amplitudes, 48_000);
            let mut analyzer = Analyzer::new();
            let frame = analyzer.frame(&audio, 24_000, Some(f0));
            for (k, expected) in amplitudes.iter().enumerate() {
                let got = frame.harmonics[k];
                assert!(
                    (got - expected).abs() < 0.02 * expected,
                    "f0 {f0}, harmonic {}: {got} vs {expected}",
                    k + 1
                );
            }
            assert!(frame.harmonics[12..].iter().all(|a| *a < 1e-3), "f0 {f0}");
            // What the harmonics leave is far below them (-40 dB).
            assert!(
                frame.noise.iter().all(|n| *n < 5e-3),
                "f0 {f0}: {:?}",
                frame.noise
            );
            assert!(frame.loudness_db > -20.0 && frame.loudness_db < 0.0);
        }
    }

    #[test]
    fn the_lowest_pitch_is_parted_and_the_one_below_it_would_not_be() {
        let lowest = lowest_pitch();
        assert_eq!(lowest, 43, "G2 with a 2048-sample window at 48 kHz");
        let f0 = wren::timbre::pitch_hz(lowest as f32);
        let amplitudes: Vec<f32> = (1..=8).map(|k| 0.4 / k as f32).collect();
        let audio = harmonic_tone(f0, &amplitudes, 48_000);
        let frame = Analyzer::new().frame(&audio, 24_000, Some(f0));
        for (k, expected) in amplitudes.iter().enumerate() {
            let got = frame.harmonics[k];
            assert!((got - expected).abs() < 0.05 * expected, "{k}: {got}");
        }
        let below = wren::timbre::pitch_hz(lowest as f32 - 1.0);
        let half_lobe = (FFT_SIZE / WINDOW) as f32;
        assert!(0.25 * below / (SAMPLE_RATE / FFT_SIZE as f32) < half_lobe);
    }

    #[test]
    fn harmonics_above_the_ceiling_are_zero() {
        let f0 = 2093.0;
        let audio = harmonic_tone(f0, &[0.3; 12], 16_384);
        let frame = Analyzer::new().frame(&audio, 8_192, Some(f0));
        let last = (HARMONIC_CEILING * SAMPLE_RATE / 2.0 / f0) as usize;
        assert!(frame.harmonics[..last].iter().all(|a| *a > 0.25));
        assert!(frame.harmonics[last..].iter().all(|a| *a == 0.0));
    }

    #[test]
    fn white_noise_fills_every_band_about_evenly() {
        let mut state = 12345u32;
        let audio: Vec<f32> = (0..48_000)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                state as f32 / u32::MAX as f32 - 0.5
            })
            .collect();
        let mut analyzer = Analyzer::new();
        let frames = analyzer.analyze(&audio, |_| None);
        assert_eq!(frames.len(), 375);
        assert!(frames[200].harmonics.iter().all(|a| *a == 0.0));
        // Averaged over frames, every band but the narrowest few reads the same.
        let mut average = [0.0f32; NOISE_BANDS];
        for frame in &frames[50..300] {
            for (a, n) in average.iter_mut().zip(&frame.noise) {
                *a += n / 250.0;
            }
        }
        let upper = &average[8..];
        let mean = upper.iter().sum::<f32>() / upper.len() as f32;
        assert!(mean > 0.0);
        assert!(
            upper.iter().all(|n| (n / mean - 1.0).abs() < 0.15),
            "{average:?}"
        );
    }

    #[test]
    fn silence_is_quiet_everywhere() {
        let frame = Analyzer::new().frame(&vec![0.0; 4096], 2048, Some(220.0));
        assert_eq!(frame.loudness_db, -120.0);
        assert!(frame.harmonics.iter().all(|a| *a == 0.0));
        assert!(frame.noise.iter().all(|n| *n == 0.0));
    }

    #[test]
    fn the_frame_matches_the_synthesizer() {
        assert_eq!(HOP, 128);
        assert_eq!(WINDOW, 2048);
    }

    #[test]
    fn band_edges_rise_to_nyquist() {
        let edges = noise_band_edges();
        assert_eq!(edges[0], NOISE_LOW_HZ);
        assert!((edges[NOISE_BANDS] - 24_000.0).abs() < 1.0);
        assert!(edges.windows(2).all(|e| e[1] > e[0]));
    }
}
