//! How fast the host consumes audio, measured against the wall clock.
//!
//! Some hosts (scripted renderers such as dawdreamer) process as fast as they
//! can yet report real-time processing. There the inference thread cannot
//! keep up with the audio thread, every step comes late and the melody falls
//! silent. Such a host has no deadline to miss, so Wren treats it as an
//! offline render and waits for its steps. A host that plays in real time
//! consumes audio at wall-clock speed (bursts to fill its buffers aside) and
//! is never mistaken for one.

use std::time::{Duration, Instant};

/// Audio per measurement, in seconds: longer than any host's buffer prefill.
const WINDOW_SECONDS: f64 = 0.25;
/// A host that renders a window this many times faster than real time is not
/// playing live.
const FAST_FACTOR: f64 = 4.0;

/// Measures the host's pace over windows of audio. Real-time safe.
#[derive(Clone, Copy, Debug, Default)]
pub struct Pace {
    window_start: Option<Instant>,
    window_frames: u64,
    fast: bool,
}

impl Pace {
    /// Forgets what was measured: the next window starts with the next block.
    pub fn reset(&mut self) {
        *self = Pace::default();
    }

    /// Records a block of `frames` that starts now; returns whether the host
    /// renders faster than real time, as last measured.
    pub fn observe(&mut self, now: Instant, frames: usize, sample_rate: f64) -> bool {
        let start = *self.window_start.get_or_insert(now);
        let audio = self.window_frames as f64 / sample_rate.max(1.0);
        if audio >= WINDOW_SECONDS {
            let wall = now
                .saturating_duration_since(start)
                .max(Duration::from_nanos(1));
            self.fast = audio > FAST_FACTOR * wall.as_secs_f64();
            self.window_start = Some(now);
            self.window_frames = 0;
        }
        self.window_frames += frames as u64;
        self.fast
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds blocks of 512 at 48 kHz, each taking `wall_per_block`; returns
    /// the verdict after every block.
    fn verdicts(
        pace: &mut Pace,
        start: Instant,
        blocks: u32,
        wall_per_block: Duration,
    ) -> Vec<bool> {
        (0..blocks)
            .map(|k| pace.observe(start + wall_per_block * k, 512, 48_000.0))
            .collect()
    }

    #[test]
    fn a_live_host_is_never_fast_even_after_a_prefill_burst() {
        let mut pace = Pace::default();
        let start = Instant::now();
        // Three blocks at once to fill the buffers, then wall-clock speed.
        for k in 0..3 {
            assert!(!pace.observe(start, 512, 48_000.0), "prefill block {k}");
        }
        let block = Duration::from_secs_f64(512.0 / 48_000.0);
        let later = start + block * 3;
        assert!(verdicts(&mut pace, later, 500, block)
            .iter()
            .all(|fast| !fast));
    }

    #[test]
    fn a_renderer_is_fast_after_one_window_and_live_again_when_it_slows() {
        let mut pace = Pace::default();
        let start = Instant::now();
        let fast = verdicts(&mut pace, start, 60, Duration::from_micros(100));
        // 0.25 s of audio is 24 blocks of 512; the verdict comes with the next.
        assert!(fast[..24].iter().all(|f| !f));
        assert!(fast[24..].iter().all(|f| *f));
        let block = Duration::from_secs_f64(512.0 / 48_000.0);
        let later = start + Duration::from_micros(100) * 60;
        let live = verdicts(&mut pace, later, 60, block);
        assert!(!live[59], "a host back at wall-clock speed is live again");
        pace.reset();
        assert!(!pace.observe(later, 512, 48_000.0));
    }
}
