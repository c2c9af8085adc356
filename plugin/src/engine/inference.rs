//! The inference thread: runs melody steps and timbre frames for the audio
//! thread.
//!
//! Requests arrive over an `rtrb` ring; melody results leave over one ring,
//! timbre frames over another. All buffers are allocated when the thread
//! starts; a steady-state step or frame runs an allocation-free kernel and
//! writes into preallocated scratch. The thread parks when there is no work
//! and the audio thread unparks it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use rtrb::{Consumer, Producer, RingBuffer};

use super::harmonic::FrameParams;
use super::sampling::{sample, Pcg, SamplingControls};
use crate::melody::tokens::{write_input, Meter, Token, INPUT_SIZE, VOCAB};
use crate::model::kernel::GruKernel;
use crate::timbre::{self, Control};

/// Work for the inference thread.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Request {
    /// Start a new timeline: zero the state and reseed from `(seed, step)`.
    Reset {
        /// Timeline number; results carry it so stale ones can be dropped.
        epoch: u32,
        /// The user's seed.
        seed: u64,
        /// The first step of the new timeline.
        step: i64,
    },
    /// Compute the token of one grid step.
    Step {
        /// Timeline number.
        epoch: u32,
        /// Absolute step index on the 16th-note grid.
        step: i64,
        /// Position of the step in its bar.
        step_in_bar: u32,
        /// Bar length.
        meter: Meter,
        /// Which installed model runs.
        variant: usize,
        /// Sampling controls in force.
        controls: SamplingControls,
        /// A token the user played: the network reads it instead of sampling.
        forced: Option<Token>,
    },
    /// Compute one timbre frame of a voice.
    Frame(FrameRequest),
}

/// One frame of one neural voice.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FrameRequest {
    /// The voice.
    pub voice: u8,
    /// The frame's first sample, on the engine's sample clock.
    pub time: u64,
    /// Which installed instrument plays.
    pub instrument: u16,
    /// Which of its variants runs.
    pub variant: u16,
    /// Whether the voice starts from silence: its state is zeroed first.
    pub fresh: bool,
    /// What the MIDI says at the frame's first sample.
    pub control: Control,
}

/// A computed timbre frame.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FrameResult {
    /// The voice.
    pub voice: u8,
    /// The frame's first sample.
    pub time: u64,
    /// The synthesizer parameters.
    pub params: FrameParams,
}

/// A computed step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StepResult {
    /// Timeline number of the request.
    pub epoch: u32,
    /// Absolute step index.
    pub step: i64,
    /// The token for that step.
    pub token: Token,
}

/// Counters the inference thread keeps; read from anywhere.
#[derive(Debug, Default)]
pub struct InferenceStats {
    /// Steps computed.
    pub steps: AtomicU64,
    /// Nanoseconds spent in kernels, summed.
    pub busy_nanos: AtomicU64,
    /// Slowest step in nanoseconds.
    pub worst_nanos: AtomicU64,
    /// Timbre frames computed.
    pub frames: AtomicU64,
    /// Nanoseconds spent on timbre frames, summed.
    pub frame_nanos: AtomicU64,
    /// Slowest timbre frame in nanoseconds.
    pub worst_frame_nanos: AtomicU64,
}

/// The audio thread's end of the inference thread.
pub struct InferenceHandle {
    /// Requests to the thread.
    pub requests: Producer<Request>,
    /// Melody results from the thread.
    pub results: Consumer<StepResult>,
    /// Timbre frames from the thread.
    pub frames: Consumer<FrameResult>,
    /// Counters.
    pub stats: Arc<InferenceStats>,
    thread: Option<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    /// Microseconds the thread sleeps before each step and frame.
    stall: Arc<AtomicU64>,
}

impl InferenceHandle {
    /// Wakes the thread after pushing requests. Does not allocate or lock:
    /// on Linux this is one atomic swap and, if the thread sleeps, a futex wake.
    pub fn wake(&self) {
        if let Some(thread) = &self.thread {
            thread.thread().unpark();
        }
    }

    /// Test and diagnostic hook: from now on the thread sleeps `micros`
    /// microseconds before every step and frame it computes, as a slower or
    /// busier machine would take them; 0 ends the stall. Normal operation
    /// never sets it. Does not allocate, lock or wait.
    pub fn stall(&self, micros: u64) {
        self.stall.store(micros, Ordering::Relaxed);
        self.wake();
    }
}

impl Drop for InferenceHandle {
    fn drop(&mut self) {
        self.stall.store(0, Ordering::Relaxed);
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

/// Capacity of each ring: more than any lookahead the scheduler asks for.
pub const QUEUE_CAPACITY: usize = 1024;

/// The timbre kernels: `[instrument][variant]`.
pub type TimbreKernels = Vec<Vec<GruKernel>>;

/// Voices whose recurrent state the inference thread keeps.
pub const MAX_VOICES: usize = 16;

/// Starts the inference thread with its melody kernels (index = variant)
/// and timbre kernels. Allocates.
pub fn spawn(kernels: Vec<GruKernel>, timbres: TimbreKernels) -> std::io::Result<InferenceHandle> {
    let (requests, request_rx) = RingBuffer::new(QUEUE_CAPACITY);
    let (result_tx, results) = RingBuffer::new(QUEUE_CAPACITY);
    let (frame_tx, frames) = RingBuffer::new(QUEUE_CAPACITY);
    let stats = Arc::new(InferenceStats::default());
    let stop = Arc::new(AtomicBool::new(false));
    let stall = Arc::new(AtomicU64::new(0));
    let mut worker = Worker::new(
        kernels,
        Timbres::new(timbres),
        request_rx,
        (result_tx, frame_tx),
        (stats.clone(), stall.clone()),
    );
    let stop_flag = stop.clone();
    let thread = std::thread::Builder::new()
        .name("wren-inference".into())
        .spawn(move || worker.run(&stop_flag))?;
    Ok(InferenceHandle {
        requests,
        results,
        frames,
        stats,
        thread: Some(thread),
        stop,
        stall,
    })
}

/// The timbre kernels and each voice's recurrent state.
struct Timbres {
    kernels: TimbreKernels,
    states: Vec<Vec<f32>>,
    /// The `(instrument, variant)` each voice's state belongs to.
    owners: [Option<(u16, u16)>; MAX_VOICES],
    x: [f32; timbre::INPUT_SIZE],
    y: [f32; timbre::OUTPUT_SIZE],
}

impl Timbres {
    fn new(kernels: TimbreKernels) -> Timbres {
        let width = kernels
            .iter()
            .flatten()
            .map(|k| k.shape().state())
            .max()
            .unwrap_or(0);
        Timbres {
            kernels,
            states: vec![vec![0.0; width]; MAX_VOICES],
            owners: [None; MAX_VOICES],
            x: [0.0; timbre::INPUT_SIZE],
            y: [0.0; timbre::OUTPUT_SIZE],
        }
    }

    /// One frame of a voice; silence if no kernel is installed.
    fn frame(&mut self, request: &FrameRequest) -> FrameParams {
        let f0 = crate::timbre::pitch_hz(request.control.pitch);
        let voice = request.voice as usize % MAX_VOICES;
        let Some(set) = self
            .kernels
            .get_mut(request.instrument as usize)
            .filter(|set| !set.is_empty())
        else {
            return FrameParams::silent(f0);
        };
        let variant = (request.variant as usize).min(set.len() - 1);
        let owner = Some((request.instrument, variant as u16));
        let kernel = &mut set[variant];
        let state = &mut self.states[voice][..kernel.shape().state()];
        if request.fresh || self.owners[voice] != owner {
            state.fill(0.0);
            self.owners[voice] = owner;
        }
        self.x = timbre::input(Some(&request.control));
        kernel.step(&self.x, state, &mut self.y);
        if state.iter().any(|s| !s.is_finite()) {
            // A broken output must not poison the frames that follow.
            state.fill(0.0);
        }
        timbre::decode(f0, &self.y)
    }
}

/// The state the inference thread owns.
pub struct Worker {
    kernels: Vec<GruKernel>,
    states: Vec<Vec<f32>>,
    timbres: Timbres,
    x: [f32; INPUT_SIZE],
    logits: [f32; VOCAB],
    scratch: [f32; VOCAB],
    previous: Token,
    rng: Pcg,
    epoch: u32,
    requests: Consumer<Request>,
    results: Producer<StepResult>,
    frames: Producer<FrameResult>,
    stats: Arc<InferenceStats>,
    stall: Arc<AtomicU64>,
}

impl Worker {
    fn new(
        kernels: Vec<GruKernel>,
        timbres: Timbres,
        requests: Consumer<Request>,
        (results, frames): (Producer<StepResult>, Producer<FrameResult>),
        (stats, stall): (Arc<InferenceStats>, Arc<AtomicU64>),
    ) -> Worker {
        let states = kernels
            .iter()
            .map(|k| vec![0.0; k.shape().state()])
            .collect();
        Worker {
            kernels,
            states,
            timbres,
            x: [0.0; INPUT_SIZE],
            logits: [0.0; VOCAB],
            scratch: [0.0; VOCAB],
            previous: Token::Rest,
            rng: Pcg::new(0, 0),
            epoch: 0,
            requests,
            results,
            frames,
            stats,
            stall,
        }
    }

    fn run(&mut self, stop: &AtomicBool) {
        while !stop.load(Ordering::Acquire) {
            if !self.drain() {
                std::thread::park_timeout(Duration::from_millis(20));
            }
        }
    }

    /// Handles every queued request; returns whether there was any.
    ///
    /// Real-time safe: does not allocate, lock or block, except that it
    /// sleeps as long as the stall hook says ([`InferenceHandle::stall`]).
    pub fn drain(&mut self) -> bool {
        let mut worked = false;
        while let Ok(request) = self.requests.pop() {
            worked = true;
            self.handle(request);
        }
        worked
    }

    fn handle(&mut self, request: Request) {
        let stall = self.stall.load(Ordering::Relaxed);
        if stall > 0 && !matches!(request, Request::Reset { .. }) {
            std::thread::sleep(Duration::from_micros(stall));
        }
        match request {
            Request::Reset { epoch, seed, step } => {
                self.epoch = epoch;
                self.rng = Pcg::new(seed, step);
                self.previous = Token::Rest;
                for state in &mut self.states {
                    state.fill(0.0);
                }
            }
            Request::Step {
                epoch,
                step,
                step_in_bar,
                meter,
                variant,
                controls,
                forced,
            } => {
                if epoch != self.epoch {
                    return;
                }
                let token = self.step(variant, step_in_bar, meter, &controls, forced);
                // A full ring means the audio thread stopped reading; dropping
                // the result is the only non-blocking answer.
                let _ = self.results.push(StepResult { epoch, step, token });
            }
            Request::Frame(frame) => {
                let started = std::time::Instant::now();
                let params = self.timbres.frame(&frame);
                let nanos = started.elapsed().as_nanos() as u64;
                self.stats.frames.fetch_add(1, Ordering::Relaxed);
                self.stats.frame_nanos.fetch_add(nanos, Ordering::Relaxed);
                self.stats
                    .worst_frame_nanos
                    .fetch_max(nanos, Ordering::Relaxed);
                let _ = self.frames.push(FrameResult {
                    voice: frame.voice,
                    time: frame.time,
                    params,
                });
            }
        }
    }

    fn step(
        &mut self,
        variant: usize,
        step_in_bar: u32,
        meter: Meter,
        controls: &SamplingControls,
        forced: Option<Token>,
    ) -> Token {
        let started = std::time::Instant::now();
        let variant = variant.min(self.kernels.len() - 1);
        write_input(&mut self.x, self.previous, step_in_bar, meter);
        self.kernels[variant].step(&self.x, &mut self.states[variant], &mut self.logits);
        let token = match forced {
            Some(token) => token,
            None => sample(
                &self.logits,
                controls,
                self.previous,
                &mut self.rng,
                &mut self.scratch,
            ),
        };
        self.previous = match (token, self.previous) {
            (Token::Hold, Token::Rest) => Token::Hold,
            _ => token,
        };
        let nanos = started.elapsed().as_nanos() as u64;
        self.stats.steps.fetch_add(1, Ordering::Relaxed);
        self.stats.busy_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.stats.worst_nanos.fetch_max(nanos, Ordering::Relaxed);
        token
    }
}
