//! The neural voices: each note a recurrent timbre network driving its own
//! harmonic-plus-noise synthesizer ([`HarmonicSynth`]).
//!
//! Two clocks run `delay` samples apart. The control side is where note
//! events happen: at each of a voice's frame boundaries it sends the
//! inference thread a frame request with what the MIDI says at that sample.
//! The render side plays each frame `delay` samples later; with `delay` at
//! least one block, a frame is requested one block before it is heard. A
//! frame that has not arrived by then is played with the previous frame's
//! parameters and counted late; offline, the render side waits for it.
//!
//! A voice that starts from silence starts its frame grid and its network
//! state at its note-on sample. A stolen voice keeps both and glides to the
//! new note, as the network learned from legato phrases, so a steal never
//! clicks. A released voice plays its network's release for
//! [`TAIL_SECONDS`], then ends with a silent frame and is free again.
//!
//! Real-time safe after [`NeuralVoices::new`]: nothing allocates, locks or
//! waits, except offline waiting.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::harmonic::{hop_for, FrameParams, HarmonicSynth};
use super::inference::{FrameRequest, InferenceHandle, Request};
use super::synth::Source;
use crate::timbre::{pitch_hz, Control};

/// Neural voices that sound at once.
pub const VOICES: usize = 8;
/// How long a released voice sounds: its network learned releases this long.
pub const TAIL_SECONDS: f32 = 0.5;
/// Frames a voice may have requested and not yet played.
const QUEUE_FRAMES: usize = 256;
/// Samples rendered at a time into the scratch buffer.
const SCRATCH: usize = 512;
/// Longest offline wait for a frame before it counts as late.
const OFFLINE_WAIT: Duration = Duration::from_secs(2);

/// A frame the control side requested, waiting to be played.
#[derive(Clone, Copy, Debug)]
struct Pending {
    time: u64,
    /// The voice starts from silence here.
    fresh: bool,
    /// The voice's final, silent frame.
    last: bool,
    params: Option<FrameParams>,
}

/// What the control side knows about a voice.
#[derive(Clone, Copy, Debug)]
struct ControlVoice {
    active: bool,
    note: u8,
    source: Source,
    gate: bool,
    velocity: f32,
    on_at: u64,
    off_at: u64,
    next_frame: u64,
    fresh: bool,
    age: u64,
    /// When an ended voice's final frame is over and it may start afresh.
    free_at: u64,
}

impl ControlVoice {
    const IDLE: ControlVoice = ControlVoice {
        active: false,
        note: 0,
        source: Source::User,
        gate: false,
        velocity: 0.0,
        on_at: 0,
        off_at: 0,
        next_frame: 0,
        fresh: false,
        age: 0,
        free_at: 0,
    };

    fn control(&self, time: u64, sample_rate: f32) -> Control {
        let seconds = |from: u64| time.saturating_sub(from) as f32 / sample_rate;
        Control {
            pitch: self.note as f32,
            velocity: self.velocity,
            gate: self.gate,
            since_on: seconds(self.on_at),
            since_off: if self.gate { 0.0 } else { seconds(self.off_at) },
        }
    }
}

/// The render side of a voice.
struct RenderVoice {
    synth: HarmonicSynth,
    queue: VecDeque<Pending>,
    active: bool,
    /// The frame being played is the voice's last.
    ending: bool,
    previous: FrameParams,
}

/// Where a voice's frames come from and go: the engine's inference thread,
/// the instrument and variant, and whether waiting is allowed.
pub struct FrameSource<'a> {
    /// The inference thread.
    pub inference: &'a mut InferenceHandle,
    /// Installed instrument.
    pub instrument: u16,
    /// Its variant.
    pub variant: u16,
    /// Offline: wait for every frame.
    pub offline: bool,
}

/// [`VOICES`] neural voices.
pub struct NeuralVoices {
    sample_rate: f32,
    hop: u64,
    delay: u64,
    /// Control clock: the next sample the control side reaches. The render
    /// clock is `delay` behind; both start so that it starts at zero.
    now: u64,
    control: [ControlVoice; VOICES],
    /// Voices notes may take: the first `limit`.
    limit: usize,
    render: Vec<RenderVoice>,
    counter: u64,
    late_frames: u64,
    scratch: Vec<f32>,
}

impl NeuralVoices {
    /// Silent voices for a sample rate, playing `delay` samples after the
    /// control side, with the render clock starting at `start` (past any
    /// frame a previous bank may still have in flight). Allocates.
    pub fn new(sample_rate: f32, delay: usize, start: u64) -> NeuralVoices {
        let delay = delay as u64;
        NeuralVoices {
            sample_rate,
            hop: hop_for(sample_rate) as u64,
            delay,
            now: start + delay,
            control: [ControlVoice::IDLE; VOICES],
            limit: VOICES,
            render: (0..VOICES)
                .map(|_| RenderVoice {
                    synth: HarmonicSynth::new(sample_rate),
                    queue: VecDeque::with_capacity(QUEUE_FRAMES),
                    active: false,
                    ending: false,
                    previous: FrameParams::silent(440.0),
                })
                .collect(),
            counter: 0,
            late_frames: 0,
            scratch: vec![0.0; SCRATCH],
        }
    }

    /// The control clock: the next sample the control side reaches.
    pub fn clock(&self) -> u64 {
        self.now
    }

    /// Samples from a note event to its sound.
    pub fn delay(&self) -> usize {
        self.delay as usize
    }

    /// Frames played with the previous frame's parameters because theirs
    /// were not computed in time.
    pub fn late_frames(&self) -> u64 {
        self.late_frames
    }

    /// Voices the control side holds (sounding or releasing).
    pub fn active_voices(&self) -> usize {
        self.control.iter().filter(|v| v.active).count()
    }

    /// Lets notes take only the first `limit` voices (1 to [`VOICES`]);
    /// notes held by the others are released.
    pub fn set_limit(&mut self, limit: usize) {
        self.limit = limit.clamp(1, VOICES);
        let now = self.now;
        for v in self.control[self.limit..]
            .iter_mut()
            .filter(|v| v.active && v.gate)
        {
            v.gate = false;
            v.off_at = now;
        }
    }

    /// Starts a note now: the voice holding the same note of the same
    /// source (a retrigger), else a free voice, else the oldest released
    /// voice, else the oldest sounding one, else one whose final frame still
    /// plays (it starts when that frame ends, less than a frame from now).
    pub fn note_on(&mut self, note: u8, velocity: f32, source: Source) {
        self.counter += 1;
        let now = self.now;
        let voices = &self.control[..self.limit];
        let oldest = |keep: &dyn Fn(&ControlVoice) -> bool| {
            (0..voices.len())
                .filter(|&i| keep(&voices[i]))
                .min_by_key(|&i| voices[i].age)
        };
        let index = oldest(&|v| v.active && v.gate && v.note == note && v.source == source)
            .or_else(|| oldest(&|v| !v.active && v.free_at <= now))
            .or_else(|| oldest(&|v| v.active && !v.gate))
            .or_else(|| oldest(&|v| v.active))
            .or_else(|| oldest(&|_| true))
            .unwrap_or(0);
        let voice = &mut self.control[index];
        // A voice taken again before its first frame went out still starts
        // from silence.
        let fresh = !voice.active || voice.fresh;
        *voice = ControlVoice {
            active: true,
            note,
            source,
            gate: true,
            velocity: velocity.clamp(0.0, 1.0),
            on_at: now,
            off_at: now,
            next_frame: if voice.active {
                voice.next_frame
            } else {
                now.max(voice.free_at)
            },
            fresh,
            age: self.counter,
            free_at: voice.free_at,
        };
    }

    /// Releases a note of a source.
    pub fn note_off(&mut self, note: u8, source: Source) {
        let now = self.now;
        for v in self
            .control
            .iter_mut()
            .filter(|v| v.active && v.gate && v.note == note && v.source == source)
        {
            v.gate = false;
            v.off_at = now;
        }
    }

    /// Releases every note of a source (or all, with `None`).
    pub fn release_all(&mut self, source: Option<Source>) {
        let now = self.now;
        for v in self
            .control
            .iter_mut()
            .filter(|v| v.active && v.gate && source.is_none_or(|s| v.source == s))
        {
            v.gate = false;
            v.off_at = now;
        }
    }

    /// Moves both clocks on by `out.len()` samples: requests the frames
    /// that start on the control side, and adds `gain` times the render
    /// side's sound into `out`.
    pub fn advance(&mut self, out: &mut [f32], gain: f32, source: &mut FrameSource) {
        let mut done = 0;
        while done < out.len() {
            let n = (out.len() - done).min(SCRATCH);
            self.request_frames(self.now + n as u64, source);
            collect(&mut self.render, source.inference);
            let start = self.now - self.delay;
            let mut scratch = std::mem::take(&mut self.scratch);
            for voice in 0..VOICES {
                self.render_voice(voice, start, &mut scratch[..n], source);
            }
            for (o, s) in out[done..done + n].iter_mut().zip(&mut scratch[..n]) {
                *o += gain * *s;
                *s = 0.0;
            }
            self.scratch = scratch;
            self.now += n as u64;
            done += n;
        }
        source.inference.wake();
    }

    /// Requests every frame that starts before `until` on the control side.
    fn request_frames(&mut self, until: u64, source: &mut FrameSource) {
        for (index, voice) in self.control.iter_mut().enumerate() {
            while voice.active && voice.next_frame < until {
                let time = voice.next_frame;
                let control = voice.control(time, self.sample_rate);
                if !voice.gate && control.since_off > TAIL_SECONDS {
                    voice.active = false;
                    voice.free_at = time + self.hop;
                    let end = Pending {
                        time,
                        fresh: false,
                        last: true,
                        params: Some(FrameParams::silent(pitch_hz(control.pitch))),
                    };
                    let render = &mut self.render[index];
                    if render.queue.len() < QUEUE_FRAMES {
                        render.queue.push_back(end);
                    }
                    break;
                }
                let request = Request::Frame(FrameRequest {
                    voice: index as u8,
                    time,
                    instrument: source.instrument,
                    variant: source.variant,
                    fresh: voice.fresh,
                    control,
                });
                // A full ring leaves the frame to play late (nothing waits
                // for a frame never asked for); offline, where waiting is
                // allowed, the inference thread is given time to make room.
                let sent = send(request, &mut self.render, source);
                let render = &mut self.render[index];
                if sent && render.queue.len() < QUEUE_FRAMES {
                    render.queue.push_back(Pending {
                        time,
                        fresh: voice.fresh,
                        last: false,
                        params: None,
                    });
                }
                voice.fresh = false;
                voice.next_frame += self.hop;
            }
        }
    }

    /// Adds one voice's sound for render-clock samples `start..` into `out`.
    fn render_voice(
        &mut self,
        index: usize,
        start: u64,
        out: &mut [f32],
        source: &mut FrameSource,
    ) {
        let end = start + out.len() as u64;
        let mut at = start;
        while at < end {
            let voice = &mut self.render[index];
            if voice.ending && voice.synth.at_boundary() {
                voice.active = false;
                voice.ending = false;
            }
            if !voice.active {
                // Idle until a fresh frame starts the voice again.
                while voice
                    .queue
                    .front()
                    .is_some_and(|p| !p.fresh && p.time < end)
                {
                    voice.queue.pop_front();
                }
                match voice.queue.front() {
                    Some(p) if p.time < end => {
                        at = at.max(p.time);
                        voice.synth.reset();
                        voice.active = true;
                    }
                    _ => return,
                }
            }
            let frame = if voice.synth.at_boundary() {
                Some(self.next_frame(index, at, source))
            } else {
                None
            };
            let voice = &mut self.render[index];
            let n = (voice.synth.to_boundary() as u64).min(end - at) as usize;
            let offset = (at - start) as usize;
            voice.synth.render(&mut out[offset..offset + n], &mut || {
                frame.unwrap_or(FrameParams::silent(440.0))
            });
            at += n as u64;
        }
    }

    /// The parameters of a voice's frame starting at `time`: computed, or
    /// the previous frame's if they are late.
    fn next_frame(&mut self, index: usize, time: u64, source: &mut FrameSource) -> FrameParams {
        let deadline = source.offline.then(|| Instant::now() + OFFLINE_WAIT);
        loop {
            let voice = &mut self.render[index];
            while voice.queue.front().is_some_and(|p| p.time < time) {
                voice.queue.pop_front();
            }
            match voice.queue.front().copied() {
                Some(p) if p.time == time && (p.params.is_some() || deadline.is_none()) => {
                    voice.queue.pop_front();
                    voice.ending = p.last;
                    let params = match p.params {
                        Some(params) => params,
                        None => {
                            self.late_frames += 1;
                            voice.previous
                        }
                    };
                    voice.previous = params;
                    return params;
                }
                Some(p) if p.time == time && deadline.is_some_and(|d| Instant::now() < d) => {
                    source.inference.wake();
                    std::thread::yield_now();
                    collect(&mut self.render, source.inference);
                }
                _ => {
                    // Nothing was requested for this boundary, or the wait
                    // ran out: hold the previous frame.
                    self.late_frames += 1;
                    if voice.queue.front().is_some_and(|p| p.time == time) {
                        voice.queue.pop_front();
                    }
                    return voice.previous;
                }
            }
        }
    }
}

/// Sends a frame request; offline, waits for room on a full ring up to
/// the offline wait, collecting results meanwhile. Returns whether it went.
fn send(request: Request, render: &mut [RenderVoice], source: &mut FrameSource) -> bool {
    let mut request = request;
    let deadline = source.offline.then(|| Instant::now() + OFFLINE_WAIT);
    loop {
        match source.inference.requests.push(request) {
            Ok(()) => return true,
            Err(rtrb::PushError::Full(back)) => request = back,
        }
        if deadline.is_none_or(|d| Instant::now() >= d) {
            return false;
        }
        source.inference.wake();
        std::thread::yield_now();
        collect(render, source.inference);
    }
}

/// Files computed frames with the frames of `render` waiting for them.
fn collect(render: &mut [RenderVoice], inference: &mut InferenceHandle) {
    while let Ok(result) = inference.frames.pop() {
        let Some(voice) = render.get_mut(result.voice as usize) else {
            continue;
        };
        if let Some(pending) = voice
            .queue
            .iter_mut()
            .find(|p| p.time == result.time && p.params.is_none() && !p.last)
        {
            pending.params = Some(result.params);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The notes the control side holds with their gate down.
    fn held(voices: &NeuralVoices) -> Vec<u8> {
        let mut notes: Vec<u8> = voices
            .control
            .iter()
            .filter(|v| v.active && v.gate)
            .map(|v| v.note)
            .collect();
        notes.sort_unstable();
        notes
    }

    #[test]
    fn notes_take_only_the_voices_the_limit_allows() {
        let mut voices = NeuralVoices::new(48_000.0, 64, 0);
        voices.set_limit(2);
        for note in [60, 62, 64] {
            voices.note_on(note, 0.8, Source::User);
        }
        // The third note took over the oldest.
        assert_eq!(voices.active_voices(), 2);
        assert_eq!(held(&voices), [62, 64]);
        // Lowering the limit releases what the dropped voice held.
        voices.set_limit(1);
        assert_eq!(held(&voices).len(), 1);
        assert_eq!(voices.active_voices(), 2, "the released note still fades");
        voices.note_on(67, 0.8, Source::User);
        assert_eq!(held(&voices), [67]);
        // Raised again, every voice is there to take.
        voices.set_limit(VOICES);
        for note in 70..70 + VOICES as u8 {
            voices.note_on(note, 0.8, Source::User);
        }
        assert_eq!(held(&voices).len(), VOICES);
        // Out of range limits are clamped.
        voices.set_limit(0);
        assert_eq!(voices.limit, 1);
        voices.set_limit(99);
        assert_eq!(voices.limit, VOICES);
    }
}
