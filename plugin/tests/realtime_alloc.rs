//! In steady state neither the audio path nor the inference thread allocates
//! or frees.
//!
//! A counting global allocator sees every thread of this test binary; the
//! count covers `Engine::process` on this thread and every melody step and
//! timbre frame the inference thread runs meanwhile, with fixed presets,
//! with auto stepping down while the inference thread falls behind, and
//! while another thread installs new models (that thread is exempt: it
//! builds the kernels and frees the ones that come back).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use wren::engine::cost::{CostTable, PresetCost};
use wren::engine::sampling::SamplingControls;
use wren::engine::{Mode, NoteEvent, Settings, Transport};
use wren::model::kernel::GruKernel;

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);
static FREES: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Set on a thread whose allocations are not counted.
    static EXEMPT: Cell<bool> = const { Cell::new(false) };
}

fn counted() -> bool {
    COUNTING.load(Ordering::Relaxed) && !EXEMPT.with(Cell::get)
}

// SAFETY: every call forwards to the system allocator unchanged; the
// counter is an atomic and allocates nothing itself.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if counted() {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if counted() {
            FREES.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if counted() {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// One test in this binary: the count sees every thread, and the test
/// harness allocates when a test ends, so no other test may run meanwhile.
#[test]
fn nothing_allocates_in_steady_state() {
    steady_state_blocks_and_steps_allocate_nothing();
    the_harmonic_synthesizer_renders_without_allocating();
}

fn steady_state_blocks_and_steps_allocate_nothing() {
    let sample_rate = 48_000.0;
    let mut engine = wren::start_engine(sample_rate, 64).unwrap();
    let (mut left, mut right) = (vec![0.0f32; 64], vec![0.0f32; 64]);
    let midi = [
        NoteEvent::On {
            offset: 3,
            note: 64,
            velocity: 100,
        },
        NoteEvent::Off {
            offset: 40,
            note: 64,
        },
    ];
    let mut position = 0usize;
    // `variant` None is auto, which runs in real time (not offline).
    let mut run_blocks =
        |engine: &mut wren::engine::Engine, blocks: usize, variant: Option<usize>, mode: Mode| {
            let settings = Settings {
                variant: variant.unwrap_or(0),
                auto: variant.is_none(),
                mode,
                controls: SamplingControls {
                    density: 0.8,
                    ..Default::default()
                },
                ..Settings::default()
            };
            let mut sent = 0usize;
            for block in 0..blocks {
                let transport = Transport {
                    playing: true,
                    tempo: Some(180.0),
                    pos_beats: Some(position as f64 / sample_rate * 3.0),
                    time_signature: Some((4, 4)),
                    loop_beats: None,
                };
                let events: &[NoteEvent] = if block % 700 == 0 { &midi } else { &[] };
                // The voice count changes now and then: auto plans again.
                let settings = Settings {
                    voices: 8 - (block / 500) % 8,
                    ..settings
                };
                engine.process(
                    &transport,
                    &settings,
                    events,
                    !settings.auto,
                    &mut left,
                    &mut right,
                    &mut |_| {
                        sent += 1;
                    },
                );
                position += 64;
            }
            sent
        };
    let presets = wren::presets::embedded().len();
    for variant in 0..presets {
        run_blocks(&mut engine, 3000, Some(variant), Mode::Generate);
    }
    // The costs are measured on a background thread, which allocates: it
    // must be done before the count starts.
    let waited = std::time::Instant::now();
    while !engine.measurement_finished() {
        assert!(
            waited.elapsed().as_secs() < 120,
            "the costs were never measured"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    run_blocks(&mut engine, 1, None, Mode::Generate);
    assert!(engine.auto_status().measured);
    // Every preset fits, so auto starts at the best and has room to step down.
    engine.set_costs(CostTable::measured(&vec![
        (0.5, PresetCost::default());
        presets
    ]));
    let steps_before = engine.stats().played_steps;
    let frames_before = engine.inference_stats().frames.load(Ordering::SeqCst);
    let step_downs_before = engine.auto_status().step_downs;

    // Models replaced while blocks play: the installer's thread builds
    // the kernels and frees the old ones; the inference thread only swaps.
    let mut installer = engine.take_installer().unwrap();
    let go = std::sync::Arc::new(AtomicBool::new(false));
    let ready = std::sync::Arc::new(AtomicBool::new(false));
    let (started, loaded) = (go.clone(), ready.clone());
    let swapper = std::thread::spawn(move || {
        EXEMPT.with(|e| e.set(true));
        let melody =
            wren::engine::models::load_embedded(&["melody-ultra", "melody-teacher"]).unwrap();
        let flute = wren::engine::models::load_embedded(&[
            "timbre-flute-student-int8",
            "timbre-flute-teacher",
        ])
        .unwrap();
        loaded.store(true, Ordering::SeqCst);
        while !started.load(Ordering::SeqCst) {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        for round in 0..40 {
            for variant in 0..installer.melody_variants() {
                let kernel = GruKernel::new(&melody[round % 2].net);
                installer.install_melody(variant, kernel).unwrap();
            }
            for variant in 0..installer.timbre_variants(0) {
                let kernel = GruKernel::new(&flute[round % 2].net);
                installer.install_timbre(0, variant, kernel).unwrap();
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(installer.settle(std::time::Duration::from_secs(5)));
        40
    });

    // The new thread frees what its start took before it is exempt.
    while !ready.load(Ordering::SeqCst) {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    COUNTING.store(true, Ordering::SeqCst);
    go.store(true, Ordering::SeqCst);
    let mut notes = 0;
    for variant in 0..presets {
        notes += run_blocks(&mut engine, 3000, Some(variant), Mode::Generate);
        notes += run_blocks(&mut engine, 3000, Some(variant), Mode::Continue);
    }
    // Unpaced real-time blocks and a stalled inference thread: late steps
    // and frames, and auto steps down.
    engine.stall_inference(500);
    notes += run_blocks(&mut engine, 3000, None, Mode::Generate);
    engine.stall_inference(0);
    notes += run_blocks(&mut engine, 3000, None, Mode::Generate);
    COUNTING.store(false, Ordering::SeqCst);
    assert_eq!(swapper.join().unwrap(), 40, "every model was installed");

    let steps = engine.stats().played_steps - steps_before;
    let frames = engine.inference_stats().frames.load(Ordering::SeqCst) - frames_before;
    // The default voice is the neural flute: its frames ran meanwhile too.
    assert!(engine.has_timbre(0), "the neural flute ships");
    assert!(frames > 1000, "timbre frames should have run: {frames}");
    assert!(
        steps > 100,
        "steps should have run during the measurement: {steps}"
    );
    assert!(notes > 0, "notes should have been generated");
    assert!(
        engine.auto_status().step_downs > step_downs_before,
        "auto should have stepped down"
    );
    assert_eq!(
        ALLOCATIONS.load(Ordering::SeqCst),
        0,
        "allocations during {steps} steps and {frames} frames"
    );
    assert_eq!(
        FREES.load(Ordering::SeqCst),
        0,
        "frees during {steps} steps and {frames} frames"
    );
}

fn the_harmonic_synthesizer_renders_without_allocating() {
    use wren::engine::harmonic::{FrameParams, HarmonicSynth, HARMONICS, NOISE_BANDS};

    let mut voices: Vec<HarmonicSynth> = [44_100.0, 48_000.0, 96_000.0]
        .into_iter()
        .map(HarmonicSynth::new)
        .collect();
    let mut out = vec![0.0f32; 1024];
    let mut frame = 0u32;
    let mut next = || {
        frame += 1;
        let mut params = FrameParams::silent(220.0 + (frame % 50) as f32);
        params.harmonics = [0.01; HARMONICS];
        params.noise = [0.001 * (frame % 3) as f32; NOISE_BANDS];
        params
    };
    let mut render_all = |voices: &mut [HarmonicSynth], blocks: usize| {
        for block in 0..blocks {
            let frames = 1 + (block * 389) % 1024;
            for voice in voices.iter_mut() {
                voice.render(&mut out[..frames], &mut next);
            }
        }
    };
    render_all(&mut voices, 10);
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    COUNTING.store(true, Ordering::SeqCst);
    render_all(&mut voices, 500);
    COUNTING.store(false, Ordering::SeqCst);
    assert!(out.iter().all(|s| s.is_finite()));
    assert_eq!(ALLOCATIONS.load(Ordering::SeqCst) - before, 0);
}
