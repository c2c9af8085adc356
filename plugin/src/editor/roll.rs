//! The piano roll: the last four bars of notes, Wren's and the ones played
//! in, scrolling with the timeline.

use egui::{pos2, vec2, Color32, Rect, Sense, Stroke};

use super::ACCENT;
use crate::monitor::{LoggedNote, MonitorView, Source};

const PLAYED: Color32 = Color32::from_rgb(0x5a, 0x9b, 0xe0);
const BARS_SHOWN: f64 = 4.0;

/// A note with its start and end on the monitor's timeline.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Span {
    start: f64,
    end: f64,
    pitch: u8,
    source: Source,
}

/// Pairs note-ons with their note-offs; notes still sounding end at `now`.
/// Only notes that end after `from` are kept.
fn spans(notes: &[LoggedNote], from: f64, now: f64) -> Vec<Span> {
    let mut open = [[None::<f64>; 128]; 2];
    let mut out = Vec::new();
    for note in notes {
        let side = match note.source {
            Source::Generated => 0,
            Source::Played => 1,
        };
        let slot = &mut open[side][note.note as usize & 127];
        if let Some(start) = slot.take() {
            if note.time > from {
                out.push(Span {
                    start,
                    end: note.time,
                    pitch: note.note,
                    source: note.source,
                });
            }
        }
        if note.velocity > 0 {
            *slot = Some(note.time);
        }
    }
    for (side, pitches) in open.iter().enumerate() {
        for (pitch, start) in pitches.iter().enumerate() {
            if let Some(start) = start {
                out.push(Span {
                    start: *start,
                    end: now.max(*start),
                    pitch: pitch as u8,
                    source: if side == 0 {
                        Source::Generated
                    } else {
                        Source::Played
                    },
                });
            }
        }
    }
    out
}

/// Draws the roll at `size`; `range` is the generated pitch range, widened
/// to show every visible note.
pub fn show(
    ui: &mut egui::Ui,
    notes: &[LoggedNote],
    view: &MonitorView,
    range: (i32, i32),
    size: egui::Vec2,
) {
    let (response, painter) = ui.allocate_painter(size, Sense::hover());
    let rect = response.rect;
    painter.rect_filled(rect, 4.0, Color32::from_gray(24));
    let bar = (view.bar_beats as f64).max(0.25);
    let span = bar * BARS_SHOWN;
    let now = view.time;
    let from = now - span;
    let visible = spans(notes, from, now);
    let (mut low, mut high) = (range.0.min(range.1), range.0.max(range.1));
    for s in &visible {
        low = low.min(s.pitch as i32);
        high = high.max(s.pitch as i32);
    }
    let (low, high) = (low - 1, high + 1);
    let rows = (high - low + 1) as f32;
    let x = |t: f64| rect.left() + ((t - from) / span) as f32 * rect.width();
    let y = |pitch: i32| rect.bottom() - (pitch - low) as f32 / rows * rect.height();

    // Octave lines on every C, labelled.
    for pitch in low..=high {
        if pitch.rem_euclid(12) == 0 {
            let line_y = y(pitch);
            painter.hline(
                rect.x_range(),
                line_y,
                Stroke::new(1.0, Color32::from_gray(40)),
            );
            painter.text(
                pos2(rect.left() + 3.0, line_y - 1.0),
                egui::Align2::LEFT_BOTTOM,
                format!("C{}", pitch / 12 - 1),
                egui::FontId::proportional(10.0),
                Color32::from_gray(110),
            );
        }
    }
    // Beat and bar lines, back from the last bar line.
    let last_bar_line = now - view.bar_phase as f64;
    let mut beat = 0;
    loop {
        let t = last_bar_line - beat as f64;
        if t < from {
            break;
        }
        let on_bar = (beat as f64 % bar).abs() < 1e-6;
        let grey = if on_bar { 90 } else { 48 };
        painter.vline(
            x(t),
            rect.y_range(),
            Stroke::new(1.0, Color32::from_gray(grey)),
        );
        beat += 1;
    }
    let row_height = (rect.height() / rows).max(2.0);
    for s in &visible {
        let colour = match s.source {
            Source::Generated => ACCENT,
            Source::Played => PLAYED,
        };
        let top = y(s.pitch as i32 + 1).max(rect.top());
        let note_rect = Rect::from_min_max(
            pos2(x(s.start.max(from)), top + 0.5),
            pos2(
                x(s.end).max(x(s.start.max(from)) + 2.0),
                top + row_height - 0.5,
            ),
        )
        .intersect(rect);
        painter.rect_filled(note_rect, 1.5, colour);
    }
    painter.vline(
        x(now) - 1.0,
        rect.y_range(),
        Stroke::new(1.0, Color32::WHITE),
    );
    let legend = if view.running_time {
        "Wren's notes in amber, notes played in in blue"
    } else {
        "stopped: press play in the host"
    };
    painter.text(
        rect.right_top() + vec2(-6.0, 4.0),
        egui::Align2::RIGHT_TOP,
        legend,
        egui::FontId::proportional(11.0),
        Color32::from_gray(150),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(time: f64, note: u8, velocity: u8, source: Source) -> LoggedNote {
        LoggedNote {
            time,
            bar_phase: 0.0,
            note,
            velocity,
            source,
        }
    }

    #[test]
    fn spans_pair_notes_by_source_and_hold_sounding_ones_to_now() {
        let notes = [
            event(0.0, 60, 100, Source::Generated),
            event(1.0, 60, 90, Source::Played),
            event(2.0, 60, 0, Source::Generated),
            event(3.0, 62, 100, Source::Generated),
            event(4.0, 60, 0, Source::Played),
        ];
        let mut all = spans(&notes, -1.0, 5.0);
        all.sort_by(|a, b| a.start.total_cmp(&b.start));
        let expected = [(0.0, 2.0, 60), (1.0, 4.0, 60), (3.0, 5.0, 62)];
        let got: Vec<(f64, f64, u8)> = all.iter().map(|s| (s.start, s.end, s.pitch)).collect();
        assert_eq!(got, expected);
        assert_eq!(all[1].source, Source::Played);
        let late = spans(&notes, 2.5, 5.0);
        assert_eq!(late.len(), 2, "the note that ended at 2 is out of view");
    }
}
