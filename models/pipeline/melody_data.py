"""Extract monophonic melodies from the public-domain collections in music21.

Sources: O'Neill's Music of Ireland (1850), Ryan's Mammoth Collection (1883)
and the soprano line of the Bach chorales. The Essen collection is left out on
purpose: its licence allows non-commercial use only.

Each tune becomes one line of a gzip-compressed text file:

    source<TAB>title<TAB>bar_steps<TAB>pickup_steps<TAB>events

where `bar_steps` is the bar length in 16th notes, `pickup_steps` the length
of the anacrusis, and `events` a space-separated list of `pitch:steps`
(`pitch` a MIDI number, or `r` for a rest). Durations are quantized to the
16th-note grid; tunes with chords or a
meter change are skipped and counted. Onsets of tuplets are rounded to the
nearest 16th; a tune in which two onsets fall on one step is skipped. Exact duplicates (same intervals and
rhythm) are kept once, so no tune can sit in two splits.

Usage: python melody_data.py OUT.tsv.gz [--limit N]
"""

import argparse
import gzip
import hashlib
import sys
import time
import warnings

from music21 import chord, corpus, converter, meter, note, stream

warnings.filterwarnings("ignore")


def sources(limit):
    """Yield (source, path) pairs in a fixed order."""
    works = [
        ("oneills1850", sorted(corpus.getWork("oneills1850"))),
        ("ryansMammoth", sorted(corpus.getWork("ryansMammoth"))),
        ("bach", sorted(p for p in corpus.getComposer("bach")
                        if str(p).endswith((".mxl", ".xml", ".krn")))),
    ]
    for name, paths in works:
        for path in paths[:limit] if limit else paths:
            yield name, path


def scores(source, path):
    """Parse one file; an ABC book holds many tunes."""
    parsed = converter.parse(path)
    if isinstance(parsed, stream.Opus):
        return list(parsed.scores)
    return [parsed]


def melody_part(source, score):
    if source == "bach":
        for part in score.parts:
            pid = (part.id or "").lower()
            name = (part.partName or "").lower()
            if "soprano" in pid or "soprano" in name or pid == "s":
                return part
        return score.parts[0] if score.parts else None
    return score.parts[0] if score.parts else score


def encode(source, score):
    """Return (title, bar_steps, pickup_steps, events) or a skip reason."""
    part = melody_part(source, score)
    if part is None:
        return "no part"
    flat = part.flatten()
    sigs = flat.getElementsByClass(meter.TimeSignature)
    if len(sigs) == 0:
        return "no meter"
    if len({s.ratioString for s in sigs}) > 1:
        return "meter change"
    ts = sigs[0]
    bar_q = ts.barDuration.quarterLength
    bar_steps = bar_q * 4
    if abs(bar_steps - round(bar_steps)) > 1e-6:
        return "bar off grid"
    bar_steps = int(round(bar_steps))

    events = []
    cursor = 0
    for el in flat.notesAndRests:
        if el.duration.isGrace or el.quarterLength == 0:
            continue
        if isinstance(el, chord.Chord):
            return "chord"
        start = int(round(el.offset * 4))
        end = int(round((el.offset + el.quarterLength) * 4))
        if end <= start:
            return "collapsed on grid"
        steps = end - start
        if start > cursor:
            events.append(("r", start - cursor))
        elif start < cursor:
            return "overlap"
        if isinstance(el, note.Rest):
            token = "r"
        else:
            if el.tie is not None and el.tie.type in ("continue", "stop") and events \
                    and events[-1][0] == el.pitch.midi:
                events[-1] = (events[-1][0], events[-1][1] + steps)
                cursor = start + steps
                continue
            token = el.pitch.midi
        events.append((token, steps))
        cursor = start + steps
    while events and events[0][0] == "r":
        events.pop(0)
    if sum(1 for e in events if e[0] != "r") < 8:
        return "too short"

    first = flat.notes[0].offset if len(flat.notes) else 0.0
    measures = part.getElementsByClass(stream.Measure)
    pickup = 0
    if len(measures) and measures[0].paddingLeft:
        pickup = int(round((bar_q - measures[0].paddingLeft) * 4)) % bar_steps
    elif len(measures) and measures[0].duration.quarterLength < bar_q:
        pickup = int(round(measures[0].duration.quarterLength * 4)) % bar_steps
    pickup = (pickup - int(round(first * 4))) % bar_steps if pickup else 0
    title = (score.metadata.title if score.metadata and score.metadata.title else "")
    title = title.replace("\t", " ").replace("\n", " ").strip() or "untitled"
    return title, bar_steps, pickup, events


def fingerprint(bar_steps, events):
    pitches = [e[0] for e in events if e[0] != "r"]
    base = pitches[0]
    norm = [(e[0] - base if e[0] != "r" else "r", e[1]) for e in events]
    return hashlib.sha256(repr((bar_steps, norm)).encode()).hexdigest()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--limit", type=int, default=0,
                    help="files per collection (0 = all); for quick tests")
    args = ap.parse_args()

    seen = set()
    skipped = {}
    kept = {}
    lines = []
    t0 = time.time()
    files = list(sources(args.limit))
    for i, (source, path) in enumerate(files):
        try:
            items = scores(source, path)
        except Exception as err:  # a malformed file in the corpus
            skipped["parse error"] = skipped.get("parse error", 0) + 1
            print(f"skip {path}: {err}", file=sys.stderr)
            continue
        for score in items:
            try:
                result = encode(source, score)
            except Exception as err:
                result = f"error {type(err).__name__}"
            if isinstance(result, str):
                skipped[result] = skipped.get(result, 0) + 1
                continue
            title, bar_steps, pickup, events = result
            key = fingerprint(bar_steps, events)
            if key in seen:
                skipped["duplicate"] = skipped.get("duplicate", 0) + 1
                continue
            seen.add(key)
            kept[source] = kept.get(source, 0) + 1
            text = " ".join(f"{p}:{d}" for p, d in events)
            lines.append(f"{source}\t{title}\t{bar_steps}\t{pickup}\t{text}\n")
        if (i + 1) % 25 == 0 or i + 1 == len(files):
            print(f"[{i + 1}/{len(files)}] files, {len(lines)} tunes, "
                  f"{time.time() - t0:.0f} s", file=sys.stderr, flush=True)

    with gzip.GzipFile(args.out, "wb", mtime=0) as f:
        f.write("".join(lines).encode())
    print("kept", kept, "skipped", skipped, file=sys.stderr)


if __name__ == "__main__":
    main()
