//! The bundled `Wren.clap` driven through its lifecycle as hosts drive it, in
//! clack-host: activation at 512, 2048 and 4096 frames and at 22.05 to 192
//! kHz, blocks of odd sizes, zero-length blocks carrying parameter changes,
//! processing started and stopped around every block, MIDI all-notes-off,
//! a loop whose end falls inside a block, and bypass.

mod common;

use common::{
    entry, peak, process, run, state_json, transport, Instance, Notes, Playhead, Send, TEMPO,
};

/// Every note that starts ends once, and none ends without starting.
fn balanced(notes: &Notes) -> bool {
    let mut sounding = [false; 128];
    for &(_, key, on) in notes {
        let key = key as usize & 127;
        if sounding[key] == on {
            return false;
        }
        sounding[key] = on;
    }
    true
}

#[test]
fn activation_at_every_size_and_rate_with_odd_blocks() {
    let Some(entry) = entry() else { return };
    let mut wren = Instance::new(&entry);
    let configurations = [
        (48_000.0, 512),
        (48_000.0, 2048),
        (48_000.0, 4096),
        (22_050.0, 512),
        (44_100.0, 1024),
        (88_200.0, 256),
        (96_000.0, 4096),
        (192_000.0, 64),
        (48_000.0, 512),
    ];
    for (sample_rate, max) in configurations {
        let stopped = wren.activate(sample_rate, max as u32);
        let mut processor = stopped.start_processing().expect("start processing");
        let sizes: Vec<usize> = [1, 3, 63, 1023, max, 64, 2, max / 2]
            .into_iter()
            .map(|s| s.clamp(1, max))
            .collect();
        let (audio, notes) = run(&mut processor, sample_rate, 2.0, &sizes, |_| Vec::new());
        wren.instance.deactivate(processor.stop_processing());
        println!(
            "{max} frames at {sample_rate} Hz: peak {:.3}, {} notes out",
            peak(&audio),
            notes.iter().filter(|n| n.2).count()
        );
        assert!(audio.iter().all(|s| s.is_finite() && s.abs() <= 4.0));
        assert!(
            peak(&audio) > 0.01,
            "silent at {max} frames, {sample_rate} Hz"
        );
        assert!(
            notes.iter().any(|n| n.2),
            "no notes at {max} frames, {sample_rate} Hz"
        );
    }
}

#[test]
fn zero_length_blocks_carry_parameter_changes() {
    let Some(entry) = entry() else { return };
    let mut wren = Instance::new(&entry);
    let params = wren.params();
    let level = params["Level"];
    let seed = params["Seed"];
    let mut processor = wren.activate(48_000.0, 512).start_processing().unwrap();
    let (loud, _) = run(&mut processor, 48_000.0, 2.0, &[512], |_| Vec::new());
    let empty = process(
        &mut processor,
        0,
        &[
            (0, Send::Param(level, -60.0)),
            (0, Send::Param(seed, 4321.0)),
        ],
        96_000,
        None,
    );
    assert!(empty.left.is_empty() && empty.notes.is_empty());
    let (quiet, _) = run(&mut processor, 48_000.0, 2.0, &[512], |_| Vec::new());
    wren.instance.deactivate(processor.stop_processing());
    assert_eq!(wren.value(level), 0.0);
    // The saved state holds plain values.
    let state = state_json(&wren.save());
    assert_eq!(state["params"]["level"]["f32"], -60.0, "{state}");
    // The seed moved from 1 to about 4321 (nice-plug rounds the step index).
    let saved_seed = state["params"]["seed"]["i32"].as_i64().unwrap();
    assert!((4300..4340).contains(&saved_seed), "{state}");
    let (loud, quiet) = (peak(&loud), peak(&quiet[quiet.len() / 2..]));
    println!("level -60 dB from a zero-length block: peak {loud:.4} -> {quiet:.6}");
    assert!(quiet > 0.0 && quiet < loud / 300.0, "{loud} -> {quiet}");
}

#[test]
fn processing_started_and_stopped_around_every_block() {
    let Some(entry) = entry() else { return };
    let mut wren = Instance::new(&entry);
    let mut stopped = Some(wren.activate(48_000.0, 256));
    let mut audio = Vec::new();
    let mut notes = Vec::new();
    let mut playhead = Playhead::new(48_000.0);
    // In real time: restarting resets Wren's measure of the host's pace.
    let started = std::time::Instant::now();
    for block in 0..1000 {
        let due = std::time::Duration::from_secs_f64((block * 256) as f64 / 48_000.0);
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            std::thread::sleep(wait);
        }
        let mut processor = stopped.take().unwrap().start_processing().expect("start");
        let (left, out) = playhead.next(&mut processor, 256, &[]);
        audio.extend(left);
        notes.extend(out);
        stopped = Some(processor.stop_processing());
    }
    wren.instance.deactivate(stopped.unwrap());
    println!(
        "1000 blocks each between start and stop: peak {:.3}, {} notes",
        peak(&audio),
        notes.len()
    );
    assert!(audio.iter().all(|s| s.is_finite()));
    assert!(peak(&audio) > 0.01 && notes.iter().filter(|n| n.2).count() >= 4);
}

#[test]
fn midi_all_notes_off_ends_what_the_user_plays() {
    let Some(entry) = entry() else { return };
    for cc in [120u8, 123] {
        let mut wren = Instance::new(&entry);
        let mode = wren.params()["Mode"];
        let mut processor = wren.activate(48_000.0, 512).start_processing().unwrap();
        // Thru (the third mode): only the notes played here sound.
        let (audio, _) = run(&mut processor, 48_000.0, 2.5, &[512], |block| match block {
            0 => vec![
                (0, Send::Param(mode, 2.0)),
                (10, Send::Midi([0x90, 69, 100])),
            ],
            100 => vec![(200, Send::Midi([0xB0, cc, 0]))],
            _ => Vec::new(),
        });
        wren.instance.deactivate(processor.stop_processing());
        let held = peak(&audio[48_000..96_000]);
        // The release lasts half a second after the controller's block.
        let after = peak(&audio[100 * 512 + 36_000..]);
        println!("CC {cc}: held note peak {held:.4}, 0.75 s later {after:.6}");
        assert!(
            held > 0.01 && after < held / 100.0,
            "CC {cc}: {held} then {after}"
        );
    }
}

#[test]
fn a_loop_ending_inside_blocks_repeats_the_same_notes() {
    let Some(entry) = entry() else { return };
    let mut wren = Instance::new(&entry);
    let mut processor = wren.activate(48_000.0, 999).start_processing().unwrap();
    let (start, end) = (4.0, 8.0);
    let samples_per_beat = 48_000.0 * 60.0 / TEMPO;
    let mut beats = 0.0;
    // Note-ons by pass through the loop: (step from the loop's start, key).
    let mut passes: Vec<Vec<(i64, u16)>> = vec![Vec::new(); 4];
    let mut pass = 0;
    let mut all = Vec::new();
    let mut time = 0u64;
    // Blocks of 999 samples: the loop's end (every 96 000 samples) falls
    // inside a block.
    const FRAMES: usize = 999;
    while pass < 3 {
        let block = process(
            &mut processor,
            FRAMES,
            &[],
            time,
            Some(&transport(beats, TEMPO, Some((start, end)))),
        );
        let split = ((end - beats) * samples_per_beat).round();
        let crosses = split > 0.0 && split < FRAMES as f64;
        assert!(split > 0.0, "the harness wraps inside blocks only");
        for &(t, key, on) in &block.notes {
            all.push((time as usize + t as usize, key, on));
            let wrapped = crosses && t as f64 >= split;
            let position =
                beats + t as f64 / samples_per_beat - if wrapped { end - start } else { 0.0 };
            if on && position >= start {
                let step = ((position - start) * 4.0).round() as i64;
                passes[pass + wrapped as usize].push((step, key));
            }
        }
        beats += FRAMES as f64 / samples_per_beat;
        if crosses {
            beats -= end - start;
            pass += 1;
        }
        time += FRAMES as u64;
    }
    wren.instance.deactivate(processor.stop_processing());
    println!(
        "loop 4-8 beats: note-ons per pass {:?}",
        passes.iter().map(Vec::len).collect::<Vec<_>>()
    );
    // Each pass that starts from the jump back plays the same notes at the
    // same steps.
    assert!(passes[1].len() >= 2, "too few notes in a pass");
    assert_eq!(passes[1], passes[2]);
    assert!(
        balanced(&all),
        "a note without its end, or an end without a note"
    );
}

#[test]
fn bypass_ends_the_sounding_notes_in_its_block_and_silences() {
    let Some(entry) = entry() else { return };
    let mut wren = Instance::new(&entry);
    let bypass = wren.params()["Bypass"];
    let mut processor = wren.activate(48_000.0, 512).start_processing().unwrap();
    let mut sounding = [false; 128];
    let mut playhead = Playhead::new(48_000.0);
    // Play until a note is out and sounding.
    for _ in 0..400 {
        for (_, key, on) in playhead.next(&mut processor, 512, &[]).1 {
            sounding[key as usize & 127] = on;
        }
        if sounding.contains(&true) {
            break;
        }
    }
    assert!(sounding.contains(&true), "no note sounded");
    let block_start = playhead.time as usize;
    let (_, notes) = playhead.next(&mut processor, 512, &[(0, Send::Param(bypass, 1.0))]);
    for &(at, key, on) in &notes {
        assert!(!on, "a note starts in the bypassed block");
        assert_eq!(at, block_start, "at the block's start");
        sounding[key as usize & 127] = false;
    }
    assert!(
        !sounding.contains(&true),
        "a note still sounds after bypass: {notes:?}"
    );
    for _ in 0..50 {
        let (audio, notes) = playhead.next(&mut processor, 512, &[]);
        assert!(notes.is_empty() && audio.iter().all(|s| *s == 0.0));
    }
    wren.instance.deactivate(processor.stop_processing());
}
