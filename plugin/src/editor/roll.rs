//! The piano roll: the last four bars of notes, Wren's and the ones played
//! in, scrolling with the timeline.

use egui::{pos2, vec2, Color32, Rect, Sense, Stroke};

use super::window::ACCENT;
use crate::monitor::{played_notes, LoggedNote, MonitorView, PlayedNote, Source};

const PLAYED: Color32 = Color32::from_rgb(0x5a, 0x9b, 0xe0);
const BARS_SHOWN: f64 = 4.0;

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
    let visible: Vec<PlayedNote> = played_notes(notes, now)
        .into_iter()
        .filter(|n| n.end > from)
        .collect();
    let (mut low, mut high) = (range.0.min(range.1), range.0.max(range.1));
    for s in &visible {
        low = low.min(s.note as i32);
        high = high.max(s.note as i32);
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
        let top = y(s.note as i32 + 1).max(rect.top());
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
