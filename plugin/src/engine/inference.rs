//! The inference thread: runs melody steps and timbre frames for the audio
//! thread.
//!
//! Requests arrive over an `rtrb` ring; melody results leave over one ring,
//! timbre frames over another. All buffers are allocated when the thread
//! starts; a steady-state step or frame runs an allocation-free kernel and
//! writes into preallocated scratch. The thread parks when there is no work
//! and the audio thread unparks it.
//!
//! Models are replaced while the thread runs through an [`Installer`]: a
//! new kernel and its state buffers, allocated by the caller, travel over a
//! ring of their own; the thread swaps them in between two requests and
//! sends the old ones back, so that they are freed off the real-time threads.

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
    /// Whether the thread flushes denormals to zero (set when it starts).
    pub flushes_denormals: AtomicBool,
    /// Whether the thread is handling requests at the moment.
    pub busy: AtomicBool,
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
    /// The way new models reach the thread, until someone takes it.
    installer: Option<Installer>,
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

    /// Whether every request sent has been handled: none waits on the
    /// ring and the thread is not handling one. Does not allocate, lock or wait.
    pub fn idle(&self) -> bool {
        self.requests.slots() == QUEUE_CAPACITY && !self.stats.busy.load(Ordering::SeqCst)
    }

    /// The installer of new models; there is one, and the first call takes it.
    pub fn take_installer(&mut self) -> Option<Installer> {
        self.installer.take()
    }
}

/// A kernel on its way to the inference thread, with the state buffers
/// that go with it.
pub enum Swap {
    /// A melody kernel for one variant, with its state (zeroed, its width).
    Melody {
        /// The variant it runs as.
        variant: usize,
        /// The kernel.
        kernel: GruKernel,
        /// Its recurrent state.
        state: Vec<f32>,
    },
    /// A timbre kernel for one variant of an instrument.
    Timbre {
        /// The instrument.
        instrument: usize,
        /// The variant it runs as.
        variant: usize,
        /// The kernel.
        kernel: GruKernel,
        /// New per-voice states, when the kernel's state is wider than
        /// every installed one.
        states: Option<Vec<Vec<f32>>>,
    },
}

/// What the inference thread hands back, to be freed elsewhere.
#[allow(clippy::large_enum_variant)] // a box would be freed on the inference thread
pub enum Retired {
    /// A kernel replaced, or refused.
    Kernel(GruKernel),
    /// A melody variant's replaced state.
    State(Vec<f32>),
    /// The voices' replaced states.
    States(Vec<Vec<f32>>),
}

/// Why a model could not be handed to the inference thread.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// No such variant is installed.
    #[error("there is no {0} to replace")]
    NoSlot(String),
    /// The model does not read and write the widths of its network.
    #[error("the model reads {0} inputs and writes {1} outputs, its network other widths")]
    Widths(usize, usize),
    /// The thread took nothing for a second.
    #[error("the inference thread took no model for a second")]
    Busy,
}

/// Capacity of the model rings.
const SWAP_CAPACITY: usize = 64;

/// Hands new kernels to a running inference thread and frees the old ones.
/// Lives on a non-real-time thread (allocates, sleeps while the ring is full).
pub struct Installer {
    swaps: Producer<Swap>,
    retired: Consumer<Retired>,
    thread: std::thread::Thread,
    melody_variants: usize,
    timbre_variants: Vec<usize>,
    timbre_width: usize,
    /// Where costs measured for the installed models go, with the presets'
    /// budget shares.
    costs: Option<(Producer<super::cost::CostTable>, Vec<f64>)>,
}

impl Installer {
    /// Gives the installer the engine's inbox for cost tables.
    pub fn set_cost_inbox(&mut self, inbox: Producer<super::cost::CostTable>, shares: Vec<f64>) {
        self.costs = Some((inbox, shares));
    }

    /// Measures the presets' costs with these models (as installed now)
    /// and hands the table to the engine, which plans with it from its
    /// next block. Allocates; takes a few hundred steps of every network.
    /// Returns whether a table went.
    pub fn measure(&mut self, models: &super::cost::CostModels) -> bool {
        let Some((inbox, shares)) = self.costs.as_mut() else {
            return false;
        };
        let stop = AtomicBool::new(false);
        let steps = super::cost::MEASURE_STEPS;
        match super::cost::measure_presets(models, shares, steps, &stop) {
            Some(table) => inbox.push(table).is_ok(),
            None => false,
        }
    }

    /// Melody variants installed.
    pub fn melody_variants(&self) -> usize {
        self.melody_variants
    }

    /// Timbre variants installed for `instrument` (0 if none).
    pub fn timbre_variants(&self, instrument: usize) -> usize {
        self.timbre_variants.get(instrument).copied().unwrap_or(0)
    }

    /// Replaces the melody kernel of `variant`. Its state starts at zero.
    pub fn install_melody(
        &mut self,
        variant: usize,
        kernel: GruKernel,
    ) -> Result<(), InstallError> {
        if variant >= self.melody_variants {
            return Err(InstallError::NoSlot(format!("melody variant {variant}")));
        }
        let shape = kernel.shape();
        if (shape.input, shape.output) != (INPUT_SIZE, VOCAB) {
            return Err(InstallError::Widths(shape.input, shape.output));
        }
        let state = vec![0.0; shape.state()];
        self.push(Swap::Melody {
            variant,
            kernel,
            state,
        })
    }

    /// Replaces the timbre kernel of `variant` of `instrument`. Notes
    /// sounding on the old kernel play on with it to their end; new notes
    /// take the new one.
    pub fn install_timbre(
        &mut self,
        instrument: usize,
        variant: usize,
        kernel: GruKernel,
    ) -> Result<(), InstallError> {
        if variant >= self.timbre_variants(instrument) {
            return Err(InstallError::NoSlot(format!(
                "timbre variant {variant} of instrument {instrument}"
            )));
        }
        let shape = kernel.shape();
        if (shape.input, shape.output) != (timbre::INPUT_SIZE, timbre::OUTPUT_SIZE) {
            return Err(InstallError::Widths(shape.input, shape.output));
        }
        let states = (shape.state() > self.timbre_width).then(|| {
            self.timbre_width = shape.state();
            vec![vec![0.0; shape.state()]; MAX_VOICES]
        });
        self.push(Swap::Timbre {
            instrument,
            variant,
            kernel,
            states,
        })
    }

    /// Frees the kernels the thread has handed back; returns how many.
    pub fn free_retired(&mut self) -> usize {
        let mut freed = 0;
        while self.retired.pop().is_ok() {
            freed += 1;
        }
        freed
    }

    fn push(&mut self, mut swap: Swap) -> Result<(), InstallError> {
        let started = std::time::Instant::now();
        loop {
            self.free_retired();
            match self.swaps.push(swap) {
                Ok(()) => {
                    self.thread.unpark();
                    return Ok(());
                }
                Err(rtrb::PushError::Full(back)) => swap = back,
            }
            if started.elapsed() > Duration::from_secs(1) {
                return Err(InstallError::Busy);
            }
            self.thread.unpark();
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Waits until the thread has taken every model handed to it, up to
    /// `limit`, and frees what came back; returns whether it took them.
    /// Kernels still playing their last notes come back later.
    pub fn settle(&mut self, limit: Duration) -> bool {
        let started = std::time::Instant::now();
        while self.swaps.slots() < SWAP_CAPACITY {
            if started.elapsed() > limit {
                return false;
            }
            self.thread.unpark();
            std::thread::sleep(Duration::from_millis(1));
        }
        self.free_retired();
        true
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
    let (swaps, swap_rx) = RingBuffer::new(SWAP_CAPACITY);
    let (retired_tx, retired) = RingBuffer::new(SWAP_CAPACITY);
    let melody_variants = kernels.len();
    let timbre_variants = timbres.iter().map(Vec::len).collect();
    let timbres = Timbres::new(timbres);
    let timbre_width = timbres.width();
    let mut worker = Worker::new(
        kernels,
        timbres,
        request_rx,
        (result_tx, frame_tx),
        (stats.clone(), stall.clone()),
    );
    worker.models = Some((swap_rx, retired_tx));
    let stop_flag = stop.clone();
    let thread = std::thread::Builder::new()
        .name("wren-inference".into())
        .spawn(move || worker.run(&stop_flag))?;
    let installer = Installer {
        swaps,
        retired,
        thread: thread.thread().clone(),
        melody_variants,
        timbre_variants,
        timbre_width,
        costs: None,
    };
    Ok(InferenceHandle {
        requests,
        results,
        frames,
        stats,
        thread: Some(thread),
        stop,
        stall,
        installer: Some(installer),
    })
}

/// Which kernel a voice's state belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Owner {
    instrument: u16,
    variant: u16,
    /// The slot's outgoing kernel, which plays on until its notes end.
    outgoing: bool,
}

/// The timbre kernels and each voice's recurrent state.
///
/// A kernel replaced while voices sound stays as the slot's outgoing kernel
/// and plays those voices' notes to their end, so that a model swap never
/// cuts into a sounding note; new notes take the new kernel. The outgoing
/// kernel goes back once no voice holds it.
struct Timbres {
    kernels: TimbreKernels,
    /// `[instrument][variant]`, like `kernels`.
    outgoing: Vec<Vec<Option<GruKernel>>>,
    states: Vec<Vec<f32>>,
    owners: [Option<Owner>; MAX_VOICES],
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
            outgoing: kernels
                .iter()
                .map(|set| set.iter().map(|_| None).collect())
                .collect(),
            kernels,
            states: vec![vec![0.0; width]; MAX_VOICES],
            owners: [None; MAX_VOICES],
            x: [0.0; timbre::INPUT_SIZE],
            y: [0.0; timbre::OUTPUT_SIZE],
        }
    }

    /// Width of each voice's state buffer.
    fn width(&self) -> usize {
        self.states.first().map_or(0, Vec::len)
    }

    /// Installs a kernel in a slot, with the wider states it brings if any
    /// (the voices' states are copied into them). The replaced kernel plays
    /// on as the slot's outgoing kernel if a voice holds it. Everything
    /// replaced, or everything given if there is no such slot or the states
    /// are too narrow, goes to `back` (at most three items). Real-time
    /// safe: frees nothing.
    fn install(
        &mut self,
        (instrument, variant): (usize, usize),
        kernel: GruKernel,
        states: Option<Vec<Vec<f32>>>,
        back: &mut impl FnMut(Retired),
    ) {
        let width = states
            .as_ref()
            .map_or(self.width(), |s| s.first().map_or(0, Vec::len));
        let counts = states.as_ref().is_none_or(|s| s.len() == MAX_VOICES);
        let exists = self
            .kernels
            .get(instrument)
            .is_some_and(|set| variant < set.len());
        if !exists || !counts || width < kernel.shape().state() {
            back(Retired::Kernel(kernel));
            if let Some(states) = states {
                back(Retired::States(states));
            }
            return;
        }
        if let Some(mut wider) = states {
            for (new, old) in wider.iter_mut().zip(&self.states) {
                new[..old.len()].copy_from_slice(old);
            }
            back(Retired::States(std::mem::replace(&mut self.states, wider)));
        }
        let (i, v) = (instrument as u16, variant as u16);
        let held = |outgoing| {
            Some(Owner {
                instrument: i,
                variant: v,
                outgoing,
            })
        };
        // An older outgoing kernel still playing gives way: its voices
        // start over on the new kernel.
        if let Some(older) = self.outgoing[instrument][variant].take() {
            back(Retired::Kernel(older));
            for owner in self.owners.iter_mut().filter(|o| **o == held(true)) {
                *owner = None;
            }
        }
        let replaced = std::mem::replace(&mut self.kernels[instrument][variant], kernel);
        let mut holders = self
            .owners
            .iter_mut()
            .filter(|o| **o == held(false))
            .peekable();
        if holders.peek().is_some() {
            for owner in holders {
                *owner = held(true);
            }
            self.outgoing[instrument][variant] = Some(replaced);
        } else {
            back(Retired::Kernel(replaced));
        }
    }

    /// Hands back one outgoing kernel no voice holds any more, if any.
    fn release(&mut self, back: &mut impl FnMut(Retired)) -> bool {
        for (instrument, set) in self.outgoing.iter_mut().enumerate() {
            for (variant, slot) in set.iter_mut().enumerate() {
                let owner = Some(Owner {
                    instrument: instrument as u16,
                    variant: variant as u16,
                    outgoing: true,
                });
                if slot.is_some() && !self.owners.contains(&owner) {
                    if let Some(kernel) = slot.take() {
                        back(Retired::Kernel(kernel));
                        return true;
                    }
                }
            }
        }
        false
    }

    /// One frame of a voice; silence if no kernel is installed.
    fn frame(&mut self, request: &FrameRequest) -> FrameParams {
        let f0 = crate::timbre::pitch_hz(request.control.pitch);
        let voice = request.voice as usize % MAX_VOICES;
        let instrument = request.instrument as usize;
        let Some(set) = self
            .kernels
            .get_mut(instrument)
            .filter(|set| !set.is_empty())
        else {
            return FrameParams::silent(f0);
        };
        let variant = (request.variant as usize).min(set.len() - 1);
        let owner = |outgoing| Owner {
            instrument: request.instrument,
            variant: variant as u16,
            outgoing,
        };
        // A note under way keeps the kernel it started with.
        let continuing = !request.fresh && self.owners[voice] == Some(owner(true));
        let kernel = match self.outgoing[instrument][variant].as_mut() {
            Some(outgoing) if continuing => outgoing,
            _ => &mut set[variant],
        };
        let state = &mut self.states[voice][..kernel.shape().state()];
        if !continuing && (request.fresh || self.owners[voice] != Some(owner(false))) {
            state.fill(0.0);
            self.owners[voice] = Some(owner(false));
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
    /// New models in, old models out.
    models: Option<(Consumer<Swap>, Producer<Retired>)>,
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
            models: None,
        }
    }

    /// Takes the models waiting on the ring and hands back what they
    /// replace, and the outgoing timbre kernels no voice holds any more.
    /// Leaves models waiting while the way back has no room for what they
    /// could replace, so that nothing is ever freed here. Real-time safe.
    fn take_models(&mut self) {
        let Some((incoming, retired)) = self.models.as_mut() else {
            return;
        };
        // Room on the way back is checked before each use.
        while retired.slots() >= 3 {
            let Ok(swap) = incoming.pop() else {
                break;
            };
            let mut back = |item| {
                let _ = retired.push(item);
            };
            match swap {
                Swap::Melody {
                    variant,
                    kernel,
                    state,
                } => match (self.kernels.get_mut(variant), self.states.get_mut(variant)) {
                    (Some(slot), Some(slot_state)) => {
                        back(Retired::Kernel(std::mem::replace(slot, kernel)));
                        back(Retired::State(std::mem::replace(slot_state, state)));
                    }
                    _ => {
                        back(Retired::Kernel(kernel));
                        back(Retired::State(state));
                    }
                },
                Swap::Timbre {
                    instrument,
                    variant,
                    kernel,
                    states,
                } => self
                    .timbres
                    .install((instrument, variant), kernel, states, &mut back),
            }
        }
        while retired.slots() >= 1 {
            let mut back = |item| {
                let _ = retired.push(item);
            };
            if !self.timbres.release(&mut back) {
                break;
            }
        }
    }

    fn run(&mut self, stop: &AtomicBool) {
        super::denormals::flush();
        self.stats
            .flushes_denormals
            .store(super::denormals::flushing(), Ordering::Relaxed);
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
        self.take_models();
        let mut worked = false;
        self.stats.busy.store(true, Ordering::SeqCst);
        while let Ok(request) = self.requests.pop() {
            worked = true;
            self.handle(request);
        }
        self.stats.busy.store(false, Ordering::SeqCst);
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
        if self.states[variant].iter().any(|s| !s.is_finite()) {
            // A broken step must not poison the steps that follow.
            self.states[variant].fill(0.0);
        }
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
