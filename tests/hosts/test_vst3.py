#!/usr/bin/env python3
"""Loads the bundled Wren.vst3 in two real VST3 hosts, pedalboard and
dawdreamer, locks it to A minor, renders eight seconds in each and checks that
Wren sounds and that the pitches heard belong to A minor. Then, in each host,
sets every parameter away from its default, saves the plugin's state, loads it
into fresh instances (the same host's and pedalboard's) and checks that every
parameter came back.
Last, plays MIDI notes through Wren's neural flute in pedalboard (mode Thru)
and checks that each sounds at its pitch, and unlike the additive voice.

Pitch is read from the audio: the strongest spectral peak of each frame (Wren's
voice has its strongest partial at the fundamental), frames grouped into note
segments. Exits non-zero on any failure. Run with a Python that has pedalboard,
dawdreamer and numpy; `tests/hosts/run.sh` builds the bundle and runs this.
"""

import os
import re
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
    "instrument",
    "voices",
    "bypass",
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
    "Instrument",
    "Voices",
    "Bypass",
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


def load_pedalboard(path):
    """Wren.vst3 in pedalboard. A VST3 plugin receives MIDI controllers as
    parameters: nice-plug adds 16 x 130 hidden, read-only ones named "MIDI Ch.
    N CC M", "... Channel Pressure" and "... Pitch Bend". pedalboard skips
    JUCE's equivalent ("MIDI CC ...") but not these, and probes each parameter
    it keeps with 1001 to 2002 value-to-text calls: about 50 s per instance.
    The tests look at Wren's own parameters, so pedalboard skips these too."""
    import pedalboard
    from pedalboard import _pedalboard

    _pedalboard.PARAMETER_NAME_REGEXES_TO_IGNORE.add(re.compile(r"MIDI Ch\. \d+ "))
    return pedalboard.load_plugin(str(path))


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
    plugin = load_pedalboard(path)
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


def wren_parameters(plugin):
    """Wren's own parameters in pedalboard, without the hidden, read-only
    MIDI CC parameters a VST3 plugin that reads MIDI controllers shows."""
    return [plugin.parameters[name] for name in sorted(PARAMETERS)]


def pedalboard_texts(plugin):
    """Each of Wren's parameters' value as the plugin writes it, by display name."""
    return {p.name: p.string_value for p in wren_parameters(plugin)}


def state_pedalboard(path):
    source = load_pedalboard(path)
    defaults = pedalboard_texts(source)
    for parameter in wren_parameters(source):
        parameter.raw_value = away_from(parameter.raw_value)
    changed = pedalboard_texts(source)
    same = sorted(n for n in changed if changed[n] == defaults[n])
    check(not same, f"pedalboard: setting {same} left them at their defaults")
    state = source.raw_state
    check(len(state) > 0, "pedalboard: empty state")
    restored = load_pedalboard(path)
    check(pedalboard_texts(restored) == defaults, "pedalboard: a fresh instance is not at defaults")
    restored.raw_state = state
    got = pedalboard_texts(restored)
    lost = {n: (changed[n], got[n]) for n in changed if got[n] != changed[n]}
    check(not lost, f"pedalboard: state round trip lost (saved, restored) {lost}")
    print(f"pedalboard: a state of {len(state)} bytes restores all {len(got)} parameters")


def state_dawdreamer(path):
    """Saves in dawdreamer, restores in a fresh dawdreamer instance (its
    load_state asks the plugin's editor for its size, so it needs Wren's
    editor) and in pedalboard: both keep a VST3's state the same way (JUCE's)."""
    import tempfile

    import dawdreamer

    engine = dawdreamer.RenderEngine(SAMPLE_RATE, BLOCK)
    source = engine.make_plugin_processor("source", str(path))
    index = {d["name"]: d["index"] for d in source.get_parameters_description()
             if d["name"] in PARAMETER_NAMES}
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
        own = engine.make_plugin_processor("restored", str(path))
        own.load_state(str(file))
    check(len(state) > 0, "dawdreamer: empty state")
    got = {name: own.get_parameter_text(i) for name, i in index.items()}
    lost = {n: (changed[n], got[n]) for n in PARAMETER_NAMES if got[n] != changed[n]}
    check(not lost, f"dawdreamer: state restored in dawdreamer lost (saved, restored) {lost}")
    restored = load_pedalboard(path)
    restored.raw_state = state
    got = pedalboard_texts(restored)
    lost = {n: (changed[n], got[n]) for n in PARAMETER_NAMES if got[n] != changed[n]}
    check(not lost, f"dawdreamer: state restored in pedalboard lost (saved, restored) {lost}")
    print(f"dawdreamer: a state of {len(state)} bytes restores all {len(got)} parameters "
          "in dawdreamer and in pedalboard")


# Notes played into Wren: (MIDI pitch, on, off) in seconds.
USER_NOTES = [(69, 0.5, 2.0), (76, 2.5, 4.0), (62, 4.5, 6.0)]


def play_user_notes(plugin):
    midi = []
    for pitch, start, end in USER_NOTES:
        midi += [(bytes([0x90, pitch, 100]), start), (bytes([0x80, pitch, 0]), end)]
    audio = plugin(midi, duration=7.0, sample_rate=SAMPLE_RATE, num_channels=2,
                   buffer_size=BLOCK)
    return np.asarray(audio, dtype=np.float64).mean(axis=0)


def harmonic_profile(mono, pitch, start, end):
    """Levels in dB of the first six partials, relative to the first."""
    segment = mono[int((start + 0.4) * SAMPLE_RATE) : int((end - 0.1) * SAMPLE_RATE)]
    spectrum = np.abs(np.fft.rfft(segment * np.hanning(len(segment))))
    f0 = 440.0 * 2 ** ((pitch - 69) / 12)
    bin_hz = SAMPLE_RATE / len(segment)
    levels = []
    for k in range(1, 7):
        centre = k * f0 / bin_hz
        levels.append(spectrum[int(centre * 0.98) : int(centre * 1.02) + 1].max())
    levels = np.array(levels)
    return 20 * np.log10(levels / levels[0] + 1e-12)


def user_midi_pedalboard(path):
    plugin = load_pedalboard(path)
    plugin.mode = "Thru"
    check(str(plugin.instrument) == "Flute", f"pedalboard: instrument is {plugin.instrument}")
    neural = play_user_notes(plugin)
    check(np.all(np.isfinite(neural)), "pedalboard: non-finite samples")
    pitches, rms = frame_pitches(neural)
    for pitch, start, end in USER_NOTES:
        frames = [i for i in range(len(pitches))
                  if start + 0.3 < i * HOP / SAMPLE_RATE < end - 0.2]
        heard = np.nanmedian(pitches[frames])
        check(abs(heard - pitch) < 0.5, f"pedalboard: played {pitch}, heard {heard:.2f}")
    between = rms[[i for i in range(len(rms)) if 6.8 < i * HOP / SAMPLE_RATE]]
    check(between.size and between.max() < 0.05 * rms.max(),
          "pedalboard: sound went on after the last note's release")
    plugin.instrument = "Additive"
    additive = play_user_notes(plugin)
    difference = max(
        np.abs(harmonic_profile(neural, p, a, b) - harmonic_profile(additive, p, a, b)).max()
        for p, a, b in USER_NOTES)
    check(difference > 3.0,
          f"pedalboard: the flute's partials lie within {difference:.1f} dB of the additive voice's")
    print(f"pedalboard: played {len(USER_NOTES)} notes through the neural flute, each at its "
          f"pitch; partials differ from the additive voice by up to {difference:.1f} dB")


def attempt(name, check_one):
    """Runs one check; returns 1 if it failed (a host that raises fails too)."""
    try:
        check_one()
        print(f"ok: {name}")
        return 0
    except Failure as failure:
        print(f"FAIL: {failure}", file=sys.stderr)
    except Exception:
        traceback.print_exc()
        print(f"FAIL: {name} raised", file=sys.stderr)
    return 1


def main():
    path = bundle_path()
    if not path.exists():
        print(f"FAIL: {path} is missing; run `cargo xtask bundle`", file=sys.stderr)
        return 1
    failures = 0
    for host, render in [("pedalboard", render_pedalboard), ("dawdreamer", render_dawdreamer)]:
        failures += attempt(host, lambda: check_render(host, render(path)))
    for host, round_trip in [("pedalboard", state_pedalboard), ("dawdreamer", state_dawdreamer)]:
        failures += attempt(f"{host} state round trip", lambda: round_trip(path))
    failures += attempt("pedalboard user MIDI through the neural voice",
                        lambda: user_midi_pedalboard(path))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
