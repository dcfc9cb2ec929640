"""Runs inside the LAION-CLAP test environment (`tests/laion/make_env.sh`), never in tunelens' own.

Builds the original `laion_clap` CLAP model with random weights, saves its state dict as a `.pt` laid out like the
released checkpoints (`{"epoch", "state_dict"}` with DDP's `module.` prefix), and writes the original code's audio
and text embeddings of fixed inputs to an `.npz` for `tests/test_laion.py` to compare with the converted model.

    python tests/laion/parity.py OUT_DIR --arch HTSAT-tiny [--fusion] [--seed 0]

OUT_DIR must hold `roberta-base/`, the tokenizer both sides use. Two things stand in for what this machine lacks:
- `RobertaModel.from_pretrained('roberta-base')` (a download) builds a randomly initialised RoBERTa of width 768
  (laion_clap's projection expects it) with 2 layers and the tokenizer's vocabulary;
- `laion_clap.clap_module.utils` imports torchvision's `FrozenBatchNorm2d`, used only to freeze image towers;
  torchvision has no build for the CPU torch here, so a module is registered whose `FrozenBatchNorm2d` refuses to
  be built: if the CLAP path ever used it, this script would fail.
The package's `__init__` is not run (it imports the training data code, which needs the hub).
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import sys
import types
from pathlib import Path

import numpy as np
import torch

SR = 48000
TEXTS = ["solo piano, slow and calm", "a choir singing", "fast drums and percussion with a bass line",
         "harpsichord", "x"]


class _Unavailable:
    def __init__(self, *args, **kwargs):
        raise RuntimeError("torchvision's FrozenBatchNorm2d is not available in the LAION test environment")


def import_laion_model():
    for name in ("torchvision", "torchvision.ops", "torchvision.ops.misc"):
        sys.modules[name] = types.ModuleType(name)
    sys.modules["torchvision.ops.misc"].FrozenBatchNorm2d = _Unavailable
    spec = importlib.util.find_spec("laion_clap")
    pkg = types.ModuleType("clap_module")
    pkg.__path__ = [str(Path(spec.submodule_search_locations[0]) / "clap_module")]
    sys.modules["clap_module"] = pkg
    return importlib.import_module("clap_module.model"), Path(pkg.__path__[0])


def waveforms(rng: np.random.Generator, n: int = 3) -> np.ndarray:
    t = np.arange(10 * SR) / SR
    chord = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6)) / 3 * np.exp(-0.2 * (t % 2.5))
    sweep = 0.5 * np.sin(2 * np.pi * (100 * t + 400 * t**2))
    noise = 0.1 * rng.standard_normal(t.size)
    waves = np.stack([chord + 0.01 * rng.standard_normal(t.size), sweep, noise][:n]).astype(np.float32)
    return np.clip(waves, -1, 1)


def randomize(model: torch.nn.Module, gen: torch.Generator) -> None:
    """Move every norm, bias, batch-norm statistic and logit scale off its initial value, so that no layer of the
    comparison is an identity that would hide a wrongly mapped tensor."""
    with torch.no_grad():
        for name, t in list(model.named_parameters()) + list(model.named_buffers()):
            if not t.is_floating_point():
                continue
            noise = torch.randn(t.shape, generator=gen)
            if name.endswith("running_var"):
                t.copy_(0.5 + torch.rand(t.shape, generator=gen))
            elif name.endswith("running_mean") or name.endswith(".bias"):
                t.add_(0.05 * noise)
            elif t.dim() == 1 or name.startswith("logit_scale"):
                t.add_(0.1 * noise)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--arch", default="HTSAT-tiny")
    ap.add_argument("--fusion", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)

    from transformers import RobertaConfig, RobertaModel, RobertaTokenizer

    tokenizer = RobertaTokenizer.from_pretrained(str(args.out / "roberta-base"))
    assert len(tokenizer) > 0

    def small_roberta(cls, *a, **k):
        return cls(RobertaConfig(vocab_size=len(tokenizer), hidden_size=768, num_hidden_layers=2,
                                 num_attention_heads=12, intermediate_size=256, max_position_embeddings=514,
                                 type_vocab_size=1, pad_token_id=1, bos_token_id=0, eos_token_id=2,
                                 layer_norm_eps=1e-5))

    model_mod, pkg_dir = import_laion_model()
    model_mod.RobertaModel.from_pretrained = classmethod(small_roberta)
    cfg = json.loads((pkg_dir / "model_configs" / f"{args.arch}.json").read_text())
    cfg["text_cfg"]["model_type"] = "roberta"
    model = model_mod.CLAP(cfg["embed_dim"], model_mod.CLAPAudioCfp(**cfg["audio_cfg"]),
                           model_mod.CLAPTextCfg(**cfg["text_cfg"]), enable_fusion=args.fusion,
                           fusion_type="aff_2d" if args.fusion else "None")
    assert isinstance(model.text_branch, RobertaModel)
    randomize(model, gen)
    model.eval()
    name = f"{args.arch}{'-fusion' if args.fusion else ''}-seed{args.seed}"
    torch.save({"epoch": 1, "name": name, "state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}},
               args.out / f"{name}.pt")

    waves = waveforms(rng)
    ab = model.audio_branch
    with torch.no_grad():
        mel = ab.logmel_extractor(ab.spectrogram_extractor(torch.from_numpy(waves)))  # (B, 1, T, 64)
        if args.fusion:
            # each clip's four fusion channels: its whole mel and three others (any tensor tests the mapping);
            # the second clip is "longer" (local fusion runs), the others are not
            mel_fusion = torch.cat([mel, mel.roll(1, 0), mel.roll(2, 0), mel.flip(2)], dim=1)
            longer = torch.tensor([[False], [True], [False]])
            batch = [{"mel_fusion": mel_fusion[i], "longer": longer[i]} for i in range(len(waves))]
            audio = model.get_audio_embedding(batch)
            short_only = model.get_audio_embedding([{"mel_fusion": mel_fusion[i], "longer": torch.tensor([False])}
                                                    for i in (0, 2)])
            features = {"mel_fusion": mel_fusion.numpy(), "longer": longer.numpy(), "audio_short": short_only.numpy()}
        else:
            audio = model.get_audio_embedding([{"waveform": torch.from_numpy(w)} for w in waves])
            features = {"mel": mel.numpy()}
        tok = tokenizer(TEXTS, padding="max_length", truncation=True, max_length=77, return_tensors="pt")
        text = model.get_text_embedding({"input_ids": tok["input_ids"], "attention_mask": tok["attention_mask"]})
    np.savez(args.out / f"{name}.npz", waves=waves, audio=audio.numpy(), text=text.numpy(),
             input_ids=tok["input_ids"].numpy(), texts=np.array(TEXTS), **features)
    print(args.out / f"{name}.pt")


if __name__ == "__main__":
    main()
