#!/usr/bin/env python3
"""Draws quality against cost for every model variant, one figure per role.

`cargo xtask report` writes the data (target/report/plot.json) and calls
this. Each figure has two panels: held-out quality against Wren's median
microseconds per step, and against bytes of the weights as stored; both x
axes are logarithmic, lower is better on every axis. Each network (an
instrument, for the timbre models) has its own colour; teachers are squares.
"""

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.transforms  # noqa: E402

COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]


# Label positions tried in turn, in points from the marker: the first that
# overlaps no label or marker already drawn wins.
OFFSETS = [(6, 3), (6, -9), (-6, 3), (-6, -9), (6, 12), (6, -18), (-6, 12), (-6, -18),
           (6, 21), (6, -27), (-6, 21), (-6, -27)]


def place_labels(ax, labels, lines):
    """Annotates each (x, y, text, colour) where it overlaps nothing drawn
    before: markers, other labels, or the horizontal lines at `lines`."""
    renderer = ax.figure.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    taken = []
    for y in lines:
        _, py = ax.transData.transform((1.0, y))
        taken.append(matplotlib.transforms.Bbox([[frame.x0, py - 2], [frame.x1, py + 2]]))
    for x, y, _, _ in labels:
        px, py = ax.transData.transform((x, y))
        taken.append(matplotlib.transforms.Bbox([[px - 4, py - 4], [px + 4, py + 4]]))
    for x, y, text, colour in labels:
        for dx, dy in OFFSETS:
            note = ax.annotate(
                text,
                (x, y),
                textcoords="offset points",
                xytext=(dx, dy),
                ha="left" if dx > 0 else "right",
                fontsize=7,
                color=colour,
            )
            box = note.get_window_extent(renderer).expanded(1.05, 1.1)
            if not any(box.overlaps(other) for other in taken) or (dx, dy) == OFFSETS[-1]:
                taken.append(box)
                break
            note.remove()


def panel(ax, series_list, key, xlabel):
    """Draws one panel; returns its point labels and baseline heights, to place later."""
    labels, lines = [], []
    for colour, series in zip(COLOURS * 4, series_list):
        for p in series["points"]:
            ax.scatter(
                p[key],
                p["quality"],
                color=colour,
                marker="s" if p["teacher"] else "o",
                s=60 if p["teacher"] else 30,
                edgecolors="black" if p["teacher"] else "none",
                zorder=3,
            )
            labels.append((p[key], p["quality"], p["variant"], colour))
        # Baselines only where one network shares the axes: several
        # networks' baselines would squash their models into a band.
        for line in series["baselines"] if len(series_list) == 1 else []:
            ax.axhline(line["quality"], color=colour, linestyle="--", linewidth=0.8)
            lines.append(line["quality"])
            ax.annotate(
                line["name"],
                (1.0, line["quality"]),
                xycoords=("axes fraction", "data"),
                xytext=(-3, 3),
                textcoords="offset points",
                ha="right",
                fontsize=7,
                color=colour,
            )
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.grid(True, which="both", alpha=0.25)
    ax.margins(x=0.3, y=0.12)
    return labels, lines


def figure(spec, out):
    series_list = spec["series"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6), sharey=True)
    labels = [
        panel(axes[0], series_list, "us", "Wren kernel, median us per step (log)"),
        panel(axes[1], series_list, "bytes", "weight bytes as stored (log)"),
    ]
    metric = series_list[0]["metric"] if series_list else ""
    axes[0].set_ylabel(f"{metric}, lower is better")
    handles = [
        plt.Line2D([], [], color=c, marker="o", linestyle="", label=s["label"])
        for c, s in zip(COLOURS * 4, series_list)
    ]
    handles.append(
        plt.Line2D(
            [], [], color="grey", marker="s", markeredgecolor="black", linestyle="",
            label="teacher",
        )
    )
    axes[1].legend(handles=handles, fontsize=8, loc="best")
    fig.suptitle(f"{spec['title']}: held-out quality against cost")
    fig.tight_layout()
    fig.canvas.draw()
    for ax, (points, lines) in zip(axes, labels):
        place_labels(ax, points, lines)
    path = Path(out) / spec["file"]
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"wrote {path} ({path.stat().st_size // 1024} KB)")


def main():
    data = json.loads(Path(sys.argv[1]).read_text())
    for spec in data["figures"]:
        figure(spec, data["out"])


if __name__ == "__main__":
    main()
