"""Musical descriptors measured from the audio: the evidence captions and answers are built on.

Tempo: onset strength in four registers (mel bands 0-16-32-64-128: bass, tenor, middle, treble, after
Klapuri, Eronen & Astola 2006), so a bass line marking the beat is not drowned by upper voices that
subdivide it; the normalised autocorrelations of the registers that sound are averaged, weighted by a
log-normal prior centred at 120 BPM (one octave wide, the usual perceptual prior), and the peak is
refined to sub-frame lag by a parabola. Between a candidate and its double or half, harmonic rhythm decides: chords
change on the beat, while passing notes fill the level below it, so the autocorrelation of chroma change (at the
candidate's lag and twice it) weights each candidate; on development-corpus renders this lifted slow pieces from
~0.77 to ~0.86 within 4% on the soundfonts left out. The confidence is the margin over the next candidate. Key:
log-compressed chroma from a constant-Q transform (24 bins per octave, C2-C8, at 11,025 Hz: cheap), averaged over
the whole and over its first and last thirds (where a piece establishes and confirms its key), scored for each of the
24 keys by a rotation-equivariant network (one small MLP applied to the chroma rolled to each tonic, two outputs,
major and minor; softmax over the 24) fitted on development-corpus renders by `scripts/train_descriptors.py`;
the confidence is the chosen key's probability. Loudness: ITU-R BS.1770 integrated loudness
(pyloudnorm) on the file's own channels and rate; loudness range per EBU Tech 3342 (10th to 95th percentile of gated
3 s short-term loudness). Brightness: median spectral centroid. Energy: RMS in ten equal spans.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

# d4: tempo weighted by harmonic rhythm; key from chroma and its thirds, an MLP; d5: chroma change without tuning
# estimation (same tempi on every file checked, 40% faster)
DESCRIPTORS_VERSION = "d5"
ANALYSIS_SR = 22050
HOP = 256
TEMPO_PRIOR_BPM = 120.0
TEMPO_PRIOR_OCTAVES = 1.0
TEMPO_REGISTERS = [0, 16, 32, 64, 128]  # mel band edges (of 128)
HARMONY_N_FFT, HARMONY_HOP = 4096, 512  # chroma change: a long window resolves bass notes; 43 frames a second
# exp(weight x autocorrelation of chroma change) at the candidate's lag and at twice it, multiplying the
# prior-weighted onset autocorrelation. Chosen on the left-out training folds (within 4%, MuseScore / csound):
# (0, 0) 0.883/0.877, (1, 0) 0.889/0.895, (1.5, 1) 0.899/0.902, (2, 2) 0.893/0.902, (3, 1) 0.890/0.897;
# chroma from the onset STFT (2048 points) 0.897/0.902, from the key's constant-Q frames 0.889/0.882.
HARMONY_WEIGHT, HARMONY_DOUBLE_WEIGHT = 1.5, 1.0
PITCH_CLASSES = ["C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"]
KEY_SR = 11025
KEY_HOP = 1024
KEY_BINS_PER_OCTAVE = 24  # 36 costs ~50x more in librosa's CQT for little gain


# Features of each candidate tempo. The choice is the prior-weighted autocorrelation weighted by harmonic rhythm
# (`choice_scores`):
# a logistic model over all of them, fitted on development-corpus renders (`scripts/train_descriptors.py`), did not
# beat it on the soundfonts left out of fitting, so it does not ship; the script keeps the comparison.
TEMPO_FEATURES = ("acf", "acf_double_lag", "acf_half_lag", "acf_triple_lag", "acf_rel_best", "log2_bpm_120",
                  "log2_bpm_120_sq", "acf_bass", "acf_tenor", "acf_middle", "acf_treble", "log2_onsets_per_beat",
                  "harmony", "harmony_double_lag", "prior")
TEMPO_MULTIPLES = (1 / 3, 1 / 2, 2 / 3, 3 / 4, 4 / 3, 3 / 2, 2, 3)
KEY_MODEL = Path(__file__).parent / "weights" / "key_model.safetensors"  # provenance: weights/descriptors.json


@dataclass
class Descriptors:
    """Musical facts measured from a track's audio (`analyse`): by the analysis pass of `tunelens index` into the
    library's measurements, and stored with each caption made from them."""

    duration: float
    tempo_bpm: float | None
    tempo_confidence: float  # margin of the chosen tempo over the next candidate (embed.descriptors.tempo)
    key: str | None  # "G major"
    key_confidence: float  # probability of that key (embed.descriptors.key)
    loudness_lufs: float | None
    loudness_range_lu: float | None
    brightness_hz: float
    onset_rate: float  # onsets per second
    energy_db: list[float] = field(default_factory=list)  # RMS in ten equal spans, dB relative to the loudest

    @property
    def mode(self) -> str | None:
        return self.key.split()[1] if self.key else None

    def as_row(self) -> dict:
        row = asdict(self)
        row["energy_db"] = [float(x) for x in self.energy_db]
        return row


def _register_acfs(onset_envs: np.ndarray) -> np.ndarray:
    """[registers, lags] normalised autocorrelations of the registers that sound (rows of silence are dropped)."""
    import librosa

    acfs = []
    for env in np.atleast_2d(onset_envs):
        acf = librosa.autocorrelate(env - env.mean())
        if np.any(env > 0) and acf[0] > 0:
            acfs.append(acf / acf[0])
    return np.array(acfs)


def _at(acf: np.ndarray, lag: float) -> float:
    """The autocorrelation at a fractional lag (linear interpolation; 0 past the end)."""
    i = int(np.floor(lag))
    if i < 0 or i + 1 >= len(acf):
        return 0.0
    f = lag - i
    return float((1 - f) * acf[i] + f * acf[i + 1])


def tempo_candidates(onset_envs: np.ndarray, onset_rate: float = 0.0, harmony: np.ndarray | None = None,
                     sr: int = ANALYSIS_SR, hop: int = HOP) -> list[tuple[float, np.ndarray]]:
    """(BPM, features in `TEMPO_FEATURES` order) for each candidate tempo: the autocorrelation's strongest local
    maxima between 40 and 240 BPM and their metrical relatives (x1/3 ... x3), each refined to sub-frame lag.
    `harmony`: chroma change per frame (`harmonic_change`, at `HARMONY_HOP`)."""
    acfs = _register_acfs(onset_envs)
    if not len(acfs) or acfs.shape[1] < 8:
        return []
    hacfs = _register_acfs(harmony) if harmony is not None else []
    hacf, hfps = (hacfs[0] if len(hacfs) else np.zeros(1)), sr / HARMONY_HOP
    acf = acfs.mean(axis=0)
    fps = sr / hop
    lo, hi = int(np.ceil(60 * fps / 240)), int(np.floor(60 * fps / 40))
    hi = min(hi, len(acf) - 2)
    if hi <= lo:
        return []
    peaks = [lag for lag in range(max(lo, 1), hi + 1) if acf[lag] >= acf[lag - 1] and acf[lag] >= acf[lag + 1]]
    if not peaks:
        return []

    def refine(lag: int) -> float:
        a, b, c = acf[lag - 1], acf[lag], acf[lag + 1]
        denom = a - 2 * b + c
        return lag + (float(np.clip(0.5 * (a - c) / denom, -0.5, 0.5)) if denom != 0 else 0.0)

    strongest = sorted(peaks, key=lambda lag: -acf[lag])[:6]
    lags = [refine(lag) for lag in strongest]
    for m in TEMPO_MULTIPLES:  # relatives of the strongest peak, snapped to a local maximum within 3%
        target = lags[0] / m
        near = [lag for lag in peaks if abs(lag / target - 1) <= 0.03]
        if near:
            lags.append(refine(max(near, key=lambda lag: acf[lag])))
        elif lo <= target <= hi:
            lags.append(target)
    unique: list[float] = []
    for lag in lags:
        if all(abs(lag / u - 1) > 0.02 for u in unique):
            unique.append(lag)
    best = max(_at(acf, lag) for lag in unique)
    regs = list(acfs) if len(acfs) == 4 else [acf] * 4  # a silent register was dropped: use the mean for all
    out = []
    for lag in unique:
        bpm = 60.0 * fps / lag
        x = np.log2(bpm / TEMPO_PRIOR_BPM)
        a = _at(acf, lag)
        feats = [a, _at(acf, 2 * lag), _at(acf, lag / 2), _at(acf, 3 * lag), a / best if best > 0 else 0.0, x, x * x,
                 *(_at(r, lag) for r in regs), np.log2(max(onset_rate, 0.05) * 60.0 / bpm),
                 _at(hacf, 60.0 * hfps / bpm), _at(hacf, 120.0 * hfps / bpm),
                 float(np.exp(-0.5 * (x / TEMPO_PRIOR_OCTAVES) ** 2))]
        out.append((bpm, np.array(feats, np.float64)))
    return out


def choice_scores(feats: np.ndarray) -> np.ndarray:
    """[candidates] how `tempo` ranks candidates from their `TEMPO_FEATURES` rows: onset autocorrelation x prior x
    exp(harmonic-rhythm evidence)."""
    h = TEMPO_FEATURES.index("harmony")
    return feats[:, 0] * feats[:, -1] * np.exp(HARMONY_WEIGHT * feats[:, h] + HARMONY_DOUBLE_WEIGHT * feats[:, h + 1])


def tempo(onset_envs: np.ndarray, onset_rate: float = 0.0, harmony: np.ndarray | None = None, sr: int = ANALYSIS_SR,
          hop: int = HOP) -> tuple[float | None, float]:
    """(BPM, confidence) from onset strength envelopes [registers, frames] (or one envelope) and chroma change:
    the candidate `choice_scores` ranks first; the confidence is its relative margin over the runner-up (often its
    double or half), which ranks right tempi far better than the autocorrelation itself (on development-corpus
    renders, the surest 30%: 99.7% right against 95.8%)."""
    cands = tempo_candidates(onset_envs, onset_rate, harmony, sr, hop)
    if not cands:
        return None, 0.0
    scores = choice_scores(np.stack([f for _, f in cands]))
    order = np.argsort(-scores, kind="stable")
    best = scores[order[0]]
    runner_up = scores[order[1]] if len(order) > 1 else 0.0
    margin = (best - max(runner_up, 0.0)) / best if best > 0 else 0.0
    return cands[order[0]][0], float(max(0.0, min(1.0, margin)))


def harmonic_change(y: np.ndarray) -> np.ndarray:
    """[frames] how much new pitch content each frame brings (half-wave rectified difference of log chroma, at
    `HARMONY_HOP`), for mono audio at `ANALYSIS_SR`: its periodicity is the harmonic rhythm."""
    import librosa

    if len(y) < HARMONY_N_FFT:
        return np.zeros(1)
    power = np.abs(librosa.stft(y, n_fft=HARMONY_N_FFT, hop_length=HARMONY_HOP)) ** 2
    # tuning 0: estimating it (librosa's default) took 40% of all analysis time, and the change of chroma does not
    # need it (no tempo changed on the 62 demo tracks or 300 MuseScore/csound development clips)
    c = librosa.feature.chroma_stft(S=power, sr=ANALYSIS_SR, n_fft=HARMONY_N_FFT, norm=None, tuning=0.0)
    c = np.log1p(100 * c / (c.max() + 1e-9))
    return np.concatenate([[0.0], np.maximum(np.diff(c, axis=1), 0).sum(axis=0)])


def key_chroma(y: np.ndarray) -> np.ndarray:
    """[3, 12] log-compressed constant-Q chroma of mono audio at `ANALYSIS_SR`, averaged over the whole, the first
    third and the last third."""
    import librosa

    y = librosa.resample(y, orig_sr=ANALYSIS_SR, target_sr=KEY_SR, res_type="soxr_hq")
    if len(y) < KEY_HOP:
        return np.zeros((3, 12))
    c = np.abs(librosa.cqt(y, sr=KEY_SR, hop_length=KEY_HOP, fmin=librosa.note_to_hz("C2"),
                           n_bins=6 * KEY_BINS_PER_OCTAVE, bins_per_octave=KEY_BINS_PER_OCTAVE, tuning=0.0))
    frames = librosa.feature.chroma_cqt(C=np.log1p(100 * c), sr=KEY_SR, bins_per_octave=KEY_BINS_PER_OCTAVE,
                                        norm=None)
    third = max(frames.shape[1] // 3, 1)
    return np.stack([frames.mean(axis=1), frames[:, :third].mean(axis=1), frames[:, -third:].mean(axis=1)])


def key_inputs(chroma: np.ndarray) -> np.ndarray:
    """[12 tonics, 36]: each of the three chroma rows rolled so the candidate tonic comes first, standardised."""
    rolled = np.stack([np.roll(chroma, -t, axis=-1) for t in range(12)])  # [12, 3, 12]
    rolled = (rolled - rolled.mean(axis=-1, keepdims=True)) / (rolled.std(axis=-1, keepdims=True) + 1e-9)
    return rolled.reshape(12, -1)


@lru_cache(maxsize=1)
def key_model() -> dict[str, np.ndarray]:
    """The key network fitted by `scripts/train_descriptors.py`: w1 [36, hidden], b1, w2 [hidden, 2], b2."""
    from safetensors.numpy import load_file

    return {k: v.astype(np.float64) for k, v in load_file(str(KEY_MODEL)).items()}


def key_probabilities(chroma: np.ndarray, model: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """[24] probability of each key: C..B major, then C..B minor."""
    m = key_model() if model is None else model
    h = np.maximum(key_inputs(chroma) @ m["w1"] + m["b1"], 0.0)
    s = (h @ m["w2"] + m["b2"]).T.reshape(-1)  # major scores of the 12 tonics, then minor
    p = np.exp(s - s.max())
    return p / p.sum()


def key(chroma: np.ndarray, model: dict[str, np.ndarray] | None = None) -> tuple[str | None, float]:
    """(key, its probability) from `key_chroma`'s [3, 12]; (None, 0) for silence or a flat chroma."""
    whole = chroma[0]
    if not np.any(whole > 0) or np.std(whole) == 0:
        return None, 0.0
    p = key_probabilities(chroma, model)
    i = int(np.argmax(p))
    return f"{PITCH_CLASSES[i % 12]} {'minor' if i >= 12 else 'major'}", float(p[i])


def loudness(data: np.ndarray, sr: int) -> tuple[float | None, float | None]:
    """Integrated loudness (LUFS) and loudness range (LU) of [samples, channels] audio."""
    import pyloudnorm

    data = data[:, :5] if data.shape[1] > 5 else data
    if len(data) < int(0.4 * sr):
        return None, None
    meter = pyloudnorm.Meter(sr)
    integrated = float(meter.integrated_loudness(data))
    weighted = np.array(data, dtype=np.float64, copy=True)
    for stage in meter._filters.values():  # the same K-weighting the integrated measure used
        for ch in range(weighted.shape[1]):
            weighted[:, ch] = stage.apply_filter(weighted[:, ch])
    gains = np.array([1.0, 1.0, 1.0, 1.41, 1.41])[: weighted.shape[1]]
    block = 3 * sr
    power = [
        float(np.sum(gains * np.mean(weighted[s : s + block] ** 2, axis=0)))
        for s in range(0, len(weighted) - block + 1, sr)
    ]
    st = np.array([-0.691 + 10 * np.log10(p) for p in power if p > 0])
    st = st[st > -70.0]
    if len(st) >= 2:
        st = st[st > 10 * np.log10(np.mean(10 ** (st / 10))) - 20.0]
    lra = float(np.percentile(st, 95) - np.percentile(st, 10)) if len(st) >= 2 else None
    return (integrated if np.isfinite(integrated) else None), lra


def pulse_and_pitch(y: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, np.ndarray, np.ndarray]:
    """What tempo and key are measured from, for mono audio at `ANALYSIS_SR`: (magnitude STFT, onset strength per
    register [4, frames], onsets per second, chroma change [frames], chroma [3, 12] as `key` reads it);
    `scripts/train_descriptors.py` caches all but the STFT to fit the key model and compare tempo choices."""
    import librosa

    stft = np.abs(librosa.stft(y, n_fft=2048, hop_length=HOP))
    mel_db = librosa.power_to_db(librosa.feature.melspectrogram(S=stft**2, sr=ANALYSIS_SR))
    onset_env = librosa.onset.onset_strength(S=mel_db, sr=ANALYSIS_SR, hop_length=HOP)
    registers = librosa.onset.onset_strength_multi(S=mel_db, sr=ANALYSIS_SR, hop_length=HOP, channels=TEMPO_REGISTERS)
    onsets = librosa.onset.onset_detect(onset_envelope=onset_env, sr=ANALYSIS_SR, hop_length=HOP)
    return stft, registers, len(onsets) / max(len(y) / ANALYSIS_SR, 1e-3), harmonic_change(y), key_chroma(y)


def spectral_centroid(stft: np.ndarray) -> np.ndarray:
    """[frames] spectral centroid (Hz) of a magnitude STFT at `ANALYSIS_SR` (its window length read from its bins,
    as librosa does): the same arithmetic as `librosa.feature.spectral_centroid(S=stft)`, hence the same bits,
    without its checks and normalisation helper, which took a quarter of the analysis pass (15 against 76 ms for a
    65 s track)."""
    import librosa

    n_fft = 2 * (stft.shape[0] - 1)

    length = np.sum(np.abs(stft).astype(float), axis=0, keepdims=True)
    length[length < np.finfo(stft.dtype).tiny] = 1.0  # silent frames: left unnormalised, as librosa does
    normalised = np.empty_like(stft)
    normalised[:] = stft / length
    return np.sum(librosa.fft_frequencies(sr=ANALYSIS_SR, n_fft=n_fft)[:, None] * normalised, axis=0)


def analyse_samples(data: np.ndarray, sr: int) -> Descriptors:
    """Descriptors of [samples, channels] float audio at `sr`."""
    import librosa

    from tunelens.embed.audio import to_mono_resampled

    lufs, lra = loudness(data, sr)
    y = to_mono_resampled(data, sr, ANALYSIS_SR)
    stft, registers, onset_rate, harmony, chroma = pulse_and_pitch(y)
    bpm, bpm_conf = tempo(registers, onset_rate, harmony)
    k, k_conf = key(chroma)
    centroid = spectral_centroid(stft)
    rms = librosa.feature.rms(S=stft, frame_length=2048)[0]
    duration = len(y) / ANALYSIS_SR
    spans = np.array_split(rms, 10) if len(rms) >= 10 else [rms]
    energy = np.array([np.sqrt(np.mean(s**2)) if len(s) else 0.0 for s in spans])
    energy_db = 20 * np.log10(np.maximum(energy, 1e-6) / max(energy.max(), 1e-6))
    loud_frames = centroid[rms > 0.1 * rms.max()] if rms.max() > 0 else centroid
    return Descriptors(duration=round(duration, 3), tempo_bpm=None if bpm is None else round(bpm, 2),
                       tempo_confidence=round(bpm_conf, 3), key=k, key_confidence=round(k_conf, 4),
                       loudness_lufs=None if lufs is None else round(lufs, 2),
                       loudness_range_lu=None if lra is None else round(lra, 2),
                       brightness_hz=round(float(np.median(loud_frames)) if len(loud_frames) else 0.0, 1),
                       onset_rate=round(onset_rate, 3),
                       energy_db=[round(float(x), 2) for x in energy_db])


def analyse(path: str | Path) -> Descriptors:
    """Descriptors of an audio file; raises `embed.audio.AudioError` naming the reason when it cannot be read."""
    from tunelens.embed.audio import read_audio

    data, sr = read_audio(path)
    return analyse_samples(data.astype(np.float32, copy=False), sr)


def analyse_paths(paths: list[str]) -> list[tuple[dict | None, str | None]]:
    """(descriptor row, None) or (None, why it failed) for each file: a file that fails never stops the others."""
    from tunelens.embed.audio import error_reason

    out: list[tuple[dict | None, str | None]] = []
    for p in paths:
        try:
            out.append((analyse(p).as_row(), None))
        except Exception as e:  # noqa: BLE001 - any failure is recorded against this file, the batch goes on
            out.append((None, error_reason(e)))
    return out
