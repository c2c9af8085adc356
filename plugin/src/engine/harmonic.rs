//! The neural voice's synthesizer: a harmonic oscillator bank plus filtered
//! noise, driven by one frame of parameters every [`FRAME_SECONDS`].
//!
//! Harmonics: `k * f0` for `k = 1..=HARMONICS`, each with its own amplitude,
//! interpolated linearly sample by sample from one frame to the next (no
//! steps, so no clicks). Harmonic `k` is the `k`-th power of the fundamental's
//! unit phasor, so a sample costs one `sin_cos` and a complex multiply per
//! harmonic. Harmonics fade out between 90% and 95% of Nyquist and are silent
//! above, at every sample rate, so nothing aliases.
//!
//! Noise: white noise shaped per frame in the frequency domain (`realfft`):
//! each frame's band magnitudes, spread over the bins of [`NOISE_BANDS`]
//! log-spaced bands, filter a segment two hops long under a sine window, and
//! the segments overlap-add (their squared windows sum to one, so the noise
//! level holds steady). A frame's segment starts where the frame does, so the
//! noise needs no look-ahead.
//!
//! Real-time safe after [`HarmonicSynth::new`]: rendering never allocates.

use std::sync::Arc;

use realfft::num_complex::Complex;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};

/// Harmonics per frame.
pub const HARMONICS: usize = 64;
/// Noise bands per frame.
pub const NOISE_BANDS: usize = 32;
/// Frame period: 128 samples at 48 kHz.
pub const FRAME_SECONDS: f64 = 128.0 / 48_000.0;
/// Length of the analysis window that defines the units of the noise bands.
pub const ANALYSIS_WINDOW_SECONDS: f64 = 2048.0 / 48_000.0;
/// Lowest noise band edge in Hz.
pub const NOISE_LOW_HZ: f32 = 40.0;
/// Highest noise band edge in Hz: Nyquist of the 48 kHz analysis, so that
/// a band sounds at the same frequencies at every sample rate.
pub const NOISE_HIGH_HZ: f32 = 24_000.0;
/// Harmonics start to fade at this share of Nyquist...
const FADE_FROM: f32 = 0.90;
/// ...and are silent from this one.
const FADE_TO: f32 = 0.95;

/// The `NOISE_BANDS + 1` band edges in Hz, evenly spaced in log frequency
/// from [`NOISE_LOW_HZ`] to [`NOISE_HIGH_HZ`], the same at every sample rate
/// (above a lower rate's Nyquist a band is cut short).
pub fn noise_band_edges() -> [f32; NOISE_BANDS + 1] {
    let ratio = (NOISE_HIGH_HZ / NOISE_LOW_HZ).ln();
    std::array::from_fn(|i| NOISE_LOW_HZ * (ratio * i as f32 / NOISE_BANDS as f32).exp())
}

/// Samples per frame at a sample rate.
pub fn hop_for(sample_rate: f32) -> usize {
    ((sample_rate as f64 * FRAME_SECONDS).round() as usize).max(2)
}

/// One frame of synthesizer parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FrameParams {
    /// Fundamental in Hz.
    pub f0: f32,
    /// Peak amplitude of each harmonic (a sine's amplitude).
    pub harmonics: [f32; HARMONICS],
    /// Noise magnitude per band, as the amplitude of a sine per bin (the
    /// units of the analysis that trained the network).
    pub noise: [f32; NOISE_BANDS],
}

impl FrameParams {
    /// A silent frame at `f0`.
    pub const fn silent(f0: f32) -> FrameParams {
        FrameParams {
            f0,
            harmonics: [0.0; HARMONICS],
            noise: [0.0; NOISE_BANDS],
        }
    }

    /// The frame with every value made safe to play: finite, non-negative,
    /// amplitudes at most 4 and the fundamental within 1 Hz to 20 kHz.
    pub fn sanitized(&self) -> FrameParams {
        let clean = |x: f32| {
            if x.is_finite() {
                x.clamp(0.0, 4.0)
            } else {
                0.0
            }
        };
        FrameParams {
            f0: if self.f0.is_finite() {
                self.f0.clamp(1.0, 20_000.0)
            } else {
                440.0
            },
            harmonics: self.harmonics.map(clean),
            noise: self.noise.map(clean),
        }
    }
}

/// Magnitudes of the spectrum of `signal` under a Hann window, unscaled:
/// `signal.len() / 2 + 1` bins. For measuring sound; allocates.
pub fn hann_spectrum(signal: &[f32]) -> Vec<f32> {
    let n = signal.len();
    let fft = RealFftPlanner::<f32>::new().plan_fft_forward(n);
    let mut input: Vec<f32> = signal
        .iter()
        .enumerate()
        .map(|(i, s)| s * (0.5 - 0.5 * (std::f32::consts::TAU * i as f32 / n as f32).cos()))
        .collect();
    let mut output = fft.make_output_vec();
    fft.process(&mut input, &mut output)
        .expect("buffers sized by the planner");
    output.iter().map(|c| c.norm()).collect()
}

/// One voice of the harmonic-plus-noise synthesizer.
pub struct HarmonicSynth {
    sample_rate: f32,
    hop: usize,
    /// Position in the current frame, `0..hop`.
    at: usize,
    previous: FrameParams,
    current: FrameParams,
    /// Phase of the fundamental in turns, `[0, 1)`.
    phase: f64,
    /// Per-harmonic gain of the band limit for the current frame, and the last.
    limit: [f32; HARMONICS],
    previous_limit: [f32; HARMONICS],
    noise: NoiseShaper,
}

impl HarmonicSynth {
    /// A silent voice for a sample rate. Allocates.
    pub fn new(sample_rate: f32) -> HarmonicSynth {
        let hop = hop_for(sample_rate);
        HarmonicSynth {
            sample_rate,
            hop,
            at: 0,
            previous: FrameParams::silent(440.0),
            current: FrameParams::silent(440.0),
            phase: 0.0,
            limit: [0.0; HARMONICS],
            previous_limit: [0.0; HARMONICS],
            noise: NoiseShaper::new(sample_rate, hop),
        }
    }

    /// Samples per frame.
    pub fn hop(&self) -> usize {
        self.hop
    }

    /// Whether the next sample starts a frame.
    pub fn at_boundary(&self) -> bool {
        self.at == 0
    }

    /// Samples until the next frame starts (a whole frame at a boundary).
    pub fn to_boundary(&self) -> usize {
        self.hop - self.at
    }

    /// The sample rate it renders at.
    pub fn sample_rate(&self) -> f32 {
        self.sample_rate
    }

    /// Silences the voice at once and forgets its frames and noise.
    pub fn reset(&mut self) {
        self.at = 0;
        self.previous = FrameParams::silent(self.current.f0);
        self.current = self.previous;
        self.limit = [0.0; HARMONICS];
        self.previous_limit = [0.0; HARMONICS];
        self.noise.reset();
    }

    /// Adds the voice's sound to `out`. At every frame boundary (the first
    /// sample of `out` included, if it is one) `next_frame` gives the
    /// parameters of the frame that starts there. Any block length works and
    /// gives the same sound.
    pub fn render(&mut self, out: &mut [f32], next_frame: &mut dyn FnMut() -> FrameParams) {
        let mut done = 0;
        while done < out.len() {
            if self.at == 0 {
                self.start_frame(next_frame().sanitized());
            }
            let n = (self.hop - self.at).min(out.len() - done);
            self.render_span(&mut out[done..done + n]);
            done += n;
            self.at = (self.at + n) % self.hop;
        }
    }

    fn start_frame(&mut self, frame: FrameParams) {
        self.previous = self.current;
        self.previous_limit = self.limit;
        self.current = frame;
        let nyquist = self.sample_rate / 2.0;
        for (k, gain) in self.limit.iter_mut().enumerate() {
            let share = frame.f0 * (k + 1) as f32 / nyquist;
            *gain = ((FADE_TO - share) / (FADE_TO - FADE_FROM)).clamp(0.0, 1.0);
        }
        self.noise.start_frame(&frame.noise);
    }

    /// Renders samples `at..at + out.len()` of the current frame.
    fn render_span(&mut self, out: &mut [f32]) {
        let hop = self.hop as f32;
        // The highest harmonic either frame lets through.
        let top = (0..HARMONICS)
            .rev()
            .find(|&k| self.limit[k] > 0.0 || self.previous_limit[k] > 0.0)
            .map_or(0, |k| k + 1);
        for (i, sample) in out.iter_mut().enumerate() {
            let t = (self.at + i) as f32 / hop;
            let f0 = self.previous.f0 + (self.current.f0 - self.previous.f0) * t;
            let (sin, cos) = ((self.phase * std::f64::consts::TAU) as f32).sin_cos();
            let step = Complex::new(cos, sin);
            let mut phasor = step;
            let mut sum = 0.0;
            for k in 0..top {
                let from = self.previous.harmonics[k] * self.previous_limit[k];
                let to = self.current.harmonics[k] * self.limit[k];
                sum += (from + (to - from) * t) * phasor.im;
                phasor *= step;
            }
            *sample += sum + self.noise.next_sample();
            self.phase = (self.phase + f0 as f64 / self.sample_rate as f64).fract();
        }
    }
}

/// White noise filtered per frame and overlap-added.
struct NoiseShaper {
    hop: usize,
    forward: Arc<dyn RealToComplex<f32>>,
    inverse: Arc<dyn ComplexToReal<f32>>,
    window: Vec<f32>,
    segment: Vec<f32>,
    spectrum: Vec<Complex<f32>>,
    scratch_forward: Vec<Complex<f32>>,
    scratch_inverse: Vec<Complex<f32>>,
    /// Band index of each bin (`None` below the lowest band).
    bin_band: Vec<Option<usize>>,
    /// The output still to come: the tail of the last segment plus the new one.
    pending: Vec<f32>,
    /// Read position in `pending`.
    read: usize,
    /// Turns a band magnitude into the filter's gain for unit-variance noise.
    gain: f32,
    rng: u64,
}

impl NoiseShaper {
    fn new(sample_rate: f32, hop: usize) -> NoiseShaper {
        let size = 2 * hop;
        let mut planner = RealFftPlanner::<f32>::new();
        let forward = planner.plan_fft_forward(size);
        let inverse = planner.plan_fft_inverse(size);
        // A sine window: at 50% overlap the squares of the windows sum to
        // one, so independent segments add up to a steady variance.
        let window: Vec<f32> = (0..size)
            .map(|i| (std::f32::consts::PI * i as f32 / size as f32).sin())
            .collect();
        let edges = noise_band_edges();
        let bin_hz = sample_rate / size as f32;
        let bin_band = (0..=size / 2)
            .map(|b| {
                let hz = b as f32 * bin_hz;
                edges
                    .windows(2)
                    .position(|e| hz >= e[0] && hz < e[1])
                    // The analysis' Nyquist bin belongs to its top band.
                    .or((hz == edges[NOISE_BANDS]).then_some(NOISE_BANDS - 1))
            })
            .collect();
        // The analysis reads a magnitude m per bin where a noise whose
        // spectral density, spread over the whole band, has variance
        // m^2 * N / 6 (N: samples in its Hann window of
        // ANALYSIS_WINDOW_SECONDS). Filtering unit-variance white noise by a
        // gain g per bin gives that density for g^2; the sine windows below
        // keep the variance constant across the overlap.
        let gain = (ANALYSIS_WINDOW_SECONDS * sample_rate as f64 / 6.0).sqrt() as f32;
        NoiseShaper {
            hop,
            spectrum: forward.make_output_vec(),
            scratch_forward: forward.make_scratch_vec(),
            scratch_inverse: inverse.make_scratch_vec(),
            forward,
            inverse,
            window,
            segment: vec![0.0; size],
            bin_band,
            pending: vec![0.0; size + hop],
            read: 0,
            gain,
            rng: 0x9E37_79B9_7F4A_7C15,
        }
    }

    fn reset(&mut self) {
        self.pending.fill(0.0);
        self.read = 0;
    }

    fn white(&mut self) -> f32 {
        // xorshift64*: a uniform number scaled to variance 1.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let bits = self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40;
        (bits as f32 / (1u64 << 24) as f32 - 0.5) * 12f32.sqrt()
    }

    /// Shapes the segment of a new frame and adds it to what is pending.
    fn start_frame(&mut self, bands: &[f32; NOISE_BANDS]) {
        // Move the unread tail (one hop of the previous segment) to the front.
        let hop = self.hop;
        self.pending.copy_within(self.read..self.read + hop, 0);
        self.pending[hop..].fill(0.0);
        self.read = 0;
        if bands.iter().all(|b| *b == 0.0) {
            return;
        }
        for i in 0..self.segment.len() {
            self.segment[i] = self.white();
        }
        self.forward
            .process_with_scratch(
                &mut self.segment,
                &mut self.spectrum,
                &mut self.scratch_forward,
            )
            .expect("buffers sized by the planner");
        let scale = self.gain / self.segment.len() as f32;
        for (bin, value) in self.spectrum.iter_mut().enumerate() {
            let gain = self.bin_band[bin].map_or(0.0, |b| bands[b]);
            *value *= gain * scale;
        }
        // The transform of a real signal is real at DC and Nyquist.
        self.spectrum[0].im = 0.0;
        if let Some(last) = self.spectrum.last_mut() {
            last.im = 0.0;
        }
        self.inverse
            .process_with_scratch(
                &mut self.spectrum,
                &mut self.segment,
                &mut self.scratch_inverse,
            )
            .expect("buffers sized by the planner");
        for (i, s) in self.segment.iter().enumerate() {
            self.pending[i] += s * self.window[i];
        }
    }

    fn next_sample(&mut self) -> f32 {
        let sample = self.pending[self.read];
        self.read += 1;
        sample
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(f0: f32, amplitudes: &[f32]) -> FrameParams {
        let mut frame = FrameParams::silent(f0);
        frame.harmonics[..amplitudes.len()].copy_from_slice(amplitudes);
        frame
    }

    fn render(synth: &mut HarmonicSynth, samples: usize, frame: FrameParams) -> Vec<f32> {
        let mut out = vec![0.0; samples];
        synth.render(&mut out, &mut || frame);
        out
    }

    /// Magnitude spectrum (Hann window, a sine's amplitude at its peak) of
    /// `signal` and the bin width in Hz.
    fn spectrum(signal: &[f32], sample_rate: f32) -> (Vec<f32>, f32) {
        let norm = 4.0 / signal.len() as f32;
        (
            hann_spectrum(signal).iter().map(|m| m * norm).collect(),
            sample_rate / signal.len() as f32,
        )
    }

    #[test]
    fn harmonics_sound_at_their_frequencies_at_every_sample_rate() {
        for sample_rate in [44_100.0f32, 48_000.0, 96_000.0] {
            let mut synth = HarmonicSynth::new(sample_rate);
            let f0 = 261.63;
            let audio = render(&mut synth, 32_768 + 4096, tone(f0, &[0.4, 0.2, 0.1]));
            let (magnitude, bin_hz) = spectrum(&audio[4096..], sample_rate);
            for (k, expected) in [0.4f32, 0.2, 0.1].into_iter().enumerate() {
                let bin = (f0 * (k + 1) as f32 / bin_hz).round() as usize;
                let peak = magnitude[bin - 2..=bin + 2]
                    .iter()
                    .copied()
                    .fold(0.0, f32::max);
                let strongest = (bin - 2..=bin + 2)
                    .max_by(|a, b| magnitude[*a].total_cmp(&magnitude[*b]))
                    .unwrap();
                assert!(
                    strongest.abs_diff(bin) <= 1,
                    "{sample_rate}: harmonic {}",
                    k + 1
                );
                assert!(
                    (peak / expected - 1.0).abs() < 0.2,
                    "{sample_rate}: harmonic {} at {peak}, expected {expected}",
                    k + 1
                );
            }
        }
    }

    #[test]
    fn nothing_aliases_at_any_sample_rate() {
        for sample_rate in [44_100.0f32, 48_000.0, 96_000.0] {
            let mut synth = HarmonicSynth::new(sample_rate);
            let f0 = 1_234.5;
            let audio = render(&mut synth, 32_768 + 4096, tone(f0, &[0.1; HARMONICS]));
            let (magnitude, bin_hz) = spectrum(&audio[4096..], sample_rate);
            let strongest = magnitude.iter().copied().fold(0.0, f32::max);
            // Energy off the harmonic series is aliasing (or leakage).
            for (bin, m) in magnitude.iter().enumerate() {
                let hz = bin as f32 * bin_hz;
                let off_series = (hz / f0 - (hz / f0).round()).abs() * f0 > 8.0 * bin_hz;
                if off_series {
                    assert!(
                        *m < strongest * 1e-3,
                        "{sample_rate}: {m} at {hz} Hz (strongest {strongest})"
                    );
                }
            }
            let top = (FADE_TO * sample_rate / 2.0 / bin_hz) as usize;
            assert!(magnitude[top + 8..].iter().all(|m| *m < strongest * 1e-3));
        }
    }

    #[test]
    fn any_block_sizes_give_the_same_sound() {
        let frames: Vec<FrameParams> = (0..200)
            .map(|k| {
                let mut frame = tone(200.0 + k as f32, &[0.3, 0.1, 0.05]);
                frame.noise = [0.001 * (k % 7) as f32; NOISE_BANDS];
                frame
            })
            .collect();
        let play = |blocks: &mut dyn FnMut() -> usize| {
            let mut synth = HarmonicSynth::new(48_000.0);
            let mut out = vec![0.0; 128 * 190];
            let mut next = 0;
            let mut done = 0;
            while done < out.len() {
                let n = blocks().min(out.len() - done);
                synth.render(&mut out[done..done + n], &mut || {
                    next += 1;
                    frames[next - 1]
                });
                done += n;
            }
            out
        };
        let whole = play(&mut || usize::MAX);
        let mut seed = 7u64;
        let pieces = play(&mut || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
            (seed >> 33) as usize % 1024
        });
        assert!(whole.iter().any(|s| s.abs() > 0.1));
        assert_eq!(whole, pieces);
    }

    #[test]
    fn amplitude_changes_ramp_without_clicks() {
        let mut synth = HarmonicSynth::new(48_000.0);
        let loud = tone(100.0, &[0.8]);
        let mut frames = [
            FrameParams::silent(100.0),
            loud,
            loud,
            FrameParams::silent(100.0),
        ]
        .into_iter();
        let mut out = vec![0.0; 128 * 4];
        synth.render(&mut out, &mut || {
            frames.next().unwrap_or(FrameParams::silent(100.0))
        });
        // A 100 Hz sine of amplitude 0.8 moves at most 2*pi*100*0.8/48000 per
        // sample; a ramp over one frame adds at most 0.8/128.
        let largest = out
            .windows(2)
            .map(|w| (w[1] - w[0]).abs())
            .fold(0.0, f32::max);
        assert!(largest < 0.0105 + 0.8 / 128.0, "step of {largest}");
        assert!(out[128 * 2..128 * 3].iter().any(|s| s.abs() > 0.5));
    }

    #[test]
    fn noise_lands_in_its_band_at_its_level() {
        let sample_rate = 48_000.0;
        let edges = noise_band_edges();
        let band = 24;
        let mut frame = FrameParams::silent(440.0);
        frame.noise[band] = 0.01;
        let mut synth = HarmonicSynth::new(sample_rate);
        let audio = render(&mut synth, 65_536 + 4096, frame);
        let (magnitude, bin_hz) = spectrum(&audio[4096..], sample_rate);
        let in_band = |bin: usize| {
            let hz = bin as f32 * bin_hz;
            hz >= edges[band] && hz < edges[band + 1]
        };
        let power = |keep: &dyn Fn(usize) -> bool| -> f32 {
            (0..magnitude.len())
                .filter(|b| keep(*b))
                .map(|b| magnitude[b].powi(2))
                .sum()
        };
        let near = |bin: usize| {
            let hz = bin as f32 * bin_hz;
            hz >= edges[band - 1] && hz < edges[band + 2]
        };
        let inside = power(&in_band);
        let outside = power(&|b| !in_band(b));
        // Segments two frames long filter at a coarse resolution: a little
        // spills into the neighbouring bands, hardly any further.
        assert!(inside > 5.0 * outside, "inside {inside}, outside {outside}");
        assert!(power(&near) > 50.0 * power(&|b| !near(b)));
        // The band reads back at the level asked for: the analysis' units
        // scale with the square root of the window, this one is 32 times
        // longer than the analysis window.
        let bins = (0..magnitude.len()).filter(|b| in_band(*b)).count() as f32;
        let level = (inside / bins).sqrt();
        let expected = 0.01 * (2048.0f32 / 65_536.0).sqrt();
        assert!(
            (level / expected - 1.0).abs() < 0.2,
            "level {level}, expected {expected}"
        );
    }

    #[test]
    fn hostile_parameters_give_finite_sound() {
        let mut synth = HarmonicSynth::new(44_100.0);
        let mut frame = FrameParams::silent(f32::NAN);
        frame.harmonics = [f32::INFINITY; HARMONICS];
        frame.harmonics[3] = f32::NAN;
        frame.noise = [-1.0; NOISE_BANDS];
        frame.noise[5] = f32::MAX;
        let audio = render(&mut synth, 4096, frame);
        assert!(audio.iter().all(|s| s.is_finite()));
        let huge = render(&mut synth, 4096, tone(1e9, &[1.0; HARMONICS]));
        assert!(huge.iter().all(|s| s.is_finite()));
    }
}
