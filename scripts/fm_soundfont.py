"""Build tunelens's own FM soundfont: General MIDI voices made by frequency modulation, written as an SF2 file.

    python scripts/fm_soundfont.py OUT.sf2

Why: the development corpus's sampled soundfonts teach the instrument recogniser what recorded instruments sound
like, but music also reaches it through synthesisers, and the only FM soundfont installed here (OPL3) is
share-alike, so its renders may evaluate but never train weights that ship. This file is made from nothing but
the patch table below (operator ratios, modulation indices and envelopes written here from the textbook FM
recipes: Chowning's brass and voice, the DX-style electric piano and bells), so its renders are this project's own
(MIT) and may train. `make_dev_corpus.py --soundfonts fm` builds it on first use.

Each voice is one or more carrier-modulator pairs (a modulator may itself be modulated, which gives the
sawtooth-like spectra of feedback FM without a sample-by-sample loop); the modulation index follows its own
decay or the amplitude (brass brighten as they swell). A voice is rendered at a root every 6 semitones from
C1 to C9, tuned so that one period is a whole number of samples, so that sustained voices loop without a click.
Drums (bank 128) are one sample per key: kick and toms as falling sines, snare and hand claps as noise with a
tone, cymbals and hi-hats as inharmonic FM. The same command always writes the same bytes.
"""
from __future__ import annotations

import argparse
import math
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tunelens.index.core.atomic import atomic_write

SR = 22050
ROOTS = range(24, 121, 6)  # a sample every 6 semitones: a note is at most 3 semitones from its sample
VERSION = "fm1"  # bump when a patch or the writer changes: it names the built file, which recipe.json records


@dataclass(frozen=True)
class Pair:
    """A carrier at `ratio` x f0, modulated by an operator at `mod` x f0 with index `index` (radians)."""

    ratio: float
    level: float = 1.0
    mod: float = 1.0
    index: float = 1.0  # peak index
    index_sus: float | None = None  # the index it decays to (None: the peak throughout)
    index_decay: float = 0.3  # s, time constant of that decay
    follows_amp: bool = False  # the index tracks the amplitude envelope (brass)
    stack: float = 0.0  # index of a second modulator (at `stack_ratio` x f0) on the modulator
    stack_ratio: float = 1.0
    formant: float = 0.0  # Hz: the carrier sits at the harmonic nearest it (sung vowels), `ratio` ignored


@dataclass(frozen=True)
class Voice:
    pairs: tuple[Pair, ...]
    attack: float = 0.01  # s
    decay: float = 1.0  # s, time constant of the amplitude decay toward `sustain`
    sustain: float = 0.0  # level held while the key is down (0: percussive, the sample rings out)
    release: float = 0.2  # s
    key_scaling: float = 0.3  # decay times scale by (261.6 / f0) ** key_scaling: high notes die sooner
    drive: float = 0.0  # tanh saturation (distorted guitar)
    tremolo: float = 0.0  # depth of a 5.5 Hz amplitude tremolo (vibraphone)
    breath: float = 0.0  # level of a noise burst in the attack (flute, pipe organ chiff)
    detune_cents: float = 0.0  # a second, slightly sharp copy (ensembles, pads): not looped cleanly, so small


def _pluck(mod: float, index: float, decay: float, **kw) -> Pair:
    return Pair(1, mod=mod, index=index, index_sus=0.2, index_decay=decay, **kw)


BRASS = dict(follows_amp=True)
PATCHES: dict[int, Voice] = {
    0: Voice((Pair(1, mod=1, index=2.2, index_sus=0.4, index_decay=0.5), Pair(1, 0.25, mod=14, index=1.2,
              index_sus=0.0, index_decay=0.02)), decay=1.4, release=0.25),  # acoustic grand
    1: Voice((Pair(1, mod=1, index=2.8, index_sus=0.6, index_decay=0.4), Pair(2, 0.2, mod=1, index=0.8)),
             decay=1.2, release=0.25),  # bright piano
    4: Voice((Pair(1, mod=1, index=0.7), Pair(1, 0.5, mod=14, index=2.0, index_sus=0.0, index_decay=0.05)),
             decay=1.8, release=0.3),  # DX-style electric piano
    5: Voice((Pair(1, mod=1, index=1.4, index_sus=0.5, index_decay=0.3), Pair(2, 0.3, mod=1, index=0.5)),
             decay=1.6, release=0.3),  # chorused electric piano
    6: Voice((Pair(1, mod=3, index=3.5, index_sus=1.5, index_decay=0.15), Pair(1, 0.6, mod=1, index=2.5)),
             decay=0.8, release=0.1, key_scaling=0.5),  # harpsichord
    9: Voice((Pair(1, mod=3.5, index=2.0, index_sus=0.3, index_decay=0.1), Pair(2.76, 0.4, mod=1, index=0.5)),
             decay=0.9, release=0.6, key_scaling=0.2),  # glockenspiel
    11: Voice((Pair(1, mod=4, index=1.6, index_sus=0.0, index_decay=0.04), Pair(4, 0.15, mod=1, index=0.2)),
              decay=1.8, release=0.4, tremolo=0.35, key_scaling=0.2),  # vibraphone
    12: Voice((Pair(1, mod=4, index=1.2, index_sus=0.0, index_decay=0.02), Pair(3.9, 0.2, mod=1, index=0.0)),
              decay=0.35, release=0.1, key_scaling=0.4),  # marimba
    13: Voice((Pair(1, mod=3, index=2.5, index_sus=0.0, index_decay=0.02), Pair(3.0, 0.3, mod=1, index=0.3)),
              decay=0.2, release=0.08, key_scaling=0.3),  # xylophone
    19: Voice((Pair(1, mod=1, index=0.3), Pair(2, 0.7, mod=1, index=0.2), Pair(0.5, 0.6, mod=1, index=0.1),
               Pair(4, 0.35, mod=1, index=0.1), Pair(3, 0.25, mod=1, index=0.0)),
              attack=0.04, sustain=1.0, release=0.35, breath=0.05),  # church organ
    20: Voice((Pair(1, mod=1, index=0.5), Pair(2, 0.5, mod=1, index=0.3), Pair(4, 0.3, mod=1, index=0.2)),
              attack=0.05, sustain=1.0, release=0.3, breath=0.08),  # reed organ
    21: Voice((Pair(1, mod=1, index=1.8, stack=1.0), Pair(1, 0.6, mod=2, index=1.0)),
              attack=0.04, sustain=1.0, release=0.1, detune_cents=6),  # accordion
    22: Voice((Pair(1, mod=1, index=2.2, stack=0.8, stack_ratio=2), Pair(2, 0.3, mod=1, index=0.5)),
              attack=0.03, sustain=0.9, decay=0.3, release=0.08, breath=0.06),  # harmonica
    24: Voice((_pluck(1, 3.0, 0.08), Pair(3, 0.2, mod=1, index=0.8, index_sus=0.0, index_decay=0.05)),
              decay=1.0, release=0.2),  # nylon guitar
    25: Voice((_pluck(1, 4.0, 0.15, stack=0.6), Pair(2, 0.3, mod=3, index=1.0, index_sus=0.1, index_decay=0.1)),
              decay=1.2, release=0.2),  # steel guitar
    26: Voice((Pair(1, mod=1, index=1.6, index_sus=0.7, index_decay=0.4), Pair(1, 0.4, mod=3, index=0.6)),
              decay=2.0, release=0.2),  # jazz guitar
    27: Voice((Pair(1, mod=1, index=2.2, index_sus=1.0, index_decay=0.3), Pair(3, 0.25, mod=1, index=0.5)),
              decay=2.2, release=0.15),  # clean electric guitar
    29: Voice((Pair(1, mod=1, index=3.0, stack=1.5),), decay=0.8, sustain=0.45, release=0.12,
              drive=6.0),  # overdriven guitar
    30: Voice((Pair(1, mod=1, index=4.0, stack=2.0), Pair(0.5, 0.6, mod=1, index=1.0)), decay=0.6, sustain=0.55,
              release=0.12, drive=12.0),  # distortion guitar
    32: Voice((_pluck(1, 1.5, 0.1),), decay=0.9, release=0.15, key_scaling=0.1),  # acoustic (upright) bass
    33: Voice((Pair(1, mod=1, index=1.8, index_sus=0.8, index_decay=0.2),), decay=1.5, release=0.1,
              key_scaling=0.1),  # finger bass
    34: Voice((Pair(1, mod=1, index=3.0, index_sus=1.0, index_decay=0.08, stack=0.5),), decay=1.2, release=0.08,
              key_scaling=0.1),  # picked bass
    40: Voice((Pair(1, mod=1, index=2.6, stack=1.2, follows_amp=True), Pair(3, 0.15, mod=1, index=0.5)),
              attack=0.08, sustain=1.0, release=0.2),  # violin
    41: Voice((Pair(1, mod=1, index=2.3, stack=1.0, follows_amp=True), Pair(2, 0.25, mod=1, index=0.4)),
              attack=0.09, sustain=1.0, release=0.22),  # viola
    42: Voice((Pair(1, mod=1, index=2.0, stack=1.1, follows_amp=True), Pair(2, 0.3, mod=1, index=0.6)),
              attack=0.1, sustain=1.0, release=0.25),  # cello
    43: Voice((Pair(1, mod=1, index=1.8, stack=0.9, follows_amp=True),), attack=0.12, sustain=1.0,
              release=0.3),  # contrabass
    46: Voice((_pluck(2, 1.0, 0.1), Pair(1, 0.8, mod=1, index=0.4, index_sus=0.0, index_decay=0.2)),
              decay=1.3, release=0.5, key_scaling=0.4),  # harp
    47: Voice((Pair(1, mod=1.41, index=2.0, index_sus=0.2, index_decay=0.05), Pair(1.5, 0.4, mod=1, index=0.3)),
              decay=0.7, release=0.4, breath=0.15, key_scaling=0.0),  # timpani
    48: Voice((Pair(1, mod=1, index=2.0, stack=0.8, follows_amp=True), Pair(2, 0.3, mod=1, index=0.5)),
              attack=0.25, sustain=1.0, release=0.4, detune_cents=8),  # string ensemble
    49: Voice((Pair(1, mod=1, index=1.6, stack=0.6, follows_amp=True),), attack=0.4, sustain=1.0, release=0.5,
              detune_cents=10),  # slow strings
    52: Voice((Pair(1, mod=1, index=0.4), Pair(0, 0.5, formant=730), Pair(0, 0.3, formant=1090),
               Pair(0, 0.1, formant=2440)), attack=0.15, sustain=1.0, release=0.3, detune_cents=7),  # choir "aah"
    53: Voice((Pair(1, mod=1, index=0.3), Pair(0, 0.45, formant=300), Pair(0, 0.25, formant=870),
               Pair(0, 0.08, formant=2240)), attack=0.12, sustain=1.0, release=0.3),  # voice "ooh"
    56: Voice((Pair(1, mod=1, index=5.0, **BRASS),), attack=0.05, decay=0.3, sustain=0.8, release=0.1),  # trumpet
    57: Voice((Pair(1, mod=1, index=3.8, **BRASS),), attack=0.07, decay=0.4, sustain=0.85, release=0.12),  # trombone
    58: Voice((Pair(1, mod=1, index=2.5, **BRASS), Pair(0.5, 0.2, mod=1, index=0.5)), attack=0.09, decay=0.4,
              sustain=0.85, release=0.15),  # tuba
    60: Voice((Pair(1, mod=1, index=1.8, **BRASS), Pair(2, 0.15, mod=1, index=0.2)), attack=0.08, decay=0.5,
              sustain=0.9, release=0.2),  # French horn
    61: Voice((Pair(1, mod=1, index=4.2, **BRASS), Pair(1, 0.5, mod=2, index=1.0, **BRASS)), attack=0.06,
              decay=0.4, sustain=0.85, release=0.15, detune_cents=9),  # brass section
    64: Voice((Pair(1, mod=1, index=3.2, stack=1.4, follows_amp=True),), attack=0.04, decay=0.3, sustain=0.85,
              release=0.08, breath=0.05),  # soprano sax
    65: Voice((Pair(1, mod=1, index=3.0, stack=1.2, follows_amp=True), Pair(2, 0.2, mod=1, index=1.0)),
              attack=0.04, decay=0.3, sustain=0.85, release=0.08, breath=0.06),  # alto sax
    66: Voice((Pair(1, mod=1, index=2.8, stack=1.3, follows_amp=True), Pair(0.5, 0.2, mod=1, index=0.3)),
              attack=0.05, decay=0.3, sustain=0.85, release=0.1, breath=0.06),  # tenor sax
    68: Voice((Pair(1, mod=1, index=3.0, stack=0.7, stack_ratio=3), Pair(3, 0.35, mod=1, index=0.8)),
              attack=0.04, sustain=1.0, release=0.08),  # oboe
    70: Voice((Pair(1, mod=1, index=2.2, stack=0.5, stack_ratio=2), Pair(2, 0.3, mod=1, index=0.3)),
              attack=0.05, sustain=1.0, release=0.1),  # bassoon
    71: Voice((Pair(1, mod=2, index=2.0), Pair(3, 0.2, mod=2, index=0.5)), attack=0.04, sustain=1.0,
              release=0.08),  # clarinet: odd harmonics
    73: Voice((Pair(1, mod=1, index=0.5), Pair(2, 0.1, mod=1, index=0.0)), attack=0.07, sustain=1.0, release=0.1,
              breath=0.25),  # flute
    80: Voice((Pair(1, mod=2, index=1.7),), attack=0.01, sustain=1.0, release=0.05),  # square lead
    81: Voice((Pair(1, mod=1, index=2.5, stack=1.6),), attack=0.01, sustain=1.0, release=0.05),  # saw lead
    88: Voice((Pair(1, mod=1, index=0.8), Pair(2, 0.3, mod=3.5, index=1.5, index_sus=0.2, index_decay=0.3)),
              attack=0.4, sustain=1.0, release=0.9, detune_cents=8),  # new age pad
    89: Voice((Pair(1, mod=1, index=1.2, stack=0.4, follows_amp=True), Pair(0.5, 0.4, mod=1, index=0.3)),
              attack=0.6, sustain=1.0, release=1.0, detune_cents=10),  # warm pad
    105: Voice((_pluck(3, 3.0, 0.04), Pair(1, 0.5, mod=1, index=1.0, index_sus=0.0, index_decay=0.05)),
               decay=0.5, release=0.1, key_scaling=0.3),  # banjo
}


def _tuned_f0(key: int) -> tuple[float, int]:
    """The frequency near `key`'s whose period is a whole number of samples, and its correction in cents (high
    keys, where that would be more than 20 cents off, keep their own frequency: the loop seam is crossfaded)."""
    f0 = 440.0 * 2 ** ((key - 69) / 12)
    tuned = SR / round(SR / f0)
    cents = round(1200 * math.log2(f0 / tuned))
    return (tuned, cents) if abs(cents) <= 20 else (f0, 0)


def _envelope(v: Voice, t: np.ndarray, scale: float) -> np.ndarray:
    attack = np.clip(t / max(v.attack, 1e-3), 0.0, 1.0)
    after = np.maximum(t - v.attack, 0.0)
    return attack * (v.sustain + (1 - v.sustain) * np.exp(-after / (v.decay * scale)))


def render_voice(v: Voice, key: int, rng: np.random.Generator) -> tuple[np.ndarray, int, int, int]:
    """(samples, loop start, loop end, cents correction) of one voice at `key`; loop (0, 0) when it rings out."""
    f0, cents = _tuned_f0(key)
    scale = (261.6 / f0) ** v.key_scaling
    if v.sustain > 0:
        settle = v.attack + 6 * min(v.decay * scale, 0.5) + 0.3
        period = SR / f0
        n_loop = round(2 * period * max(1, round(0.125 * SR / period)))  # half ratios (0.5 x f0): 2 periods
        n = int(settle * SR) + n_loop
    else:
        n = int(min(3.0, max(0.3, v.attack + 4 * v.decay * scale)) * SR)
    t = np.arange(n) / SR
    amp = _envelope(v, t, scale)
    if v.sustain > 0:  # exactly the sustain level in the loop, so the looped cycle repeats without a step
        amp[n - n_loop:] = v.sustain
    out = np.zeros(n)
    for detune in ((0.0, v.detune_cents) if v.detune_cents else (0.0,)):
        f = f0 * 2 ** (detune / 1200)
        for p in v.pairs:
            ratio = max(1, round(p.formant / f)) if p.formant else p.ratio
            if p.follows_amp:
                index = p.index * amp
            elif p.index_sus is None:
                index = np.full(n, p.index)
            else:
                index = p.index_sus + (p.index - p.index_sus) * np.exp(-t / (p.index_decay * scale))
            mod_phase = 2 * np.pi * p.mod * f * t
            if p.stack:
                mod_phase = mod_phase + p.stack * np.sin(2 * np.pi * p.stack_ratio * f * t)
            out += p.level * np.sin(2 * np.pi * ratio * f * t + index * np.sin(mod_phase))
    if v.drive:
        out = np.tanh(v.drive * out / max(np.abs(out).max(), 1e-9)) / math.tanh(v.drive)
    if v.tremolo:
        out *= 1 - v.tremolo * 0.5 * (1 - np.cos(2 * np.pi * 5.5 * t))
    out *= amp
    if v.breath:
        burst = rng.standard_normal(n) * np.exp(-t / 0.04) * v.breath
        out += np.convolve(burst, np.ones(4) / 4, mode="same")
    if v.sustain > 0:  # a detuned copy or a decaying index does not repeat exactly: crossfade the loop's seam
        loop = (n - n_loop, n)
        k = min(256, n_loop // 4)
        fade = np.linspace(0.0, 1.0, k)
        out[n - k:] = out[n - k:] * (1 - fade) + out[n - n_loop - k:n - n_loop] * fade
    else:
        loop = (0, 0)
        out[-int(0.01 * SR):] *= np.linspace(1, 0, int(0.01 * SR))
    return out / max(np.abs(out).max(), 1e-9) * 0.8, loop[0], loop[1], cents


def _drum(key: int, rng: np.random.Generator) -> np.ndarray:
    """One GM drum key: kicks and toms are falling sines, snares and claps noise with a tone, cymbals metallic FM."""
    def noise(n: int) -> np.ndarray:
        return rng.standard_normal(n)

    def metal(n: int, f: float, decay: float) -> np.ndarray:
        t = np.arange(n) / SR
        x = sum(np.sin(2 * np.pi * f * r * t + 4 * np.sin(2 * np.pi * f * r * 1.47 * t)) for r in (1, 1.34, 1.87))
        x = x + 0.6 * np.diff(noise(n + 1))  # differenced noise: bright
        return x * np.exp(-t / decay)

    if key in (35, 36):  # kicks
        n = int(0.5 * SR)
        t = np.arange(n) / SR
        f = 50 + 110 * np.exp(-t / 0.04)
        x = np.sin(2 * np.pi * np.cumsum(f) / SR) * np.exp(-t / 0.15) + 0.3 * noise(n) * np.exp(-t / 0.005)
    elif key in (38, 40, 37, 39):  # snares, side stick, clap
        n = int(0.4 * SR)
        t = np.arange(n) / SR
        tone = np.sin(2 * np.pi * 185 * t) * np.exp(-t / 0.05)
        decay = 0.03 if key == 37 else 0.12
        x = 0.6 * tone + np.diff(noise(n + 1)) * np.exp(-t / decay)
        if key == 39:  # clap: three bursts
            x = sum(np.roll(np.diff(noise(n + 1)) * np.exp(-t / 0.02), int(d * SR)) for d in (0, 0.012, 0.024))
    elif key in (41, 43, 45, 47, 48, 50):  # toms
        n = int(0.6 * SR)
        t = np.arange(n) / SR
        base = {41: 80, 43: 95, 45: 110, 47: 130, 48: 150, 50: 175}[key]
        f = base * (1 + 0.5 * np.exp(-t / 0.05))
        x = np.sin(2 * np.pi * np.cumsum(f) / SR) * np.exp(-t / 0.2) + 0.2 * noise(n) * np.exp(-t / 0.01)
    elif key in (42, 44):  # closed and pedal hi-hat
        x = metal(int(0.15 * SR), 3100, 0.03)
    elif key == 46:  # open hi-hat
        x = metal(int(0.8 * SR), 3100, 0.25)
    elif key in (49, 57, 52, 55):  # crashes, china, splash
        x = metal(int(2.5 * SR), 2300, 0.8)
    elif key in (51, 59, 53):  # rides, bell
        x = metal(int(1.8 * SR), 2900, 0.6) * 0.6
    else:  # the rest of the kit: a short woody click
        n = int(0.2 * SR)
        t = np.arange(n) / SR
        x = np.sin(2 * np.pi * (300 + 8 * key) * t + 2 * np.sin(2 * np.pi * 700 * t)) * np.exp(-t / 0.04)
    x[-int(0.005 * SR):] *= np.linspace(1, 0, int(0.005 * SR))
    return x / max(np.abs(x).max(), 1e-9) * 0.8


def _chunk(tag: bytes, data: bytes) -> bytes:
    return tag + struct.pack("<I", len(data)) + data + (b"\0" if len(data) % 2 else b"")


def _name(s: str) -> bytes:
    return s.encode("ascii")[:19].ljust(20, b"\0")


@dataclass
class _Builder:
    smpl: list[bytes] = field(default_factory=list)
    offset: int = 0
    shdr: list[bytes] = field(default_factory=list)
    inst: list[tuple[str, list[list[tuple[int, int]]]]] = field(default_factory=list)  # name, zones of generators

    def sample(self, name: str, audio: np.ndarray, root: int, cents: int, loop: tuple[int, int]) -> int:
        pcm = np.round(np.clip(audio, -1, 1) * 32767).astype("<i2")
        start, end = self.offset, self.offset + len(pcm)
        ls, le = (start + loop[0], start + loop[1]) if loop[1] else (start, end - 1)
        self.smpl.append(pcm.tobytes() + b"\0\0" * 46)  # the format asks for 46 zero samples after each
        self.offset = end + 46
        self.shdr.append(_name(name) + struct.pack("<IIIIIBbHH", start, end, ls, le, SR, root, cents, 0, 1))
        return len(self.shdr) - 1


def _gen(op: int, amount: int) -> tuple[int, int]:
    return op, amount & 0xFFFF


def _range(lo: int, hi: int) -> int:
    return lo | (hi << 8)


def _timecents(seconds: float) -> int:
    return round(1200 * math.log2(max(seconds, 0.001)))


def build(path: Path, programs: list[int] | None = None, roots: list[int] | None = None) -> None:
    """Write the soundfont to `path` (atomically): every voice in `PATCHES` and the drum kit, or only `programs`
    sampled at `roots` (a small build for tests)."""
    b = _Builder()
    presets: list[tuple[str, int, int, int]] = []  # name, program, bank, instrument index
    roots = list(ROOTS) if roots is None else roots
    for prog, voice in sorted(PATCHES.items()):
        if programs is not None and prog not in programs:
            continue
        rng = np.random.default_rng(prog)
        zones = []
        for i, root in enumerate(roots):
            audio, ls, le, cents = render_voice(voice, root, rng)
            sid = b.sample(f"fm{prog}_{root}", audio, root, cents, (ls, le))
            lo = 0 if i == 0 else (roots[i - 1] + root) // 2  # each key goes to the nearest root
            hi = 127 if i == len(roots) - 1 else (root + roots[i + 1]) // 2 - 1
            zones.append([_gen(43, _range(lo, hi)), _gen(38, _timecents(voice.release)),
                          _gen(54, 1 if le else 0), _gen(53, sid)])
        b.inst.append((f"fm{prog}", zones))
        presets.append((f"fm{prog}", prog, 0, len(b.inst) - 1))
    rng = np.random.default_rng(128)
    zones = []
    for key in range(35, 82):
        sid = b.sample(f"fmdrum{key}", _drum(key, rng), key, 0, (0, 0))
        zones.append([_gen(43, _range(key, key)), _gen(38, _timecents(0.3)), _gen(54, 0), _gen(53, sid)])
    b.inst.append(("fmdrums", zones))
    presets.append(("fmdrums", 0, 128, len(b.inst) - 1))

    phdr, pbag, pgen = b"", b"", b""
    for i, (name, prog, bank, inst) in enumerate(presets):
        phdr += _name(name) + struct.pack("<HHHIII", prog, bank, i, 0, 0, 0)
        pbag += struct.pack("<HH", i, 0)
        pgen += struct.pack("<HH", 41, inst)
    phdr += _name("EOP") + struct.pack("<HHHIII", 0, 0, len(presets), 0, 0, 0)
    pbag += struct.pack("<HH", len(presets), 0)
    pgen += struct.pack("<HH", 0, 0)
    inst, ibag, igen = b"", b"", b""
    bags = gens = 0
    for name, zones in b.inst:
        inst += _name(name) + struct.pack("<H", bags)
        for zone in zones:
            ibag += struct.pack("<HH", gens, 0)
            for op, amount in zone:
                igen += struct.pack("<HH", op, amount)
            gens += len(zone)
            bags += 1
    inst += _name("EOI") + struct.pack("<H", bags)
    ibag += struct.pack("<HH", gens, 0)
    igen += struct.pack("<HH", 0, 0)
    shdr = b"".join(b.shdr) + _name("EOS") + struct.pack("<IIIIIBbHH", 0, 0, 0, 0, 0, 0, 0, 0, 0)
    mod_end = b"\0" * 10
    info = _chunk(b"ifil", struct.pack("<HH", 2, 1)) + _chunk(b"isng", b"EMU8000\0") \
        + _chunk(b"INAM", f"tunelens FM {VERSION}\0".encode())
    sdta = _chunk(b"smpl", b"".join(b.smpl))
    pdta = b"".join(_chunk(t, d) for t, d in ((b"phdr", phdr), (b"pbag", pbag), (b"pmod", mod_end),
                                              (b"pgen", pgen), (b"inst", inst), (b"ibag", ibag),
                                              (b"imod", mod_end), (b"igen", igen), (b"shdr", shdr)))
    body = b"sfbk" + _chunk(b"LIST", b"INFO" + info) + _chunk(b"LIST", b"sdta" + sdta) \
        + _chunk(b"LIST", b"pdta" + pdta)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda p: p.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path, help="the .sf2 file to write")
    args = ap.parse_args(argv)
    build(args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB, {len(PATCHES)} voices and a drum kit)",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
