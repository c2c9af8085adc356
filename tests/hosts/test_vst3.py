#!/usr/bin/env python3
"""Loads the bundled Wren.vst3 in two real VST3 hosts, pedalboard and
dawdreamer, locks it to A minor, renders eight seconds in each and checks that
Wren sounds and that the pitches heard belong to A minor. Then, in each host,
sets every parameter away from its default, saves the plugin's state, loads it
into a fresh instance (pedalboard's) and checks that every parameter came back.

Pitch is read from the audio: the strongest spectral peak of each frame (Wren's
voice has its strongest partial at the fundamental), frames grouped into note
segments. Exits non-zero on any failure. Run with a Python that has pedalboard,
dawdreamer and numpy; `tests/hosts/run.sh` builds the bundle and runs this.
"""

import os
import sys
import traceback
from pathlib import Path

import numpy as np

SAMPLE_RATE = 48_000
BLOCK = 512
# dawdreamer renders as fast as it can yet tells the plugin it runs in real
# time; Wren measures that pace and waits for its steps as in an offline render.
SECONDS = 8.0
TEMPO = 120.0

# A natural minor; D major (Wren's default) lacks its C and F.
KEY_NAME, SCALE_NAME = "A", "Minor"
KEY_INDEX, SCALE_INDEX = 9, 2
SCALE_STEPS = (0, 2, 3, 5, 7, 8, 10)
DEFAULT_SCALE = {(2 + s) % 12 for s in (0, 2, 4, 5, 7, 9, 11)}
IN_SCALE_SHARE = 0.9
MIN_SEGMENTS = 6

# pedalboard's attribute names: the parameter name in snake case, then its unit.
PARAMETERS = {
    "preset",
    "temperature",
    "key",
    "scale",
    "range_low",
    "range_high",
    "density",
    "mode",
    "seed",
    "level_db",
    "midi_out",
    "free_tempo_bpm",
}
PARAMETER_NAMES = {
    "Preset",
    "Temperature",
    "Key",
    "Scale",
    "Range low",
    "Range high",
    "Density",
    "Mode",
    "Seed",
    "Level",
    "MIDI out",
    "Free tempo",
}

FRAME = 2048
HOP = 1024
NAMES = ["C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"]


class Failure(Exception):
    pass


def check(condition, message):
    if not condition:
        raise Failure(message)


def bundle_path():
    root = Path(__file__).resolve().parents[2]
    target = Path(os.environ.get("CARGO_TARGET_DIR", root / "target"))
    return target / "bundled" / "Wren.vst3"


def frame_pitches(mono):
    """MIDI pitch (float) and RMS of each frame; NaN pitch where too quiet."""
    window = np.hanning(FRAME)
    starts = range(0, len(mono) - FRAME, HOP)
    rms = np.array([np.sqrt(np.mean(mono[s : s + FRAME] ** 2)) for s in starts])
    threshold = 0.1 * rms.max() if rms.size and rms.max() > 0 else np.inf
    low_bin = int(100.0 * 4 * FRAME / SAMPLE_RATE)
    pitches = np.full(rms.shape, np.nan)
    for i, start in enumerate(starts):
        if rms[i] < threshold:
            continue
        spectrum = np.abs(np.fft.rfft(mono[start : start + FRAME] * window, 4 * FRAME))
        spectrum[:low_bin] = 0.0
        peak = int(np.argmax(spectrum))
        if 0 < peak < len(spectrum) - 1:
            a, b, c = np.log(spectrum[peak - 1 : peak + 2] + 1e-12)
            peak = peak + 0.5 * (a - c) / (a - 2 * b + c)
        frequency = peak * SAMPLE_RATE / (4 * FRAME)
        pitches[i] = 69 + 12 * np.log2(frequency / 440.0)
    return pitches, rms


def note_segments(audio):
    """(pitch, frames) for runs of at least two voiced frames on one semitone."""
    mono = np.asarray(audio, dtype=np.float64)
    if mono.ndim == 2:
        mono = mono.mean(axis=0)
    pitches, _ = frame_pitches(mono)
    segments = []
    current, length = None, 0
    for pitch in list(pitches) + [np.nan]:
        note = None if np.isnan(pitch) else int(round(pitch))
        if note is not None and note == current:
            length += 1
            continue
        if current is not None and length >= 2:
            segments.append((current, length))
        current, length = note, 1
    return segments


def check_render(host, audio):
    audio = np.asarray(audio, dtype=np.float64)
    check(audio.size > 0, f"{host}: no audio")
    check(np.all(np.isfinite(audio)), f"{host}: non-finite samples")
    peak = float(np.abs(audio).max())
    rms = float(np.sqrt(np.mean(audio**2)))
    check(peak > 0.01 and rms > 0.001, f"{host}: silent (peak {peak:.4f}, rms {rms:.5f})")
    segments = note_segments(audio)
    key = KEY_INDEX
    in_scale = [(p - key) % 12 in SCALE_STEPS for p, _ in segments]
    share = sum(in_scale) / max(len(segments), 1)
    heard = " ".join(f"{NAMES[p % 12]}{p // 12 - 1}" for p, _ in segments)
    print(f"{host}: peak {peak:.3f}, rms {rms:.4f}, {len(segments)} segments, "
          f"{share:.0%} in {KEY_NAME} {SCALE_NAME}: {heard}")
    check(len(segments) >= MIN_SEGMENTS, f"{host}: only {len(segments)} note segments")
    check(share >= IN_SCALE_SHARE, f"{host}: only {share:.0%} of segments in scale")
    outside_default = {p % 12 for p, _ in segments} - DEFAULT_SCALE
    check(outside_default, f"{host}: every note also fits D major; did the key/scale stick?")


def render_pedalboard(path):
    import pedalboard

    plugin = pedalboard.load_plugin(str(path))
    check(plugin.is_instrument, "pedalboard: Wren is not an instrument")
    names = set(plugin.parameters.keys())
    check(PARAMETERS <= names, f"pedalboard: missing parameters {PARAMETERS - names}")
    plugin.key = KEY_NAME
    plugin.scale = SCALE_NAME
    check(str(plugin.key) == KEY_NAME, f"pedalboard: key is {plugin.key}")
    check(str(plugin.scale) == SCALE_NAME, f"pedalboard: scale is {plugin.scale}")
    # pedalboard has no transport to give: Wren free-runs at its free tempo.
    return plugin([], duration=SECONDS, sample_rate=SAMPLE_RATE, num_channels=2,
                  buffer_size=BLOCK)


def render_dawdreamer(path):
    import dawdreamer

    engine = dawdreamer.RenderEngine(SAMPLE_RATE, BLOCK)
    engine.set_bpm(TEMPO)
    plugin = engine.make_plugin_processor("wren", str(path))
    described = plugin.get_parameters_description()
    index = {d["name"]: d["index"] for d in described}
    check(PARAMETER_NAMES <= set(index), f"dawdreamer: missing {PARAMETER_NAMES - set(index)}")
    plugin.set_parameter(index["Key"], KEY_INDEX / 11)
    plugin.set_parameter(index["Scale"], SCALE_INDEX / 6)
    check(plugin.get_parameter_text(index["Key"]) == KEY_NAME, "dawdreamer: key did not stick")
    check(plugin.get_parameter_text(index["Scale"]) == SCALE_NAME,
          "dawdreamer: scale did not stick")
    engine.load_graph([(plugin, [])])
    check(engine.render(SECONDS), "dawdreamer: render failed")
    return plugin.get_audio()


def away_from(default):
    """A normalized value well away from a parameter's default."""
    return 0.9 if default < 0.5 else 0.1


def pedalboard_texts(plugin):
    """Each parameter's value as the plugin writes it, by display name."""
    return {p.name: p.string_value for p in plugin.parameters.values()}


def state_pedalboard(path):
    import pedalboard

    source = pedalboard.load_plugin(str(path))
    defaults = pedalboard_texts(source)
    for parameter in source.parameters.values():
        parameter.raw_value = away_from(parameter.raw_value)
    changed = pedalboard_texts(source)
    same = sorted(n for n in changed if changed[n] == defaults[n])
    check(not same, f"pedalboard: setting {same} left them at their defaults")
    state = source.raw_state
    check(len(state) > 0, "pedalboard: empty state")
    restored = pedalboard.load_plugin(str(path))
    check(pedalboard_texts(restored) == defaults, "pedalboard: a fresh instance is not at defaults")
    restored.raw_state = state
    got = pedalboard_texts(restored)
    lost = {n: (changed[n], got[n]) for n in changed if got[n] != changed[n]}
    check(not lost, f"pedalboard: state round trip lost (saved, restored) {lost}")
    print(f"pedalboard: a state of {len(state)} bytes restores all {len(got)} parameters")


def state_dawdreamer(path):
    """Saves in dawdreamer, restores in pedalboard: both keep a VST3's state
    the same way (JUCE's), and dawdreamer's own load_state needs a plugin
    editor, which Wren does not have."""
    import tempfile

    import dawdreamer
    import pedalboard

    engine = dawdreamer.RenderEngine(SAMPLE_RATE, BLOCK)
    source = engine.make_plugin_processor("source", str(path))
    index = {d["name"]: d["index"] for d in source.get_parameters_description()}
    defaults = {name: source.get_parameter_text(i) for name, i in index.items()}
    for i in index.values():
        source.set_parameter(i, away_from(source.get_parameter(i)))
    # dawdreamer hands parameter values to the plugin when it renders.
    engine.load_graph([(source, [])])
    check(engine.render(0.1), "dawdreamer: render failed")
    changed = {name: source.get_parameter_text(i) for name, i in index.items()}
    same = sorted(n for n in PARAMETER_NAMES if changed[n] == defaults[n])
    check(not same, f"dawdreamer: setting {same} left them at their defaults")
    with tempfile.TemporaryDirectory() as folder:
        file = Path(folder) / "wren.state"
        source.save_state(str(file))
        state = file.read_bytes()
    check(len(state) > 0, "dawdreamer: empty state")
    restored = pedalboard.load_plugin(str(path))
    restored.raw_state = state
    got = pedalboard_texts(restored)
    lost = {n: (changed[n], got[n]) for n in PARAMETER_NAMES if got[n] != changed[n]}
    check(not lost, f"dawdreamer: state restored in pedalboard lost (saved, restored) {lost}")
    print(f"dawdreamer: a state of {len(state)} bytes restores all {len(got)} parameters")


def main():
    path = bundle_path()
    if not path.exists():
        print(f"FAIL: {path} is missing; run `cargo xtask bundle`", file=sys.stderr)
        return 1
    failures = 0
    for host, render in [("pedalboard", render_pedalboard), ("dawdreamer", render_dawdreamer)]:
        try:
            check_render(host, render(path))
            print(f"ok: {host}")
        except Failure as failure:
            failures += 1
            print(f"FAIL: {failure}", file=sys.stderr)
        except Exception:  # a host that cannot load or render Wren fails too
            failures += 1
            traceback.print_exc()
            print(f"FAIL: {host} raised", file=sys.stderr)
    for host, round_trip in [("pedalboard", state_pedalboard), ("dawdreamer", state_dawdreamer)]:
        try:
            round_trip(path)
            print(f"ok: {host} state round trip")
        except Failure as failure:
            failures += 1
            print(f"FAIL: {failure}", file=sys.stderr)
        except Exception:
            failures += 1
            traceback.print_exc()
            print(f"FAIL: {host} state round trip raised", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
