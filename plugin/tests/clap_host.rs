//! Loads the bundled `Wren.clap` in a real CLAP host (clack-host), plays four
//! seconds against a running transport, and checks that Wren sounds and sends
//! its notes out, in key and in range.
//!
//! Build the bundle first with `cargo xtask bundle`. Without it the test is
//! skipped, unless `WREN_REQUIRE_BUNDLE=1`, where a missing bundle fails.

mod common;

use std::time::{Duration, Instant};

use clack_host::prelude::*;

use common::{entry, peak, process, transport, Instance, TestHost};
use wren::engine::sampling::Scale;

const SAMPLE_RATE: f64 = 48_000.0;
const BLOCK: usize = 512;
const SECONDS: f64 = 4.0;
const TEMPO: f64 = 120.0;

/// Wren's defaults: D major, notes 60 to 84.
const KEY: u8 = 2;
const LOWEST: u16 = 60;
const HIGHEST: u16 = 84;

/// What a run heard and saw.
#[derive(Default)]
struct Heard {
    peak: f32,
    energy: f64,
    note_ons: Vec<u16>,
    note_offs: usize,
}

/// Processes `SECONDS` of audio in real time on an audio thread.
fn play(
    processor: StoppedPluginAudioProcessor<TestHost>,
) -> (StoppedPluginAudioProcessor<TestHost>, Heard) {
    let mut processor = processor.start_processing().expect("start processing");
    let mut heard = Heard::default();
    let blocks = (SECONDS * SAMPLE_RATE / BLOCK as f64).ceil() as usize;
    let started = Instant::now();
    for block in 0..blocks {
        let beats = (block * BLOCK) as f64 / SAMPLE_RATE * TEMPO / 60.0;
        let out = process(
            &mut processor,
            BLOCK,
            &[],
            (block * BLOCK) as u64,
            Some(&transport(beats, TEMPO, None)),
        );
        assert!(
            out.left.iter().all(|s| s.is_finite()),
            "non-finite sample in block {block}"
        );
        heard.peak = heard.peak.max(peak(&out.left));
        heard.energy += out
            .left
            .iter()
            .map(|s| 2.0 * (*s as f64).powi(2))
            .sum::<f64>();
        for &(_, key, on) in &out.notes {
            if on {
                heard.note_ons.push(key);
            } else {
                heard.note_offs += 1;
            }
        }
        let due = Duration::from_secs_f64(((block + 1) * BLOCK) as f64 / SAMPLE_RATE);
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            std::thread::sleep(wait);
        }
    }
    (processor.stop_processing(), heard)
}

#[test]
fn bundled_clap_plays_and_sends_notes_in_a_real_host() {
    let Some(entry) = entry() else { return };
    let factory = entry.get_plugin_factory().expect("a plugin factory");
    let descriptor = factory
        .plugin_descriptors()
        .find(|d| d.id() == Some(common::PLUGIN_ID))
        .expect("Wren's descriptor");
    assert_eq!(descriptor.name().map(|n| n.to_bytes()), Some(&b"Wren"[..]));

    let mut wren = Instance::new(&entry);
    let processor = wren.activate(SAMPLE_RATE, BLOCK as u32);
    let (processor, heard) = std::thread::scope(|scope| {
        scope
            .spawn(move || play(processor))
            .join()
            .expect("audio thread")
    });
    wren.instance.deactivate(processor);

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
