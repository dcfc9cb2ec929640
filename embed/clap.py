"""CLAP through transformers' `ClapModel`: any checkpoint given as a local folder, a hub id, or a LAION-CLAP `.pt`
file (converted once into a folder by `embed/laion.py`).

The processor (feature extractor + tokenizer) is kept apart from the model. Non-fusion checkpoints need
`truncation="rand_trunc"` (the extractor's default "fusion" crashes them); windows are exactly the model's
10 s, so no random crop ever happens and vectors are deterministic.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tunelens.embed.base import EncoderOptions, l2_normalize, resolve_device
from tunelens.embed.hf import check_tokenizer, load_pretrained, quiet_transformers, weights_fingerprint


class ClapEncoder:
    """A CLAP audio tower and text tower sharing one projection space."""

    def __init__(self, source: str, options: EncoderOptions):
        import torch
        from transformers import AutoTokenizer, ClapFeatureExtractor, ClapModel

        quiet_transformers()
        if not source:
            raise ValueError(
                "a CLAP model needs a checkpoint: clap:FOLDER, clap:HUB_ID (e.g. clap:laion/larger_clap_music) or "
                "clap:FILE.pt (a laion_clap checkpoint)"
            )
        name = source
        if source.endswith(".pt") or Path(source).expanduser().is_file():
            from tunelens.embed.laion import converted_folder

            source = str(converted_folder(source))
        self.device, self.dtype = resolve_device(options)
        self.batch_size = options.batch_size
        self.model = load_pretrained(ClapModel, source, "CLAP model", "clap", dtype=self.dtype).to(self.device).eval()
        self.feature_extractor = load_pretrained(ClapFeatureExtractor, source, "CLAP model", "clap")
        self.tokenizer = load_pretrained(AutoTokenizer, source, "CLAP model", "clap")
        check_tokenizer(self.tokenizer, source)
        self.fusion = bool(self.model.config.audio_config.enable_fusion)
        self.feature_extractor.truncation = "fusion" if self.fusion else "rand_trunc"
        self.sample_rate = int(self.feature_extractor.sampling_rate)
        self.window_seconds = float(self.feature_extractor.nb_max_samples / self.sample_rate)
        self.dim = int(self.model.config.projection_dim)
        self.name = f"clap:{name}"
        self.version = f"clap-{weights_fingerprint(source)}-fusion{int(self.fusion)}"
        self._torch = torch

    def embed_audio(self, windows: np.ndarray) -> np.ndarray:
        torch = self._torch
        out = []
        for i in range(0, len(windows), self.batch_size):
            chunk = list(windows[i : i + self.batch_size])
            feats = self.feature_extractor(chunk, sampling_rate=self.sample_rate, return_tensors="pt",
                                           truncation=self.feature_extractor.truncation)
            with torch.inference_mode():
                audio = self.model.audio_model(input_features=feats["input_features"].to(self.device, self.dtype),
                                               is_longer=feats["is_longer"].to(self.device) if self.fusion else None)
                out.append(self.model.audio_projection(audio.pooler_output).float().cpu().numpy())
        return np.concatenate(out).astype(np.float32)

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        torch = self._torch
        out = []
        for i in range(0, len(texts), 64):
            tok = self.tokenizer(list(texts[i : i + 64]), padding=True, truncation=True, return_tensors="pt").to(
                self.device
            )
            with torch.inference_mode():
                text = self.model.text_model(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"])
                out.append(self.model.text_projection(text.pooler_output).float().cpu().numpy())
        return l2_normalize(np.concatenate(out))


def load_clap(arg: str, options: EncoderOptions) -> ClapEncoder:
    return ClapEncoder(arg, options)
