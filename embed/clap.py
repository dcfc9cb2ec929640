"""CLAP through transformers' `ClapModel`: any checkpoint given as a local folder or a hub id.

The processor (feature extractor + tokenizer) is kept apart from the model. Non-fusion checkpoints need
`truncation="rand_trunc"` (the extractor's default "fusion" crashes them); windows are exactly the model's
10 s, so no random crop ever happens and vectors are deterministic.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from embed.base import EncoderOptions, ModelUnavailableError, l2_normalize, resolve_device


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes", "on"}


def _load_pretrained(cls, source: str, **kwargs):
    """Load from a local folder, the local cache, or (only when online and asked by hub name) the hub."""
    if Path(source).expanduser().is_dir():
        return cls.from_pretrained(str(Path(source).expanduser()), local_files_only=True, **kwargs)
    try:
        return cls.from_pretrained(source, local_files_only=True, **kwargs)
    except (OSError, ValueError) as cached_error:
        if _offline():
            raise ModelUnavailableError(
                f"the CLAP model {source!r} is not on this machine and HF_HUB_OFFLINE is set. Download it where a "
                f"network is available (`hf download {source}`), then copy the Hugging Face cache here or pass "
                f"the downloaded folder as --model clap:/path/to/folder"
            ) from cached_error
    try:
        return cls.from_pretrained(source, **kwargs)
    except Exception as e:
        raise ModelUnavailableError(
            f"could not load the CLAP model {source!r}: {str(e).splitlines()[0]}. Pass a local folder as "
            f"--model clap:/path/to/folder, or check the hub id and your network"
        ) from None


def _weights_fingerprint(source: str) -> str:
    """Short hash of the checkpoint's config and weight file sizes, so changed weights change the version."""
    folder = Path(source).expanduser()
    if not folder.is_dir():
        return "hub"
    h = hashlib.blake2b(digest_size=6)
    for f in sorted(folder.iterdir()):
        if f.is_file() and f.suffix in {".json", ".safetensors", ".bin"}:
            h.update(f.name.encode())
            h.update(f.read_bytes() if f.suffix == ".json" else str(f.stat().st_size).encode())
    return h.hexdigest()


class ClapEncoder:
    """A CLAP audio tower and text tower sharing one projection space."""

    def __init__(self, source: str, options: EncoderOptions):
        import torch
        import transformers
        from transformers import AutoTokenizer, ClapFeatureExtractor, ClapModel

        transformers.utils.logging.disable_progress_bar()
        transformers.utils.logging.set_verbosity_error()
        if not source:
            raise ValueError("a CLAP model needs a checkpoint: clap:FOLDER or clap:HUB_ID (e.g. clap:laion/larger_clap_music)")
        self.device, self.dtype = resolve_device(options)
        self.batch_size = options.batch_size
        self.model = _load_pretrained(ClapModel, source, dtype=self.dtype).to(self.device).eval()
        self.feature_extractor = _load_pretrained(ClapFeatureExtractor, source)
        self.tokenizer = _load_pretrained(AutoTokenizer, source)
        if len(self.tokenizer) == 0 or not self.tokenizer("music")["input_ids"]:
            raise ModelUnavailableError(f"the tokenizer of {source!r} loaded empty: its tokenizer files are missing")
        self.fusion = bool(self.model.config.audio_config.enable_fusion)
        self.feature_extractor.truncation = "fusion" if self.fusion else "rand_trunc"
        self.sample_rate = int(self.feature_extractor.sampling_rate)
        self.window_seconds = float(self.feature_extractor.nb_max_samples / self.sample_rate)
        self.dim = int(self.model.config.projection_dim)
        self.name = f"clap:{source}"
        self.version = f"clap-{_weights_fingerprint(source)}-fusion{int(self.fusion)}"
        self._torch = torch

    def embed_audio(self, windows: np.ndarray) -> np.ndarray:
        torch = self._torch
        out = []
        for i in range(0, len(windows), self.batch_size):
            chunk = list(windows[i:i + self.batch_size])
            feats = self.feature_extractor(
                chunk, sampling_rate=self.sample_rate, return_tensors="pt", truncation=self.feature_extractor.truncation,
            )
            with torch.inference_mode():
                audio = self.model.audio_model(
                    input_features=feats["input_features"].to(self.device, self.dtype),
                    is_longer=feats["is_longer"].to(self.device) if self.fusion else None,
                )
                out.append(self.model.audio_projection(audio.pooler_output).float().cpu().numpy())
        return np.concatenate(out).astype(np.float32)

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        torch = self._torch
        out = []
        for i in range(0, len(texts), 64):
            tok = self.tokenizer(list(texts[i:i + 64]), padding=True, truncation=True, return_tensors="pt").to(self.device)
            with torch.inference_mode():
                text = self.model.text_model(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"])
                out.append(self.model.text_projection(text.pooler_output).float().cpu().numpy())
        return l2_normalize(np.concatenate(out))


def load_clap(arg: str, options: EncoderOptions) -> ClapEncoder:
    return ClapEncoder(arg, options)
