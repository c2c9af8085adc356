//! The host-free instrument: melody scheduling, inference, voices.
//!
//! [`Engine::process`] runs on the audio thread and is real-time safe: it
//! never allocates, locks or waits, except in offline mode, where it waits
//! for late steps so that renders are complete and reproducible. The
//! inference thread ([`inference`]) computes steps ahead of time. The auto
//! preset ([`auto`]) chooses among the installed variants by what they cost
//! on this machine ([`cost`]).

pub mod auto;
pub mod cost;
pub mod denormals;
pub mod harmonic;
pub mod inference;
pub mod library;
pub mod models;
pub mod sampling;
pub mod synth;
pub mod voices;

use std::time::{Duration, Instant};

use auto::{Auto, AutoStatus, Tuning};
use cost::{CostModels, CostTable, Measurement, Workload};
use inference::{InferenceHandle, Request, StepResult, TimbreKernels};
use rtrb::{Consumer, Producer, RingBuffer};
use sampling::SamplingControls;
use synth::{Source, Synth};
use voices::{FrameSource, NeuralVoices};

use crate::melody::tokens::{Meter, Token};
use crate::model::kernel::GruKernel;

/// How Wren uses the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Mode {
    /// Generate a melody continuously while the transport runs.
    #[default]
    Generate,
    /// Listen to the notes you play, then answer when you stop.
    Continue,
    /// Play only the notes you play.
    Thru,
}

/// What the host says about time for one block.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct Transport {
    /// Whether the host's transport runs.
    pub playing: bool,
    /// Tempo in beats per minute, if the host gives one.
    pub tempo: Option<f64>,
    /// Position of the block's first sample in quarter notes, if given.
    pub pos_beats: Option<f64>,
    /// Time signature `(numerator, denominator)`, if given.
    pub time_signature: Option<(u32, u32)>,
    /// The host's loop `(start, end)` in quarter notes, while looping: a
    /// block that crosses its end continues at its start from that sample.
    pub loop_beats: Option<(f64, f64)>,
}

/// Which voice plays the notes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timbre {
    /// The built-in additive tone: no network, no latency of its own.
    Additive,
    /// An installed neural instrument (index into the engine's timbre
    /// kernels); the additive tone stands in if it is not installed.
    Neural(usize),
}

/// User settings the engine reads every block.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Settings {
    /// Index of the installed model variant to run (melody and timbre),
    /// unless `auto` is set.
    pub variant: usize,
    /// Let the engine choose the variant (the auto preset): the best that
    /// fits the buffer by the measured costs, stepped down while steps or
    /// frames come late. Offline, and until costs are measured, it runs the
    /// variant planned for the buffer from the buffers the presets state, so
    /// that a render sounds the same on every machine.
    pub auto: bool,
    /// The voice.
    pub timbre: Timbre,
    /// Sampling controls.
    pub controls: SamplingControls,
    /// Seed of the generator.
    pub seed: u64,
    /// How the network is used.
    pub mode: Mode,
    /// Output gain (linear).
    pub gain: f32,
    /// Whether generated notes go out as MIDI. The engine reports every
    /// note it plays; a [`MidiGate`] passes them on to the host.
    pub midi_out: bool,
    /// Tempo when the host gives none.
    pub free_tempo: f64,
    /// Neural voices that may sound at once, 1 to [`voices::VOICES`]: a
    /// note beyond them takes a voice over. Auto plans the buffer for this
    /// many, so fewer voices leave room for a better preset.
    pub voices: usize,
    /// Bypassed: silence, and every note that went out is ended in the
    /// block that bypasses.
    pub bypass: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            variant: 0,
            auto: false,
            timbre: Timbre::Neural(0),
            controls: SamplingControls::default(),
            seed: 1,
            mode: Mode::Generate,
            gain: 0.5,
            midi_out: true,
            free_tempo: 120.0,
            voices: voices::VOICES,
            bypass: false,
        }
    }
}

/// A MIDI note event inside a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoteEvent {
    /// A key went down.
    On {
        /// Sample offset in the block.
        offset: u32,
        /// MIDI pitch.
        note: u8,
        /// MIDI velocity 1 to 127.
        velocity: u8,
    },
    /// A key came up.
    Off {
        /// Sample offset in the block.
        offset: u32,
        /// MIDI pitch.
        note: u8,
    },
    /// All notes off (MIDI CC 120 or 123).
    AllOff {
        /// Sample offset in the block.
        offset: u32,
    },
}

impl NoteEvent {
    /// The same event at another sample offset.
    pub fn at(&self, offset: u32) -> NoteEvent {
        match *self {
            NoteEvent::On { note, velocity, .. } => NoteEvent::On {
                offset,
                note,
                velocity,
            },
            NoteEvent::Off { note, .. } => NoteEvent::Off { offset, note },
            NoteEvent::AllOff { .. } => NoteEvent::AllOff { offset },
        }
    }

    /// The sample offset of the event.
    pub fn offset(&self) -> u32 {
        match *self {
            NoteEvent::On { offset, .. }
            | NoteEvent::Off { offset, .. }
            | NoteEvent::AllOff { offset } => offset,
        }
    }
}

/// Passes the generated notes on to the host while MIDI out is on. A note
/// that went out always gets its note-off, even when MIDI out was turned
/// off while it sounded. Real-time safe.
#[derive(Clone, Debug)]
pub struct MidiGate {
    sent: [bool; 128],
}

impl Default for MidiGate {
    fn default() -> Self {
        MidiGate { sent: [false; 128] }
    }
}

impl MidiGate {
    /// The event to send, if any, with MIDI out `enabled` or not.
    pub fn pass(&mut self, event: NoteEvent, enabled: bool) -> Option<NoteEvent> {
        match event {
            NoteEvent::On { note, .. } => {
                self.sent[note as usize & 127] |= enabled;
                enabled.then_some(event)
            }
            NoteEvent::Off { note, .. } => {
                std::mem::take(&mut self.sent[note as usize & 127]).then_some(event)
            }
            NoteEvent::AllOff { .. } => {
                let any = self.sent.contains(&true);
                self.sent = [false; 128];
                any.then_some(event)
            }
        }
    }
}

/// Counters the audio thread keeps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Steps whose result was not there in time.
    pub late_steps: u64,
    /// Steps played.
    pub played_steps: u64,
    /// Timbre frames played with the previous frame's parameters.
    pub late_frames: u64,
}

const SLOTS: usize = 256;
const LOOKAHEAD_STEPS: i64 = 4;
const OFFLINE_WAIT: Duration = Duration::from_secs(2);
/// The loudest sample Wren sends (+12 dBFS): a last guard, so that no
/// model, however broken, can send the host a blast or a NaN.
pub const OUTPUT_LIMIT: f32 = 4.0;
/// Note events waiting for the latency to pass before they go out.
const MIDI_OUT_CAPACITY: usize = 1024;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Call {
    /// Waiting for the user to play.
    Idle,
    /// The user is playing: steps are fed to the network as forced tokens.
    Listening { first: i64, last_activity: i64 },
    /// Wren answers until `until`.
    Answering { until: i64 },
}

/// The instrument without a host.
pub struct Engine {
    sample_rate: f64,
    inference: InferenceHandle,
    synth: Synth,
    voices: NeuralVoices,
    /// Neural voices that may sound at once, as last set.
    voice_limit: usize,
    /// Which neural instruments have kernels.
    installed: Vec<bool>,
    max_block: usize,
    /// Samples from a note event to its sound; MIDI out is delayed as much.
    latency: usize,
    /// The engine's sample clock at the current block's start.
    clock: u64,
    /// Note events to send, at their time on the sample clock.
    midi_pending: Vec<(u64, NoteEvent)>,
    /// Generated notes whose note-on went out and whose note-off did not.
    midi_sounding: [bool; 128],
    /// Note events of the second part of a block split at a loop's end.
    split_events: Vec<NoteEvent>,
    /// Whether the last block ran the transport (or free-ran).
    running: bool,
    /// Whether the last block was bypassed.
    bypassed: bool,
    /// Delays the additive voice by the latency: samples and write position.
    delay_line: Vec<f32>,
    delay_at: usize,
    scratch: Vec<f32>,
    slots: [Option<StepResult>; SLOTS],
    epoch: u32,
    /// Next step to play; `None` before a timeline starts.
    next_step: Option<i64>,
    /// Highest step requested so far.
    requested: i64,
    expected_beats: Option<f64>,
    free_beats: f64,
    sounding: Option<u8>,
    last_seed: u64,
    call: Call,
    user_held: [bool; 128],
    user_onset: Option<u8>,
    stats: EngineStats,
    /// The auto preset's state.
    auto: Auto,
    /// Measured cost tables, from the background measurement.
    costs_in: Consumer<CostTable>,
    /// The measurement's end of `costs_in`, until it starts.
    costs_out: Option<Producer<CostTable>>,
    /// Costs measured for the user's models, once they are installed; the
    /// installer holds the other end. They win over the first measurement.
    user_costs_in: Consumer<CostTable>,
    user_costs_out: Option<Producer<CostTable>>,
    /// Whether a table for the user's models has arrived.
    user_costs: bool,
    measurement: Option<Measurement>,
    /// The variant the last block ran.
    variant: usize,
}

impl Engine {
    /// Starts an engine with melody kernels and the additive voice only: it
    /// adds no latency. Allocates; call off the audio thread.
    pub fn new(kernels: Vec<GruKernel>, sample_rate: f64) -> std::io::Result<Engine> {
        Engine::with_timbres(kernels, Vec::new(), sample_rate, 0)
    }

    /// Starts an engine with melody and timbre kernels for blocks of at
    /// most `max_block` samples (larger ones play, with late frames in real
    /// time). Allocates; call off the audio thread.
    pub fn with_timbres(
        kernels: Vec<GruKernel>,
        timbres: TimbreKernels,
        sample_rate: f64,
        max_block: usize,
    ) -> std::io::Result<Engine> {
        let installed = timbres.iter().map(|t| !t.is_empty()).collect();
        let shares = vec![cost::DEFAULT_SHARE; kernels.len()];
        let table = CostTable::unmeasured(&shares);
        let (costs_out, costs_in) = RingBuffer::new(4);
        let (user_costs_out, user_costs_in) = RingBuffer::new(4);
        let mut engine = Engine {
            sample_rate,
            inference: inference::spawn(kernels, timbres)?,
            synth: Synth::new(sample_rate as f32),
            voices: NeuralVoices::new(sample_rate as f32, 0, 0),
            voice_limit: voices::VOICES,
            installed,
            max_block,
            latency: 0,
            clock: 0,
            midi_pending: Vec::with_capacity(MIDI_OUT_CAPACITY),
            midi_sounding: [false; 128],
            split_events: Vec::with_capacity(MIDI_OUT_CAPACITY),
            running: false,
            bypassed: false,
            delay_line: Vec::new(),
            delay_at: 0,
            scratch: vec![0.0; 1024],
            slots: [None; SLOTS],
            epoch: 0,
            next_step: None,
            requested: 0,
            expected_beats: None,
            free_beats: 0.0,
            sounding: None,
            last_seed: 0,
            call: Call::Idle,
            user_held: [false; 128],
            user_onset: None,
            stats: EngineStats::default(),
            auto: Auto::new(
                Tuning::default(),
                table,
                (max_block, sample_rate, voices::VOICES),
            ),
            costs_in,
            costs_out: Some(costs_out),
            user_costs_in,
            user_costs_out: Some(user_costs_out),
            user_costs: false,
            measurement: None,
            variant: 0,
        };
        engine.configure(sample_rate, max_block);
        Ok(engine)
    }

    /// Changes the sample rate; sounding notes are cut and the timeline restarts.
    pub fn set_sample_rate(&mut self, sample_rate: f64) {
        self.configure(sample_rate, self.max_block);
    }

    /// Sets the sample rate and the largest block the host will send, which
    /// sets the latency when a neural instrument is installed: one block,
    /// so that every frame is computed a block before it sounds. A largest
    /// block of 0 means no latency, for offline renders only (they wait for
    /// frames; in real time every frame would be late). Sounding notes are
    /// cut and the timeline restarts; auto chooses again for the new buffer.
    /// Allocates; call off the audio thread.
    pub fn configure(&mut self, sample_rate: f64, max_block: usize) {
        self.sample_rate = sample_rate.max(1.0);
        self.max_block = max_block;
        self.take_costs();
        self.auto
            .set_buffer(max_block, self.sample_rate, self.voice_limit);
        self.latency = if self.installed.contains(&true) {
            max_block
        } else {
            0
        };
        self.synth.set_sample_rate(self.sample_rate as f32);
        // Frames of the old bank still in flight carry earlier times.
        let start = self.voices.clock() + (1 << 24);
        self.voices = NeuralVoices::new(self.sample_rate as f32, self.latency, start);
        self.voices.set_limit(self.voice_limit);
        self.delay_line = vec![0.0; self.latency];
        self.delay_at = 0;
        self.midi_pending.clear();
        self.next_step = None;
        self.sounding = None;
    }

    /// Samples from a note event (played or generated) to its sound, and
    /// from a generated note to its MIDI event: what the host is told.
    pub fn latency(&self) -> usize {
        self.latency
    }

    /// Whether neural instrument `index` is installed.
    pub fn has_timbre(&self, index: usize) -> bool {
        self.installed.get(index).copied().unwrap_or(false)
    }

    /// Counters of late and played steps and late frames.
    pub fn stats(&self) -> EngineStats {
        EngineStats {
            late_frames: self.voices.late_frames(),
            ..self.stats
        }
    }

    /// The inference thread's counters.
    pub fn inference_stats(&self) -> &inference::InferenceStats {
        &self.inference.stats
    }

    /// Whether the inference thread has handled every request sent to it.
    /// Real-time safe.
    pub fn inference_idle(&self) -> bool {
        self.inference.idle()
    }

    /// The installer of new models for the running inference thread; the
    /// first call takes it (see [`library::ModelLibrary::attach`]).
    pub fn take_installer(&mut self) -> Option<inference::Installer> {
        let mut installer = self.inference.take_installer()?;
        let shares = self.auto.table().shares().to_vec();
        if let Some(costs) = self.user_costs_out.take() {
            installer.set_cost_inbox(costs, shares);
        }
        Some(installer)
    }

    /// Test and diagnostic hook: makes the inference thread sleep `micros`
    /// microseconds before every step and frame, as a slower or busier
    /// machine would take them; 0 ends the stall. See
    /// [`InferenceHandle::stall`]. Real-time safe.
    pub fn stall_inference(&self, micros: u64) {
        self.inference.stall(micros);
    }

    /// The variant the last block ran: the one chosen in `Settings`, or
    /// auto's choice.
    pub fn variant(&self) -> usize {
        self.variant
    }

    /// What the auto preset is doing.
    pub fn auto_status(&self) -> AutoStatus {
        self.auto.status()
    }

    /// The buffer auto plans for: size, rate, voices and tempo.
    pub fn workload(&self) -> Workload {
        self.auto.workload()
    }

    /// The cost table auto chooses by.
    pub fn cost_table(&self) -> CostTable {
        *self.auto.table()
    }

    /// Replaces the cost table (made-up costs in tests, or costs measured
    /// elsewhere) and chooses again. Call off the audio thread.
    pub fn set_costs(&mut self, table: CostTable) {
        self.auto.set_table(table);
    }

    /// Tells auto the buffer each preset is meant for (seconds, best first),
    /// which it plans by until costs are measured and in offline renders,
    /// and chooses again. Without them it plans for the cheapest. Call off
    /// the audio thread.
    pub fn set_preset_buffers(&mut self, seconds: &[f64]) {
        self.auto.set_stated_buffers(seconds);
    }

    /// Replaces auto's tuning and chooses again. Call off the audio thread.
    pub fn set_auto_tuning(&mut self, tuning: Tuning) {
        self.auto.set_tuning(tuning);
    }

    /// Starts measuring every preset's networks on a background thread,
    /// with the budget shares of the current cost table. Returns at once;
    /// the audio thread takes the measured table at its next block, and
    /// auto chooses again then. Once per engine. Allocates.
    pub fn measure_costs(&mut self, models: CostModels) -> std::io::Result<()> {
        let inbox = self
            .costs_out
            .take()
            .ok_or_else(|| std::io::Error::other("costs are measured once per engine"))?;
        let shares = self.auto.table().shares().to_vec();
        self.measurement = Some(Measurement::spawn(models, shares, inbox)?);
        Ok(())
    }

    /// Whether the background measurement has ended (or never started).
    pub fn measurement_finished(&self) -> bool {
        self.measurement.as_ref().is_none_or(|m| m.is_finished())
    }

    /// Hands a measured cost table, if one arrived, to auto; once a table
    /// for the user's models came, the first measurement's no longer
    /// counts. Real-time safe.
    fn take_costs(&mut self) {
        while let Ok(table) = self.costs_in.pop() {
            if !self.user_costs {
                self.auto.set_table(table);
            }
        }
        while let Ok(table) = self.user_costs_in.pop() {
            self.user_costs = true;
            self.auto.set_table(table);
        }
    }

    /// Limits the neural voices; auto plans for them. Real-time safe.
    fn set_voice_limit(&mut self, voices: usize) {
        let limit = voices.clamp(1, voices::VOICES);
        if limit != self.voice_limit {
            self.voice_limit = limit;
            self.voices.set_limit(limit);
            self.auto
                .set_buffer(self.max_block, self.sample_rate, limit);
        }
    }

    /// The variant this block runs: the chosen one, or auto's. Real-time safe.
    fn choose_variant(&mut self, settings: &Settings, offline: bool, frames: usize) -> usize {
        self.take_costs();
        let late = self.stats.late_steps + self.voices.late_frames();
        match (settings.auto, offline) {
            (true, false) => self.auto.update(late, frames),
            (true, true) => {
                self.auto.follow(late);
                self.auto.planned()
            }
            (false, _) => {
                self.auto.follow(late);
                settings.variant
            }
        }
    }

    /// Renders one block into `left` and `right` (same length), reading
    /// `midi_in` and reporting notes through `midi_out`. An event earlier than
    /// the one before it takes effect at that one's offset.
    ///
    /// Real-time safe when `offline` is false: no allocation, lock or wait.
    /// Denormals are flushed to zero during the block.
    #[allow(clippy::too_many_arguments)] // a block's separate inputs and outputs
    pub fn process(
        &mut self,
        transport: &Transport,
        settings: &Settings,
        midi_in: &[NoteEvent],
        offline: bool,
        left: &mut [f32],
        right: &mut [f32],
        midi_out: &mut dyn FnMut(NoteEvent),
    ) {
        let _flush = denormals::FlushGuard::new();
        let frames = left.len().min(right.len());
        let Some(split) = self.loop_split(transport, settings, frames) else {
            self.process_part(transport, settings, midi_in, offline, left, right, midi_out);
            return;
        };
        // The first part plays up to the loop's end, the second from its
        // start: a jump, as if the host had split the block there.
        let (first_in, second_in) =
            midi_in.split_at(midi_in.partition_point(|e| (e.offset() as usize) < split));
        let (l1, l2) = left[..frames].split_at_mut(split);
        let (r1, r2) = right[..frames].split_at_mut(split);
        self.process_part(transport, settings, first_in, offline, l1, r1, midi_out);
        let mut shifted = std::mem::take(&mut self.split_events);
        shifted.clear();
        let room = shifted.capacity();
        shifted.extend(
            second_in
                .iter()
                .take(room)
                .map(|e| e.at(e.offset() - split as u32)),
        );
        let looped = Transport {
            pos_beats: transport.loop_beats.map(|(start, _)| start),
            ..*transport
        };
        let mut later = |event: NoteEvent| midi_out(event.at(event.offset() + split as u32));
        self.process_part(&looped, settings, &shifted, offline, l2, r2, &mut later);
        self.split_events = shifted;
    }

    /// Where in this block the host's loop ends, if it does, strictly
    /// inside the block. Real-time safe.
    fn loop_split(
        &self,
        transport: &Transport,
        settings: &Settings,
        frames: usize,
    ) -> Option<usize> {
        let (start, end) = transport.loop_beats?;
        let (tempo, beats) = (transport.tempo?, transport.pos_beats?);
        let sane = end > start && tempo > 0.0;
        if !transport.playing || settings.bypass || !sane {
            return None;
        }
        let samples_per_beat = self.sample_rate * 60.0 / tempo.clamp(1.0, 999.0);
        let split = ((end - beats) * samples_per_beat).round();
        (split >= 1.0 && split < frames as f64).then_some(split as usize)
    }

    #[allow(clippy::too_many_arguments)] // a block's separate inputs and outputs
    fn process_part(
        &mut self,
        transport: &Transport,
        settings: &Settings,
        midi_in: &[NoteEvent],
        offline: bool,
        left: &mut [f32],
        right: &mut [f32],
        midi_out: &mut dyn FnMut(NoteEvent),
    ) {
        let frames = left.len().min(right.len());
        if settings.bypass {
            self.bypass(frames, left, right, midi_out);
            return;
        }
        self.bypassed = false;
        left[..frames].fill(0.0);
        self.set_voice_limit(settings.voices);
        self.variant = self.choose_variant(settings, offline, frames);
        let settings = &Settings {
            variant: self.variant,
            ..*settings
        };
        let neural = self.neural(settings);
        self.collect_results();
        if settings.seed != self.last_seed {
            self.last_seed = settings.seed;
            self.next_step = None;
        }
        let mut cursor = 0usize;
        let mut events = midi_in.iter().peekable();
        let was_running = self.running;
        let (clock, steps) = match self.clock(transport, settings, frames, offline) {
            Position::Running(c) => {
                if self.next_step.is_none() && was_running {
                    // A jump or a loop: what sounds ends here.
                    self.stop_generated(0);
                    self.cut_midi(0);
                }
                self.running = true;
                (c, self.prepare_steps(&c, settings, frames))
            }
            Position::Stopped(c) => {
                self.stop_generated(0);
                if was_running {
                    self.cut_midi(0);
                }
                self.running = false;
                self.cue(&c, settings);
                (c, 0..0)
            }
        };
        let left = &mut left[..frames];
        for step in steps {
            let offset = clock.offset_of(step).clamp(0, frames as i64) as usize;
            while let Some(event) = events.next_if(|e| (e.offset() as usize) <= offset) {
                self.play_event(left, &mut cursor, event, settings, (offline, neural));
            }
            self.render_until(left, &mut cursor, offset, settings, (offline, neural));
            self.play_step(step, &clock, settings, offline, offset as u32, neural);
        }
        for event in events {
            self.play_event(left, &mut cursor, event, settings, (offline, neural));
        }
        for event in midi_in {
            if let NoteEvent::AllOff { offset } = event {
                self.cut_midi(*offset);
            }
        }
        self.render_until(left, &mut cursor, frames, settings, (offline, neural));
        for sample in left.iter_mut() {
            *sample = if sample.is_finite() {
                sample.clamp(-OUTPUT_LIMIT, OUTPUT_LIMIT)
            } else {
                0.0
            };
        }
        right[..frames].copy_from_slice(&left[..frames]);
        self.send_due(frames, midi_out);
        self.clock += frames as u64;
    }

    /// The neural instrument that plays, if it is installed.
    fn neural(&self, settings: &Settings) -> Option<u16> {
        match settings.timbre {
            Timbre::Neural(i) if self.has_timbre(i) => Some(i as u16),
            _ => None,
        }
    }

    /// Queues a note event at a block offset; it goes out after the latency.
    fn send(&mut self, event: NoteEvent) {
        if self.midi_pending.len() < self.midi_pending.capacity() {
            self.midi_pending
                .push((self.clock + event.offset() as u64, event));
        }
    }

    /// Sends the queued events that fall in this block, in order.
    fn send_due(&mut self, frames: usize, midi_out: &mut dyn FnMut(NoteEvent)) {
        let end = self.clock + frames as u64;
        let latency = self.latency as u64;
        self.sort_pending();
        for &(time, event) in &self.midi_pending {
            if time + latency < end {
                let offset = (time + latency).saturating_sub(self.clock) as u32;
                match event {
                    NoteEvent::On { note, .. } => self.midi_sounding[note as usize & 127] = true,
                    NoteEvent::Off { note, .. } => self.midi_sounding[note as usize & 127] = false,
                    NoteEvent::AllOff { .. } => {}
                }
                midi_out(event.at(offset));
            }
        }
        self.midi_pending.retain(|(time, _)| time + latency >= end);
    }

    /// Ends the generated MIDI at `offset` of this block, not a latency
    /// later: events due after that sample but from before it never go
    /// out, and every note that is out by then gets its note-off there.
    /// Real-time safe.
    fn cut_midi(&mut self, offset: u32) {
        let at = self.clock + offset as u64;
        let latency = self.latency as u64;
        self.sort_pending();
        let mut ends = self.midi_sounding;
        let mut restarted = [false; 128];
        self.midi_pending.retain(|&(time, event)| {
            let note = match event {
                NoteEvent::On { note, .. } | NoteEvent::Off { note, .. } => note as usize & 127,
                NoteEvent::AllOff { .. } => return time >= at || time + latency <= at,
            };
            let on = matches!(event, NoteEvent::On { .. });
            if time + latency <= at {
                // Goes out before the cut.
                ends[note] = on;
                true
            } else if time < at {
                false
            } else if on {
                restarted[note] = true;
                true
            } else {
                restarted[note]
            }
        });
        self.midi_sounding = [false; 128];
        let time = at.saturating_sub(latency);
        for (note, end) in ends.iter().enumerate() {
            if *end && self.midi_pending.len() < self.midi_pending.capacity() {
                let note = note as u8;
                self.midi_pending
                    .push((time, NoteEvent::Off { offset: 0, note }));
            }
        }
    }

    /// Puts the queued events in time order, a note's end before a start
    /// at the same time. In place, without allocating.
    fn sort_pending(&mut self) {
        self.midi_pending
            .sort_unstable_by_key(|(time, event)| (*time, matches!(event, NoteEvent::On { .. })));
    }

    /// A bypassed block: silence; on the first, every voice is released,
    /// the melody stops and every note that went out ends at its start.
    fn bypass(
        &mut self,
        frames: usize,
        left: &mut [f32],
        right: &mut [f32],
        midi_out: &mut dyn FnMut(NoteEvent),
    ) {
        if !self.bypassed {
            self.bypassed = true;
            self.stop_generated(0);
            self.synth.release_all(None);
            self.voices.release_all(None);
            self.user_held = [false; 128];
            self.next_step = None;
            self.running = false;
            self.cut_midi(0);
        }
        left[..frames].fill(0.0);
        right[..frames].fill(0.0);
        self.send_due(frames, midi_out);
        self.clock += frames as u64;
    }

    /// Renders the voices from `cursor` up to `until` (never backwards, never
    /// past the block) and moves the cursor there.
    fn render_until(
        &mut self,
        out: &mut [f32],
        cursor: &mut usize,
        until: usize,
        settings: &Settings,
        (offline, neural): (bool, Option<u16>),
    ) {
        let until = until.clamp(*cursor, out.len());
        let out = &mut out[*cursor..until];
        *cursor = until;
        if self.latency == 0 {
            self.synth.render(out, settings.gain);
        } else {
            // The additive voice goes through the delay line, so that both
            // voices sound the same time after their notes.
            for piece in out.chunks_mut(self.scratch.len()) {
                let scratch = &mut self.scratch[..piece.len()];
                scratch.fill(0.0);
                self.synth.render(scratch, settings.gain);
                for (o, s) in piece.iter_mut().zip(scratch.iter()) {
                    *o += self.delay_line[self.delay_at];
                    self.delay_line[self.delay_at] = *s;
                    self.delay_at = (self.delay_at + 1) % self.delay_line.len();
                }
            }
        }
        let mut source = FrameSource {
            inference: &mut self.inference,
            instrument: neural.unwrap_or(0),
            variant: settings.variant as u16,
            offline,
        };
        self.voices.advance(out, settings.gain, &mut source);
    }

    fn note_on(&mut self, note: u8, velocity: f32, source: Source, neural: Option<u16>) {
        match neural {
            Some(_) => self.voices.note_on(note, velocity, source),
            None => self.synth.note_on(note, velocity, source),
        }
    }

    fn note_off(&mut self, note: u8, source: Source) {
        self.synth.note_off(note, source);
        self.voices.note_off(note, source);
    }

    /// Renders up to a user's event, then plays it.
    fn play_event(
        &mut self,
        out: &mut [f32],
        cursor: &mut usize,
        event: &NoteEvent,
        settings: &Settings,
        (offline, neural): (bool, Option<u16>),
    ) {
        let at = event.offset() as usize;
        self.render_until(out, cursor, at, settings, (offline, neural));
        self.user_event(event, neural);
    }

    fn user_event(&mut self, event: &NoteEvent, neural: Option<u16>) {
        match *event {
            NoteEvent::On { note, velocity, .. } => {
                let note = note.min(127);
                self.note_on(note, velocity as f32 / 127.0, Source::User, neural);
                self.user_held[note as usize] = true;
                self.user_onset = Some(self.user_onset.map_or(note, |n| n.max(note)));
            }
            NoteEvent::Off { note, .. } => {
                self.note_off(note.min(127), Source::User);
                self.user_held[note.min(127) as usize] = false;
            }
            NoteEvent::AllOff { .. } => {
                self.synth.release_all(None);
                self.voices.release_all(None);
                self.user_held = [false; 128];
                self.sounding = None;
            }
        }
    }

    /// Where the grid is during this block. Without a tempo and position from
    /// the host, Wren free-runs at its free tempo; in real time a free-running
    /// timeline stands still for its first block, so that its first steps are
    /// computed before they are due.
    fn clock(
        &mut self,
        transport: &Transport,
        settings: &Settings,
        frames: usize,
        offline: bool,
    ) -> Position {
        let (tempo, beats, meter) = match (transport.tempo, transport.pos_beats) {
            (Some(tempo), Some(beats)) => {
                let meter = transport
                    .time_signature
                    .map(|(n, d)| Meter::from_signature(n, d));
                (tempo, beats, meter.unwrap_or_default())
            }
            _ => (settings.free_tempo, self.free_beats, Meter::default()),
        };
        let hosted = transport.tempo.is_some() && transport.pos_beats.is_some();
        let cueing = !hosted && !offline && self.next_step.is_none();
        let running = (transport.playing || !hosted) && !cueing;
        let tempo = tempo.clamp(1.0, 999.0);
        let samples_per_beat = self.sample_rate * 60.0 / tempo;
        let block_beats = if running {
            frames as f64 / samples_per_beat
        } else {
            0.0
        };
        let jumped = self
            .expected_beats
            .is_none_or(|expected| (expected - beats).abs() * samples_per_beat > 1.0);
        if jumped {
            self.next_step = None;
        }
        self.expected_beats = Some(beats + block_beats);
        self.free_beats = beats + block_beats;
        let clock = Clock {
            beats,
            samples_per_beat,
            meter,
        };
        if running {
            Position::Running(clock)
        } else {
            Position::Stopped(clock)
        }
    }

    /// Starts a new timeline whose first step is `first`: cuts the generated
    /// note and tells the inference thread to start over from the seed.
    fn start_timeline(&mut self, first: i64, settings: &Settings) {
        self.stop_generated(0);
        self.epoch = self.epoch.wrapping_add(1);
        self.slots = [None; SLOTS];
        self.call = Call::Idle;
        self.requested = first - 1;
        let reset = Request::Reset {
            epoch: self.epoch,
            seed: settings.seed,
            step: first,
        };
        let _ = self.inference.requests.push(reset);
        self.next_step = Some(first);
    }

    /// While the transport stands still: readies the timeline that starts
    /// where it stands, so that the first steps after play are already there.
    fn cue(&mut self, clock: &Clock, settings: &Settings) {
        if self.next_step.is_none() {
            self.start_timeline(clock.first_step(), settings);
        }
        if settings.mode == Mode::Generate {
            let first = self.next_step.unwrap_or_default();
            self.request_until(first - 1 + LOOKAHEAD_STEPS, clock, settings);
        }
    }

    /// Starts a timeline if needed, sends requests ahead, returns the steps in this block.
    fn prepare_steps(
        &mut self,
        clock: &Clock,
        settings: &Settings,
        frames: usize,
    ) -> std::ops::Range<i64> {
        if self.next_step.is_none() {
            self.start_timeline(clock.first_step(), settings);
        }
        let start = self.next_step.unwrap_or_default();
        let mut end = start;
        while clock.offset_of(end) < frames as i64 {
            end += 1;
        }
        if settings.mode == Mode::Generate {
            self.request_until(end - 1 + LOOKAHEAD_STEPS, clock, settings);
        }
        self.next_step = Some(end);
        start..end
    }

    fn request_until(&mut self, last: i64, clock: &Clock, settings: &Settings) {
        let mut sent = false;
        while self.requested < last && self.inference.requests.slots() > 0 {
            self.requested += 1;
            let step = self.requested;
            let _ = self
                .inference
                .requests
                .push(self.step_request(step, clock, settings, None));
            sent = true;
        }
        if sent {
            self.inference.wake();
        }
    }

    fn step_request(
        &self,
        step: i64,
        clock: &Clock,
        settings: &Settings,
        forced: Option<Token>,
    ) -> Request {
        Request::Step {
            epoch: self.epoch,
            step,
            step_in_bar: step.rem_euclid(clock.meter.bar_steps as i64) as u32,
            meter: clock.meter,
            variant: settings.variant,
            controls: settings.controls,
            forced,
        }
    }

    fn collect_results(&mut self) {
        while let Ok(result) = self.inference.results.pop() {
            if result.epoch == self.epoch {
                self.slots[result.step.rem_euclid(SLOTS as i64) as usize] = Some(result);
            }
        }
    }

    /// The result of a step: waits for it offline, counts it late otherwise.
    fn take_result(&mut self, step: i64, offline: bool) -> Option<Token> {
        let slot = step.rem_euclid(SLOTS as i64) as usize;
        let deadline = offline.then(|| Instant::now() + OFFLINE_WAIT);
        loop {
            self.collect_results();
            if let Some(result) = self.slots[slot].filter(|r| r.step == step) {
                self.slots[slot] = None;
                return Some(result.token);
            }
            match deadline {
                Some(d) if Instant::now() < d => {
                    self.inference.wake();
                    std::thread::yield_now();
                }
                _ => {
                    self.stats.late_steps += 1;
                    return None;
                }
            }
        }
    }

    fn play_step(
        &mut self,
        step: i64,
        clock: &Clock,
        settings: &Settings,
        offline: bool,
        offset: u32,
        neural: Option<u16>,
    ) {
        let generating = match settings.mode {
            Mode::Generate => true,
            Mode::Continue => self.follow_call(step, clock, settings),
            Mode::Thru => false,
        };
        if !generating {
            self.stop_generated(offset);
            return;
        }
        self.stats.played_steps += 1;
        let token = self.take_result(step, offline).unwrap_or(Token::Hold);
        match token {
            Token::Hold => {}
            Token::Rest => self.stop_generated(offset),
            Token::Note(note) => {
                self.stop_generated(offset);
                let velocity = accent(step, clock.meter);
                self.note_on(note, velocity as f32 / 127.0, Source::Generated, neural);
                self.sounding = Some(note);
                self.send(NoteEvent::On {
                    offset,
                    note,
                    velocity,
                });
            }
        }
    }

    fn stop_generated(&mut self, offset: u32) {
        if let Some(note) = self.sounding.take() {
            self.note_off(note, Source::Generated);
            self.send(NoteEvent::Off { offset, note });
        }
    }

    /// Call and response: feeds the user's playing to the network and
    /// decides whether Wren answers at this step.
    fn follow_call(&mut self, step: i64, clock: &Clock, settings: &Settings) -> bool {
        let held = self.user_held.iter().any(|h| *h);
        let onset = self.user_onset.take();
        let active = held || onset.is_some();
        match self.call {
            Call::Answering { until } if !active && step < until => {
                self.request_until((step + LOOKAHEAD_STEPS).min(until - 1), clock, settings);
                true
            }
            Call::Answering { .. } if !active => {
                self.call = Call::Idle;
                false
            }
            Call::Idle if !active => false,
            _ => {
                let forced = match onset {
                    Some(note) => Token::Note(crate::melody::tokens::fold_into_range(note)),
                    None if held => Token::Hold,
                    None => Token::Rest,
                };
                self.listen(step, forced, active, clock, settings);
                false
            }
        }
    }

    /// Feeds one step the user played to the network and, after half a bar
    /// of silence, starts the answer: as long as the call, one to four bars.
    fn listen(
        &mut self,
        step: i64,
        forced: Token,
        active: bool,
        clock: &Clock,
        settings: &Settings,
    ) {
        let (first, last_activity) = match self.call {
            Call::Listening {
                first,
                last_activity,
            } => (first, if active { step } else { last_activity }),
            _ => (step, step),
        };
        let request = self.step_request(step, clock, settings, Some(forced));
        if self.inference.requests.push(request).is_ok() {
            self.requested = step;
        }
        self.inference.wake();
        self.slots[step.rem_euclid(SLOTS as i64) as usize] = None;
        let bar = clock.meter.bar_steps as i64;
        if step - last_activity >= bar / 2 {
            let bars = ((last_activity - first + 1).max(bar) as f64 / bar as f64)
                .ceil()
                .min(4.0);
            self.call = Call::Answering {
                until: step + bars as i64 * bar,
            };
            self.request_until(step + LOOKAHEAD_STEPS, clock, settings);
        } else {
            self.call = Call::Listening {
                first,
                last_activity,
            };
        }
    }
}

/// Velocity by metrical weight: downbeats strongest, off-beat 16ths softest.
fn accent(step: i64, meter: Meter) -> u8 {
    let in_bar = step.rem_euclid(meter.bar_steps as i64);
    match () {
        _ if in_bar == 0 => 112,
        _ if in_bar % 4 == 0 => 100,
        _ if in_bar % 2 == 0 => 90,
        _ => 82,
    }
}

/// Where the host's timeline is during a block.
enum Position {
    /// Moving: steps in the block play.
    Running(Clock),
    /// Standing at a known position: nothing plays.
    Stopped(Clock),
}

#[derive(Clone, Copy, Debug)]
struct Clock {
    beats: f64,
    samples_per_beat: f64,
    meter: Meter,
}

impl Clock {
    /// Sample offset of a step relative to this block's start (may be negative).
    fn offset_of(&self, step: i64) -> i64 {
        ((step as f64 * 0.25 - self.beats) * self.samples_per_beat).round() as i64
    }

    /// The first step whose offset is at or after the block start.
    fn first_step(&self) -> i64 {
        let mut step = (self.beats * 4.0).floor() as i64 - 1;
        while self.offset_of(step) < 0 {
            step += 1;
        }
        step
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_midi_gate_ends_every_note_that_went_out() {
        let mut gate = MidiGate::default();
        let on = |note| NoteEvent::On {
            offset: 0,
            note,
            velocity: 90,
        };
        let off = |note| NoteEvent::Off { offset: 3, note };
        assert_eq!(gate.pass(on(60), true), Some(on(60)));
        assert_eq!(
            gate.pass(off(60), false),
            Some(off(60)),
            "turned off while sounding"
        );
        assert_eq!(gate.pass(off(60), true), None, "ended once");
        assert_eq!(gate.pass(on(62), false), None);
        assert_eq!(gate.pass(off(62), true), None, "never went out");
        assert_eq!(gate.pass(on(64), true), Some(on(64)));
        let all = NoteEvent::AllOff { offset: 0 };
        assert_eq!(gate.pass(all, false), Some(all));
        assert_eq!(gate.pass(off(64), true), None);
        assert_eq!(gate.pass(all, true), None);
    }
}
