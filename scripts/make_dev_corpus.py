"""Render the development corpus: music21 scores played through several soundfonts by 36 instrument classes, as
solos and as mixtures of 2-4 instruments, with expressive rendering, rooms and mixed formats, and a
`ground_truth.parquet` labelling every instrument heard, the tempo, metre, key and mode. It is not the demo
corpus: train and tune on some soundfonts, report the one left out.

    python scripts/make_dev_corpus.py OUT [--soundfonts timgm6mb,musescore,csound,opl3] [--clips 300]
                                          [--seconds 20] [--seed 0]

Each soundfont gets its own independent draw of arrangements (pieces, instruments, tempi, transpositions), so
a left-out soundfont shares no arrangement with the ones trained on. Clips already on disk are kept: a killed run
continues where it stopped, and the same arguments give the same files.

Beat convention (`tempo_bpm`): beats per minute of the metre's beat: the quarter note in x/4, the dotted
quarter in compound x/8 (6/8, 9/8, 12/8), the half note in x/2; `quarter_bpm` is the quarter-note rate.

Soundfonts and their licences (`ground_truth.soundfont_licence`; `permissive` says whether audio rendered from
it may train weights for the default, permissively licensed path):
  timgm6mb   pretty_midi's TimGM6mb.sf2, GPL-2.0 (not permissive: evaluation only)
  musescore  Debian musescore-general-soundfont-lossless, MIT (parts PD/CC0); derived from the Fluid GM
             soundfonts, a family reserved for the external evaluation, so its left-out figures are not
             independent of it
  csound     Debian csound-soundfont's sf_GMbank.sf2, public domain
  opl3       Debian opl3-soundfont's OPL-3_FM_128M.sf2, CC-BY-SA-4.0 (share-alike: evaluation only)
  fm         tunelens's own FM voices (`fm_soundfont.py`, built into the cache folder on first use), MIT
The reserved Fluid soundfonts themselves are refused.
"""
from __future__ import annotations

import argparse
import json
import math
import random
import sys
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

SR = 22050
RESERVED = ("fluid",)  # the Fluid GM family is reserved for the external evaluation: never rendered here


@dataclass(frozen=True)
class Soundfont:
    name: str
    candidates: tuple[str, ...]  # where it is installed
    licence: str
    permissive: bool


def _timgm6mb() -> str:
    import pretty_midi

    return str(Path(pretty_midi.__file__).parent / "TimGM6mb.sf2")


SOUNDFONTS = {
    "timgm6mb": Soundfont("timgm6mb", ("pretty_midi",), "GPL-2.0", False),
    "musescore": Soundfont("musescore", ("/usr/share/sounds/sf2/MuseScore_General_Full.sf2",
                                         "/usr/share/sounds/sf2/MuseScore_General.sf2"), "MIT", True),
    "csound": Soundfont("csound", ("/usr/share/sounds/sf2/sf_GMbank.sf2", "/usr/share/samples/sf_GMbank.sf2"),
                        "public-domain", True),
    "opl3": Soundfont("opl3", ("/usr/share/sounds/sf2/OPL-3_FM_128M.sf2",), "CC-BY-SA-4.0", False),
    "fm": Soundfont("fm", ("fm_soundfont.py",), "MIT", True),  # this project's own, built on first use
}
DEBIAN_PACKAGE = {"musescore": "musescore-general-soundfont-lossless", "csound": "csound-soundfont",
                  "opl3": "opl3-soundfont"}


def _fm() -> str:
    """tunelens's own FM soundfont (`fm_soundfont.py`), built into the cache folder the first time it is asked for."""
    import fm_soundfont  # a sibling script, imported by name

    from tunelens.embed.base import cache_dir

    path = cache_dir() / "soundfonts" / f"tunelens-fm-{fm_soundfont.VERSION}.sf2"
    if not path.is_file():
        print(f"building the FM soundfont into {path}", file=sys.stderr)
        fm_soundfont.build(path)
    return str(path)


def soundfont_path(name: str) -> str:
    """The installed file of a soundfont, or a sentence saying how to install it."""
    sf = SOUNDFONTS[name]
    for c in sf.candidates:
        built = {"pretty_midi": _timgm6mb, "fm_soundfont.py": _fm}.get(c)
        path = built() if built else c
        if Path(path).is_file():
            if any(r in Path(path).name.lower() for r in RESERVED):
                raise ValueError(f"{path} belongs to the Fluid soundfont family, reserved for the external evaluation")
            return path
    raise FileNotFoundError(f"the {name} soundfont is not installed: apt-get install {DEBIAN_PACKAGE.get(name, name)}")


@dataclass(frozen=True)
class Instrument:
    programs: tuple[int, ...]  # General MIDI programs (0-based) that play it; one is drawn per clip
    low: int  # playable MIDI range: parts are moved by octaves to sit inside it
    high: int
    family: str
    vibrato: float = 0.0  # depth in semitones for sustained notes (bowed, blown, sung)
    polyphonic: bool = False  # may play a whole chorale texture alone


# 36 classes: every instrument a listener names that General MIDI renders, the 14 the musicnn tags lack included
INSTRUMENTS = {
    "piano": Instrument((0, 1), 21, 108, "keyboard", polyphonic=True),
    "electric piano": Instrument((4, 5), 28, 103, "keyboard", polyphonic=True),
    "harpsichord": Instrument((6,), 29, 89, "keyboard", polyphonic=True),
    "church organ": Instrument((19, 20), 24, 96, "keyboard", polyphonic=True),
    "accordion": Instrument((21,), 41, 93, "free reed", polyphonic=True),
    "harmonica": Instrument((22,), 60, 96, "free reed", 0.15),
    "acoustic guitar": Instrument((24, 25), 40, 84, "guitar", polyphonic=True),
    "electric guitar": Instrument((26, 27), 40, 86, "guitar", polyphonic=True),
    "distorted guitar": Instrument((29, 30), 40, 86, "guitar"),
    "electric bass": Instrument((33, 34), 28, 60, "bass"),
    "double bass": Instrument((32, 43), 28, 67, "bowed strings", 0.12),
    "violin": Instrument((40,), 55, 100, "bowed strings", 0.2),
    "viola": Instrument((41,), 48, 88, "bowed strings", 0.18),
    "cello": Instrument((42,), 36, 76, "bowed strings", 0.18),
    "harp": Instrument((46,), 24, 103, "plucked", polyphonic=True),
    "timpani": Instrument((47,), 38, 57, "percussion"),
    "string ensemble": Instrument((48, 49), 28, 100, "bowed strings", polyphonic=True),
    "choir": Instrument((52, 53), 40, 81, "voice", 0.15, polyphonic=True),
    "trumpet": Instrument((56,), 54, 84, "brass", 0.08),
    "trombone": Instrument((57,), 40, 72, "brass", 0.06),
    "tuba": Instrument((58,), 28, 58, "brass"),
    "french horn": Instrument((60,), 34, 77, "brass", 0.05),
    "brass section": Instrument((61,), 34, 84, "brass", polyphonic=True),
    "saxophone": Instrument((64, 65, 66), 44, 80, "reed", 0.2),
    "oboe": Instrument((68,), 58, 91, "reed", 0.15),
    "bassoon": Instrument((70,), 34, 75, "reed", 0.08),
    "clarinet": Instrument((71,), 50, 91, "reed"),
    "flute": Instrument((73,), 60, 96, "flute", 0.15),
    "glockenspiel": Instrument((9,), 79, 108, "mallets"),
    "vibraphone": Instrument((11,), 53, 89, "mallets", polyphonic=True),
    "marimba": Instrument((12,), 45, 96, "mallets", polyphonic=True),
    "xylophone": Instrument((13,), 65, 108, "mallets"),
    "banjo": Instrument((105,), 48, 84, "plucked", polyphonic=True),
    "synth lead": Instrument((80, 81), 48, 96, "synth", 0.1),
    "synth pad": Instrument((88, 89), 36, 96, "synth", polyphonic=True),
    "drum kit": Instrument((), 35, 81, "percussion"),
}
ENSEMBLES = {  # mixtures people know, one instrument per chorale voice (soprano first); drums may join a band
    "string quartet": ("violin", "violin", "viola", "cello"),
    "brass quartet": ("trumpet", "trumpet", "french horn", "tuba"),
    "trombone choir": ("trumpet", "french horn", "trombone", "tuba"),
    "woodwind quartet": ("flute", "oboe", "clarinet", "bassoon"),
    "band": ("distorted guitar", "electric guitar", "electric bass", "drum kit"),
    "jazz combo": ("saxophone", "piano", "double bass", "drum kit"),
    "folk trio": ("banjo", "acoustic guitar", "double bass"),
    "organ and trumpet": ("trumpet", "church organ"),
    "mallet duo": ("vibraphone", "marimba"),
    "synth band": ("synth lead", "synth pad", "electric bass", "drum kit"),
    "chamber duo": ("violin", "harpsichord"),
    "choir and organ": ("choir", "church organ"),
}
DRUM_PATTERNS = {  # 16 steps of a 4/4 bar: (step, GM key, velocity)
    "rock": [(0, 36, 110), (8, 36, 100), (4, 38, 105), (12, 38, 105)] + [(s, 42, 70) for s in range(0, 16, 2)],
    "swing": [(0, 36, 90), (8, 36, 80)] + [(s, 51, 75) for s in (0, 4, 6, 8, 12, 14)] + [(4, 44, 60), (12, 44, 60)],
    "fourfloor": [(s, 36, 115) for s in (0, 4, 8, 12)] + [(s, 42, 80) for s in (2, 6, 10, 14)] + [(4, 39, 90)],
    "halftime": [(0, 36, 110), (8, 38, 110)] + [(s, 42, 70) for s in range(0, 16, 2)],
}
FORMATS = ("flac", "flac", "wav", "ogg", "mp3")
ROOMS = {"dry": 0.0, "room": 0.35, "hall": 1.6}  # reverb time (s) of a synthetic exponential-decay impulse response


@dataclass
class Clip:
    """One arrangement to render: what plays, how, and what the ground truth says of it."""

    index: int
    soundfont: str
    source: str  # music21 corpus path
    kind: str  # solo | mixture
    ensemble: str | None
    parts: list[tuple[str, int]]  # (instrument, GM program) per voice, soprano first
    quarter_bpm: float
    transpose: int
    articulation: str  # staccato | normal | legato
    dynamics: str  # flat | swell | terraced
    room: str
    fmt: str
    drums: str | None = None
    labels: list[str] = field(default_factory=list)  # every instrument heard, sorted, once each


def plan(soundfont: str, clips: int, seed: int, sources: list[str]) -> list[Clip]:
    """The clips of one soundfont, drawn independently of every other soundfont's."""
    rng = random.Random(f"{seed}:{soundfont}")
    names = list(INSTRUMENTS)  # a drum kit solo is a groove on its own (no key)
    out = []
    for i in range(clips):
        source = rng.choice(sources)
        if rng.random() < 0.4:
            ensemble = rng.choice(sorted(ENSEMBLES))
            members = list(ENSEMBLES[ensemble])
            if rng.random() < 0.3 and len(members) > 2:  # a section of it: 2-3 of the voices
                members = members[: rng.choice((2, 3))]
            kind = "mixture"
        else:
            inst = names[i % len(names)]  # every class gets its share of solos
            members, ensemble, kind = [inst], None, "solo"
        drums = rng.choice(sorted(DRUM_PATTERNS)) if "drum kit" in members else None
        parts = [(m, rng.choice(INSTRUMENTS[m].programs) if INSTRUMENTS[m].programs else -1) for m in members]
        out.append(Clip(
            index=i, soundfont=soundfont, source=source, kind=kind, ensemble=ensemble, parts=parts,
            quarter_bpm=float(rng.choice((rng.uniform(52, 80), rng.uniform(84, 118), rng.uniform(120, 168)))),
            transpose=rng.randint(-5, 6), articulation=rng.choice(("staccato", "normal", "normal", "legato")),
            dynamics=rng.choice(("flat", "swell", "terraced")), room=rng.choice(sorted(ROOMS)),
            fmt=FORMATS[i % len(FORMATS)], drums=drums, labels=sorted(set(members)),
        ))
    return out


def score_sources(n: int = 120) -> list[str]:
    """Four-voice Bach chorales (soprano, alto, tenor, bass; every fourth of the corpus's .mxl files), and for
    other textures the opening of string quartets, rags and keyboard pieces (their first four parts)."""
    from music21 import corpus

    chorales = [str(p) for p in corpus.getComposer("bach") if p.suffix == ".mxl"][::4][:n]
    others = [str(p) for c in ("haydn", "mozart", "joplin", "corelli")  # short files: a Beethoven quartet
              for p in sorted(corpus.getComposer(c))[:2]]    # takes minutes to parse
    return chorales + others


@lru_cache(maxsize=64)
def score_voices(source: str) -> tuple[list[list[tuple[float, float, int]]], str, str, float]:
    """(voices as (onset, length, pitch) in quarter notes, key "G major", metre "4/4", length in quarters)."""
    from music21 import converter, meter
    from music21 import key as m21key

    score = converter.parse(source).stripTies()
    voices = []
    for part in list(score.parts)[:4]:
        notes = []
        for n in part.flatten().notes:
            onset = float(n.getOffsetInHierarchy(score))
            for p in n.pitches:
                notes.append((onset, max(float(n.quarterLength), 0.125), int(p.midi)))
        if notes:
            voices.append(sorted(notes))
    ks = score.recurse().getElementsByClass(m21key.Key).first() or score.analyze("key")
    ts = score.recurse().getElementsByClass(meter.TimeSignature).first()
    end = max(a + d for v in voices for a, d, _ in v)
    return voices, f"{ks.tonic.name} {ks.mode}", ts.ratioString if ts is not None else "4/4", end


PITCH_CLASSES = ["C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"]


def transposed_key(key: str, semitones: int) -> str:
    tonic, mode = key.split()
    from music21 import pitch

    return f"{PITCH_CLASSES[(pitch.Pitch(tonic).pitchClass + semitones) % 12]} {mode}"


def beat_bpm(quarter_bpm: float, metre: str) -> float:
    num, den = (int(x) for x in metre.split("/"))
    if den == 8 and num % 3 == 0:
        return quarter_bpm * 2 / 3  # compound metre: the beat is a dotted quarter
    return quarter_bpm * (0.5 if den == 2 else 1.0)


def _fit_octave(notes: list[tuple[float, float, int]], inst: Instrument) -> int:
    """Octaves to move a voice so that its median pitch sits inside the instrument's range."""
    median = float(np.median([p for _, _, p in notes]))
    target = (inst.low + inst.high) / 2
    shift = round((target - median) / 12)
    lo, hi = min(p for _, _, p in notes), max(p for _, _, p in notes)
    while hi + 12 * shift > inst.high + 6 and lo + 12 * (shift - 1) >= inst.low - 6:
        shift -= 1
    while lo + 12 * shift < inst.low - 6 and hi + 12 * (shift + 1) <= inst.high + 6:
        shift += 1
    return 12 * shift


def events_for(clip: Clip, seconds: float, rng: random.Random) -> tuple[list, dict]:
    """Note events (onset s, offset s, pitch, velocity, channel, vibrato depth) and the score facts."""
    voices, key, metre, end_q = score_voices(clip.source)
    spq = 60.0 / clip.quarter_bpm
    hold = {"staccato": 0.5, "normal": 0.9, "legato": 1.03}[clip.articulation]
    pitched = [(n, prog) for n, prog in clip.parts if n != "drum kit"]
    if not pitched:
        layout = []
    elif len(pitched) == 1 and INSTRUMENTS[pitched[0][0]].polyphonic and rng.random() < 0.6:
        layout = [(pitched[0], v) for v in range(len(voices))]  # one keyboard, guitar, choir... plays all voices
    elif len(pitched) == 1:
        layout = [(pitched[0], 0)]  # a melody instrument plays the soprano line
    else:
        layout = [(p, min(i, len(voices) - 1) if i < len(pitched) - 1 else len(voices) - 1)
                  for i, p in enumerate(pitched)]  # the lowest instrument takes the bass line
    events = []
    start_q = math.floor(min((voices[v][0][0] for _, v in layout), default=0))  # skip an introduction's rests
    period_q = end_q - start_q
    repeats = max(1, math.ceil(seconds / (period_q * spq)))
    shifts: dict[str, int] = {}  # one octave shift per instrument, so that voices it plays together keep their order
    for name in {n for (n, _), _ in layout}:
        played = [(a, d, p + clip.transpose) for (n, _), v in layout if n == name for a, d, p in voices[v]]
        shifts[name] = clip.transpose + _fit_octave(played, INSTRUMENTS[name])
    for ch, ((name, _), v) in enumerate(layout):
        inst = INSTRUMENTS[name]
        notes = voices[v]
        shift = shifts[name]
        for r in range(repeats):
            for a, d, p in notes:
                if a < start_q:
                    continue
                t0 = (a - start_q + r * period_q) * spq
                if t0 >= seconds:
                    continue
                phrase = (a - start_q + r * period_q) / 16.0
                vel = {"flat": 84, "swell": 70 + 30 * math.sin(math.pi * (phrase % 1.0)),
                       "terraced": 100 if int(phrase) % 2 == 0 else 64}[clip.dynamics]
                vel = int(np.clip(vel + (8 if v == 0 else 0) + rng.gauss(0, 6), 20, 127))
                long_note = d * spq >= 0.4
                events.append((t0, t0 + max(d * spq * hold, 0.06), p + shift, vel, ch,
                               inst.vibrato if long_note else 0.0))
    if clip.drums:
        step = 60.0 / clip.quarter_bpm / 4
        bars = int(seconds / (16 * step)) + 1
        for b in range(bars):
            for s, k, vel in DRUM_PATTERNS[clip.drums]:
                t0 = (b * 16 + s) * step
                if t0 < seconds:
                    events.append((t0, t0 + 0.1, k, int(np.clip(vel + rng.gauss(0, 5), 20, 127)), 9, 0.0))
    if not events:
        raise ValueError(f"nothing sounds in the first {seconds:g} s of the parts chosen")
    programs = {ch: prog for ch, ((_, prog), _) in enumerate(layout)}
    return sorted(events), {"key": transposed_key(key, clip.transpose) if layout else None,
                            "meter": metre if layout else "4/4", "programs": programs,
                            "voices_played": len(layout)}


@lru_cache(maxsize=1)
def _synth(soundfont: str):
    import tinysoundfont

    synth = tinysoundfont.Synth(samplerate=SR)
    return synth, synth.sfload(soundfont)


def render(events: list, programs: dict[int, int], soundfont: str, seconds: float) -> np.ndarray:
    """Mono audio of the events through `soundfont`: vibrato as pitch bends every 10 ms on sustained notes."""
    synth, sfid = _synth(soundfont)
    synth.sounds_off()  # the synth is reused across clips (loading a large soundfont takes seconds): start silent
    for ch in range(16):
        synth.pitchbend(ch, 8192)
    for ch, prog in programs.items():
        synth.program_select(ch, sfid, 0, prog)
        synth.pitchbend_range(ch, 2.0)
    synth.program_select(9, sfid, 128, 0, True)
    # (time, on, pitch, velocity, channel, vibrato depth for an onset / the note's onset for a release)
    changes = sorted([(a, 1, p, v, ch, vib) for a, b, p, v, ch, vib in events]
                     + [(b, 0, p, 0, ch, a) for a, b, p, v, ch, vib in events], key=lambda e: (e[0], e[1]))
    out, now = [], 0
    vibrato: dict[int, tuple[float, float, float]] = {}  # channel → (depth, rate Hz, start s)
    grid = int(0.01 * SR)

    def advance(to: int) -> None:
        nonlocal now
        while now < to:
            n = min(grid, to - now) if vibrato else to - now
            for ch, (depth, rate, start) in vibrato.items():
                t = now / SR - start
                bend = depth * min(1.0, t / 0.3) * math.sin(2 * math.pi * rate * t)  # vibrato fades in
                synth.pitchbend(ch, int(8192 + 8191 * bend / 2.0))
            out.append(np.frombuffer(synth.generate(n), dtype=np.float32).copy())
            now += n

    for t, on, pitch, vel, ch, extra in changes:
        advance(int(round(t * SR)))
        if on:
            synth.noteon(ch, pitch, vel)
            if extra > 0:
                vibrato[ch] = (extra, 5.0 + (ch % 3) * 0.4, t)
        else:
            synth.noteoff(ch, pitch)
            if ch in vibrato and vibrato[ch][2] <= extra:  # no later note on this channel took the vibrato over
                vibrato.pop(ch)
                synth.pitchbend(ch, 8192)
    advance(int(round((min(seconds, changes[-1][0]) + 1.5) * SR)))  # release tail
    return np.concatenate(out).reshape(-1, 2).mean(axis=1)


def room(audio: np.ndarray, rt60: float, rng: random.Random) -> np.ndarray:
    """`audio` in a synthetic room: exponentially decaying noise as the impulse response, mixed with the dry sound."""
    if rt60 <= 0:
        return audio
    n = int(rt60 * SR)
    noise = np.random.default_rng(rng.randrange(2**32)).standard_normal(n)
    ir = noise * np.exp(-6.9 * np.arange(n) / n)  # -60 dB at rt60
    ir /= np.sqrt(np.sum(ir**2))
    from scipy.signal import fftconvolve

    wet = fftconvolve(audio, ir)[: len(audio)]
    return 0.75 * audio + 0.35 * wet


def write_audio(path: Path, audio: np.ndarray, fmt: str) -> None:
    import soundfile as sf

    from tunelens.index.core.atomic import atomic_write

    def write(tmp: Path) -> None:
        with sf.SoundFile(tmp, "w", SR, 1, format=fmt.upper()) as f:
            for start in range(0, len(audio), SR):  # libsndfile's Vorbis encoder crashes on large single writes
                f.write(audio[start:start + SR])

    atomic_write(path, write)


def clip_path(out: Path, clip: Clip) -> Path:
    names = "+".join(n.replace(" ", "-") for n in clip.labels)
    return out / clip.soundfont / clip.kind / f"{clip.index:05d}_{names}.{clip.fmt}"


def main(argv: list[str] | None = None) -> int:
    import polars as pl

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--soundfonts", default="timgm6mb,musescore,csound,opl3",
                    help="comma-separated: " + ", ".join(SOUNDFONTS))
    ap.add_argument("--clips", type=int, default=300, help="clips per soundfont")
    ap.add_argument("--seconds", type=float, default=20.0, help="length of each clip (before the release tail)")
    ap.add_argument("--pieces", type=int, default=120, help="chorales drawn from (beside 8 other pieces)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    names = [s.strip() for s in args.soundfonts.split(",") if s.strip()]
    unknown = [n for n in names if n not in SOUNDFONTS]
    if unknown:
        print(f"unknown soundfont {unknown[0]!r}; use {', '.join(SOUNDFONTS)}", file=sys.stderr)
        return 2
    try:
        paths = {n: soundfont_path(n) for n in names}
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    sources = score_sources(args.pieces)
    rows, failed = [], 0
    total = len(names) * args.clips
    for name in names:
        for clip in plan(name, args.clips, args.seed, sources):
            rng = random.Random(f"{args.seed}:{name}:{clip.index}:render")
            path = clip_path(args.out, clip)
            try:
                events, facts = events_for(clip, args.seconds, rng)
                if not path.exists():
                    audio = render(events, facts["programs"], paths[name], args.seconds)
                    audio = room(audio, ROOMS[clip.room], rng)
                    peak = float(np.abs(audio).max()) or 1.0
                    audio = (audio * (10 ** (rng.uniform(-12, -1) / 20) / peak)).astype(np.float32)
                    path.parent.mkdir(parents=True, exist_ok=True)
                    write_audio(path, audio, clip.fmt)
            except Exception as e:  # a score music21 cannot read, or a preset a soundfont lacks: left out, loudly
                print(f"skipped {path.name}: {e}", file=sys.stderr)
                failed += 1
                continue
            sf = SOUNDFONTS[name]
            rows.append({
                "file": str(path.relative_to(args.out)), "soundfont": name, "soundfont_licence": sf.licence,
                "permissive": sf.permissive, "kind": clip.kind, "ensemble": clip.ensemble,
                "instruments": clip.labels, "families": sorted({INSTRUMENTS[n].family for n in clip.labels}),
                "n_instruments": len(clip.labels), "programs": [p for _, p in clip.parts],
                "piece": Path(clip.source).stem, "source": Path(clip.source).name, "meter": facts["meter"],
                "quarter_bpm": round(clip.quarter_bpm, 2),
                "tempo_bpm": round(beat_bpm(clip.quarter_bpm, facts["meter"]), 2),
                "key": facts["key"], "mode": facts["key"].split()[1] if facts["key"] else None,
                "transpose": clip.transpose,
                "articulation": clip.articulation, "dynamics": clip.dynamics, "room": clip.room, "format": clip.fmt,
                "drums": clip.drums, "voices_played": facts["voices_played"],
            })
            if len(rows) % 25 == 0:
                print(f"{len(rows) + failed}/{total} clips", file=sys.stderr, flush=True)
    from tunelens.index.core.atomic import atomic_write

    gt = pl.DataFrame(rows)
    atomic_write(args.out / "ground_truth.parquet", gt.write_parquet)
    recipe = {"argv": sys.argv[1:] if argv is None else argv,
              "soundfonts": {n: {**asdict(SOUNDFONTS[n]), "file": paths[n]} for n in names},
              "instruments": {n: asdict(i) for n, i in INSTRUMENTS.items()}, "ensembles": ENSEMBLES,
              "clips": len(rows), "skipped": failed}
    (args.out / "recipe.json").write_text(json.dumps(recipe, indent=1))
    print(f"{len(rows)} clips in {args.out} ({failed} skipped); ground truth in ground_truth.parquet", file=sys.stderr)
    return 0 if rows else 1


if __name__ == "__main__":
    sys.exit(main())
