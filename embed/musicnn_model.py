"""PyTorch port of musicnn (Pons & Serra, 2019): the musically motivated CNN tagger, inference only.

Front end: 16 kHz audio → |STFT|² (n_fft 512, hop 256, Hann, centred) → 96 Slaney mel bands →
log10(1 + 10000·mel) → 187-frame (3 s) patches. Model: timbral (7×38, 7×67) and temporal (128, 64, 32)
convolutions max-pooled over frequency, three dense 1-D conv layers with residuals, max+mean pooling
over time, 200-unit dense layer (the "penultimate" features) and 50 tag logits. Layer order and the
interleaved max/mean flatten follow the original TF graph exactly; batch norm uses TF's eps 1e-3.
"""
from __future__ import annotations

import hashlib

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

SR, N_FFT, HOP, N_MELS, N_FRAMES = 16000, 512, 256, 96, 187
BN_EPS = 1e-3


class MelFrontEnd(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mel_basis", torch.zeros(N_MELS, N_FFT // 2 + 1))
        self.register_buffer("window", torch.hann_window(N_FFT, periodic=True))

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """[B, samples] → [B, frames, 96] log-compressed mel spectrogram."""
        spec = torch.stft(audio, N_FFT, HOP, window=self.window, center=True, pad_mode="constant", return_complex=True)
        power = spec.real.square() + spec.imag.square()
        mel = torch.matmul(self.mel_basis, power)
        return torch.log10(10000.0 * mel + 1.0).transpose(1, 2)


# The timbral convolutions of the export graph run in the frequency domain of the mel axis, in this many groups of
# filters, so that each group's products stay in cache (on the project's machine one group was 1.4x slower than
# four; two to twelve timed the same).
FOURIER_GROUPS = 4


def fourier_matrices(weight: np.ndarray, bands: int = N_MELS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The constants of `_fourier_max_over_frequency` for a timbral filter bank `weight` [C, taps, kf], in float64:
    analysis [2·bins, bands] (rows: bin, real/imaginary), the per-bin products [bins, 2C, 2·taps] (rows: real/
    imaginary, filter; columns: real/imaginary, tap) and synthesis [kept, 2·bins], kept = bands − kf + 1."""
    bins, kept = bands // 2 + 1, bands - weight.shape[2] + 1
    spectrum = np.fft.rfft(np.eye(bands), axis=1)  # x @ spectrum = rfft(x)
    analysis = np.stack([spectrum.real.T, spectrum.imag.T], axis=1).reshape(2 * bins, bands)
    units = np.concatenate([np.eye(bins), 1j * np.eye(bins)])  # each bin's real, then imaginary, part alone
    synthesis = np.fft.irfft(units, n=bands, axis=1)[:, :kept].reshape(2, bins, kept).transpose(2, 1, 0)
    f = np.fft.rfft(np.pad(weight, ((0, 0), (0, 0), (0, bands - weight.shape[2]))), axis=2)  # [C, taps, bins]
    # a correlation: Y = conj(W)·X, so Re Y = a·Re X + b·Im X and Im Y = a·Im X − b·Re X, with W = a + ib
    a, b = f.real.transpose(2, 0, 1), f.imag.transpose(2, 0, 1)  # [bins, C, taps]
    products = np.concatenate([np.concatenate([a, b], 2), np.concatenate([-b, a], 2)], 1)
    return analysis, products, synthesis.reshape(kept, 2 * bins)


def _fourier_max_over_frequency(x: torch.Tensor, conv: nn.Conv2d, weight: torch.Tensor) -> torch.Tensor:
    """max over frequency of conv2d(x, weight) for a timbral filter bank (x [B, 1, T + taps − 1, 96], weight
    [C, 1, taps, kf]), with 2.6x fewer multiplications than the direct convolution: the ONNX export's graph.

    Along the 96 mel bands a filter is a correlation, and a circular one over 96 points is exact at every position
    the valid convolution keeps (f + kf <= 96: nothing wraps). In the real DFT of the bands (49 bins) it becomes one
    complex product per bin, summed over the taps in time: per bin a [2C, 14] × [14, T] matrix product. The inverse
    DFT of the kept positions is one [kept, 98] × [98, C·T] product, then the maximum over positions. ONNX Runtime
    runs these products near the core's peak, as it does the direct convolution, so the arithmetic saved is time
    saved: one tagger's timbral convolutions took 5.0 instead of 8.5 ms per patch. The constants are computed in
    float64 and rounded once; results differ from the direct convolution's by about 1e-6 of their size. They are
    kept on `conv` for as long as its weights, batch norm signs (`weight` carries them) and device stay the same.
    """
    w = weight.detach().cpu().numpy()[:, 0]
    key = (hashlib.blake2b(w.tobytes(), digest_size=16).digest(), str(x.device))
    cached = getattr(conv, "_fourier", None)
    if cached is None or cached[0] != key:
        w = w.astype(np.float64)
        analysis, products, synthesis = fourier_matrices(w, x.shape[3])
        groups = np.array_split(np.arange(w.shape[0]), FOURIER_GROUPS)
        as32 = lambda v: torch.tensor(v, dtype=torch.float32, device=x.device)  # noqa: E731
        cached = (key, as32(analysis), as32(synthesis),
                  [as32(products[:, np.concatenate([g, g + w.shape[0]])]) for g in groups])
        conv._fourier = cached
    _, analysis, synthesis, group_products = cached
    batch, taps = x.shape[0], weight.shape[2]
    bins, length = analysis.shape[0] // 2, x.shape[2] - taps + 1
    spec = torch.matmul(analysis, x[:, 0].transpose(1, 2)).reshape(batch, bins, 2, x.shape[2])
    spec = torch.stack([spec[..., t : t + length] for t in range(taps)], dim=3).reshape(batch, bins, 2 * taps, length)
    out = []
    for products in group_products:
        y = torch.matmul(products, spec).reshape(batch, 2 * bins, -1)  # rows (bin, real/imaginary), columns (filter, t)
        out.append(torch.matmul(synthesis, y).amax(dim=1).reshape(batch, -1, length))
    return torch.cat(out, dim=1)


def _max_over_frequency(conv: nn.Conv2d, bn: nn.BatchNorm2d, x: torch.Tensor, timbral: bool,
                        export: bool = False) -> torch.Tensor:
    """max over frequency of bn(relu(conv(x))), from one max over the raw convolution output.

    Bias, ReLU and inference batch norm are monotone per channel, decreasing where the BN scale is
    negative; flipping the sign of those channels' filters turns their min into a max. So the four
    passes over the large [B, C, T, F] activation become one. `export=True` is the graph for ONNX export: the
    timbral filters in the frequency domain (`_fourier_max_over_frequency`), and the temporal ones as a plain
    convolution (an Unfold has no static shape there) with a max pool over frequency instead of a reduction, which
    ONNX Runtime runs in its blocked (NCHWc) convolution layout, so the large activation is never reordered back
    (that reorder and the reduction took 16% of a patch's time).
    """
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    sign = torch.where(scale < 0, -1.0, 1.0)
    weight = conv.weight * sign[:, None, None, None]
    if timbral and export:
        z = _fourier_max_over_frequency(x, conv, weight)
    elif timbral:
        # A one-channel 2-D convolution runs poorly on oneDNN; unfolding the k frequency bins a timbral
        # filter spans into channels gives a channels-last convolution doing the same arithmetic faster.
        kf = conv.kernel_size[1]
        x = x[:, 0].unfold(2, kf, 1).permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)
        weight = weight[:, 0].permute(0, 2, 1)[..., None].contiguous(memory_format=torch.channels_last)
        z = F.conv2d(x, weight).permute(0, 2, 3, 1).amax(dim=2).transpose(1, 2)  # reduce in [B, T, F, C] order
    elif not export:
        z = F.conv2d(x, weight).amax(dim=3)
    else:  # a temporal convolution in the export graph
        # filters padded with zeros to a multiple of 16 (ONNX Runtime's channel block: 16 on AVX-512, 8 on AVX2),
        # as its blocked max pool needs; the blocked convolution pads them itself anyway, so it costs nothing
        channels = weight.shape[0]
        pad = -channels % 16
        if pad:
            weight = torch.cat([weight, weight.new_zeros((pad, *weight.shape[1:]))])
        z = F.max_pool2d(F.conv2d(x, weight), kernel_size=(1, N_MELS - conv.kernel_size[1] + 1)).squeeze(3)
        z = z[:, :channels] if pad else z
    h = F.relu(z * sign[None, :, None] + conv.bias[None, :, None])
    return (h - bn.running_mean[None, :, None]) * scale[None, :, None] + bn.bias[None, :, None]


def _bn(n: int) -> nn.BatchNorm1d:
    return nn.BatchNorm1d(n, eps=BN_EPS)


class Musicnn(nn.Module):
    def __init__(self, n_classes: int = 50, midend: int = 64, backend: int = 200) -> None:
        super().__init__()
        self.bn_input = nn.BatchNorm2d(1, eps=BN_EPS)
        self.timbral = nn.ModuleList([nn.Conv2d(1, 204, (7, 38)), nn.Conv2d(1, 204, (7, 67))])
        self.temporal = nn.ModuleList([nn.Conv2d(1, 51, (k, 1)) for k in (128, 64, 32)])
        self.bn_front = nn.ModuleList([nn.BatchNorm2d(c, eps=BN_EPS) for c in (204, 204, 51, 51, 51)])
        front = 204 * 2 + 51 * 3
        self.mid = nn.ModuleList(
            [nn.Conv1d(front, midend, 7), nn.Conv1d(midend, midend, 7), nn.Conv1d(midend, midend, 7)]
        )
        self.bn_mid = nn.ModuleList([_bn(midend) for _ in range(3)])
        pooled = 2 * (front + 3 * midend)
        self.bn_pool = _bn(pooled)
        self.dense = nn.Linear(pooled, backend)
        self.bn_dense = _bn(backend)
        self.out = nn.Linear(backend, n_classes)
        self.export_graph = False  # True: the graph ONNX export takes (scripts/export_onnx.py)

    def forward(self, patches: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, 187, 96] mel patches → (logits [B, 50], penultimate [B, 200])."""
        x = self.bn_input(patches[:, None])
        feats = [
            _max_over_frequency(conv, bn, F.pad(x, (0, 0, 3, 3)), True, self.export_graph)
            for conv, bn in zip(self.timbral, self.bn_front[:2])
        ]
        for conv, bn in zip(self.temporal, self.bn_front[2:]):
            k = conv.kernel_size[0]
            feats.append(
                _max_over_frequency(conv, bn, F.pad(x, (0, 0, (k - 1) // 2, k // 2)), False, self.export_graph)
            )  # TF "same" padding
        front = torch.cat(feats, dim=1)  # [B, 561, T]
        m1 = self.bn_mid[0](F.relu(self.mid[0](F.pad(front, (3, 3)))))
        m2 = self.bn_mid[1](F.relu(self.mid[1](F.pad(m1, (3, 3))))) + m1
        m3 = self.bn_mid[2](F.relu(self.mid[2](F.pad(m2, (3, 3))))) + m2
        mid = torch.cat([front, m1, m2, m3], dim=1)  # [B, 753, T]
        pooled = torch.stack([mid.amax(dim=2), mid.mean(dim=2)], dim=2).flatten(1)  # TF interleaves max, mean
        penultimate = self.bn_dense(F.relu(self.dense(self.bn_pool(pooled))))
        return self.out(penultimate), penultimate


def tf_to_torch_state(tf: dict) -> dict[str, torch.Tensor]:
    """Map the variables of a musicnn TF checkpoint onto `Musicnn`'s state dict."""
    t = lambda a: torch.from_numpy(a.copy())  # noqa: E731
    sd: dict[str, torch.Tensor] = {}

    def bn(dst: str, src: str) -> None:
        for a, b in (("weight", "gamma"), ("bias", "beta"), ("running_mean", "moving_mean"),
                     ("running_var", "moving_variance")):
            sd[f"{dst}.{a}"] = t(tf[f"{src}/{b}"])

    bn("bn_input", "batch_normalization")
    convs = ["timbral.0", "timbral.1", "temporal.0", "temporal.1", "temporal.2"]
    for i, name in enumerate(convs):
        src = "conv2d" if i == 0 else f"conv2d_{i}"
        sd[f"{name}.weight"] = t(tf[f"{src}/kernel"].transpose(3, 2, 0, 1))
        sd[f"{name}.bias"] = t(tf[f"{src}/bias"])
        bn(f"bn_front.{i}", f"batch_normalization_{i + 1}")
    for j in range(3):
        k = tf[f"conv2d_{5 + j}/kernel"][:, :, 0, :]  # [7, in, out]
        sd[f"mid.{j}.weight"] = t(k.transpose(2, 1, 0))
        sd[f"mid.{j}.bias"] = t(tf[f"conv2d_{5 + j}/bias"])
        bn(f"bn_mid.{j}", f"batch_normalization_{6 + j}")
    bn("bn_pool", "batch_normalization_9")
    sd["dense.weight"], sd["dense.bias"] = t(tf["dense/kernel"].T), t(tf["dense/bias"])
    bn("bn_dense", "batch_normalization_10")
    sd["out.weight"], sd["out.bias"] = t(tf["dense_1/kernel"].T), t(tf["dense_1/bias"])
    return sd
