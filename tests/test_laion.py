"""LAION-CLAP `.pt` checkpoints: conversion into ClapModel folders (`embed/laion.py`).

Fast tests write a tiny checkpoint in laion_clap's layout from a ClapModel (the inverse of the conversion) and check
loading, caching, versioning and every refusal. The slow tests check the conversion against the original laion_clap
code, run in its own environment (`tests/laion/make_env.sh`, numpy<2), on random-weight HTSAT-tiny, HTSAT-tiny
fusion and HTSAT-base models, then index a folder with `tunelens index --model clap:FILE.pt`.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tunelens.embed import EncoderOptions, load_encoder
from tunelens.embed.base import ModelUnavailableError
from tunelens.embed.laion import CheckpointError, cache_folder

ROOT = Path(__file__).resolve().parents[1]
LAION_ENV = Path(os.environ.get("TUNELENS_LAION_ENV", ROOT / ".laion-env"))
TOL = 1e-4  # the bar: embeddings agree within 1e-4


def tokenizer_folder(where: Path) -> Path:
    from tunelens.embed.random_checkpoints import _train_tokenizer

    _train_tokenizer().save_pretrained(where / "roberta-base")
    return where / "roberta-base"


def to_laion_layout(model) -> dict:
    """A ClapModel's state dict renamed to laion_clap's (qkv fused, DDP prefix, the mel front end's filterbank):
    the inverse of `convert_state_dict`, so the fast tests need no laion_clap."""
    from transformers import ClapFeatureExtractor

    from tunelens.embed.laion import AUDIO_FRONT_END

    common = ((r"^text_model\.", "text_branch."), (r"^(text|audio)_projection\.linear1\.", r"\1_projection.0."),
              (r"^(text|audio)_projection\.linear2\.", r"\1_projection.2."),
              (r"^audio_model\.audio_encoder\.batch_norm\.", "audio_branch.bn0."))
    htsat = ((r"^audio_model\.audio_encoder\.", "audio_branch."), (r"\.attention\.output\.dense\.", ".attn.proj."),
             (r"\.attention\.self\.relative_position_", ".attn.relative_position_"),
             (r"\.layernorm_before\.", ".norm1."), (r"\.layernorm_after\.", ".norm2."),
             (r"\.intermediate\.dense\.", ".mlp.fc1."), (r"\.output\.dense\.", ".mlp.fc2."))

    def rename(key: str) -> str:
        for pattern, repl in common + (htsat if key.startswith("audio_model.") else ()):
            key = re.sub(pattern, repl, key)
        return key

    sd = {k: v for k, v in model.state_dict().items() if not k.endswith(("position_ids", "token_type_ids"))}
    out = {}
    for key, value in sd.items():
        if not key.startswith("audio_model.") or not re.search(r"\.attention\.self\.(query|key|value)\.", key):
            out[rename(key)] = value
        elif ".query." in key:  # HTSAT keeps query, key and value in one fused projection
            fused = torch.cat([value, sd[key.replace(".query.", ".key.")], sd[key.replace(".query.", ".value.")]])
            out[rename(key.replace(".attention.self.query.", ".attn.qkv."))] = fused
    mel = ClapFeatureExtractor(**AUDIO_FRONT_END).mel_filters_slaney
    out["audio_branch.logmel_extractor.melW"] = torch.from_numpy(mel).float()
    out["audio_branch.head.weight"] = torch.zeros(527, 527)
    out["text_transform.sequential.0.weight"] = torch.zeros(4, 4)  # used only by laion_clap's training loss
    return {f"module.{k}": v for k, v in out.items()}


@pytest.fixture()
def tiny_pt(tmp_path, monkeypatch):
    """A tiny random ClapModel saved as a laion_clap checkpoint, its tokenizer beside it, and the model itself."""
    from transformers import ClapConfig, ClapModel

    monkeypatch.setenv("TUNELENS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("TUNELENS_CLAP_TOKENIZER", raising=False)
    tok = tokenizer_folder(tmp_path)
    from transformers import AutoTokenizer

    audio = dict(patch_embeds_hidden_size=16, hidden_size=32, depths=[1, 1], num_attention_heads=[1, 2],
                 projection_dim=32)
    text = dict(vocab_size=len(AutoTokenizer.from_pretrained(str(tok))), hidden_size=128, num_hidden_layers=1,
                num_attention_heads=2, intermediate_size=64, max_position_embeddings=80, layer_norm_eps=1e-5,
                projection_dim=32)
    torch.manual_seed(0)
    model = ClapModel(ClapConfig(text_config=text, audio_config=audio, projection_dim=32)).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 1:
                p.add_(0.1 * torch.randn_like(p))
    path = tmp_path / "tiny_laion.pt"
    torch.save({"epoch": 3, "state_dict": to_laion_layout(model)}, path)
    return path, model


def test_laion_checkpoint_loads_like_the_model_it_came_from(tiny_pt):
    path, model = tiny_pt
    enc = load_encoder(f"clap:{path}", EncoderOptions(device="cpu"))
    assert enc.name == f"clap:{path}" and enc.dim == 32 and enc.sample_rate == 48000 and enc.window_seconds == 10.0
    rng = np.random.default_rng(1)
    windows = (0.2 * rng.standard_normal((2, 480000))).astype(np.float32)
    feats = enc.feature_extractor(list(windows), sampling_rate=48000, return_tensors="pt", truncation="rand_trunc")
    with torch.no_grad():
        want = model.audio_projection(model.audio_model(input_features=feats["input_features"]).pooler_output)
        tok = enc.tokenizer(["slow piano", "choir"], padding=True, return_tensors="pt")
        text = model.text_projection(model.text_model(**tok).pooler_output)
        want_text = torch.nn.functional.normalize(text, dim=-1)
    assert np.abs(enc.embed_audio(windows) - want.numpy()).max() < 1e-6
    assert np.abs(enc.embed_text(["slow piano", "choir"]) - want_text.numpy()).max() < 1e-6
    assert enc.tokenizer.model_max_length == 77  # laion_clap truncates texts at 77 tokens
    config = json.loads((cache_folder(path) / "config.json").read_text())
    assert config["tunelens_source"]["file"] == "tiny_laion.pt" and len(config["tunelens_source"]["sha256"]) == 64


def test_conversion_is_cached_and_a_changed_file_is_converted_again(tiny_pt, monkeypatch):
    import tunelens.embed.laion as laion

    path, _ = tiny_pt
    first = load_encoder(f"clap:{path}", EncoderOptions(device="cpu"))
    folder = cache_folder(path)
    assert folder.is_dir() and not [p for p in folder.parent.iterdir() if p.name.startswith(".")]
    real = laion.convert_checkpoint
    monkeypatch.setattr(laion, "convert_checkpoint", lambda *a: pytest.fail("converted twice"))
    assert load_encoder(f"clap:{path}", EncoderOptions(device="cpu")).version == first.version
    ckpt = torch.load(path, weights_only=True)
    ckpt["state_dict"]["module.audio_projection.2.bias"] += 1.0
    torch.save(ckpt, path)
    monkeypatch.setattr(laion, "convert_checkpoint", real)
    again = load_encoder(f"clap:{path}", EncoderOptions(device="cpu"))
    assert cache_folder(path) != folder and again.version != first.version


def test_missing_tokenizer_says_what_to_put_where(tiny_pt, tmp_path, monkeypatch):
    path, _ = tiny_pt
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf"))
    alone = tmp_path / "alone"
    alone.mkdir()
    (alone / "m.pt").write_bytes(path.read_bytes())
    with pytest.raises(CheckpointError, match=r"roberta-base tokenizer.*vocab\.json and merges\.txt.*"
                                              + re.escape(str(alone / "roberta-base"))):
        load_encoder(f"clap:{alone / 'm.pt'}")
    monkeypatch.setenv("TUNELENS_CLAP_TOKENIZER", str(path.parent / "roberta-base"))
    assert load_encoder(f"clap:{alone / 'm.pt'}").dim == 32


@pytest.mark.parametrize("change, why", [
    (lambda sd: {**{k: v for k, v in sd.items() if "patch_embed" not in k},
                 "module.audio_branch.conv_block1.conv1.weight": torch.zeros(1)}, "PANN"),
    (lambda sd: {k: v for k, v in sd.items() if "text_branch.pooler" not in k}, "not RoBERTa"),
    (lambda sd: {**sd, "module.audio_branch.logmel_extractor.melW": sd["module.audio_branch.logmel_extractor.melW"]
                 * 1.5}, "mel front end"),
    (lambda sd: {k: v for k, v in sd.items() if "layers.0.downsample" not in k}, "missing"),
    (lambda sd: {**sd, "module.audio_branch.extra.weight": torch.zeros(2)}, "unexpected"),
])
def test_checkpoints_that_cannot_be_converted_are_refused_with_the_reason(tiny_pt, change, why):
    path, _ = tiny_pt
    ckpt = torch.load(path, weights_only=True)
    torch.save({"state_dict": change(ckpt["state_dict"])}, path)
    with pytest.raises(CheckpointError, match=why):
        load_encoder(f"clap:{path}")
    assert not any(cache_folder(path).parent.glob("*")), "a refused checkpoint leaves no folder behind"


def test_files_that_are_not_checkpoints_are_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNELENS_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "text.pt").write_text("not a checkpoint")
    torch.save({"weights": torch.zeros(2), "obj": ValueError("x")}, tmp_path / "objects.pt")
    for name, why in [("text.pt", "not a PyTorch checkpoint"), ("objects.pt", "weights_only=True"),
                      ("none.pt", "no such checkpoint")]:
        with pytest.raises(ModelUnavailableError, match=why):
            load_encoder(f"clap:{tmp_path / name}")


def test_cli_verify_takes_a_bare_pt_file(tiny_pt):
    path, _ = tiny_pt
    out = subprocess.run([sys.executable, "-m", "tunelens.app.cli", "models", "verify", str(path), "--json"],
                         capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300)
    assert out.returncode == 0, out.stderr
    v = json.loads(out.stdout)
    assert v["dim"] == 32 and v["text_ok"] and v["spec"] == f"clap:{path}"


# ---- the original laion_clap code, in its own environment ----

@pytest.fixture(scope="session")
def laion_python() -> Path:
    """The parity environment's Python, built by tests/laion/make_env.sh when missing (`make test` builds it first)."""
    if not (LAION_ENV / ".ready").exists():
        subprocess.run(["bash", str(ROOT / "tests" / "laion" / "make_env.sh"), str(LAION_ENV)], check=True,
                       timeout=1800)
    return LAION_ENV / "bin" / "python"


@pytest.fixture(scope="session")
def laion_checkpoints(laion_python, tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("laion")
    tokenizer_folder(out)
    made = {}
    env = {**os.environ, "OMP_NUM_THREADS": "2", "OMP_WAIT_POLICY": "PASSIVE", "HF_HUB_OFFLINE": "1"}
    for arch, fusion in (("HTSAT-tiny", False), ("HTSAT-tiny", True), ("HTSAT-base", False)):
        run = subprocess.run([str(laion_python), str(ROOT / "tests" / "laion" / "parity.py"), str(out), "--arch", arch]
                             + (["--fusion"] if fusion else []), capture_output=True, text=True, env=env, timeout=900)
        assert run.returncode == 0, run.stderr[-3000:]
        made[f"{arch}{'-fusion' if fusion else ''}"] = Path(run.stdout.strip().splitlines()[-1])
    return made


def _normalized(x) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["HTSAT-tiny", "HTSAT-tiny-fusion", "HTSAT-base"])
def test_converted_checkpoint_matches_the_original_laion_clap(variant, laion_checkpoints, tmp_path, monkeypatch):
    monkeypatch.setenv("TUNELENS_CACHE_DIR", str(tmp_path / "cache"))
    path = laion_checkpoints[variant]
    ref = np.load(path.with_suffix(".npz"))
    enc = load_encoder(f"clap:{path}", EncoderOptions(device="cpu"))
    assert enc.fusion == variant.endswith("fusion")
    model = enc.model

    def audio(features, longer=None):
        with torch.inference_mode():
            out = model.audio_model(input_features=torch.from_numpy(features),
                                    is_longer=None if longer is None else torch.from_numpy(longer))
            return _normalized(model.audio_projection(out.pooler_output).numpy())

    if enc.fusion:  # the same four-channel fusion input, one clip "longer" than 10 s
        assert np.abs(audio(ref["mel_fusion"], ref["longer"]) - ref["audio"]).max() < TOL
        assert np.abs(audio(ref["mel_fusion"][[0, 2]], np.zeros((2, 1), bool)) - ref["audio_short"]).max() < TOL
    else:  # the same mel, and end to end from the waveform (the feature extractor against laion_clap's own)
        assert np.abs(audio(ref["mel"]) - ref["audio"]).max() < TOL
        assert np.abs(_normalized(enc.embed_audio(ref["waves"])) - ref["audio"]).max() < TOL
    tok = enc.tokenizer(list(ref["texts"]), padding="max_length", max_length=77, truncation=True)
    assert np.array_equal(np.asarray(tok["input_ids"]), ref["input_ids"]), "the same tokens on both sides"
    assert np.abs(enc.embed_text(list(ref["texts"])) - ref["text"]).max() < TOL


@pytest.mark.slow
def test_index_and_search_with_a_laion_checkpoint(laion_checkpoints, music_dir, tmp_path):
    path = laion_checkpoints["HTSAT-tiny"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TUNELENS_CACHE_DIR": str(tmp_path / "cache")}
    lib = tmp_path / "lib"

    def cli(*args):
        out = subprocess.run([sys.executable, "-m", "tunelens.app.cli", *args], capture_output=True, text=True,
                             env=env, timeout=900, cwd=tmp_path)
        assert out.returncode == 0, out.stderr[-3000:]
        return out.stdout

    cli("index", str(music_dir), "--library", str(lib), "--model", f"clap:{path}", "--processes", "1")
    manifest = json.loads((lib / "manifest.json").read_text())
    assert manifest["pipeline"]["model"] == f"clap:{path}" and manifest["pipeline"]["dim"] == 512
    hits = json.loads(cli("search", "solo piano", "--library", str(lib), "-k", "3", "--json"))["hits"]
    assert len(hits) == 3 and all(h["path"].endswith((".wav", ".flac")) for h in hits)
    again = cli("index", str(music_dir), "--library", str(lib), "--model", f"clap:{path}")  # the cached conversion
    assert re.search(r"unchanged \(skipped\)\W+5\b", again), again
