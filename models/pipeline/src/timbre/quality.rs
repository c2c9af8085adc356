//! How close a resynthesis comes to the real recording: multi-resolution
//! STFT distance and log-spectral distance, and the static baseline the
//! timbre network has to beat.

use std::collections::BTreeMap;

use realfft::RealFftPlanner;
use wren::engine::harmonic::{FrameParams, HarmonicSynth, HARMONICS, NOISE_BANDS};

use super::analysis::{Frame, SAMPLE_RATE};
use super::data::{midi_hz, Recording};

/// Transform sizes of the multi-resolution STFT distance.
pub const RESOLUTIONS: [usize; 5] = [2048, 1024, 512, 256, 128];
/// Magnitudes below this count as this (about -100 dB).
const FLOOR: f32 = 1e-5;

/// Magnitude frames of a Hann-windowed STFT with 75% overlap.
/// Magnitude frames of `audio` under a Hann window of `size`, every `hop`
/// samples (past the end counts as silence).
pub fn stft(audio: &[f32], size: usize, hop: usize) -> Vec<Vec<f32>> {
    let fft = RealFftPlanner::<f32>::new().plan_fft_forward(size);
    let window: Vec<f32> = (0..size)
        .map(|i| 0.5 - 0.5 * (std::f32::consts::TAU * i as f32 / size as f32).cos())
        .collect();
    let (mut input, mut output) = (fft.make_input_vec(), fft.make_output_vec());
    let mut frames = Vec::new();
    let mut start = 0;
    while start + size <= audio.len().max(size) {
        for (i, slot) in input.iter_mut().enumerate() {
            *slot = audio.get(start + i).copied().unwrap_or(0.0) * window[i];
        }
        fft.process(&mut input, &mut output)
            .expect("sized by the planner");
        frames.push(output.iter().map(|c| c.norm()).collect());
        start += hop;
    }
    frames
}

/// Multi-resolution STFT distance of `estimate` from `reference`: at each
/// resolution, the spectral convergence (L1 of the magnitude difference over
/// L1 of the reference) plus the mean absolute difference of log magnitudes;
/// averaged over resolutions. 0 for identical signals.
pub fn mrstft_distance(reference: &[f32], estimate: &[f32]) -> f64 {
    let len = reference.len().max(estimate.len());
    let pad = |a: &[f32]| {
        let mut v = a.to_vec();
        v.resize(len, 0.0);
        v
    };
    let (reference, estimate) = (pad(reference), pad(estimate));
    let mut total = 0.0;
    for size in RESOLUTIONS {
        let (a, b) = (
            stft(&reference, size, size / 4),
            stft(&estimate, size, size / 4),
        );
        let (mut difference, mut magnitude, mut log_difference, mut bins) = (0.0, 0.0, 0.0, 0usize);
        for (fa, fb) in a.iter().zip(&b) {
            for (x, y) in fa.iter().zip(fb) {
                difference += (x - y).abs() as f64;
                magnitude += *x as f64;
                log_difference += (x.max(FLOOR).ln() - y.max(FLOOR).ln()).abs() as f64;
                bins += 1;
            }
        }
        total += difference / magnitude.max(1e-9) + log_difference / bins.max(1) as f64;
    }
    total / RESOLUTIONS.len() as f64
}

/// Log-spectral distance in dB (STFT of 2048, hop 512): per frame, the RMS
/// over bins of the power ratio in dB; averaged over frames where the
/// reference sounds (within 60 dB of its loudest frame).
pub fn log_spectral_distance(reference: &[f32], estimate: &[f32]) -> f64 {
    let len = reference.len().max(estimate.len());
    let mut a = reference.to_vec();
    let mut b = estimate.to_vec();
    a.resize(len, 0.0);
    b.resize(len, 0.0);
    let (fa, fb) = (stft(&a, 2048, 2048 / 4), stft(&b, 2048, 2048 / 4));
    let energy: Vec<f32> = fa.iter().map(|f| f.iter().map(|m| m * m).sum()).collect();
    let loudest = energy.iter().copied().fold(0.0, f32::max);
    let (mut sum, mut frames) = (0.0, 0);
    for ((x, y), e) in fa.iter().zip(&fb).zip(&energy) {
        if *e <= loudest * 1e-6 || *e == 0.0 {
            continue;
        }
        let mean_square: f64 = x
            .iter()
            .zip(y)
            .map(|(p, q)| (20.0 * (p.max(FLOOR) / q.max(FLOOR)).log10()).powi(2) as f64)
            .sum::<f64>()
            / x.len() as f64;
        sum += mean_square.sqrt();
        frames += 1;
    }
    sum / frames.max(1) as f64
}

/// Plays synthesizer frames (one per analysis hop) at [`SAMPLE_RATE`].
pub fn resynthesize(frames: &[FrameParams]) -> Vec<f32> {
    let mut synth = HarmonicSynth::new(SAMPLE_RATE);
    let mut out = vec![0.0; frames.len() * synth.hop()];
    let mut next = frames.iter();
    synth.render(&mut out, &mut || {
        next.next().copied().unwrap_or(FrameParams::silent(440.0))
    });
    out
}

/// The synthesizer frames of an analysis, at each frame's note pitch.
pub fn analysed_frames(recording: &Recording) -> Vec<FrameParams> {
    recording
        .frames
        .iter()
        .zip(&recording.controls)
        .map(|(frame, control)| FrameParams {
            f0: control.map_or(440.0, |c| midi_hz(c.pitch)),
            harmonics: frame.harmonics,
            noise: frame.noise,
        })
        .collect()
}

/// The static baseline: one average spectrum per pitch and velocity (a
/// wavetable learned from the same data), held while the key is down.
/// Pitches and velocities it never saw are interpolated from the nearest
/// ones it did.
pub struct Wavetable {
    /// Mean frame per (pitch, velocity), over frames with the key down.
    tables: BTreeMap<(u8, u8), Frame>,
}

impl Wavetable {
    /// Averages the held frames of single-note recordings.
    pub fn learn(recordings: &[Recording]) -> Wavetable {
        let mut sums: BTreeMap<(u8, u8), (Frame, usize)> = BTreeMap::new();
        for recording in recordings {
            for (frame, control) in recording.frames.iter().zip(&recording.controls) {
                let Some(c) = control.filter(|c| c.gate) else {
                    continue;
                };
                let key = (c.pitch as u8, (c.velocity * 127.0).round() as u8);
                let entry = sums.entry(key).or_insert_with(|| {
                    (
                        Frame {
                            loudness_db: 0.0,
                            harmonics: [0.0; HARMONICS],
                            noise: [0.0; NOISE_BANDS],
                        },
                        0,
                    )
                });
                for (s, h) in entry.0.harmonics.iter_mut().zip(&frame.harmonics) {
                    *s += h;
                }
                for (s, n) in entry.0.noise.iter_mut().zip(&frame.noise) {
                    *s += n;
                }
                entry.1 += 1;
            }
        }
        let tables = sums
            .into_iter()
            .map(|(key, (mut frame, count))| {
                frame.harmonics.iter_mut().for_each(|h| *h /= count as f32);
                frame.noise.iter_mut().for_each(|n| *n /= count as f32);
                (key, frame)
            })
            .collect();
        Wavetable { tables }
    }

    /// The spectrum for a pitch and velocity: the nearest learned velocity
    /// at the two learned pitches around it, mixed linearly.
    pub fn spectrum(&self, pitch: u8, velocity: u8) -> Option<FrameParams> {
        let nearest = |p: u8| {
            self.tables
                .iter()
                .filter(|((tp, _), _)| *tp == p)
                .min_by_key(|((_, tv), _)| tv.abs_diff(velocity))
                .map(|(_, f)| f)
        };
        let pitches: Vec<u8> = self.tables.keys().map(|(p, _)| *p).collect();
        let below = pitches.iter().copied().filter(|p| *p <= pitch).max();
        let above = pitches.iter().copied().filter(|p| *p >= pitch).min();
        let (low, high) = match (below, above) {
            (Some(l), Some(h)) => (l, h),
            (Some(l), None) => (l, l),
            (None, Some(h)) => (h, h),
            (None, None) => return None,
        };
        let (a, b) = (nearest(low)?, nearest(high)?);
        let t = if high > low {
            (pitch - low) as f32 / (high - low) as f32
        } else {
            0.0
        };
        let mut frame = FrameParams::silent(midi_hz(pitch as f32));
        for k in 0..HARMONICS {
            frame.harmonics[k] = a.harmonics[k] * (1.0 - t) + b.harmonics[k] * t;
        }
        for k in 0..NOISE_BANDS {
            frame.noise[k] = a.noise[k] * (1.0 - t) + b.noise[k] * t;
        }
        Some(frame)
    }

    /// The baseline's frames for a recording's MIDI: the spectrum while a
    /// key is down, silence otherwise.
    pub fn frames_for(&self, recording: &Recording) -> Vec<FrameParams> {
        recording
            .controls
            .iter()
            .map(|control| match control.filter(|c| c.gate) {
                Some(c) => {
                    let velocity = (c.velocity * 127.0).round() as u8;
                    self.spectrum(c.pitch as u8, velocity)
                        .unwrap_or(FrameParams::silent(midi_hz(c.pitch)))
                }
                None => FrameParams::silent(440.0),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(hz: f32, seconds: f32) -> Vec<f32> {
        (0..(seconds * SAMPLE_RATE) as usize)
            .map(|n| 0.3 * (std::f32::consts::TAU * hz * n as f32 / SAMPLE_RATE).sin())
            .collect()
    }

    #[test]
    fn distances_are_zero_for_the_same_sound_and_grow_with_the_difference() {
        let a = sine(440.0, 0.5);
        assert!(mrstft_distance(&a, &a) < 1e-9);
        assert!(log_spectral_distance(&a, &a) < 1e-9);
        let near = sine(445.0, 0.5);
        let far = sine(880.0, 0.5);
        assert!(mrstft_distance(&a, &near) < mrstft_distance(&a, &far));
        assert!(log_spectral_distance(&a, &near) < log_spectral_distance(&a, &far));
        // Noise fills every bin above the floor: half its level is 6 dB.
        let mut state = 1u32;
        let noise: Vec<f32> = (0..24_000)
            .map(|_| {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (state >> 8) as f32 / (1 << 24) as f32 - 0.5
            })
            .collect();
        let quieter: Vec<f32> = noise.iter().map(|s| s * 0.5).collect();
        let lsd = log_spectral_distance(&noise, &quieter);
        assert!((lsd - 6.02).abs() < 0.1, "half the level is 6 dB: {lsd}");
    }
}
