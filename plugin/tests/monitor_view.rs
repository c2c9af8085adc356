//! What the editor shows of the presets: which fit the buffer by the
//! measured costs, what each costs, which one plays, and the late work
//! counted while it played, as the monitor publishes them from an engine.

use wren::engine::cost::{Cost, CostTable, PresetCost};
use wren::engine::{Settings, Transport};
use wren::monitor::Monitor;

const RATE: f64 = 48_000.0;
const BLOCK: usize = 64;

fn cost(step_us: f64, frame_us: f64) -> PresetCost {
    let at = |us: f64| Cost {
        median_us: us,
        p99_us: us,
        p999_us: us,
    };
    PresetCost {
        melody: at(step_us),
        timbre: at(frame_us),
    }
}

#[test]
fn the_editor_sees_which_presets_fit_the_buffer_and_what_they_cost() {
    let mut engine = wren::start_engine(RATE, BLOCK).unwrap();
    while !engine.measurement_finished() {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // A 64-sample buffer lasts 1333 us; each preset may use half of it for
    // one melody step and one frame of each of eight voices.
    let table = CostTable::measured(&[
        (0.5, cost(600.0, 60.0)),
        (0.5, cost(300.0, 50.0)),
        (0.5, cost(100.0, 80.0)),
        (0.5, cost(20.0, 5.0)),
    ]);
    let monitor = Monitor::default();
    let settings = Settings {
        auto: true,
        ..Settings::default()
    };
    let (mut left, mut right) = (vec![0.0; BLOCK], vec![0.0; BLOCK]);
    let transport = Transport::default();
    // The first block takes the measured table; then the made-up one wins.
    engine.process(
        &transport,
        &settings,
        &[],
        false,
        &mut left,
        &mut right,
        &mut |_| {},
    );
    engine.set_costs(table);
    let block = monitor.begin_block(&transport, &settings, BLOCK, RATE);
    engine.process(
        &transport,
        &settings,
        &[],
        false,
        &mut left,
        &mut right,
        &mut |event| monitor.log(&block, &event, wren::monitor::Source::Generated),
    );
    monitor.publish(&engine, BLOCK, RATE);

    let view = monitor.view();
    assert!(view.active);
    assert_eq!((view.block_size, view.sample_rate), (64, 48_000.0));
    assert_eq!(view.preset_count, 4);
    assert!(view.measured);
    let fits: Vec<bool> = view.presets[..4].iter().map(|p| p.fits).collect();
    assert_eq!(fits, [false, false, false, true]);
    assert_eq!(
        (view.fit, view.running),
        (3, 3),
        "auto plays the best that fits"
    );
    let studio = view.presets[0];
    assert_eq!(studio.step_us, Some(600.0));
    assert_eq!(studio.frame_us, Some(60.0));
    assert_eq!(studio.work_us, Some(600.0 + 8.0 * 60.0));
    assert!((studio.budget_us - 666.67).abs() < 0.01);
    let ultra = view.presets[3];
    assert_eq!(ultra.work_us, Some(20.0 + 8.0 * 5.0));
    // Whatever came late (in real time, on a busy machine) counts against
    // the preset that played.
    let late = view.late_steps + view.late_frames;
    assert_eq!(view.presets[3].late, late);
    assert!(view.presets[..3].iter().all(|p| p.late == 0));
}

#[test]
fn late_work_is_counted_against_the_preset_that_played_it() {
    let mut engine = wren::start_engine(RATE, BLOCK).unwrap();
    let monitor = Monitor::default();
    let settings = Settings {
        variant: 2,
        ..Settings::default()
    };
    let (mut left, mut right) = (vec![0.0; BLOCK], vec![0.0; BLOCK]);
    let transport = Transport {
        playing: true,
        tempo: Some(120.0),
        pos_beats: Some(0.0),
        time_signature: Some((4, 4)),
        loop_beats: None,
    };
    // The inference thread sleeps 20 ms before every step and frame: in
    // real time the steps come late.
    engine.stall_inference(20_000);
    let mut position = 0.0;
    for _ in 0..400 {
        let transport = Transport {
            pos_beats: Some(position),
            ..transport
        };
        monitor.begin_block(&transport, &settings, BLOCK, RATE);
        engine.process(
            &transport,
            &settings,
            &[],
            false,
            &mut left,
            &mut right,
            &mut |_| {},
        );
        monitor.publish(&engine, BLOCK, RATE);
        position += BLOCK as f64 / RATE * 2.0;
    }
    engine.stall_inference(0);
    let view = monitor.view();
    let stats = engine.stats();
    assert!(stats.late_steps + stats.late_frames > 0, "{stats:?}");
    assert_eq!(view.running, 2);
    assert_eq!(view.late_steps, stats.late_steps);
    assert_eq!(view.late_frames, stats.late_frames);
    assert_eq!(view.presets[2].late, stats.late_steps + stats.late_frames);
    for other in [0, 1, 3] {
        assert_eq!(view.presets[other].late, 0);
    }
    assert!(
        (view.time - position).abs() < 1e-6,
        "the timeline ran with the host"
    );
}
