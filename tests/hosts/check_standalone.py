#!/usr/bin/env python3
"""Checks a recording of the standalone: it sounds, and the pitches heard
belong to Wren's default key, D major. Usage: check_standalone.py FILE.wav"""

import sys
import wave

import numpy as np

from test_vst3 import DEFAULT_SCALE, NAMES, note_segments

MIN_SEGMENTS = 3


def main(path):
    with wave.open(path) as recording:
        frames = recording.readframes(recording.getnframes())
        channels, width = recording.getnchannels(), recording.getsampwidth()
    kinds = {2: (np.int16, 32768.0), 4: (np.int32, 2.0**31)}
    kind, scale = kinds[width]
    audio = np.frombuffer(frames, dtype=kind).astype(np.float64) / scale
    audio = audio.reshape(-1, channels).T
    peak = float(np.abs(audio).max())
    segments = note_segments(audio)
    in_key = [p % 12 in DEFAULT_SCALE for p, _ in segments]
    heard = " ".join(f"{NAMES[p % 12]}{p // 12 - 1}" for p, _ in segments)
    print(f"standalone: peak {peak:.3f}, {len(segments)} segments: {heard}")
    if peak < 0.01:
        print("FAIL: the standalone is silent", file=sys.stderr)
        return 1
    if len(segments) < MIN_SEGMENTS or sum(in_key) < 0.9 * len(segments):
        print("FAIL: too few notes, or notes outside D major", file=sys.stderr)
        return 1
    print("ok: standalone on JACK")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
