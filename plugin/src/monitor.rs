//! What the audio thread shows the editor: how the presets fare in this
//! buffer, what auto does, late work, and a log of the notes that sounded.
//!
//! One writer, the audio thread, stores plain atomics and never allocates,
//! locks or waits; any number of readers (the editor, the MIDI export) load
//! them whenever they like. Notes go into a fixed ring of slots, each
//! guarded by a sequence number, so that a reader sees whole notes only and
//! notices the ones overwritten while it read.

use std::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicU64, Ordering};

use atomic_float::{AtomicF32, AtomicF64};

use crate::engine::cost::MAX_PRESETS;
use crate::engine::{Engine, NoteEvent, Settings, Transport};

/// Note events the log keeps: about ten minutes of dense playing.
pub const LOG_CAPACITY: usize = 16_384;

/// Who played a logged note.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// Wren's network.
    Generated,
    /// The host or the player, through MIDI in.
    Played,
}

/// One note event on the monitor's timeline.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LoggedNote {
    /// Beats (quarter notes) the timeline had run when the event happened:
    /// it only grows, through loops, jumps and stops.
    pub time: f64,
    /// Beats since the last bar line of the host's timeline at that moment.
    pub bar_phase: f32,
    /// MIDI pitch.
    pub note: u8,
    /// MIDI velocity; 0 ends the note.
    pub velocity: u8,
    /// Who played it.
    pub source: Source,
}

struct Slot {
    /// Twice the index of the event written here, plus one while writing.
    sequence: AtomicU64,
    time: AtomicU64,
    packed: AtomicU64,
}

/// A ring of the latest [`LOG_CAPACITY`] note events.
pub struct NoteLog {
    slots: Box<[Slot]>,
    written: AtomicU64,
}

impl Default for NoteLog {
    fn default() -> Self {
        NoteLog {
            slots: (0..LOG_CAPACITY)
                .map(|_| Slot {
                    sequence: AtomicU64::new(u64::MAX),
                    time: AtomicU64::new(0),
                    packed: AtomicU64::new(0),
                })
                .collect(),
            written: AtomicU64::new(0),
        }
    }
}

impl NoteLog {
    /// Adds an event, overwriting the oldest when full. One writer only
    /// (the audio thread). Real-time safe.
    pub fn push(&self, note: LoggedNote) {
        let index = self.written.load(Ordering::Relaxed);
        let slot = &self.slots[(index % LOG_CAPACITY as u64) as usize];
        slot.sequence.store(index * 2 + 1, Ordering::Relaxed);
        fence(Ordering::Release);
        slot.time.store(note.time.to_bits(), Ordering::Relaxed);
        let source = match note.source {
            Source::Generated => 0u64,
            Source::Played => 1,
        };
        let packed = (note.bar_phase.to_bits() as u64) << 32
            | (source << 16)
            | (note.velocity as u64) << 8
            | note.note as u64;
        slot.packed.store(packed, Ordering::Relaxed);
        slot.sequence.store(index * 2 + 2, Ordering::Release);
        self.written.store(index + 1, Ordering::Release);
    }

    /// Events written so far, ever.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Acquire)
    }

    /// Appends to `out` the events from the `from`th on that are still in
    /// the ring, oldest first, and returns the count written so far (the
    /// `from` of the next call). Allocates; not for the audio thread.
    pub fn read_since(&self, from: u64, out: &mut Vec<LoggedNote>) -> u64 {
        let written = self.written();
        let start = from.max(written.saturating_sub(LOG_CAPACITY as u64));
        for index in start..written {
            if let Some(note) = self.read(index) {
                out.push(note);
            }
        }
        written
    }

    /// Event `index`, unless it was overwritten (or is being written).
    fn read(&self, index: u64) -> Option<LoggedNote> {
        let slot = &self.slots[(index % LOG_CAPACITY as u64) as usize];
        let before = slot.sequence.load(Ordering::Acquire);
        let time = f64::from_bits(slot.time.load(Ordering::Relaxed));
        let packed = slot.packed.load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        let after = slot.sequence.load(Ordering::Relaxed);
        if before != after || before != index * 2 + 2 {
            return None;
        }
        Some(LoggedNote {
            time,
            bar_phase: f32::from_bits((packed >> 32) as u32),
            note: (packed & 0x7f) as u8,
            velocity: ((packed >> 8) & 0x7f) as u8,
            source: if (packed >> 16) & 1 == 0 {
                Source::Generated
            } else {
                Source::Played
            },
        })
    }
}

/// A note from its note-on to its note-off on the monitor's timeline.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PlayedNote {
    /// Time of the note-on (see [`LoggedNote::time`]).
    pub start: f64,
    /// Time of the note-off, or now for a note still sounding.
    pub end: f64,
    /// MIDI pitch.
    pub note: u8,
    /// MIDI velocity of the note-on.
    pub velocity: u8,
    /// Beats since the bar line at the note-on.
    pub bar_phase: f32,
    /// Who played it.
    pub source: Source,
}

/// Pairs each note-on of a log with the next note-off of the same pitch
/// and source; notes still sounding end at `now`. Ordered by start, then
/// pitch. Allocates; not for the audio thread.
pub fn played_notes(log: &[LoggedNote], now: f64) -> Vec<PlayedNote> {
    let mut open: [[Option<LoggedNote>; 128]; 2] = [[None; 128]; 2];
    let mut notes = Vec::new();
    let played = |on: LoggedNote, end: f64| PlayedNote {
        start: on.time,
        end,
        note: on.note,
        velocity: on.velocity,
        bar_phase: on.bar_phase,
        source: on.source,
    };
    for event in log {
        let side = (event.source == Source::Played) as usize;
        let slot = &mut open[side][event.note as usize & 127];
        if let Some(on) = slot.take() {
            notes.push(played(on, event.time));
        }
        if event.velocity > 0 {
            *slot = Some(*event);
        }
    }
    for on in open.iter().flatten().flatten() {
        notes.push(played(*on, now.max(on.time)));
    }
    notes.sort_by(|a, b| a.start.total_cmp(&b.start).then(a.note.cmp(&b.note)));
    notes
}

/// A preset's figures in the current buffer.
#[derive(Default)]
struct PresetMeter {
    /// Whether its worst-case work fits its share of the buffer.
    fits: AtomicBool,
    /// One melody step, p99.9, microseconds; negative until measured.
    step_us: AtomicF32,
    /// One voice's timbre frame, p99.9, microseconds.
    frame_us: AtomicF32,
    /// Worst-case work per buffer, microseconds.
    work_us: AtomicF32,
    /// The microseconds its share of the buffer allows.
    budget_us: AtomicF32,
    /// Late steps and frames counted while it ran.
    late: AtomicU64,
}

/// A preset's figures, as the editor shows them.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PresetView {
    /// Whether its worst-case work fits its share of the buffer.
    pub fits: bool,
    /// Measured p99.9 time of one melody step, microseconds, once measured.
    pub step_us: Option<f32>,
    /// Measured p99.9 time of one voice's timbre frame, microseconds.
    pub frame_us: Option<f32>,
    /// Worst-case work per buffer, microseconds, once measured.
    pub work_us: Option<f32>,
    /// The microseconds its share of the buffer allows.
    pub budget_us: f32,
    /// Late steps and frames counted while it ran.
    pub late: u64,
}

/// Everything the audio thread publishes, at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct MonitorView {
    /// Whether an engine runs (and has published).
    pub active: bool,
    /// The host's largest buffer, in samples.
    pub block_size: u32,
    /// Samples per second.
    pub sample_rate: f32,
    /// The preset playing now.
    pub running: usize,
    /// The preset auto would choose.
    pub fit: usize,
    /// Whether costs are measured on this machine.
    pub measured: bool,
    /// Auto's steps down.
    pub step_downs: u64,
    /// Melody steps played.
    pub played_steps: u64,
    /// Steps that came late.
    pub late_steps: u64,
    /// Timbre frames that came late.
    pub late_frames: u64,
    /// Whether the timeline runs.
    pub running_time: bool,
    /// Beats the timeline has run (see [`LoggedNote::time`]).
    pub time: f64,
    /// Beats since the last bar line.
    pub bar_phase: f32,
    /// Beats per bar.
    pub bar_beats: f32,
    /// Tempo, beats per minute.
    pub tempo: f32,
    /// Presets, best first; `presets[..preset_count]` are real.
    pub presets: [PresetView; MAX_PRESETS],
    /// Number of presets.
    pub preset_count: usize,
}

/// Where the timeline stands at a block's start.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockTime {
    time: f64,
    bar_phase: f64,
    bar_beats: f64,
    samples_per_beat: f64,
}

impl BlockTime {
    /// The logged form of a note event in this block.
    fn note(&self, event: &NoteEvent, source: Source) -> Option<LoggedNote> {
        let (note, velocity) = match *event {
            NoteEvent::On { note, velocity, .. } => (note, velocity.max(1)),
            NoteEvent::Off { note, .. } => (note, 0),
            NoteEvent::AllOff { .. } => return None,
        };
        let beats = event.offset() as f64 / self.samples_per_beat;
        Some(LoggedNote {
            time: self.time + beats,
            bar_phase: ((self.bar_phase + beats) % self.bar_beats) as f32,
            note: note & 127,
            velocity: velocity & 127,
            source,
        })
    }
}

/// The shared view: one per plugin instance.
#[derive(Default)]
pub struct Monitor {
    active: AtomicBool,
    block_size: AtomicU32,
    sample_rate: AtomicF32,
    running: AtomicU32,
    fit: AtomicU32,
    measured: AtomicBool,
    step_downs: AtomicU64,
    played_steps: AtomicU64,
    late_steps: AtomicU64,
    late_frames: AtomicU64,
    running_time: AtomicBool,
    time: AtomicF64,
    bar_phase: AtomicF32,
    bar_beats: AtomicF32,
    tempo: AtomicF32,
    preset_count: AtomicU32,
    presets: [PresetMeter; MAX_PRESETS],
    /// Late steps and frames at the last block.
    last_late: AtomicU64,
    /// The notes.
    pub notes: NoteLog,
}

impl Monitor {
    /// Where the timeline stands at the start of a block of `frames`
    /// samples, and moves it on by the block. Audio thread; real-time safe.
    pub fn begin_block(
        &self,
        transport: &Transport,
        settings: &Settings,
        frames: usize,
        sample_rate: f64,
    ) -> BlockTime {
        let hosted = transport.tempo.is_some() && transport.pos_beats.is_some();
        let tempo = transport
            .tempo
            .unwrap_or(settings.free_tempo)
            .clamp(1.0, 999.0);
        let bar_beats = transport
            .time_signature
            .map_or(4.0, |(n, d)| n.max(1) as f64 * 4.0 / d.clamp(1, 16) as f64);
        let runs = (transport.playing || !hosted) && !settings.bypass;
        let time = self.time.load(Ordering::Relaxed);
        let position = transport.pos_beats.unwrap_or(time);
        let samples_per_beat = sample_rate.max(1.0) * 60.0 / tempo;
        let block = BlockTime {
            time,
            bar_phase: position.rem_euclid(bar_beats),
            bar_beats,
            samples_per_beat,
        };
        if runs {
            self.time
                .store(time + frames as f64 / samples_per_beat, Ordering::Relaxed);
        }
        self.running_time.store(runs, Ordering::Relaxed);
        self.bar_phase
            .store(block.bar_phase as f32, Ordering::Relaxed);
        self.bar_beats.store(bar_beats as f32, Ordering::Relaxed);
        self.tempo.store(tempo as f32, Ordering::Relaxed);
        block
    }

    /// Logs a note event of the block that began at `block`. Real-time safe.
    pub fn log(&self, block: &BlockTime, event: &NoteEvent, source: Source) {
        if let Some(note) = block.note(event, source) {
            self.notes.push(note);
        }
    }

    /// Publishes the engine's figures after a block. Audio thread;
    /// real-time safe.
    pub fn publish(&self, engine: &Engine, block_size: usize, sample_rate: f64) {
        let auto = engine.auto_status();
        let stats = engine.stats();
        let table = engine.cost_table();
        let workload = engine.workload();
        let running = engine.variant();
        let late = stats.late_steps + stats.late_frames;
        let new_late = late.saturating_sub(self.last_late.swap(late, Ordering::Relaxed));
        for (preset, meter) in self.presets.iter().enumerate().take(table.len()) {
            let share = table.shares()[preset];
            meter
                .budget_us
                .store(workload.budget_us(share) as f32, Ordering::Relaxed);
            meter
                .fits
                .store(table.fits(preset, &workload), Ordering::Relaxed);
            let (step, frame, work) = match table.cost(preset) {
                Some(cost) => (
                    cost.melody.p999_us as f32,
                    cost.timbre.p999_us as f32,
                    workload.work_us(&cost) as f32,
                ),
                None => (-1.0, -1.0, -1.0),
            };
            meter.step_us.store(step, Ordering::Relaxed);
            meter.frame_us.store(frame, Ordering::Relaxed);
            meter.work_us.store(work, Ordering::Relaxed);
            if preset == running && new_late > 0 {
                meter.late.fetch_add(new_late, Ordering::Relaxed);
            }
        }
        self.preset_count
            .store(table.len() as u32, Ordering::Relaxed);
        self.block_size.store(block_size as u32, Ordering::Relaxed);
        self.sample_rate
            .store(sample_rate as f32, Ordering::Relaxed);
        self.running.store(running as u32, Ordering::Relaxed);
        self.fit.store(auto.fit as u32, Ordering::Relaxed);
        self.measured.store(table.is_measured(), Ordering::Relaxed);
        self.step_downs.store(auto.step_downs, Ordering::Relaxed);
        self.played_steps
            .store(stats.played_steps, Ordering::Relaxed);
        self.late_steps.store(stats.late_steps, Ordering::Relaxed);
        self.late_frames.store(stats.late_frames, Ordering::Relaxed);
        self.active.store(true, Ordering::Release);
    }

    /// What the audio thread published last. Any thread.
    pub fn view(&self) -> MonitorView {
        let mut view = MonitorView {
            active: self.active.load(Ordering::Acquire),
            block_size: self.block_size.load(Ordering::Relaxed),
            sample_rate: self.sample_rate.load(Ordering::Relaxed),
            running: self.running.load(Ordering::Relaxed) as usize,
            fit: self.fit.load(Ordering::Relaxed) as usize,
            measured: self.measured.load(Ordering::Relaxed),
            step_downs: self.step_downs.load(Ordering::Relaxed),
            played_steps: self.played_steps.load(Ordering::Relaxed),
            late_steps: self.late_steps.load(Ordering::Relaxed),
            late_frames: self.late_frames.load(Ordering::Relaxed),
            running_time: self.running_time.load(Ordering::Relaxed),
            time: self.time.load(Ordering::Relaxed),
            bar_phase: self.bar_phase.load(Ordering::Relaxed),
            bar_beats: self.bar_beats.load(Ordering::Relaxed),
            tempo: self.tempo.load(Ordering::Relaxed),
            presets: [PresetView::default(); MAX_PRESETS],
            preset_count: (self.preset_count.load(Ordering::Relaxed) as usize).min(MAX_PRESETS),
        };
        let known = |us: f32| (us >= 0.0).then_some(us);
        for (out, meter) in view.presets.iter_mut().zip(&self.presets) {
            *out = PresetView {
                fits: meter.fits.load(Ordering::Relaxed),
                step_us: known(meter.step_us.load(Ordering::Relaxed)),
                frame_us: known(meter.frame_us.load(Ordering::Relaxed)),
                work_us: known(meter.work_us.load(Ordering::Relaxed)),
                budget_us: meter.budget_us.load(Ordering::Relaxed),
                late: meter.late.load(Ordering::Relaxed),
            };
        }
        view
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn note(time: f64, pitch: u8) -> LoggedNote {
        LoggedNote {
            time,
            bar_phase: (time % 4.0) as f32,
            note: pitch,
            velocity: 100,
            source: Source::Generated,
        }
    }

    #[test]
    fn notes_pair_by_source_and_sounding_ones_end_now() {
        let event = |time, note, velocity, source| LoggedNote {
            time,
            bar_phase: 0.0,
            note,
            velocity,
            source,
        };
        let notes = [
            event(0.0, 60, 100, Source::Generated),
            event(1.0, 60, 90, Source::Played),
            event(2.0, 60, 0, Source::Generated),
            event(3.0, 62, 100, Source::Generated),
            event(4.0, 60, 0, Source::Played),
        ];
        let all = played_notes(&notes, 5.0);
        let expected = [(0.0, 2.0, 60), (1.0, 4.0, 60), (3.0, 5.0, 62)];
        let got: Vec<(f64, f64, u8)> = all.iter().map(|n| (n.start, n.end, n.note)).collect();
        assert_eq!(got, expected);
        assert_eq!(all[1].source, Source::Played);
        let late = all.iter().filter(|n| n.end > 2.5).count();
        assert_eq!(late, 2, "the note that ended at 2 is out of view");
    }

    #[test]
    fn the_log_keeps_the_latest_events_in_order() {
        let log = NoteLog::default();
        let mut out = Vec::new();
        assert_eq!(log.read_since(0, &mut out), 0);
        for i in 0..10 {
            log.push(note(i as f64, 60 + i as u8));
        }
        let next = log.read_since(0, &mut out);
        assert_eq!(next, 10);
        assert_eq!(out.len(), 10);
        assert_eq!(out[3], note(3.0, 63));
        out.clear();
        for i in 0..(LOG_CAPACITY + 5) {
            log.push(note(i as f64, (i % 128) as u8));
        }
        let next2 = log.read_since(next, &mut out);
        assert_eq!(next2, 10 + LOG_CAPACITY as u64 + 5);
        assert_eq!(out.len(), LOG_CAPACITY);
        assert_eq!(out[0].time, 5.0);
        assert!(out.windows(2).all(|w| w[0].time < w[1].time));
    }

    #[test]
    fn a_reader_beside_the_writer_sees_whole_events_only() {
        let log = Arc::new(NoteLog::default());
        let writer = {
            let log = log.clone();
            std::thread::spawn(move || {
                for i in 0..200_000u64 {
                    let pitch = (i % 128) as u8;
                    log.push(LoggedNote {
                        time: i as f64,
                        bar_phase: pitch as f32,
                        note: pitch,
                        velocity: pitch,
                        source: Source::Played,
                    });
                }
            })
        };
        let mut from = 0;
        let mut seen = 0usize;
        let mut last = -1.0;
        while !writer.is_finished() || from < log.written() {
            let mut out = Vec::new();
            from = log.read_since(from, &mut out);
            for n in &out {
                assert_eq!(n.time as u64 % 128, n.note as u64, "torn event {n:?}");
                assert_eq!(n.velocity, n.note);
                assert_eq!(n.bar_phase, n.note as f32);
                assert!(n.time > last);
                last = n.time;
            }
            seen += out.len();
        }
        writer.join().unwrap();
        assert!(seen > 0);
    }

    #[test]
    fn block_times_follow_the_host_and_free_run_without_one() {
        let monitor = Monitor::default();
        let settings = Settings::default();
        let host = Transport {
            playing: true,
            tempo: Some(120.0),
            pos_beats: Some(6.5),
            time_signature: Some((3, 4)),
            loop_beats: None,
        };
        let block = monitor.begin_block(&host, &settings, 24_000, 48_000.0);
        assert_eq!(block.bar_phase, 0.5);
        assert_eq!(monitor.view().time, 1.0);
        let on = NoteEvent::On {
            offset: 12_000,
            note: 64,
            velocity: 90,
        };
        monitor.log(&block, &on, Source::Generated);
        let mut out = Vec::new();
        monitor.notes.read_since(0, &mut out);
        assert_eq!(out[0].time, 0.5);
        assert_eq!(out[0].bar_phase, 1.0);
        let stopped = Transport {
            playing: false,
            ..host
        };
        monitor.begin_block(&stopped, &settings, 24_000, 48_000.0);
        assert_eq!(monitor.view().time, 1.0, "a stopped timeline stands");
        let free = monitor.begin_block(&Transport::default(), &settings, 48_000, 48_000.0);
        assert_eq!(free.bar_beats, 4.0);
        assert_eq!(monitor.view().time, 3.0, "free-runs at 120 BPM");
    }
}
