"""Musical descriptors measured from the audio: the evidence captions and answers are built on.

Tempo: onset strength in four registers (mel bands 0-16-32-64-128: bass, tenor, middle, treble, after
Klapuri, Eronen & Astola 2006), so a bass line marking the beat is not drowned by upper voices that
subdivide it; the normalised autocorrelations of the registers that sound are averaged, weighted by a
log-normal prior centred at 120 BPM (one octave wide, the usual perceptual prior), and the peak is
refined to sub-frame lag by a parabola; the confidence is the averaged autocorrelation at that lag. Key: mean
chroma correlated with Temperley's major and minor key profiles. Loudness: ITU-R BS.1770 integrated loudness
(pyloudnorm) on the file's own channels and rate; loudness range per EBU Tech 3342 (10th to 95th percentile of gated
3 s short-term loudness). Brightness: median spectral centroid. Energy: RMS in ten equal spans.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tunelens.index.core.schema import Descriptors  # the stored record; measured here

DESCRIPTORS_VERSION = "d2"
ANALYSIS_SR = 22050
HOP = 256
TEMPO_PRIOR_BPM = 120.0
TEMPO_PRIOR_OCTAVES = 1.0
TEMPO_REGISTERS = [0, 16, 32, 64, 128]  # mel band edges (of 128)
PITCH_CLASSES = ["C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"]
# Temperley (2001), "The Cognition of Basic Musical Structures", as revised from Kostka & Payne.
MAJOR_PROFILE = np.array([5.0, 2.0, 3.5, 2.0, 4.5, 4.0, 2.0, 4.5, 2.0, 3.5, 1.5, 4.0])
MINOR_PROFILE = np.array([5.0, 2.0, 3.5, 4.5, 2.0, 4.0, 2.0, 4.5, 3.5, 2.0, 1.5, 4.0])


def tempo(onset_envs: np.ndarray, sr: int = ANALYSIS_SR, hop: int = HOP) -> tuple[float | None, float]:
    """(BPM, confidence) from onset strength envelopes [registers, frames] (or one envelope)."""
    import librosa

    envs = np.atleast_2d(onset_envs)
    if envs.shape[1] < 8:
        return None, 0.0
    acfs = []
    for env in envs:
        acf = librosa.autocorrelate(env - env.mean())
        if np.any(env > 0) and acf[0] > 0:
            acfs.append(acf / acf[0])
    if not acfs:
        return None, 0.0
    acf = np.mean(acfs, axis=0)
    lags = np.arange(1, len(acf) - 1)
    bpm = 60.0 * sr / hop / lags
    prior = np.exp(-0.5 * (np.log2(bpm / TEMPO_PRIOR_BPM) / TEMPO_PRIOR_OCTAVES) ** 2)
    score = np.where((bpm >= 40) & (bpm <= 220), acf[lags] * prior, -np.inf)
    if not np.isfinite(score).any():
        return None, 0.0
    lag = int(lags[np.argmax(score)])
    a, b, c = acf[lag - 1], acf[lag], acf[lag + 1]
    denom = a - 2 * b + c
    shift = float(np.clip(0.5 * (a - c) / denom, -0.5, 0.5)) if denom != 0 else 0.0
    return 60.0 * sr / hop / (lag + shift), float(max(0.0, min(1.0, b)))


def key(chroma_mean: np.ndarray) -> tuple[str | None, float]:
    if not np.any(chroma_mean > 0) or np.std(chroma_mean) == 0:
        return None, 0.0
    scores = []
    for mode, profile in (("major", MAJOR_PROFILE), ("minor", MINOR_PROFILE)):
        for tonic in range(12):
            scores.append(
                (float(np.corrcoef(chroma_mean, np.roll(profile, tonic))[0, 1]), f"{PITCH_CLASSES[tonic]} {mode}")
            )
    scores.sort(reverse=True)
    return scores[0][1], scores[0][0] - scores[1][0]


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


def analyse_samples(data: np.ndarray, sr: int) -> Descriptors:
    """Descriptors of [samples, channels] float audio at `sr`."""
    import librosa

    from tunelens.embed.audio import to_mono_resampled

    lufs, lra = loudness(data, sr)
    y = to_mono_resampled(data, sr, ANALYSIS_SR)
    stft = np.abs(librosa.stft(y, n_fft=2048, hop_length=HOP))
    mel = librosa.feature.melspectrogram(S=stft**2, sr=ANALYSIS_SR)
    mel_db = librosa.power_to_db(mel)
    onset_env = librosa.onset.onset_strength(S=mel_db, sr=ANALYSIS_SR, hop_length=HOP)
    registers = librosa.onset.onset_strength_multi(S=mel_db, sr=ANALYSIS_SR, hop_length=HOP, channels=TEMPO_REGISTERS)
    bpm, bpm_conf = tempo(registers)
    onsets = librosa.onset.onset_detect(onset_envelope=onset_env, sr=ANALYSIS_SR, hop_length=HOP)
    chroma = librosa.feature.chroma_stft(S=stft**2, sr=ANALYSIS_SR, n_fft=2048)
    k, k_conf = key(chroma.mean(axis=1))
    centroid = librosa.feature.spectral_centroid(S=stft, sr=ANALYSIS_SR)[0]
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
                       onset_rate=round(len(onsets) / max(duration, 1e-3), 3),
                       energy_db=[round(float(x), 2) for x in energy_db])


def analyse(path: str | Path) -> Descriptors:
    """Descriptors of an audio file; raises `embed.audio.AudioError` naming the reason when it cannot be read."""
    from tunelens.embed.audio import read_audio

    data, sr = read_audio(path)
    return analyse_samples(data.astype(np.float32, copy=False), sr)
