"""The one protocol every audio-text encoder backend implements, and the pipeline identity stored with a library."""
from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

# Bump when decoding, resampling, windowing or pooling changes in a way that changes vectors.
PIPELINE_VERSION = 1


class ModelUnavailableError(RuntimeError):
    """A model could not be loaded; the message says which and how to get it."""


@dataclass(frozen=True)
class EncoderOptions:
    """How to run an encoder: where, at what precision, and how many windows per model call."""

    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:N"
    precision: str = "auto"  # "auto" (fp16 on GPU, fp32 on CPU) | "fp32" | "fp16" | "bf16"
    batch_size: int = 16


@runtime_checkable
class AudioTextEncoder(Protocol):
    """Maps fixed-length mono windows and texts into one space where inner product means similarity."""

    name: str  # the registry spec that recreates this encoder, e.g. "clap:laion/larger_clap_music"
    dim: int
    sample_rate: int
    window_seconds: float
    version: str  # changes whenever the encoder's outputs would change (weights, preprocessing)
    # optional `vector_blocks`: (start, end) ranges of the vector from different sources, pooled each on its own

    def embed_audio(self, windows: np.ndarray) -> np.ndarray:
        """[B, window_seconds*sample_rate] float32 → [B, dim] raw (not normalised) window vectors."""
        ...

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        """N texts → [N, dim] L2-normalised float32 vectors."""
        ...


@dataclass(frozen=True)
class PipelineSpec:
    """Everything that determines a stored vector. Two libraries can only be mixed when these are equal."""

    model: str
    encoder_version: str
    dim: int
    sample_rate: int
    window_seconds: float
    hop_seconds: float
    short_padding: str = "repeat"
    pooling: str = "mean-then-l2"
    pipeline_version: int = PIPELINE_VERSION

    @classmethod
    def for_encoder(cls, encoder: AudioTextEncoder) -> PipelineSpec:
        return cls(model=encoder.name, encoder_version=encoder.version, dim=encoder.dim,
                   sample_rate=encoder.sample_rate, window_seconds=encoder.window_seconds,
                   hop_seconds=encoder.window_seconds, pooling=pooling_name(getattr(encoder, "vector_blocks", None)))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> PipelineSpec:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})

    def differences(self, other: PipelineSpec) -> list[str]:
        a, b = self.to_dict(), other.to_dict()
        return [f"{k}: {a[k]!r} vs {b[k]!r}" for k in a if a[k] != b[k]]


def cache_dir() -> Path:
    """tunelens' per-machine cache (converted checkpoints, exported graphs): $TUNELENS_CACHE_DIR, else
    $XDG_CACHE_HOME/tunelens, else ~/.cache/tunelens. Everything in it can be rebuilt."""
    base = os.environ.get("TUNELENS_CACHE_DIR")
    if base:
        return Path(base)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tunelens"


_noted: set[str] = set()


def note_once(message: str) -> None:
    """One line on stderr, once per process: a fallback the user should know about (a slower runtime), not an error."""
    if message not in _noted:
        _noted.add(message)
        print(f"note: {message}", file=sys.stderr)


RUNTIME_ENV = "TUNELENS_RUNTIME"  # "torch" keeps every model on torch; by default the CPU uses ONNX Runtime
ORT_MISSING = ("onnxruntime is not installed, so tunelens runs its models on torch (slower); "
               "`pip install onnxruntime` speeds them up")


def onnxruntime_or_none():
    """The onnxruntime module, or None where torch must run the models: $TUNELENS_RUNTIME=torch, or onnxruntime
    missing (one line says so)."""
    if os.environ.get(RUNTIME_ENV, "onnxruntime").lower() == "torch":
        return None
    try:
        import onnxruntime
    except ImportError:
        note_once(ORT_MISSING)
        return None
    return onnxruntime


def onnx_session(model: Path | bytes, threads: int):
    """An ONNX Runtime CPU session on `threads` threads that sleep when idle (spinning threads would take the cores
    other work needs), or None where torch must run (`onnxruntime_or_none`)."""
    ort = onnxruntime_or_none()
    if ort is None:
        return None
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, threads)
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return ort.InferenceSession(str(model) if isinstance(model, Path) else model, options,
                                providers=["CPUExecutionProvider"])


def l2_normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)


Blocks = tuple[tuple[int, int], ...]


def normalize_blocks(x: np.ndarray, blocks: Blocks | None = None) -> np.ndarray:
    """L2-normalise each block of the last axis on its own, scaled by 1/sqrt(number of blocks), so the whole has
    norm 1 and each source of a vector made of several (an encoder's `vector_blocks`) weighs the same whatever the
    others do; without blocks, plain L2."""
    if not blocks:
        return l2_normalize(x)
    x = np.array(x, dtype=np.float32, copy=True)
    for a, b in blocks:
        x[..., a:b] = l2_normalize(x[..., a:b]) / np.sqrt(len(blocks))
    return x


def pooling_name(blocks: Blocks | None) -> str:
    """How track vectors are pooled, as the library's pipeline records it."""
    return "mean-then-l2" if not blocks else "mean-then-l2-per-block:" + ",".join(f"{a}-{b}" for a, b in blocks)


def resolve_device(options: EncoderOptions) -> tuple[str, object]:
    """(device, torch dtype) for the options on this machine."""
    import torch

    device = options.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelUnavailableError(f"device {device!r} was asked for, but torch sees no CUDA GPU here")
    precision = options.precision
    if precision == "auto":
        precision = "fp16" if device.startswith("cuda") else "fp32"
    dtypes = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    if precision not in dtypes:
        raise ValueError(f"unknown precision {precision!r}; use one of auto, fp32, fp16, bf16")
    return device, dtypes[precision]
