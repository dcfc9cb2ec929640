"""PyTorch port of musicnn (Pons & Serra, 2019): the musically motivated CNN tagger, inference only.

Front end: 16 kHz audio → |STFT|² (n_fft 512, hop 256, Hann, centred) → 96 Slaney mel bands →
log10(1 + 10000·mel) → 187-frame (3 s) patches. Model: timbral (7×38, 7×67) and temporal (128, 64, 32)
convolutions max-pooled over frequency, three dense 1-D conv layers with residuals, max+mean pooling
over time, 200-unit dense layer (the "penultimate" features) and 50 tag logits. Layer order and the
interleaved max/mean flatten follow the original TF graph exactly; batch norm uses TF's eps 1e-3.
"""
from __future__ import annotations

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


def _max_over_frequency(conv: nn.Conv2d, bn: nn.BatchNorm2d, x: torch.Tensor, timbral: bool,
                        export: bool = False) -> torch.Tensor:
    """max over frequency of bn(relu(conv(x))), from one max over the raw convolution output.

    Bias, ReLU and inference batch norm are monotone per channel, decreasing where the BN scale is
    negative; flipping the sign of those channels' filters turns their min into a max. So the four
    passes over the large [B, C, T, F] activation become one. `export=True` is the graph for ONNX export: the plain
    convolution (its Unfold has no static shape there, and ONNX Runtime runs that faster anyway) and a max pool
    over frequency instead of a reduction, which ONNX Runtime runs in its blocked (NCHWc) convolution layout, so
    the large activation is never reordered back (that reorder and the reduction took 16% of a patch's time).
    """
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    sign = torch.where(scale < 0, -1.0, 1.0)
    weight = conv.weight * sign[:, None, None, None]
    if timbral and not export:
        # A one-channel 2-D convolution runs poorly on oneDNN; unfolding the k frequency bins a timbral
        # filter spans into channels gives a channels-last convolution doing the same arithmetic faster.
        kf = conv.kernel_size[1]
        x = x[:, 0].unfold(2, kf, 1).permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)
        weight = weight[:, 0].permute(0, 2, 1)[..., None].contiguous(memory_format=torch.channels_last)
        z = F.conv2d(x, weight).permute(0, 2, 3, 1).amax(dim=2).transpose(1, 2)  # reduce in [B, T, F, C] order
    elif not export:
        z = F.conv2d(x, weight).amax(dim=3)
    else:
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
