"""Render a demo music collection from real scores in music21's bundled corpus through the General MIDI
soundfont that ships with pretty_midi (TimGM6mb.sf2), with tinysoundfont. Writes audio files, tagged as a music
library's files are (title, artist = composer, album, genre; the drum loops are left untagged, as many files are),
and `ground_truth.parquet` (piece, composer, collection, instrument, tempo, key, meter, parts, duration, tags).

    python scripts/make_demo_corpus.py OUT_DIR [--limit N] [--max-seconds S]
"""
from __future__ import annotations

import argparse
import random
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SR = 22050
# setting → (GM program, description used in ground truth)
PROGRAMS = {
    "piano": 0, "harpsichord": 6, "organ": 19, "guitar": 24, "strings": 48, "choir": 52,
    "brass": 61, "clarinet": 71, "flute": 73,
}
FORMATS = ["flac", "flac", "flac", "ogg", "mp3"]
# music21 corpus folder → the composer's name as a file's artist tag gives it
COMPOSERS = {
    "bach": "Johann Sebastian Bach", "cpebach": "Carl Philipp Emanuel Bach", "corelli": "Arcangelo Corelli",
    "handel": "George Frideric Handel", "joplin": "Scott Joplin", "luca": "D. Luca",
    "mozart": "Wolfgang Amadeus Mozart",
    "schubert": "Franz Schubert", "verdi": "Giuseppe Verdi", "weber": "Carl Maria von Weber",
}


@dataclass
class Job:
    source: str  # music21 corpus path, or "drums:<pattern>"
    instrument: str
    bpm: float
    melody_only: bool = False


def jobs(rng: random.Random) -> list[Job]:
    from music21 import corpus

    out: list[Job] = []
    chorales = [str(p) for p in corpus.getComposer("bach") if p.suffix == ".mxl"][:200:5][:40]
    cycle = ["organ", "choir", "strings", "brass", "piano", "harpsichord", "guitar", "flute", "clarinet"]
    for i, path in enumerate(chorales):
        inst = cycle[i % len(cycle)]
        slow = (i // len(cycle)) % 2 == 0
        bpm = rng.uniform(56, 76) if slow else rng.uniform(112, 144)
        out.append(Job(path, inst, round(bpm), melody_only=inst in {"flute", "clarinet"}))
    quartets = [p for c in ("mozart", "haydn") for p in corpus.getComposer(c) if p.suffix == ".mxl"][:8]
    for i, p in enumerate(quartets):
        out.append(Job(str(p), "strings" if i % 2 == 0 else "piano", rng.choice([66, 84, 120, 138])))
    singles = [
        ("joplin", "piano", 92), ("schubert", "piano", 70), ("handel", "flute", 60), ("corelli", "strings", 72),
        ("cpebach", "harpsichord", 108), ("luca", "choir", 64), ("verdi", "brass", 126), ("weber", "clarinet", 116),
    ]
    for composer, inst, bpm in singles:
        paths = corpus.getComposer(composer)
        if paths:
            out.append(Job(str(paths[0]), inst, bpm))
    for pattern, bpm in [("rock", 84), ("rock", 132), ("disco", 118), ("shuffle", 96), ("halftime", 70),
                         ("fourfloor", 128)]:
        out.append(Job(f"drums:{pattern}", "drums", bpm))
    return out


def _score_events(job: Job, max_seconds: float):
    """(onset_s, offset_s, midi pitch, velocity) events plus score facts."""
    from music21 import converter, meter
    from music21 import key as m21key
    from music21 import tempo as m21tempo

    score = converter.parse(job.source)
    for mm in list(score.recurse().getElementsByClass(m21tempo.MetronomeMark)):
        mm.activeSite.remove(mm)
    score = score.stripTies()
    parts = list(score.parts) or [score]
    if job.melody_only:
        parts = parts[:1]
    spq = 60.0 / job.bpm
    events = []
    for vi, part in enumerate(parts):
        vel = 96 if vi == 0 else 78
        for n in part.flatten().notes:
            start = float(n.getOffsetInHierarchy(score)) * spq if n.activeSite is not None else float(n.offset) * spq
            dur = max(float(n.quarterLength) * spq, 0.05)
            for p in n.pitches:
                events.append((start, start + dur * 0.95, int(p.midi), vel))
    events.sort()
    ks = score.recurse().getElementsByClass(m21key.Key).first()
    if ks is None:
        ks = score.analyze("key")
    ts = score.recurse().getElementsByClass(meter.TimeSignature).first()
    meter_str = ts.ratioString if ts is not None else "4/4"
    end = max(e[1] for e in events)
    if end < 20:  # short pieces are played twice, like a repeat
        events = events + [(a + end + spq, b + end + spq, p, v) for a, b, p, v in events]
    events = [e for e in events if e[0] < max_seconds]
    meta = score.metadata
    title = (meta.title or meta.movementName or Path(job.source).stem) if meta else Path(job.source).stem
    composer = (meta.composer if meta and meta.composer else Path(job.source).parent.name)
    return events, {
        "piece": str(title), "composer": str(composer), "collection": Path(job.source).parent.name,
        "key": f"{ks.tonic.name} {ks.mode}", "meter": meter_str, "parts": len(parts),
    }


_DRUMS = {  # 16 steps of a 4/4 bar: (step, GM key, velocity)
    "rock": [(0, 36, 110), (8, 36, 100), (4, 38, 105), (12, 38, 105)] + [(s, 42, 70) for s in range(0, 16, 2)],
    "disco": [(s, 36, 110) for s in (0, 4, 8, 12)]
    + [(s, 46, 80) for s in (2, 6, 10, 14)]
    + [(4, 38, 95), (12, 38, 95)],
    "shuffle": [(0, 36, 110), (10, 36, 90), (4, 38, 100), (12, 38, 100)]
    + [(s, 42, 75) for s in (0, 3, 4, 7, 8, 11, 12, 15)],
    "halftime": [(0, 36, 110), (8, 38, 110)] + [(s, 42, 70) for s in range(0, 16, 2)],
    "fourfloor": [(s, 36, 115) for s in (0, 4, 8, 12)]
    + [(s, 42, 80) for s in (2, 6, 10, 14)]
    + [(4, 39, 90), (12, 39, 90)],
}


def _drum_events(job: Job, seconds: float = 40.0):
    pattern = _DRUMS[job.source.split(":", 1)[1]]
    step = 60.0 / job.bpm / 4
    bars = int(seconds / (16 * step)) + 1
    events = [
        (b * 16 * step + s * step, b * 16 * step + s * step + 0.1, k, v) for b in range(bars) for s, k, v in pattern
    ]
    events = [e for e in events if e[0] < seconds]
    return sorted(events), {
        "piece": f"{job.source.split(':')[1]} beat",
        "composer": "tunelens",
        "collection": "drums",
        "key": None,
        "meter": "4/4",
        "parts": 1,
    }


def file_tags(source: str, piece: str) -> dict[str, str]:
    """The tags a file of this source carries: none for a drum loop (untagged files exist in every library)."""
    if source.startswith("drums:"):
        return {}
    folder = source.split("/corpus/")[1].split("/")[0] if "/corpus/" in source else Path(source).parent.name
    artist = COMPOSERS.get(folder, folder.title())
    album = f"{artist.split()[-1]}: {Path(source).parent.name}"
    return {"title": piece.removesuffix(".mxl"), "artist": artist, "album": album, "genre": "Classical"}


def write_tags(path: Path, tags: dict[str, str]) -> None:
    import mutagen

    if not tags:
        return
    f = mutagen.File(str(path), easy=True)
    if f.tags is None:
        f.add_tags()
    for k, v in tags.items():
        f[k] = v
    f.save()


def render(events, program: int | None, soundfont: str) -> np.ndarray:
    import tinysoundfont

    synth = tinysoundfont.Synth(samplerate=SR)
    sfid = synth.sfload(soundfont)
    for ch in range(16):
        if program is None:
            synth.program_select(ch, sfid, 128, 0, True)
        else:
            synth.program_select(ch, sfid, 0, program)
    chan = 9 if program is None else 0
    changes = sorted([(a, 1, p, v) for a, b, p, v in events] + [(b, 0, p, 0) for a, b, p, v in events])
    out, now = [], 0
    for t, on, pitch, vel in changes:
        target = int(round(t * SR))
        if target > now:
            out.append(np.frombuffer(synth.generate(target - now), dtype=np.float32).copy())
            now = target
        if on:
            synth.noteon(chan, pitch, vel)
        else:
            synth.noteoff(chan, pitch)
    out.append(np.frombuffer(synth.generate(int(1.5 * SR)), dtype=np.float32).copy())  # release tail
    stereo = np.concatenate(out).reshape(-1, 2)
    mono = stereo.mean(axis=1)
    peak = float(np.abs(mono).max()) or 1.0
    return (mono * (0.5 / peak)).astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    import polars as pl
    import pretty_midi
    import soundfile as sf

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--limit", type=int, default=0, help="render only the first N tracks (for tests)")
    ap.add_argument("--max-seconds", type=float, default=180.0)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--soundfont", type=Path, help="render through this General MIDI soundfont instead of TimGM6mb "
                    "(the same pieces in another sound, e.g. to choose a setting without looking at the demo)")
    args = ap.parse_args(argv)
    soundfont = str(args.soundfont or Path(pretty_midi.__file__).parent / "TimGM6mb.sf2")
    if not Path(soundfont).is_file():
        ap.error(f"no soundfont at {soundfont}")
    rng = random.Random(args.seed)
    todo = jobs(rng)
    if args.limit:
        todo = todo[:: max(1, len(todo) // args.limit)][: args.limit]
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, job in enumerate(todo):
        try:
            if job.source.startswith("drums:"):
                events, facts = _drum_events(job, min(40.0, args.max_seconds))
                audio = render(events, None, soundfont)
            else:
                events, facts = _score_events(job, args.max_seconds)
                audio = render(events, PROGRAMS[job.instrument], soundfont)
        except Exception as e:  # a score music21 cannot read is left out, loudly
            print(f"skipped {job.source}: {e}", file=sys.stderr)
            continue
        fmt = FORMATS[i % len(FORMATS)]
        stem = job.source.split(":", 1)[1] if job.source.startswith("drums:") else Path(job.source).stem
        name = f"{i:03d}_{job.instrument}_{stem}.{fmt}"
        folder = args.out / job.instrument
        folder.mkdir(exist_ok=True)
        with sf.SoundFile(folder / name, "w", SR, 1, format=fmt.upper()) as out:
            for start in range(0, len(audio), SR):  # libsndfile's Vorbis encoder crashes on large single writes
                out.write(audio[start : start + SR])
        tags = file_tags(job.source, facts["piece"])
        write_tags(folder / name, tags)
        num, den = (int(x) for x in facts["meter"].split("/"))
        compound = den == 8 and num % 3 == 0  # the beat is a dotted quarter
        beat_bpm = job.bpm * (2 / 3 if compound else 0.5 if den == 2 else 1.0)
        rows.append(
            {
                "file": f"{job.instrument}/{name}",
                **facts,
                "instrument": job.instrument,
                "melody_only": job.melody_only,
                "quarter_bpm": float(job.bpm),
                "tempo_bpm": float(beat_bpm),
                "tempo_class": "slow" if beat_bpm < 90 else "fast",
                "duration": len(audio) / SR,
                "source": job.source,
                **{f"tag_{k}": tags.get(k) for k in ("artist", "album", "genre")},
            }
        )
        print(f"[{i + 1}/{len(todo)}] {rows[-1]['file']}  {rows[-1]['duration']:.0f}s  {job.bpm} bpm", flush=True)
    pl.DataFrame(rows).write_parquet(args.out / "ground_truth.parquet")
    print(f"wrote {len(rows)} tracks to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
