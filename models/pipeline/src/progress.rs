//! Progress for long jobs: a bar on a terminal, periodic lines in a log.

use std::io::IsTerminal;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};

/// Shows how far a job is.
pub struct Progress {
    bar: Option<ProgressBar>,
    label: String,
    total: u64,
    started: Instant,
    last_line: std::cell::Cell<u64>,
}

impl Progress {
    /// Starts showing a job of `total` units.
    pub fn new(label: &str, total: u64) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total);
            bar.set_style(
                ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} ({eta})")
                    .expect("a valid template")
                    .progress_chars("=> "),
            );
            bar.set_prefix(label.to_string());
            bar
        });
        Progress {
            bar,
            label: label.into(),
            total,
            started: Instant::now(),
            last_line: 0.into(),
        }
    }

    /// Moves to `position` with a short status message.
    pub fn set(&self, position: u64, message: &str) {
        match &self.bar {
            Some(bar) => {
                bar.set_position(position);
                bar.set_message(message.to_string());
            }
            None => {
                let tenth = (self.total / 10).max(1);
                if position / tenth > self.last_line.get() / tenth || position == self.total {
                    self.last_line.set(position);
                    eprintln!(
                        "{}: {position}/{} {message} ({:.0} s)",
                        self.label,
                        self.total,
                        self.started.elapsed().as_secs_f64()
                    );
                }
            }
        }
    }

    /// Prints a line above the bar.
    pub fn note(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(format!("{}: {line}", self.label)),
            None => eprintln!("{}: {line}", self.label),
        }
    }

    /// Ends the bar.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        eprintln!(
            "{}: done in {:.0} s",
            self.label,
            self.started.elapsed().as_secs_f64()
        );
    }
}
