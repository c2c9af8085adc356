//! Loads the bundled `Wren.clap` in a real CLAP host (clack-host), plays four
//! seconds against a running transport, and checks that Wren sounds and sends
//! its notes out, in key and in range.
//!
//! Build the bundle first with `cargo xtask bundle`. Without it the test is
//! skipped, unless `WREN_REQUIRE_BUNDLE=1`, where a missing bundle fails.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clack_host::events::event_types::{TransportEvent, TransportFlags};
use clack_host::events::spaces::CoreEventSpace;
use clack_host::events::{EventFlags, EventHeader, Match};
use clack_host::prelude::*;
use clack_host::utils::{BeatTime, SecondsTime};

use wren::engine::sampling::Scale;

const PLUGIN_ID: &std::ffi::CStr = c"dev.wren.wren";
const SAMPLE_RATE: f64 = 48_000.0;
const BLOCK: usize = 512;
const SECONDS: f64 = 4.0;
const TEMPO: f64 = 120.0;

/// Wren's defaults: D major, notes 60 to 84.
const KEY: u8 = 2;
const LOWEST: u16 = 60;
const HIGHEST: u16 = 84;

struct Shared;

impl SharedHandler<'_> for Shared {
    fn request_restart(&self) {}
    fn request_process(&self) {}
    fn request_callback(&self) {}
}

struct TestHost;

impl HostHandlers for TestHost {
    type Shared<'a> = Shared;
    type MainThread<'a> = ();
    type AudioProcessor<'a> = ();
}

/// What a run heard and saw.
#[derive(Default)]
struct Heard {
    peak: f32,
    energy: f64,
    note_ons: Vec<u16>,
    note_offs: usize,
}

fn bundle_path() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the plugin package sits in the workspace");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"));
    target.join("bundled").join("Wren.clap")
}

fn transport_at(block: usize) -> TransportEvent {
    let seconds = (block * BLOCK) as f64 / SAMPLE_RATE;
    let beats = seconds * TEMPO / 60.0;
    let bar = (beats / 4.0).floor();
    TransportEvent {
        header: EventHeader::new_core(0, EventFlags::empty()),
        flags: TransportFlags::HAS_TEMPO
            | TransportFlags::HAS_BEATS_TIMELINE
            | TransportFlags::HAS_SECONDS_TIMELINE
            | TransportFlags::HAS_TIME_SIGNATURE
            | TransportFlags::IS_PLAYING,
        song_pos_beats: BeatTime::from_float(beats),
        song_pos_seconds: SecondsTime::from_float(seconds),
        tempo: TEMPO,
        tempo_inc: 0.0,
        loop_start_beats: BeatTime::from_int(0),
        loop_end_beats: BeatTime::from_int(0),
        loop_start_seconds: SecondsTime::from_int(0),
        loop_end_seconds: SecondsTime::from_int(0),
        bar_start: BeatTime::from_float(bar * 4.0),
        bar_number: bar as i32,
        time_signature_numerator: 4,
        time_signature_denominator: 4,
    }
}

fn listen(events: &EventBuffer, heard: &mut Heard) {
    for event in events.iter() {
        match event.as_core_event() {
            Some(CoreEventSpace::NoteOn(note)) => {
                if let Match::Specific(key) = note.key() {
                    heard.note_ons.push(key);
                }
            }
            Some(CoreEventSpace::NoteOff(_)) => heard.note_offs += 1,
            Some(CoreEventSpace::Midi(midi)) => match midi.data()[0] & 0xf0 {
                0x90 if midi.data()[2] > 0 => heard.note_ons.push(midi.data()[1] as u16),
                0x80 | 0x90 => heard.note_offs += 1,
                _ => {}
            },
            _ => {}
        }
    }
}

/// Processes `SECONDS` of audio in real time on an audio thread.
fn play(
    processor: StoppedPluginAudioProcessor<TestHost>,
) -> (StoppedPluginAudioProcessor<TestHost>, Heard) {
    let mut processor = processor.start_processing().expect("start processing");
    let mut left = vec![0.0f32; BLOCK];
    let mut right = vec![0.0f32; BLOCK];
    let mut output_ports = AudioPorts::with_capacity(2, 1);
    let input_events = EventBuffer::new();
    let mut output_events = EventBuffer::with_capacity(256);
    let mut heard = Heard::default();
    let blocks = (SECONDS * SAMPLE_RATE / BLOCK as f64).ceil() as usize;
    let started = Instant::now();
    for block in 0..blocks {
        output_events.clear();
        let transport = transport_at(block);
        let mut output = output_ports.with_output_buffers([AudioPortBuffer {
            latency: 0,
            channels: AudioPortBufferType::f32_output_only(
                [left.as_mut_slice(), right.as_mut_slice()].into_iter(),
            ),
        }]);
        processor
            .process(
                &InputAudioBuffers::empty(),
                &mut output,
                &input_events.as_input(),
                &mut output_events.as_output(),
                Some((block * BLOCK) as u64),
                Some(&transport),
            )
            .expect("process");
        for sample in left.iter().chain(&right) {
            assert!(sample.is_finite(), "non-finite sample in block {block}");
            heard.peak = heard.peak.max(sample.abs());
            heard.energy += (*sample as f64).powi(2);
        }
        listen(&output_events, &mut heard);
        let due = Duration::from_secs_f64(((block + 1) * BLOCK) as f64 / SAMPLE_RATE);
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            std::thread::sleep(wait);
        }
    }
    (processor.stop_processing(), heard)
}

#[test]
fn bundled_clap_plays_and_sends_notes_in_a_real_host() {
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
        return;
    }

    // SAFETY: the library is Wren's own bundle, built from this workspace; its
    // initializers and CLAP entry are nice-plug's wrapper around Wren.
    let entry = unsafe { PluginEntry::load(&path) }.expect("load Wren.clap");
    let factory = entry.get_plugin_factory().expect("a plugin factory");
    let descriptor = factory
        .plugin_descriptors()
        .find(|d| d.id() == Some(PLUGIN_ID))
        .expect("Wren's descriptor");
    assert_eq!(descriptor.name().map(|n| n.to_bytes()), Some(&b"Wren"[..]));

    let host_info = HostInfo::new("Wren tests", "Wren", "https://localhost", "0.1.0").unwrap();
    let mut instance =
        PluginInstance::<TestHost>::new(|_| Shared, |_| (), &entry, PLUGIN_ID, &host_info)
            .expect("instantiate Wren");
    let configuration = PluginAudioConfiguration {
        sample_rate: SAMPLE_RATE,
        min_frames_count: 1,
        max_frames_count: BLOCK as u32,
    };
    let processor = instance
        .activate(|_, _| (), configuration)
        .expect("activate at 48 kHz, 512 frames");
    let (processor, heard) = std::thread::scope(|scope| {
        scope
            .spawn(move || play(processor))
            .join()
            .expect("audio thread")
    });
    instance.deactivate(processor);

    let frames = SECONDS * SAMPLE_RATE;
    let rms = (heard.energy / (2.0 * frames)).sqrt();
    eprintln!(
        "peak {:.3}, rms {rms:.4}, {} note-ons {:?}, {} note-offs",
        heard.peak,
        heard.note_ons.len(),
        heard.note_ons,
        heard.note_offs
    );
    assert!(heard.peak > 0.01 && rms > 0.001, "Wren stayed silent");
    assert!(heard.note_ons.len() >= 4, "too few notes out");
    assert!(heard.note_offs >= 1, "no note-off out");
    for key in &heard.note_ons {
        assert!((LOWEST..=HIGHEST).contains(key), "note {key} out of range");
        assert!(
            Scale::Major.contains(KEY, *key as u8),
            "note {key} not in D major"
        );
    }
}
