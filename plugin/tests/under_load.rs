//! Numbers and time under load: models that answer NaN, infinities or 1e30;
//! silence after playing; an inference thread that stalls; and a soak of ten
//! minutes of audio at 64-sample buffers with eight voices, with a histogram
//! of what each block cost and the idle CPU afterwards.
//!
//! One test: the soak and the CPU readings need the machine to themselves.

use std::time::{Duration, Instant};

use wren::engine::inference::TimbreKernels;
use wren::engine::{Engine, Mode, NoteEvent, Settings, Timbre, Transport, OUTPUT_LIMIT};
use wren::melody::tokens::{INPUT_SIZE as MELODY_INPUT, VOCAB};
use wren::model::kernel::GruKernel;
use wren::model::{GruLayer, GruNet, Matrix};
use wren::timbre::{INPUT_SIZE, OUTPUT_SIZE};

const RATE: f64 = 48_000.0;

#[test]
fn numbers_and_time_under_load() {
    hostile_model_outputs_leave_the_output_finite_and_it_recovers();
    silence_after_playing_costs_no_more_per_block_than_playing();
    a_stalled_inference_thread_never_makes_the_audio_thread_wait();
    ten_minutes_at_64_samples_with_eight_voices();
}

fn matrix(rows: usize, cols: usize, value: f32) -> Matrix {
    Matrix::F32 {
        rows,
        cols,
        values: (0..rows * cols)
            .map(|i| value * (((i * 7) % 5) as f32 - 2.0))
            .collect(),
    }
}

/// A one-layer network whose output biases are `out` and whose input
/// biases are `inner` (NaN there poisons the recurrent state).
fn network(input: usize, output: usize, out: f32, inner: f32) -> GruKernel {
    GruKernel::new(&GruNet {
        layers: vec![GruLayer {
            w_input: matrix(input, 12, 0.1),
            w_hidden: matrix(4, 12, 0.1),
            b_input: vec![inner; 12],
            b_hidden: vec![0.0; 12],
        }],
        w_out: matrix(4, output, 0.1),
        b_out: vec![out; output],
    })
}

fn user_notes(offset: u32, notes: &[u8], on: bool) -> Vec<NoteEvent> {
    notes
        .iter()
        .map(|&note| {
            if on {
                NoteEvent::On {
                    offset,
                    note,
                    velocity: 100,
                }
            } else {
                NoteEvent::Off { offset, note }
            }
        })
        .collect()
}

/// Plays `seconds` in blocks of `block` on a running transport, with an
/// eight-note chord changing every half second; returns the audio and the
/// notes sent out. `each` sees the engine and the time it spent after
/// every block.
fn play(
    engine: &mut Engine,
    settings: &Settings,
    seconds: f64,
    block: usize,
    offline: bool,
    mut each: impl FnMut(&Engine, Duration),
) -> (Vec<f32>, usize) {
    let chords: [[u8; 8]; 2] = [
        [50, 57, 62, 66, 69, 74, 78, 81],
        [52, 55, 60, 64, 67, 72, 76, 79],
    ];
    let (mut left, mut right) = (vec![0.0; block], vec![0.0; block]);
    let total = (seconds * RATE) as usize;
    let half_second = (RATE / 2.0) as usize;
    let mut audio = Vec::with_capacity(total);
    let mut sent = 0;
    let mut position = 0usize;
    let mut events = Vec::with_capacity(16);
    while position < total {
        events.clear();
        let next_change = position.div_ceil(half_second) * half_second;
        if next_change < position + block {
            let offset = (next_change - position) as u32;
            let chord = next_change / half_second;
            if chord > 0 {
                events.extend(user_notes(offset, &chords[(chord - 1) % 2], false));
            }
            events.extend(user_notes(offset, &chords[chord % 2], true));
        }
        let transport = Transport {
            playing: true,
            tempo: Some(120.0),
            pos_beats: Some(position as f64 / RATE * 2.0),
            time_signature: Some((4, 4)),
            loop_beats: None,
        };
        let started = Instant::now();
        engine.process(
            &transport,
            settings,
            &events,
            offline,
            &mut left,
            &mut right,
            &mut |_| sent += 1,
        );
        each(engine, started.elapsed());
        audio.extend_from_slice(&left);
        position += block;
    }
    (audio, sent)
}

fn finite_and_limited(audio: &[f32]) -> bool {
    audio
        .iter()
        .all(|s| s.is_finite() && s.abs() <= OUTPUT_LIMIT)
}

fn peak(audio: &[f32]) -> f32 {
    audio.iter().map(|s| s.abs()).fold(0.0, f32::max)
}

fn hostile_model_outputs_leave_the_output_finite_and_it_recovers() {
    let steady = || {
        // A quiet, harmonic answer: the network the engine recovers to.
        let mut kernel = network(INPUT_SIZE, OUTPUT_SIZE, -3.0, 0.0);
        let mut state = vec![0.0; kernel.shape().state()];
        let mut y = vec![0.0; OUTPUT_SIZE];
        kernel.step(&[0.5; INPUT_SIZE], &mut state, &mut y);
        assert!(y.iter().all(|v| v.is_finite()));
        network(INPUT_SIZE, OUTPUT_SIZE, -3.0, 0.0)
    };
    for (name, out, inner) in [
        ("NaN outputs", f32::NAN, 0.0),
        ("infinite outputs", f32::INFINITY, 0.0),
        ("negative infinite outputs", f32::NEG_INFINITY, 0.0),
        ("outputs of 1e30", 1e30, 0.0),
        ("outputs of -1e30", -1e30, 0.0),
        ("a NaN state", 0.0, f32::NAN),
        ("an infinite state", 0.0, f32::INFINITY),
    ] {
        // Variant 0 answers the hostile numbers in both networks, variant 1
        // is sane.
        let melodies = vec![
            network(MELODY_INPUT, VOCAB, out, inner),
            network(MELODY_INPUT, VOCAB, 0.0, 0.0),
        ];
        let timbres: TimbreKernels =
            vec![vec![network(INPUT_SIZE, OUTPUT_SIZE, out, inner), steady()]];
        let mut engine = Engine::with_timbres(melodies, timbres, RATE, 256).unwrap();
        for mode in [Mode::Generate, Mode::Thru] {
            let hostile = Settings {
                variant: 0,
                timbre: Timbre::Neural(0),
                mode,
                gain: 1.0,
                ..Settings::default()
            };
            let (audio, _) = play(&mut engine, &hostile, 1.5, 256, true, |_, _| {});
            assert!(
                finite_and_limited(&audio),
                "{name}, {mode:?}: the output is not finite and limited"
            );
            let sane = Settings {
                variant: 1,
                ..hostile
            };
            let (audio, sent) = play(&mut engine, &sane, 1.5, 256, true, |_, _| {});
            assert!(finite_and_limited(&audio), "{name}, {mode:?}");
            let tail = &audio[audio.len() / 2..];
            assert!(
                peak(tail) > 0.005,
                "{name}, {mode:?}: no sound after recovering ({})",
                peak(tail)
            );
            if mode == Mode::Generate {
                assert!(sent > 0, "{name}: no melody after recovering");
            }
        }
    }
    println!("hostile outputs: NaN, +-inf, +-1e30 and a NaN or infinite state: finite output, and sound again on a sane model");
}

/// Median of some durations.
fn median(mut times: Vec<Duration>) -> Duration {
    times.sort_unstable();
    times[times.len() / 2]
}

fn silence_after_playing_costs_no_more_per_block_than_playing() {
    let mut engine = wren::start_engine(RATE, 64).unwrap();
    let flushes = || {
        engine
            .inference_stats()
            .flushes_denormals
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let waited = Instant::now();
    while !flushes() && waited.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(flushes(), "the inference thread flushes denormals");
    let settings = Settings {
        mode: Mode::Thru,
        ..Settings::default()
    };
    let mut playing = Vec::new();
    play(&mut engine, &settings, 5.0, 64, true, |_, t| {
        playing.push(t)
    });
    // All notes off, then 30 s in which nothing is played.
    let (mut left, mut right) = (vec![0.0; 64], vec![0.0; 64]);
    engine.process(
        &Transport::default(),
        &settings,
        &[NoteEvent::AllOff { offset: 0 }],
        true,
        &mut left,
        &mut right,
        &mut |_| {},
    );
    let mut silence = Vec::new();
    let mut loudest = 0f32;
    let frames_before = engine
        .inference_stats()
        .frames
        .load(std::sync::atomic::Ordering::Relaxed);
    for block in 0..(30.0 * RATE / 64.0) as usize {
        let started = Instant::now();
        engine.process(
            &Transport::default(),
            &settings,
            &[],
            true,
            &mut left,
            &mut right,
            &mut |_| {},
        );
        silence.push(started.elapsed());
        if block > 2 * RATE as usize / 64 {
            loudest = loudest.max(peak(&left));
        }
    }
    let frames = engine
        .inference_stats()
        .frames
        .load(std::sync::atomic::Ordering::Relaxed)
        - frames_before;
    let (playing, silence) = (median(playing), median(silence));
    println!(
        "silence: a block costs {:.1} us (median of 30 s), playing {:.1} us; \
         {frames} timbre frames ran during the silence",
        silence.as_secs_f64() * 1e6,
        playing.as_secs_f64() * 1e6
    );
    assert_eq!(loudest, 0.0, "silence two seconds after all notes off");
    assert!(
        silence <= playing,
        "a silent block costs more than a playing one"
    );
}

fn a_stalled_inference_thread_never_makes_the_audio_thread_wait() {
    let mut engine = wren::start_engine(RATE, 256).unwrap();
    let settings = Settings {
        auto: false,
        variant: 2,
        ..Settings::default()
    };
    // Real time, paced: the stall is the only reason for lateness.
    let paced = |engine: &mut Engine, seconds: f64, times: &mut Vec<Duration>| {
        let started = Instant::now();
        let mut blocks = 0u32;
        play(engine, &settings, seconds, 256, false, |_, t| {
            times.push(t);
            blocks += 1;
            let due = Duration::from_secs_f64(blocks as f64 * 256.0 / RATE);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        })
    };
    let mut before = Vec::new();
    let (audio, _) = paced(&mut engine, 1.0, &mut before);
    assert!(finite_and_limited(&audio));
    let stats = engine.stats();
    engine.stall_inference(20_000);
    let mut stalled = Vec::new();
    let (audio, _) = paced(&mut engine, 1.5, &mut stalled);
    engine.stall_inference(0);
    let during = engine.stats();
    let mut after = Vec::new();
    let (recovered, _) = paced(&mut engine, 1.0, &mut after);
    let late_steps = during.late_steps - stats.late_steps;
    let late_frames = during.late_frames - stats.late_frames;
    let slowest = stalled.iter().max().copied().unwrap_or_default();
    println!(
        "stall of 20 ms per step and frame: slowest block {:.0} us (a block lasts 5333 us), \
         {late_steps} late steps and {late_frames} late frames counted",
        slowest.as_secs_f64() * 1e6
    );
    assert!(finite_and_limited(&audio) && finite_and_limited(&recovered));
    assert!(late_steps + late_frames > 0, "late work is counted");
    // A wait on a stalled thread would take 20 ms.
    assert!(
        slowest < Duration::from_millis(10),
        "the audio thread waited: {slowest:?}"
    );
    assert!(
        peak(&recovered[recovered.len() / 2..]) > 0.005,
        "sound returns after the stall"
    );
}

/// Ten minutes of audio at 64-sample buffers, eight voices sounding, in
/// real-time mode. The host here waits for the inference thread to finish
/// each block's work before it sends the next block, so that the cost of a
/// block is what the audio thread spent in it plus what the inference
/// thread spent on the steps and frames it asked for: the work one buffer
/// takes, without the time either thread waited for the other.
fn ten_minutes_at_64_samples_with_eight_voices() {
    const BLOCK: usize = 64;
    let budget = BLOCK as f64 / RATE;
    let mut engine = wren::start_engine(RATE, BLOCK).unwrap();
    while !engine.measurement_finished() {
        std::thread::sleep(Duration::from_millis(10));
    }
    let settings = Settings {
        auto: true,
        voices: 8,
        ..Settings::default()
    };
    let inference_nanos = |engine: &Engine| {
        let stats = engine.inference_stats();
        stats.busy_nanos.load(std::sync::atomic::Ordering::SeqCst)
            + stats.frame_nanos.load(std::sync::atomic::Ordering::SeqCst)
    };
    let mut shares = Vec::with_capacity(10 * 60 * RATE as usize / BLOCK + 1);
    let started = Instant::now();
    let mut inference = inference_nanos(&engine);
    let (audio, sent) = play(
        &mut engine,
        &settings,
        600.0,
        BLOCK,
        false,
        |engine, audio_thread| {
            while !engine.inference_idle() {
                std::thread::yield_now();
            }
            let now = inference_nanos(engine);
            let work = audio_thread.as_secs_f64() + (now - inference) as f64 * 1e-9;
            inference = now;
            shares.push(work / budget);
        },
    );
    let wall = started.elapsed().as_secs_f64();
    let late = engine.stats();
    assert!(finite_and_limited(&audio));
    assert!(sent > 100, "the melody played");
    // The first step of a transport that starts at the block's first
    // sample is asked for in that block: it alone may come late.
    assert!(
        late.late_steps <= 1 && late.late_frames == 0,
        "late: {late:?}"
    );
    let mut sorted = shares.clone();
    sorted.sort_unstable_by(f64::total_cmp);
    let quantile = |q: f64| sorted[((sorted.len() - 1) as f64 * q) as usize];
    let edges = [0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, f64::INFINITY];
    let mut histogram = String::new();
    let mut low = 0.0;
    for high in edges {
        let count = shares.iter().filter(|s| **s >= low && **s < high).count();
        histogram += &format!(
            "\n  {:>5.0}% to {:>4.0}% of the budget: {count}",
            low * 100.0,
            high * 100.0
        );
        low = high;
    }
    println!(
        "soak: {} blocks of 64 samples at 48 kHz (10 min of audio, 8 voices, auto, preset {}) in {wall:.0} s; \
         per block: median {:.1}%, p99 {:.1}%, p99.9 {:.1}%, max {:.1}% of the {:.0} us budget{histogram}",
        shares.len(),
        engine.variant(),
        quantile(0.5) * 100.0,
        quantile(0.99) * 100.0,
        quantile(0.999) * 100.0,
        quantile(1.0) * 100.0,
        budget * 1e6
    );
    // Auto plans the inference of a buffer into half its time; the synth
    // and the audio thread's own work come on top. The deadline is the
    // whole buffer: a block in a thousand may come near it, none of the
    // thousand may pass it.
    assert!(quantile(0.999) < 1.0, "p99.9 over the buffer's time");

    // Spikes at a fixed interval would be a timer, a flush or a leak. A
    // spike stands out of the regular work: over a quarter of the budget
    // and twice the 90th percentile (on a slower machine, every block that
    // computes timbre frames may cost a quarter: that is the rhythm of the
    // frames, not a spike).
    let threshold = (2.0 * quantile(0.9)).max(0.25);
    let spikes: Vec<usize> = (0..shares.len())
        .filter(|&i| shares[i] > threshold)
        .collect();
    let mut gaps: Vec<usize> = spikes.windows(2).map(|w| w[1] - w[0]).collect();
    gaps.sort_unstable();
    let most_common = gaps
        .chunk_by(|a, b| a == b)
        .map(|run| run.len())
        .max()
        .unwrap_or(0);
    println!(
        "soak: {} blocks over {:.0}% of the budget; at most {most_common} of them the same number of blocks apart",
        spikes.len(),
        threshold * 100.0
    );
    assert!(
        spikes.len() < 10 || most_common * 2 < gaps.len(),
        "periodic spikes"
    );

    // Idle: the engine alive, the host calling nothing.
    let before = thread_cpu_seconds("wren-inference");
    std::thread::sleep(Duration::from_secs(3));
    let idle = (thread_cpu_seconds("wren-inference") - before) / 3.0;
    drop(engine);
    println!(
        "idle: the inference thread uses {:.3}% of a core",
        idle * 100.0
    );
    assert!(idle < 0.01, "the idle inference thread busy-waits");
}

/// CPU seconds used so far by this process's threads of a name.
fn thread_cpu_seconds(name: &str) -> f64 {
    let ticks = 100.0; // USER_HZ on Linux
    let mut total = 0.0;
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let path = task.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if comm.trim() != name {
            continue;
        }
        let stat = std::fs::read_to_string(path.join("stat")).unwrap_or_default();
        // Fields after the command's closing parenthesis; utime and stime
        // are the 14th and 15th fields of the line.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.len() > 12 {
            let utime: f64 = fields[11].parse().unwrap_or(0.0);
            let stime: f64 = fields[12].parse().unwrap_or(0.0);
            total += (utime + stime) / ticks;
        }
    }
    total
}
