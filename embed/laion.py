"""LAION-CLAP `.pt` checkpoints (from the `laion_clap` package) converted once into transformers `ClapModel` folders.

Users hold the original checkpoints (`music_audioset_epoch_15_esc_90.14.pt`, `630k-audioset-best.pt`, the fusion
variants); tunelens runs CLAP through transformers only, so `clap:FILE.pt` converts the file's state dict, infers
the architecture from its tensor shapes (HTSAT tiny or base, fusion or not, the text tower's depth), checks the
checkpoint's own mel filterbank against the feature extractor's, and writes a folder that then loads like any other.
The folder is cached (keyed by the file's path, size and modification time) and its config records the file's
SHA-256, so a changed file is converted again and gives a new encoder version.

`laion_clap` itself is never imported: it pins numpy<2 and downloads roberta-base when used. The conversion is
checked against the original code by `tests/laion/parity.py`, run in a separate environment.
"""
from __future__ import annotations

import hashlib
import math
import os
import re
import shutil
import tempfile
from pathlib import Path

from tunelens.embed.base import ModelUnavailableError

CONVERTER_VERSION = 1
TOKENIZER_ENV = "TUNELENS_CLAP_TOKENIZER"
TEXT_CONTEXT = 77  # laion_clap's tokenizer call: padding="max_length", truncation=True, max_length=77
# The audio front end every released LAION-CLAP HTSAT checkpoint was trained with (model_configs/HTSAT-*.json);
# the state dict carries only its mel filterbank, which `_check_mel` compares with these settings.
AUDIO_FRONT_END = dict(sampling_rate=48000, fft_window_size=1024, hop_length=480, max_length_s=10,
                       frequency_min=50, frequency_max=14000)
# Tensors with no counterpart in ClapModel: the mel front end (computed by the feature extractor instead), the
# AudioSet classification head, the MLPs used only by the training loss, and buffers transformers rebuilds
# (position ids, the shifted-window attention masks).
_DROPPED = re.compile(r"^audio_branch\.(spectrogram_extractor|logmel_extractor|tscam_conv|head)\.|"
                      r"^(audio|text)_transform\.|^text_branch\.embeddings\.position_ids$|(^|\.)attn_mask$")
_RENAMES = (
    (r"^text_branch\.", "text_model."),
    (r"^(text|audio)_projection\.0\.", r"\1_projection.linear1."),
    (r"^(text|audio)_projection\.2\.", r"\1_projection.linear2."),
    (r"^audio_branch\.bn0\.", "audio_model.audio_encoder.batch_norm."),
    (r"^audio_branch\.", "audio_model.audio_encoder."),
    (r"\.attn\.proj\.", ".attention.output.dense."),
    (r"\.attn\.relative_position_", ".attention.self.relative_position_"),
    (r"\.norm1\.", ".layernorm_before."),
    (r"\.norm2\.", ".layernorm_after."),
    (r"\.mlp\.fc1\.", ".intermediate.dense."),
    (r"\.mlp\.fc2\.", ".output.dense."),
)


class CheckpointError(ModelUnavailableError):
    """A `.pt` file that is not a LAION-CLAP checkpoint tunelens can convert; the message says why."""


def read_state_dict(path: Path) -> dict:
    """The checkpoint's tensors, without the training wrapper (`{"state_dict": ...}`) or DDP's `module.` prefix.

    Loaded with `weights_only=True`, so a file cannot run code while it is read."""
    import pickle

    import torch

    try:
        try:
            raw = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as e:  # legacy (non-zip) files cannot be memory-mapped
            if "mmap" not in str(e):
                raise
            raw = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        unsupported = [line.strip() for line in str(e).splitlines() if "Unsupported global" in line]
        if unsupported:
            raise CheckpointError(f"{path}: holds Python objects besides tensors ({unsupported[0][:160]}); tunelens "
                                  f"reads checkpoints with weights_only=True so that a file cannot run code") from None
        raise CheckpointError(f"{path}: is not a PyTorch checkpoint (it does not unpickle)") from None
    except Exception as e:
        why = str(e).splitlines()[0][:160]
        raise CheckpointError(f"{path}: is not a readable PyTorch checkpoint ({why})") from None
    sd = raw.get("state_dict", raw) if isinstance(raw, dict) else None
    if not isinstance(sd, dict) or not sd:
        raise CheckpointError(f"{path}: holds no state dict (expected a dict of tensors, or one under 'state_dict')")
    return {(k[7:] if k.startswith("module.") else k): v for k, v in sd.items()}


def _count(sd: dict, pattern: str) -> int:
    found = {int(m.group(1)) for k in sd if (m := re.match(pattern, k))}
    return max(found) + 1 if found else 0


def infer_config(sd: dict, path: Path):
    """The `ClapConfig` of a LAION-CLAP state dict, read off its tensor shapes; unsupported variants are refused."""
    from transformers import ClapConfig

    if any(k.startswith("audio_branch.conv_block1.") for k in sd):
        raise CheckpointError(f"{path}: is a PANN (CNN14) CLAP checkpoint; transformers' ClapModel has only the HTSAT "
                              f"audio tower, so it cannot be converted. Use an HTSAT checkpoint (e.g. "
                              f"music_audioset_epoch_15_esc_90.14.pt or 630k-audioset-best.pt)")
    if "audio_branch.patch_embed.proj.weight" not in sd:
        raise CheckpointError(f"{path}: is not a LAION-CLAP checkpoint (no audio_branch.patch_embed tensors)")
    if "text_branch.embeddings.word_embeddings.weight" not in sd or "text_branch.pooler.dense.weight" not in sd:
        raise CheckpointError(f"{path}: its text tower is not RoBERTa (laion_clap's tmodel='roberta', used by every "
                              f"released checkpoint); transformers' ClapModel has only that text tower")
    a = "audio_branch."
    stages = _count(sd, rf"^{a}layers\.(\d+)\.")
    depths = [_count(sd, rf"^{a}layers\.{i}\.blocks\.(\d+)\.") for i in range(stages)]
    heads = [int(sd[f"{a}layers.{i}.blocks.0.attn.relative_position_bias_table"].shape[1]) for i in range(stages)]
    window = (math.isqrt(int(sd[f"{a}layers.0.blocks.0.attn.relative_position_bias_table"].shape[0])) + 1) // 2
    patch = sd[f"{a}patch_embed.proj.weight"]
    dim = int(patch.shape[0])
    fusion = f"{a}patch_embed.mel_conv2d.weight" in sd
    if fusion and not any(k.startswith(f"{a}patch_embed.fusion_model.local_att.") for k in sd):
        raise CheckpointError(f"{path}: uses a feature fusion other than 'aff_2d'; transformers' ClapModel implements "
                              f"only aff_2d, the fusion of every released fusion checkpoint")
    if fusion and any(k.startswith(f"{a}patch_embed.fusion_model.local_att2.") for k in sd):
        raise CheckpointError(f"{path}: uses the 'iaff_2d' feature fusion; transformers' ClapModel implements only "
                              f"aff_2d")
    audio = dict(
        patch_embeds_hidden_size=dim, patch_size=int(patch.shape[-1]), patch_stride=[int(patch.shape[-1])] * 2,
        patch_embed_input_channels=int(patch.shape[1]), hidden_size=int(sd[f"{a}norm.weight"].shape[0]),
        depths=depths, num_attention_heads=heads, window_size=window,
        num_mel_bins=int(sd[f"{a}bn0.weight"].shape[0]),
        mlp_ratio=int(sd[f"{a}layers.0.blocks.0.mlp.fc1.weight"].shape[0]) / dim,
        num_classes=int(sd[f"{a}head.weight"].shape[0]) if f"{a}head.weight" in sd else 527,
        enable_fusion=fusion, fusion_type="aff_2d" if fusion else None,
        projection_dim=int(sd["audio_projection.2.weight"].shape[0]), projection_hidden_act="relu",
    )
    if fusion:
        audio["aff_block_r"] = dim // int(sd[f"{a}patch_embed.fusion_model.local_att.0.weight"].shape[0])
    t = "text_branch."
    vocab, width = (int(x) for x in sd[f"{t}embeddings.word_embeddings.weight"].shape)
    text = dict(
        vocab_size=vocab, hidden_size=width, num_hidden_layers=_count(sd, rf"^{t}encoder\.layer\.(\d+)\."),
        num_attention_heads=max(1, width // 64),  # roberta-base: 768 / 64 = 12 heads
        intermediate_size=int(sd[f"{t}encoder.layer.0.intermediate.dense.weight"].shape[0]),
        max_position_embeddings=int(sd[f"{t}embeddings.position_embeddings.weight"].shape[0]),
        type_vocab_size=int(sd[f"{t}embeddings.token_type_embeddings.weight"].shape[0]),
        layer_norm_eps=1e-5, hidden_act="gelu", pad_token_id=1, bos_token_id=0, eos_token_id=2,
        projection_dim=int(sd["text_projection.2.weight"].shape[0]), projection_hidden_act="relu",
    )
    return ClapConfig(text_config=text, audio_config=audio, projection_dim=audio["projection_dim"])


def convert_state_dict(sd: dict) -> dict:
    """LAION-CLAP tensor names → ClapModel's; HTSAT's fused qkv projection is split into query, key and value."""
    out = {}
    for key, value in sd.items():
        if _DROPPED.search(key):
            continue
        if ".attn.qkv." in key:
            base = _rename(key.replace(".attn.qkv.", ".attention.self."))
            q, k, v = value.chunk(3, dim=0)
            head, _, kind = base.rpartition(".")
            out.update({f"{head}.query.{kind}": q, f"{head}.key.{kind}": k, f"{head}.value.{kind}": v})
            continue
        out[_rename(key)] = value
    return out


def _rename(key: str) -> str:
    for pattern, repl in _RENAMES:
        key = re.sub(pattern, repl, key)
    return key


def _check_mel(sd: dict, extractor, path: Path) -> None:
    """The checkpoint's own mel filterbank must be the one the feature extractor computes, or vectors would drift."""
    import numpy as np

    melw = sd.get("audio_branch.logmel_extractor.melW")
    if melw is None:
        return
    ours = extractor.mel_filters_slaney
    theirs = melw.float().numpy()
    if theirs.shape != ours.shape or not np.allclose(theirs, ours, rtol=1e-4, atol=1e-6):
        raise CheckpointError(f"{path}: was trained with a mel front end other than LAION-CLAP's standard one "
                              f"(48 kHz, 1024-point FFT, hop 480, 64 bands, 50-14,000 Hz); converting it would give "
                              f"wrong vectors")


def find_tokenizer(path: Path):
    """The roberta-base tokenizer every LAION-CLAP checkpoint was trained with, found offline, or a sentence saying
    where to put it: $TUNELENS_CLAP_TOKENIZER, a `roberta-base/` folder beside the checkpoint, or the Hugging Face
    cache (where `laion_clap` itself leaves it)."""
    from transformers import AutoTokenizer

    from tunelens.embed.hf import check_tokenizer, quiet_transformers

    quiet_transformers()
    beside = path.parent / "roberta-base"
    candidates = [(os.environ[TOKENIZER_ENV], {}) if os.environ.get(TOKENIZER_ENV) else None,
                  (str(beside), {}) if beside.is_dir() else None,
                  ("FacebookAI/roberta-base", {"local_files_only": True}),
                  ("roberta-base", {"local_files_only": True})]
    for source, kwargs in filter(None, candidates):
        try:
            tok = AutoTokenizer.from_pretrained(source, **kwargs)
        except Exception:
            if source == os.environ.get(TOKENIZER_ENV):
                raise CheckpointError(f"{TOKENIZER_ENV}={source} holds no readable tokenizer (it needs vocab.json "
                                      f"and merges.txt from roberta-base)") from None
            continue
        try:
            check_tokenizer(tok, source)
        except ModelUnavailableError:  # loaded empty (its files are missing): try the next place
            continue
        tok.model_max_length = TEXT_CONTEXT
        return tok
    raise CheckpointError(
        f"{path}: its text side needs the roberta-base tokenizer it was trained with, and none is on this machine. "
        f"Put vocab.json and merges.txt from https://huggingface.co/FacebookAI/roberta-base into {beside}/ (or set "
        f"{TOKENIZER_ENV} to a folder holding them), then run again")


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def cache_root() -> Path:
    from tunelens.embed.base import cache_dir

    return cache_dir() / "laion-clap"


def cache_folder(path: Path) -> Path:
    """Where `path`'s conversion lives: keyed by its resolved path, size and modification time, so an unchanged file
    is never hashed or converted twice and a replaced one is converted again."""
    st = path.stat()
    key = hashlib.blake2b(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{CONVERTER_VERSION}".encode(),
                          digest_size=8).hexdigest()
    return cache_root() / f"{path.stem}-{key}"


def convert_checkpoint(path: str | Path, folder: str | Path) -> Path:
    """Convert the LAION-CLAP checkpoint `path` into a `ClapModel` + processor folder at `folder` (written whole into
    a temporary folder, then renamed, so a killed conversion leaves nothing half-written)."""
    from transformers import ClapFeatureExtractor, ClapModel, ClapProcessor

    path, folder = Path(path).expanduser(), Path(folder)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    sd = read_state_dict(path)
    config = infer_config(sd, path)
    fusion = bool(config.audio_config.enable_fusion)
    extractor = ClapFeatureExtractor(feature_size=config.audio_config.num_mel_bins, **AUDIO_FRONT_END,
                                     truncation="fusion" if fusion else "rand_trunc", padding="repeatpad")
    _check_mel(sd, extractor, path)
    tokenizer = find_tokenizer(path)
    if len(tokenizer) > config.text_config.vocab_size:
        raise CheckpointError(f"{path}: the tokenizer found has {len(tokenizer)} tokens but the checkpoint's text "
                              f"tower knows {config.text_config.vocab_size}; it is not the one it was trained with")
    config.tunelens_source = {"file": path.name, "sha256": sha256_of(path), "converter": CONVERTER_VERSION,
                              "format": "laion_clap state dict"}
    model = ClapModel(config)
    tensors = convert_state_dict(sd)
    expected = model.state_dict()
    derived = {k for k in expected if k.endswith(("position_ids", "token_type_ids"))}  # rebuilt by transformers
    missing = sorted(set(expected) - set(tensors) - derived)
    unexpected = sorted(set(tensors) - set(expected))
    wrong = sorted(k for k in set(tensors) & set(expected) if tuple(tensors[k].shape) != tuple(expected[k].shape))
    if missing or unexpected or wrong:
        detail = "; ".join(f"{what}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
                           for what, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong))
                           if keys)
        raise CheckpointError(f"{path}: does not match the LAION-CLAP HTSAT layout ({detail})")
    model.load_state_dict({k: v.float() for k, v in tensors.items()}, strict=False)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        model.eval().save_pretrained(tmp)
        ClapProcessor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(tmp)
        try:
            os.rename(tmp, folder)
        except OSError:
            if not (folder / "config.json").is_file():
                raise
            shutil.rmtree(tmp)  # another process converted it meanwhile: keep theirs
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def converted_folder(path: str | Path) -> Path:
    """The `ClapModel` folder for the checkpoint `path`, converting it on first use."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    folder = cache_folder(path)
    if not (folder / "config.json").is_file():
        convert_checkpoint(path, folder)
    return folder
