//! The built-in voice: a band-limited additive tone with an envelope.
//!
//! Each voice sums harmonics below 45% of the sample rate, with amplitudes
//! falling as `1/k^1.5` (a soft, reedy tone). Harmonic `k` is the `k`-th power
//! of a unit phasor, so a sample costs one complex multiply per harmonic.

/// Voices that sound at once.
pub const VOICES: usize = 8;
const MAX_HARMONICS: usize = 24;
const RENORMALIZE_EVERY: u32 = 64;

/// Who started a voice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// A note the user played.
    User,
    /// A note Wren generated.
    Generated,
}

#[derive(Clone, Copy, Debug)]
struct Voice {
    note: u8,
    source: Source,
    gate: bool,
    velocity: f32,
    level: f32,
    age: u64,
    rotation: (f32, f32),
    phasor: (f32, f32),
    harmonics: usize,
    since_normalize: u32,
}

impl Voice {
    const SILENT: Voice = Voice {
        note: 0,
        source: Source::User,
        gate: false,
        velocity: 0.0,
        level: 0.0,
        age: 0,
        rotation: (1.0, 0.0),
        phasor: (1.0, 0.0),
        harmonics: 0,
        since_normalize: 0,
    };

    fn sounding(&self) -> bool {
        self.gate || self.level > 0.0
    }
}

/// A polyphonic synthesizer of [`VOICES`] voices.
pub struct Synth {
    voices: [Voice; VOICES],
    sample_rate: f32,
    attack: f32,
    release: f32,
    counter: u64,
    weights: [f32; MAX_HARMONICS],
}

impl Synth {
    /// A silent synthesizer for a sample rate.
    pub fn new(sample_rate: f32) -> Synth {
        let mut weights = [0.0; MAX_HARMONICS];
        let norm: f32 = (1..=MAX_HARMONICS).map(|k| (k as f32).powf(-1.5)).sum();
        for (k, w) in weights.iter_mut().enumerate() {
            *w = ((k + 1) as f32).powf(-1.5) / norm;
        }
        let mut synth = Synth {
            voices: [Voice::SILENT; VOICES],
            sample_rate,
            attack: 0.0,
            release: 0.0,
            counter: 0,
            weights,
        };
        synth.set_sample_rate(sample_rate);
        synth
    }

    /// Changes the sample rate; sounding voices are silenced.
    pub fn set_sample_rate(&mut self, sample_rate: f32) {
        self.sample_rate = sample_rate.max(1.0);
        self.attack = 1.0 - (-1.0 / (0.004 * self.sample_rate)).exp();
        self.release = 1.0 - (-1.0 / (0.060 * self.sample_rate)).exp();
        self.voices = [Voice::SILENT; VOICES];
    }

    /// Starts a note, stealing the oldest voice if all sound. Real-time safe.
    pub fn note_on(&mut self, note: u8, velocity: f32, source: Source) {
        self.counter += 1;
        let index = self
            .voices
            .iter()
            .position(|v| !v.sounding())
            .or_else(|| self.voices.iter().position(|v| !v.gate))
            .unwrap_or_else(|| {
                let oldest = self.voices.iter().map(|v| v.age).min().unwrap_or(0);
                self.voices
                    .iter()
                    .position(|v| v.age == oldest)
                    .unwrap_or(0)
            });
        let frequency = crate::timbre::pitch_hz(note as f32);
        let omega = std::f32::consts::TAU * frequency / self.sample_rate;
        let voice = &mut self.voices[index];
        // A stolen voice keeps its level and phase, so the change is smooth.
        let phasor = if voice.sounding() {
            voice.phasor
        } else {
            (1.0, 0.0)
        };
        *voice = Voice {
            note,
            source,
            gate: true,
            velocity: velocity.clamp(0.0, 1.0),
            level: if voice.sounding() { voice.level } else { 0.0 },
            age: self.counter,
            rotation: (omega.cos(), omega.sin()),
            phasor,
            harmonics: ((0.45 * self.sample_rate / frequency) as usize).clamp(1, MAX_HARMONICS),
            since_normalize: voice.since_normalize,
        };
    }

    /// Releases a note of a source.
    pub fn note_off(&mut self, note: u8, source: Source) {
        for v in self
            .voices
            .iter_mut()
            .filter(|v| v.gate && v.note == note && v.source == source)
        {
            v.gate = false;
        }
    }

    /// Releases every note of a source (or all, with `None`).
    pub fn release_all(&mut self, source: Option<Source>) {
        for v in self
            .voices
            .iter_mut()
            .filter(|v| source.is_none_or(|s| v.source == s))
        {
            v.gate = false;
        }
    }

    /// Adds `gain` times the voices into `out`. Real-time safe.
    pub fn render(&mut self, out: &mut [f32], gain: f32) {
        for voice in self.voices.iter_mut().filter(|v| v.sounding()) {
            for sample in out.iter_mut() {
                if !voice.gate && voice.level < 1e-5 {
                    // Silent: the voice stops here, whatever the block size.
                    voice.level = 0.0;
                    break;
                }
                let target = if voice.gate { voice.velocity } else { 0.0 };
                let rate = if voice.gate {
                    self.attack
                } else {
                    self.release
                };
                voice.level += (target - voice.level) * rate;
                let (c, s) = voice.rotation;
                let (re, im) = voice.phasor;
                voice.phasor = (re * c - im * s, re * s + im * c);
                voice.since_normalize += 1;
                if voice.since_normalize >= RENORMALIZE_EVERY {
                    let (re, im) = voice.phasor;
                    let norm = (re * re + im * im).sqrt().max(1e-9);
                    voice.phasor = (re / norm, im / norm);
                    voice.since_normalize = 0;
                }
                let mut value = 0.0;
                let base = voice.phasor;
                let mut power = base;
                for weight in &self.weights[..voice.harmonics] {
                    value += weight * power.1;
                    power = (
                        power.0 * base.0 - power.1 * base.1,
                        power.0 * base.1 + power.1 * base.0,
                    );
                }
                *sample += gain * voice.level * value;
            }
        }
    }

    /// Number of voices sounding.
    pub fn active_voices(&self) -> usize {
        self.voices.iter().filter(|v| v.sounding()).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dominant_frequency(signal: &[f32], sample_rate: f32) -> f32 {
        // Autocorrelation peak over plausible periods.
        let (mut best, mut best_lag) = (f32::MIN, 1);
        for lag in (sample_rate / 2000.0) as usize..(sample_rate / 50.0) as usize {
            let c: f32 = signal.iter().zip(&signal[lag..]).map(|(a, b)| a * b).sum();
            if c > best {
                best = c;
                best_lag = lag;
            }
        }
        sample_rate / best_lag as f32
    }

    #[test]
    fn a_note_sounds_at_its_pitch_and_releases_to_silence() {
        for sample_rate in [44_100.0, 48_000.0, 96_000.0] {
            let mut synth = Synth::new(sample_rate);
            synth.note_on(69, 0.8, Source::User);
            let mut out = vec![0.0; 8192];
            synth.render(&mut out, 1.0);
            let f = dominant_frequency(&out[2048..], sample_rate);
            assert!((f - 440.0).abs() < 440.0 * 0.01, "{sample_rate}: {f}");
            synth.note_off(69, Source::User);
            let mut tail = vec![0.0; (sample_rate * 1.5) as usize];
            synth.render(&mut tail, 1.0);
            assert!(tail[tail.len() - 100..].iter().all(|s| s.abs() < 1e-3));
            assert_eq!(synth.active_voices(), 0);
        }
    }

    #[test]
    fn rendering_in_pieces_equals_rendering_at_once() {
        let mut a = Synth::new(48_000.0);
        let mut b = Synth::new(48_000.0);
        a.note_on(60, 1.0, Source::Generated);
        b.note_on(60, 1.0, Source::Generated);
        let mut whole = vec![0.0; 1000];
        a.render(&mut whole, 1.0);
        let mut pieces = vec![0.0; 1000];
        let mut start = 0;
        for len in [1, 63, 200, 511, 225] {
            b.render(&mut pieces[start..start + len], 1.0);
            start += len;
        }
        assert_eq!(whole, pieces);
    }
}
