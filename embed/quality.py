"""Signal-level facts about a decoded file, measured once while it is decoded for embedding: what a dataset
builder filters broken or mislabelled audio by, and the decoded-audio hash that finds the same recording
stored in two lossless containers (a WAV and its FLAC decode to the same samples)."""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass

import numpy as np

QUALITY_VERSION = "q1"
SILENCE_DBFS = -60.0  # a 50 ms frame quieter than this counts as silent
CLIP_RUN = 3  # samples in a row at the file's peak: a flattened waveform, not a natural maximum
LOWPASS_DROP_DB = 30.0  # the band below a cutoff must stand this far above everything above it
LOWPASS_GUARD_HZ = 300.0  # transition band skipped between "below" and "above"


@dataclass
class AudioQuality:
    audio_hash: str  # of the samples at 16-bit resolution, with rate and channel count
    silence_ratio: float  # share of 50 ms frames below -60 dBFS
    clipping_ratio: float  # share of samples in runs of >= 3 at the file's peak
    lowpass_hz: float | None  # a sharp spectral cutoff below Nyquist (a lossy encoder's low-pass), or None
    dc_offset: float  # largest absolute channel mean
    side_db: float | None  # side (L-R) energy relative to mid (L+R) in dB; very low = mono stored as stereo

    def as_row(self) -> dict:
        return asdict(self)


def audio_hash(data: np.ndarray, sr: int) -> str:
    """Hash of [samples, channels] audio at 16-bit resolution, so lossless containers of one recording match."""
    pcm = np.clip(np.round(np.asarray(data, np.float64) * 32768.0), -32768, 32767).astype("<i2")
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{sr}:{data.shape[1]}:".encode())
    h.update(np.ascontiguousarray(pcm).tobytes())
    return h.hexdigest()


def silence_ratio(mono: np.ndarray, sr: int) -> float:
    frame = max(1, int(0.05 * sr))
    n = len(mono) // frame
    if n == 0:
        return 1.0 if not np.any(mono) else 0.0
    rms = np.sqrt(np.mean(mono[: n * frame].reshape(n, frame).astype(np.float64) ** 2, axis=1))
    return float(np.mean(rms < 10 ** (SILENCE_DBFS / 20)))


def clipping_ratio(data: np.ndarray) -> float:
    """Share of samples in runs of at least CLIP_RUN consecutive samples at the file's peak magnitude."""
    mag = np.abs(data)
    peak = float(mag.max()) if mag.size else 0.0
    if peak < 0.05:
        return 0.0
    at_peak = mag >= peak * (1 - 1e-4)
    clipped = 0
    for ch in range(at_peak.shape[1]):
        x = np.concatenate([[False], at_peak[:, ch], [False]]).astype(np.int8)
        edges = np.flatnonzero(np.diff(x))
        runs = edges[1::2] - edges[::2]
        clipped += int(runs[runs >= CLIP_RUN].sum())
    return clipped / at_peak.size


def lowpass_cutoff(mono: np.ndarray, sr: int) -> float | None:
    """The highest frequency below which the long-term spectrum stands >= 30 dB above everything above it.

    A lossy encoder (MP3 at 128 kbps cuts near 16 kHz) leaves such a cliff; natural roll-off does not.
    """
    from scipy.signal import welch

    if len(mono) < 4096:
        return None
    f, p = welch(mono.astype(np.float32, copy=False), fs=sr, nperseg=4096, noverlap=0)
    db = 10 * np.log10(p + 1e-20)
    df = f[1] - f[0]
    guard = max(1, int(round(LOWPASS_GUARD_HZ / df)))
    below = max(1, int(round(1500.0 / df)))
    above_max = np.maximum.accumulate(db[::-1])[::-1]  # max of everything above each bin
    bins = np.arange(below, len(db) - guard - 1)
    level = np.median(np.lib.stride_tricks.sliding_window_view(db, below + 1), axis=1)[bins - below]
    # a level under -100 dB is nothing but the digital floor
    cliff = (f[bins] >= 1000.0) & (level >= -100.0) & (level - above_max[bins + guard] >= LOWPASS_DROP_DB)
    best = int(bins[cliff][-1]) if cliff.any() else None
    if best is None:
        return None
    # report where the spectrum falls 6 dB under the pass band just below the cliff
    ref = float(np.median(db[max(0, best - 2 * below):best - below + 1]))
    start = best - below
    fall = start + int(np.argmax(db[start:] < ref - 6.0)) if np.any(db[start:] < ref - 6.0) else best
    if f[fall] > 0.95 * (sr / 2):
        return None
    return float(round(f[fall] / 100.0) * 100.0)


def side_db(data: np.ndarray) -> float | None:
    if data.shape[1] != 2:
        return None
    left, right = data[:, 0].astype(np.float64), data[:, 1].astype(np.float64)
    mid = np.mean((left + right) ** 2)
    side = np.mean((left - right) ** 2)
    if mid <= 0:
        return None if side <= 0 else 0.0
    return float(max(-120.0, 10 * np.log10(side / mid + 1e-12)))


def measure(data: np.ndarray, sr: int) -> AudioQuality:
    """Quality facts of [samples, channels] float audio at its own rate."""
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    return AudioQuality(
        audio_hash=audio_hash(data, sr),
        silence_ratio=round(silence_ratio(mono, sr), 4),
        clipping_ratio=round(clipping_ratio(data), 6),
        lowpass_hz=lowpass_cutoff(mono, sr),
        dc_offset=round(float(np.abs(data.mean(axis=0)).max()), 5),
        side_db=None if (s := side_db(data)) is None else round(s, 1),
    )
