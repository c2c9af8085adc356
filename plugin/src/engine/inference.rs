//! The inference thread: runs melody steps for the audio thread.
//!
//! Requests arrive over an `rtrb` ring, results leave over another. All
//! buffers are allocated when the thread starts; a steady-state step runs
//! an allocation-free kernel and samples into preallocated scratch. The
//! thread parks when there is no work and the audio thread unparks it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use rtrb::{Consumer, Producer, RingBuffer};

use super::sampling::{sample, Pcg, SamplingControls};
use crate::melody::tokens::{write_input, Meter, Token, INPUT_SIZE, VOCAB};
use crate::model::kernel::GruKernel;

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
}

/// The audio thread's end of the inference thread.
pub struct InferenceHandle {
    /// Requests to the thread.
    pub requests: Producer<Request>,
    /// Results from the thread.
    pub results: Consumer<StepResult>,
    /// Counters.
    pub stats: Arc<InferenceStats>,
    thread: Option<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
}

impl InferenceHandle {
    /// Wakes the thread after pushing requests. Does not allocate or lock:
    /// on Linux this is one atomic swap and, if the thread sleeps, a futex wake.
    pub fn wake(&self) {
        if let Some(thread) = &self.thread {
            thread.thread().unpark();
        }
    }
}

impl Drop for InferenceHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

/// Capacity of each ring: more than any lookahead the scheduler asks for.
pub const QUEUE_CAPACITY: usize = 1024;

/// Starts the inference thread with its kernels (index = variant). Allocates.
pub fn spawn(kernels: Vec<GruKernel>) -> std::io::Result<InferenceHandle> {
    let (requests, request_rx) = RingBuffer::new(QUEUE_CAPACITY);
    let (result_tx, results) = RingBuffer::new(QUEUE_CAPACITY);
    let stats = Arc::new(InferenceStats::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut worker = Worker::new(kernels, request_rx, result_tx, stats.clone());
    let stop_flag = stop.clone();
    let thread = std::thread::Builder::new()
        .name("wren-inference".into())
        .spawn(move || worker.run(&stop_flag))?;
    Ok(InferenceHandle {
        requests,
        results,
        stats,
        thread: Some(thread),
        stop,
    })
}

/// The state the inference thread owns.
pub struct Worker {
    kernels: Vec<GruKernel>,
    states: Vec<Vec<f32>>,
    x: [f32; INPUT_SIZE],
    logits: [f32; VOCAB],
    scratch: [f32; VOCAB],
    previous: Token,
    rng: Pcg,
    epoch: u32,
    requests: Consumer<Request>,
    results: Producer<StepResult>,
    stats: Arc<InferenceStats>,
}

impl Worker {
    fn new(
        kernels: Vec<GruKernel>,
        requests: Consumer<Request>,
        results: Producer<StepResult>,
        stats: Arc<InferenceStats>,
    ) -> Worker {
        let states = kernels
            .iter()
            .map(|k| vec![0.0; k.shape().state()])
            .collect();
        Worker {
            kernels,
            states,
            x: [0.0; INPUT_SIZE],
            logits: [0.0; VOCAB],
            scratch: [0.0; VOCAB],
            previous: Token::Rest,
            rng: Pcg::new(0, 0),
            epoch: 0,
            requests,
            results,
            stats,
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
    /// Real-time safe: does not allocate, lock or block.
    pub fn drain(&mut self) -> bool {
        let mut worked = false;
        while let Ok(request) = self.requests.pop() {
            worked = true;
            self.handle(request);
        }
        worked
    }

    fn handle(&mut self, request: Request) {
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
