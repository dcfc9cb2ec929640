"""The versioned windowing rule (pipeline version 1).

- Windows are `window_seconds` long with hop = window length, starting at 0.
- When the track does not divide evenly, one last window is aligned to the track's end, so every window is
  real audio and the whole track is covered (the last two windows overlap).
- A track shorter than one window is repeated (tiled) until it fills one window.
- The track vector is the mean of the raw window vectors, then L2-normalised (block by block for an encoder
  whose vector is made of several sources: `vector_blocks`); stored window vectors are L2-normalised
  individually.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tunelens.embed.base import Blocks, normalize_blocks


def window_samples(window_seconds: float, sample_rate: int) -> int:
    return int(round(window_seconds * sample_rate))


def window_times(starts: Sequence[int], sample_rate: int, window_seconds: float,
                 duration: float) -> tuple[np.ndarray, np.ndarray]:
    """Start and end seconds of windows starting at these samples: a window ends with the track at the latest."""
    s = np.asarray(starts, dtype=np.float64) / sample_rate
    return s, np.minimum(s + window_seconds, duration)


def window_starts(n_samples: int, window: int, hop: int | None = None) -> list[int]:
    hop = hop or window
    if n_samples <= window:
        return [0]
    starts = list(range(0, n_samples - window + 1, hop))
    if starts[-1] + window < n_samples:
        starts.append(n_samples - window)
    return starts


def make_windows(samples: np.ndarray, window: int, hop: int | None = None) -> tuple[np.ndarray, list[int]]:
    """[n_windows, window] float32 and each window's start sample."""
    if len(samples) == 0:
        raise ValueError("cannot window an empty signal")
    if len(samples) < window:
        reps = -(-window // len(samples))
        return np.tile(samples, reps)[:window][None, :].astype(np.float32), [0]
    starts = window_starts(len(samples), window, hop)
    return np.stack([samples[s:s + window] for s in starts]).astype(np.float32), starts


def pool_track(window_vectors: np.ndarray, blocks: Blocks | None = None) -> np.ndarray:
    return normalize_blocks(np.asarray(window_vectors, dtype=np.float32).mean(axis=0), blocks)
