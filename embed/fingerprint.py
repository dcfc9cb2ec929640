"""A fingerprint for confirming that two files hold the same recording, robust to gain, codec, sample
rate, channel layout, fades and edits that cut up to 30 s (or 20%) at the start or end, yet different for
another piece with the same instruments at the same tempo, and for the same piece played by other instruments
or at another tempo. Two sequences, both compared at one time offset found by aligning them:

- harmony: chroma energy normalised statistics (CENS, Müller & Ewert), chroma smoothed over ~2 s and
  quantised, ~2 frames per second; it follows the notes and ignores timbre and level;
- spectral shape: 32-band log-mel energies up to 5 kHz, ~11 frames per second, each band's mean removed
  (so gain cancels); it follows the rhythm, which chroma cannot see in drums or unpitched sounds.

A pair is the same recording only when both sequences agree, their timing does not drift apart across the
shared part, and their level contours (the mean of the log-mel bands) differ by no more than a constant gain.
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
    # A fixed A440 tuning: two copies of one recording share their tuning, so a fingerprint needs no estimate of it,
    # and librosa's estimate (tuning=None) runs through numba code that segfaults under numba 0.68.1 (issue 37).
    cens = librosa.feature.chroma_cens(y=y, sr=SR, hop_length=CHROMA_HOP, win_len_smooth=21, tuning=0.0)
    cens = cens[:, ::CHROMA_DOWNSAMPLE].T
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


MEL_FPS = SR / MEL_HOP / MEL_POOL  # ~10.8
CHROMA_PER_MEL = (MEL_HOP * MEL_POOL) / (CHROMA_HOP * CHROMA_DOWNSAMPLE)  # 0.2: chroma frame = mel frame / 5


@dataclass(frozen=True)
class EditRules:
    """How much two copies of one recording may differ in extent: each may hold up to `max_trim_s` seconds or
    `max_trim_share` of its length (the larger) that the other lacks, yet the shared part must cover at least
    `min_overlap_share` of each file and `min_overlap_s` seconds. The first and last `fade_s` seconds of the shared
    part (at most `fade_share` of it) are left out of the scores, where an edit's fades live."""

    max_trim_s: float = 30.0
    max_trim_share: float = 0.2
    min_overlap_share: float = 0.6
    min_overlap_s: float = 8.0
    fade_s: float = 6.0
    fade_share: float = 0.1

    def edge_frames(self, shared: int) -> int:
        """Mel frames left out at each end of a shared part of `shared` frames (where fades live)."""
        return int(min(self.fade_s * MEL_FPS, self.fade_share * shared))

    def allowed_cut(self, seconds: float) -> float:
        """Seconds of a file of this length that another copy may lack."""
        return min(max(self.max_trim_s, self.max_trim_share * seconds), (1 - self.min_overlap_share) * seconds)


@dataclass(frozen=True)
class Alignment:
    """The best alignment of b against a: b's first frame sits `offset_s` seconds into a (negative: b starts
    earlier, i.e. a lacks b's first seconds); `harmony` and `spectral` are the agreements over the shared part."""

    harmony: float
    spectral: float
    offset_s: float
    a_seconds: float
    b_seconds: float
    drift_s: float = 0.0  # how far the alignment moves between the start and the end of the shared part
    dynamics_db: float = 0.0  # how far the level contours part, in dB (`_dynamics`): a copy keeps its dynamics

    @property
    def head_s(self) -> float:
        """Seconds b lacks at the start compared with a (negative: b has that much more)."""
        return self.offset_s

    @property
    def tail_s(self) -> float:
        """Seconds b lacks at the end compared with a (negative: b has that much more)."""
        return self.a_seconds - (self.offset_s + self.b_seconds)

    def relation(self, tolerance_s: float = 0.5) -> str:
        """b's relation to a in words: "same recording", or "edit: 12 s shorter at the start"."""
        parts = []
        for cut, where in ((self.head_s, "start"), (self.tail_s, "end")):
            if abs(cut) > tolerance_s:
                amount = f"{abs(cut):.0f}" if abs(cut) >= 10 else f"{abs(cut):.1f}"
                parts.append(f"{amount} s {'shorter' if cut > 0 else 'longer'} at the {where}")
        return "edit: " + ", ".join(parts) if parts else "same recording"


def _mean_cosine(x: np.ndarray, y: np.ndarray) -> float:
    voiced = (np.abs(x).sum(axis=1) > 0) & (np.abs(y).sum(axis=1) > 0)
    return float(np.sum(x[voiced] * y[voiced], axis=1).mean()) if voiced.any() else 0.0


def _correlation(x: np.ndarray, y: np.ndarray) -> float:
    x, y = x - x.mean(axis=0), y - y.mean(axis=0)
    denom = np.sqrt(float((x * x).sum()) * float((y * y).sum()))
    return float((x * y).sum() / denom) if denom > 0 else 0.0


def _overlap(na: int, nb: int, k: int) -> tuple[int, int, int]:
    """(start in a, start in b, length) of the shared part when b's frame 0 sits at a's frame k."""
    i, j = max(0, k), max(0, -k)
    return i, j, max(0, min(na - i, nb - j))


def _scan(a: np.ndarray, b: np.ndarray, rules: EditRules) -> tuple[np.ndarray, np.ndarray]:
    """Every offset the rules allow, with a fast score (cosine of the mel sequences over the overlap, by FFT)."""
    from scipy.signal import fftconvolve

    na, nb = len(a), len(b)
    ks = np.arange(-(nb - 1), na)
    num = fftconvolve(a, b[::-1], axes=0).sum(axis=1)
    ea = np.concatenate([[0.0], np.cumsum((a.astype(np.float64) ** 2).sum(axis=1))])
    eb = np.concatenate([[0.0], np.cumsum((b.astype(np.float64) ** 2).sum(axis=1))])
    i, j = np.maximum(0, ks), np.maximum(0, -ks)
    n = np.maximum(0, np.minimum(na - i, nb - j))
    denom = np.sqrt((ea[i + n] - ea[i]) * (eb[j + n] - eb[j]))
    score = np.where(denom > 0, num / np.where(denom > 0, denom, 1.0), 0.0)

    ok = (
        (n >= rules.min_overlap_s * MEL_FPS)
        & (na - n <= rules.allowed_cut(na / MEL_FPS) * MEL_FPS + 1)
        & (nb - n <= rules.allowed_cut(nb / MEL_FPS) * MEL_FPS + 1)
    )
    return ks[ok], score[ok]


def _scores_at(a: Fingerprint, b: Fingerprint, k: int, rules: EditRules) -> tuple[float, float]:
    """(harmony, spectral) with b's mel frame 0 at a's mel frame k, over the overlap less its fade edges."""
    i, j, n = _overlap(len(a.mel), len(b.mel), k)
    edge = rules.edge_frames(n)
    spectral = _correlation(a.mel[i + edge : i + n - edge], b.mel[j + edge : j + n - edge])
    harmony = 0.0
    for kc in {int(np.floor(k * CHROMA_PER_MEL)), int(np.ceil(k * CHROMA_PER_MEL))}:
        ci, cj, cn = _overlap(len(a.chroma), len(b.chroma), kc)
        ce = int(round(edge * CHROMA_PER_MEL))
        if cn - 2 * ce > 0:
            harmony = max(harmony, _mean_cosine(a.chroma[ci + ce : ci + cn - ce], b.chroma[cj + ce : cj + cn - ce]))
    return harmony, spectral


def _local_offset(x: np.ndarray, y: np.ndarray, reach: int = 4) -> float:
    """Sub-frame shift of y against x (same length, y taken `reach` frames in from both ends) that correlates
    best, by a parabola through the best integer shift and its neighbours."""
    n = len(x) - 2 * reach
    scores = np.array(
        [_correlation(x[reach + d : reach + d + n], y[reach : reach + n]) for d in range(-reach, reach + 1)]
    )
    i = int(np.argmax(scores))
    if 0 < i < len(scores) - 1:
        left, mid, right = scores[i - 1 : i + 2]
        denom = left - 2 * mid + right
        return i - reach + (0.5 * (left - right) / denom if denom < 0 else 0.0)
    return float(i - reach)


def _drift(a: np.ndarray, b: np.ndarray, k: int, rules: EditRules) -> float:
    """Frames the best local alignment moves between the first and the last stretch of the overlap at offset k.
    One recording copied, re-encoded or resampled keeps its timing (0); the same score rendered or played again
    at a tempo even 1% apart drifts, which one global offset hides."""
    i, j, n = _overlap(len(a), len(b), k)
    edge = rules.edge_frames(n)
    span = int(min(n // 3, 20 * MEL_FPS))
    if span < 2 * MEL_FPS + 8:
        return 0.0
    first = _local_offset(a[i + edge : i + edge + span], b[j + edge : j + edge + span])
    end = n - edge - span
    last = _local_offset(a[i + end : i + end + span], b[j + end : j + end + span])
    return float(last - first)


def _dynamics(a: np.ndarray, b: np.ndarray, k: int, rules: EditRules) -> float:
    """How far two level contours part over the overlap at offset k (its fade edges left out), in dB: the median
    absolute deviation of their difference, each smoothed over a second, b's read at the sub-frame shift that
    lines it up best (a cut at any sample leaves b up to half a frame off, which on every attack would read as a
    level change). A copy keeps the original's dynamics up to a constant gain (about 0 dB, whatever its codec);
    the same score rendered or played again with other dynamics (a swell against an even level) parts by about
    a dB even where its timing and notes agree. The median leaves out a fade that reaches past the edges, and
    the silences a codec fills with noise."""
    from scipy.ndimage import uniform_filter1d

    i, j, n = _overlap(len(a), len(b), k)
    edge = rules.edge_frames(n)
    reach = 4
    if n - 2 * edge < MEL_FPS + 2 * reach:
        return 0.0
    la = a[i + edge : i + n - edge].mean(axis=1).astype(np.float64)
    lb = b[j : j + n].mean(axis=1).astype(np.float64)  # whole: read between its frames
    shift = _local_offset(a[i + edge : i + n - edge], b[j + edge : j + n - edge], reach)
    diff = la - np.interp(np.arange(edge, n - edge) - shift, np.arange(n), lb)
    smooth = uniform_filter1d(diff, int(round(MEL_FPS)))
    return float(np.median(np.abs(smooth - np.median(smooth))))


def align(a: Fingerprint, b: Fingerprint, rules: EditRules = EditRules(), candidates: int = 5) -> Alignment:
    """The offset at which b best lines up with a, within what `rules` allow, and the agreement there.

    All offsets are scanned at once by FFT on the mel sequences; the best few (apart by a second or more) are
    then scored exactly, on both sequences, and the one with the highest harmony + spectral agreement wins. A
    pair is the same recording only when both agree at the same offset, so a wide search does not let two
    pieces match on harmony at one offset and on rhythm at another."""
    na, nb = len(a.mel), len(b.mel)
    if min(na, nb, len(a.chroma), len(b.chroma)) == 0:
        return Alignment(0.0, 0.0, 0.0, a.seconds, b.seconds)
    ks, score = _scan(a.mel, b.mel, rules)
    best = (0.0, 0.0, 0)
    picked: list[int] = []
    for idx in np.argsort(-score):
        k = int(ks[idx])
        if any(abs(k - p) < MEL_FPS for p in picked):
            continue
        picked.append(k)
        for kk in range(k - 1, k + 2):
            h, s = _scores_at(a, b, kk, rules)
            if h + s > best[0] + best[1]:
                best = (h, s, kk)
        if len(picked) >= candidates:
            break
    drift = _drift(a.mel, b.mel, best[2], rules) / MEL_FPS
    dynamics = _dynamics(a.mel, b.mel, best[2], rules)
    return Alignment(round(best[0], 4), round(best[1], 4), best[2] / MEL_FPS, a.seconds, b.seconds, round(drift, 3),
                     round(dynamics, 3))
