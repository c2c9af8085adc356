//! A small CLAP host on clack-host: loads the bundled `Wren.clap`, drives
//! activation, processing, parameters and state as hosts do, and records
//! what comes out.
//!
//! Build the bundle first with `cargo xtask bundle`. Without it the tests
//! that use this host are skipped, unless `WREN_REQUIRE_BUNDLE=1`, where a
//! missing bundle fails.

#![allow(dead_code)] // each test binary uses its own part

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use clack_extensions::gui::{GuiSize, HostGui, HostGuiImpl};
use clack_extensions::params::{ParamInfoBuffer, PluginParams};
use clack_extensions::state::PluginState;
use clack_host::events::event_types::{MidiEvent, ParamValueEvent, TransportEvent, TransportFlags};
use clack_host::events::spaces::CoreEventSpace;
use clack_host::events::{EventFlags, EventHeader, Match, Pckn};
use clack_host::prelude::*;
use clack_host::utils::{BeatTime, ClapId, SecondsTime};

pub const PLUGIN_ID: &std::ffi::CStr = c"dev.wren.wren";

/// What the plugin may ask of the host from any thread.
#[derive(Default)]
pub struct Shared {
    /// The plugin asked for a call on the main thread.
    pub callback: AtomicBool,
    /// The last size the plugin's window asked for.
    pub resize: Mutex<Option<(u32, u32)>>,
}

impl SharedHandler<'_> for Shared {
    fn request_restart(&self) {}
    fn request_process(&self) {}
    fn request_callback(&self) {
        self.callback.store(true, Ordering::Release);
    }
}

impl HostGuiImpl for Shared {
    fn resize_hints_changed(&self) {}

    fn request_resize(&self, size: GuiSize) -> Result<(), HostError> {
        *self.resize.lock().unwrap() = Some((size.width, size.height));
        Ok(())
    }

    fn request_show(&self) -> Result<(), HostError> {
        Ok(())
    }

    fn request_hide(&self) -> Result<(), HostError> {
        Ok(())
    }

    fn closed(&self, _was_destroyed: bool) {}
}

pub struct TestHost;

impl HostHandlers for TestHost {
    type Shared<'a> = Shared;
    type MainThread<'a> = ();
    type AudioProcessor<'a> = ();

    fn declare_extensions(builder: &mut HostExtensions<Self>, _shared: &Self::Shared<'_>) {
        builder.register::<HostGui>();
    }
}

pub fn bundle_path() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the plugin package sits in the workspace");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"));
    target.join("bundled").join("Wren.clap")
}

/// The bundle's entry, or `None` (the test is skipped) when there is no
/// bundle and none is required.
pub fn entry() -> Option<PluginEntry> {
    let path = bundle_path();
    if !path.exists() {
        let required = std::env::var("WREN_REQUIRE_BUNDLE").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "{} is missing; run `cargo xtask bundle`",
            path.display()
        );
        eprintln!(
            "skipped: {} is missing; run `cargo xtask bundle`",
            path.display()
        );
        return None;
    }
    // SAFETY: the library is Wren's own bundle, built from this workspace; its
    // initializers and CLAP entry are nice-plug's wrapper around Wren.
    Some(unsafe { PluginEntry::load(&path) }.expect("load Wren.clap"))
}

/// One Wren instance in the test host.
pub struct Instance {
    pub instance: PluginInstance<TestHost>,
}

impl Instance {
    pub fn new(entry: &PluginEntry) -> Instance {
        let host_info = HostInfo::new("Wren tests", "Wren", "https://localhost", "0.1.0").unwrap();
        let instance = PluginInstance::<TestHost>::new(
            |_| Shared::default(),
            |_| (),
            entry,
            PLUGIN_ID,
            &host_info,
        )
        .expect("instantiate Wren");
        Instance { instance }
    }

    pub fn activate(
        &mut self,
        sample_rate: f64,
        max_frames: u32,
    ) -> StoppedPluginAudioProcessor<TestHost> {
        let configuration = PluginAudioConfiguration {
            sample_rate,
            min_frames_count: 1,
            max_frames_count: max_frames,
        };
        self.instance
            .activate(|_, _| (), configuration)
            .expect("activate")
    }

    /// The plugin's state, as a host saves it.
    pub fn save(&mut self) -> Vec<u8> {
        let handle = self.instance.plugin_handle();
        let state: PluginState = handle
            .get_extension()
            .expect("Wren has the state extension");
        let mut bytes = Vec::new();
        state.save(&handle, &mut bytes).expect("save state");
        bytes
    }

    /// Loads a state as a host restores it.
    pub fn load(&mut self, bytes: &[u8]) -> bool {
        let handle = self.instance.plugin_handle();
        let state: PluginState = handle
            .get_extension()
            .expect("Wren has the state extension");
        state.load(&handle, &mut Cursor::new(bytes)).is_ok()
    }

    /// Tells the plugin the host renders offline (before activation).
    pub fn offline(&mut self) {
        use clack_extensions::render::{PluginRender, RenderMode};
        let handle = self.instance.plugin_handle();
        let render: PluginRender = handle
            .get_extension()
            .expect("Wren has the render extension");
        render
            .set(&handle, RenderMode::Offline)
            .expect("offline rendering");
    }

    /// Runs the main-thread callback the plugin asked for, if it did.
    pub fn pump(&mut self) {
        let asked = self
            .instance
            .access_shared_handler(|shared| shared.callback.swap(false, Ordering::AcqRel));
        if asked {
            self.instance.call_on_main_thread_callback();
        }
    }

    /// Parameter ids by name.
    pub fn params(&mut self) -> BTreeMap<String, ClapId> {
        let handle = self.instance.plugin_handle();
        let params: PluginParams = handle
            .get_extension()
            .expect("Wren has the params extension");
        let mut ids = BTreeMap::new();
        let mut buffer = ParamInfoBuffer::new();
        for index in 0..params.count(&handle) {
            let info = params
                .get_info(&handle, index, &mut buffer)
                .expect("param info");
            ids.insert(String::from_utf8_lossy(info.name).into_owned(), info.id);
        }
        ids
    }

    /// A parameter's current plain value.
    pub fn value(&mut self, id: ClapId) -> f64 {
        let handle = self.instance.plugin_handle();
        let params: PluginParams = handle.get_extension().expect("params extension");
        params.get_value(&handle, id).expect("a value")
    }
}

/// The JSON of a CLAP state as nice-plug writes it: a little-endian u64
/// length, then that many bytes of JSON.
pub fn state_json(bytes: &[u8]) -> serde_json::Value {
    let (length, json) = bytes.split_at(8);
    let length = u64::from_le_bytes(length.try_into().unwrap()) as usize;
    assert_eq!(length, json.len(), "the length prefix");
    serde_json::from_slice(json).expect("a state is JSON")
}

/// A CLAP state in nice-plug's form from its JSON.
pub fn state_bytes(json: &serde_json::Value) -> Vec<u8> {
    let json = serde_json::to_vec(json).unwrap();
    let mut bytes = (json.len() as u64).to_le_bytes().to_vec();
    bytes.extend(json);
    bytes
}

/// An event the test sends in a block.
#[derive(Clone, Copy, Debug)]
pub enum Send {
    /// A parameter's new plain value.
    Param(ClapId, f64),
    /// Three MIDI bytes.
    Midi([u8; 3]),
}

/// What one block gave back.
#[derive(Default, Debug)]
pub struct Block {
    pub left: Vec<f32>,
    /// Note-ons and note-offs sent: (sample offset, key, on).
    pub notes: Vec<(u32, u16, bool)>,
}

/// A transport running at `tempo` with its first sample at `beats`, with an
/// active loop when `looping` is set.
pub fn transport(beats: f64, tempo: f64, looping: Option<(f64, f64)>) -> TransportEvent {
    let seconds = beats * 60.0 / tempo;
    let bar = (beats / 4.0).floor();
    let mut flags = TransportFlags::HAS_TEMPO
        | TransportFlags::HAS_BEATS_TIMELINE
        | TransportFlags::HAS_SECONDS_TIMELINE
        | TransportFlags::HAS_TIME_SIGNATURE
        | TransportFlags::IS_PLAYING;
    let (start, end) = looping.unwrap_or((0.0, 0.0));
    if looping.is_some() {
        flags |= TransportFlags::IS_LOOP_ACTIVE;
    }
    TransportEvent {
        header: EventHeader::new_core(0, EventFlags::empty()),
        flags,
        song_pos_beats: BeatTime::from_float(beats),
        song_pos_seconds: SecondsTime::from_float(seconds),
        tempo,
        tempo_inc: 0.0,
        loop_start_beats: BeatTime::from_float(start),
        loop_end_beats: BeatTime::from_float(end),
        loop_start_seconds: SecondsTime::from_float(start * 60.0 / tempo),
        loop_end_seconds: SecondsTime::from_float(end * 60.0 / tempo),
        bar_start: BeatTime::from_float(bar * 4.0),
        bar_number: bar as i32,
        time_signature_numerator: 4,
        time_signature_denominator: 4,
    }
}

/// Processes one block of `frames` samples with `events` at `time`.
pub fn process(
    processor: &mut StartedPluginAudioProcessor<TestHost>,
    frames: usize,
    events: &[(u32, Send)],
    steady_time: u64,
    transport: Option<&TransportEvent>,
) -> Block {
    let mut left = vec![0.0f32; frames];
    let mut right = vec![0.0f32; frames];
    let mut ports = AudioPorts::with_capacity(2, 1);
    let mut input = EventBuffer::new();
    for &(time, event) in events {
        match event {
            Send::Param(id, value) => {
                input.push(&ParamValueEvent::new(time, id, Pckn::match_all(), value));
            }
            Send::Midi(data) => input.push(&MidiEvent::new(time, 0, data)),
        }
    }
    let mut output_events = EventBuffer::with_capacity(256);
    let mut output = ports.with_output_buffers([AudioPortBuffer {
        latency: 0,
        channels: AudioPortBufferType::f32_output_only(
            [left.as_mut_slice(), right.as_mut_slice()].into_iter(),
        ),
    }]);
    processor
        .process(
            &InputAudioBuffers::empty(),
            &mut output,
            &input.as_input(),
            &mut output_events.as_output(),
            Some(steady_time),
            transport,
        )
        .expect("process");
    let mut block = Block {
        left,
        notes: Vec::new(),
    };
    for event in output_events.iter() {
        let time = event.header().time();
        match event.as_core_event() {
            Some(CoreEventSpace::NoteOn(note)) => {
                if let Match::Specific(key) = note.key() {
                    block.notes.push((time, key, true));
                }
            }
            Some(CoreEventSpace::NoteOff(note)) => {
                if let Match::Specific(key) = note.key() {
                    block.notes.push((time, key, false));
                }
            }
            Some(CoreEventSpace::Midi(midi)) => {
                let [status, key, velocity] = midi.data();
                match status & 0xf0 {
                    0x90 if velocity > 0 => block.notes.push((time, key as u16, true)),
                    0x80 | 0x90 => block.notes.push((time, key as u16, false)),
                    _ => {}
                }
            }
            _ => {}
        }
    }
    block
}

/// The tempo of the test transports.
pub const TEMPO: f64 = 120.0;

/// Notes out, with their sample position from the start of a run.
pub type Notes = Vec<(usize, u16, bool)>;

/// Blocks one after another on a transport running from beat 0.
pub struct Playhead {
    /// Samples played.
    pub time: u64,
    /// The sample rate.
    pub sample_rate: f64,
}

impl Playhead {
    pub fn new(sample_rate: f64) -> Playhead {
        Playhead {
            time: 0,
            sample_rate,
        }
    }

    /// Processes the next block; its notes carry positions from the start.
    pub fn next(
        &mut self,
        processor: &mut StartedPluginAudioProcessor<TestHost>,
        frames: usize,
        events: &[(u32, Send)],
    ) -> (Vec<f32>, Notes) {
        let beats = self.time as f64 / self.sample_rate * TEMPO / 60.0;
        let block = process(
            processor,
            frames,
            events,
            self.time,
            Some(&transport(beats, TEMPO, None)),
        );
        let start = self.time as usize;
        self.time += frames as u64;
        let notes = block
            .notes
            .iter()
            .map(|&(t, k, on)| (start + t as usize, k, on))
            .collect();
        (block.left, notes)
    }
}

/// Plays `seconds` from beat 0 in blocks whose sizes cycle through
/// `sizes`; `send` gives each block's events by block index.
pub fn run(
    processor: &mut StartedPluginAudioProcessor<TestHost>,
    sample_rate: f64,
    seconds: f64,
    sizes: &[usize],
    mut send: impl FnMut(usize) -> Vec<(u32, Send)>,
) -> (Vec<f32>, Notes) {
    let total = (seconds * sample_rate) as usize;
    let mut playhead = Playhead::new(sample_rate);
    let (mut audio, mut notes) = (Vec::with_capacity(total), Vec::new());
    let mut index = 0;
    while audio.len() < total {
        let frames = sizes[index % sizes.len()].min(total - audio.len());
        let (left, out) = playhead.next(processor, frames, &send(index));
        audio.extend(left);
        notes.extend(out);
        index += 1;
    }
    (audio, notes)
}

pub fn peak(audio: &[f32]) -> f32 {
    audio.iter().map(|s| s.abs()).fold(0.0, f32::max)
}
