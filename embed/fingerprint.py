"""A fingerprint for confirming that two files hold the same recording, robust to gain, codec, sample
rate, channel layout and a trim of a few seconds, yet different for another piece with the same
instruments at the same tempo. Two sequences, both compared at the best time offset:

- harmony: chroma energy normalised statistics (CENS, Müller & Ewert), chroma smoothed over ~2 s and
  quantised, ~2 frames per second; it follows the notes and ignores timbre and level;
- spectral shape: 32-band log-mel energies up to 5 kHz, ~11 frames per second, each band's mean removed
  (so gain cancels); it follows the rhythm, which chroma cannot see in drums or unpitched sounds.

A pair is the same recording only when both sequences agree.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

SR = 11025  # every transformation of interest keeps the band below 5 kHz
CHROMA_HOP = 1024
CHROMA_DOWNSAMPLE = 5  # ~2.2 chroma frames per second
MEL_HOP = 512
MEL_POOL = 2  # mean of 4 frames, every 2nd kept: ~10.8 mel frames per second
N_MELS = 32
FMAX = 5000.0


@dataclass
class Fingerprint:
    chroma: np.ndarray  # [frames, 12] unit-norm CENS vectors
    mel: np.ndarray  # [frames, 32] log-mel dB, each band's mean removed

    @property
    def seconds(self) -> float:
        return len(self.mel) * MEL_HOP * MEL_POOL / SR


def fingerprint_samples(data: np.ndarray, sr: int) -> Fingerprint:
    """The fingerprint of [samples, channels] audio at `sr`."""
    import librosa
    from scipy.ndimage import uniform_filter1d

    from tunelens.embed.audio import to_mono_resampled

    y = to_mono_resampled(data, sr, SR)
    if len(y) < CHROMA_HOP * 4:
        return Fingerprint(np.zeros((0, 12), np.float32), np.zeros((0, N_MELS), np.float32))
    cens = librosa.feature.chroma_cens(y=y, sr=SR, hop_length=CHROMA_HOP, win_len_smooth=21)[:, ::CHROMA_DOWNSAMPLE].T
    norms = np.linalg.norm(cens, axis=1, keepdims=True)
    cens = cens / np.where(norms > 0, norms, 1.0)
    mel = librosa.power_to_db(
        librosa.feature.melspectrogram(y=y, sr=SR, n_fft=2048, hop_length=MEL_HOP, n_mels=N_MELS, fmax=FMAX),
        top_db=80.0,
    )
    mel = uniform_filter1d(mel, 2 * MEL_POOL, axis=1)[:, ::MEL_POOL].T
    return Fingerprint(cens.astype(np.float32), (mel - mel.mean(axis=0)).astype(np.float32))


def fingerprint(path: str | Path) -> Fingerprint:
    """The fingerprint of an audio file; raises `embed.audio.AudioError` naming why it cannot be read."""
    from tunelens.embed.audio import read_audio

    return fingerprint_samples(*read_audio(path))


def _best_offset(a: np.ndarray, b: np.ndarray, max_shift: int, min_overlap: float, score) -> float:
    shortest = min(len(a), len(b))
    best = 0.0
    for shift in range(-max_shift, max_shift + 1):
        x, y = a[max(0, shift) :], b[max(0, -shift) :]
        n = min(len(x), len(y))
        if n >= max(1, min_overlap * shortest):
            best = max(best, score(x[:n], y[:n]))
    return best


def _mean_cosine(x: np.ndarray, y: np.ndarray) -> float:
    voiced = (np.abs(x).sum(axis=1) > 0) & (np.abs(y).sum(axis=1) > 0)
    return float(np.sum(x[voiced] * y[voiced], axis=1).mean()) if voiced.any() else 0.0


def _correlation(x: np.ndarray, y: np.ndarray) -> float:
    x, y = x - x.mean(axis=0), y - y.mean(axis=0)
    denom = np.sqrt(float((x * x).sum()) * float((y * y).sum()))
    return float((x * y).sum() / denom) if denom > 0 else 0.0


def match(a: Fingerprint, b: Fingerprint, max_shift_s: float = 3.0, min_overlap: float = 0.8) -> tuple[float, float]:
    """(harmony, spectral) agreement, each the best over time offsets up to `max_shift_s` whose overlap
    covers at least `min_overlap` of the shorter file: mean chroma cosine and log-mel correlation."""
    if min(len(a.chroma), len(b.chroma), len(a.mel), len(b.mel)) == 0:
        return 0.0, 0.0
    chroma_fps = SR / CHROMA_HOP / CHROMA_DOWNSAMPLE
    mel_fps = SR / MEL_HOP / MEL_POOL
    harmony = _best_offset(a.chroma, b.chroma, int(round(max_shift_s * chroma_fps)), min_overlap, _mean_cosine)
    spectral = _best_offset(a.mel, b.mel, int(round(max_shift_s * mel_fps)), min_overlap, _correlation)
    return harmony, spectral
