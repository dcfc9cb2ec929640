"""Convert musicnn's TF1 checkpoints (MTT_musicnn, MSD_musicnn from the musicnn 0.1.0 wheel, ISC licence)
to safetensors for tunelens' PyTorch port. Needs neither TensorFlow nor musicnn's dependencies:

    pip download --no-deps musicnn==0.1.0 -d /tmp/mnn && unzip -q /tmp/mnn/musicnn-0.1.0-py3-none-any.whl -d /tmp/mnn
    python scripts/convert_musicnn.py /tmp/mnn/musicnn embed/weights

Writes `musicnn_MTT.safetensors`, `musicnn_MSD.safetensors` (model + the Slaney mel basis of the front end)
and `musicnn_tags.json` (tag names in output order).
"""
from __future__ import annotations

import argparse
import ast
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
from tf_checkpoint import read_checkpoint  # noqa: E402


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    f = np.asarray(f, dtype=np.float64)
    mels = f / (200.0 / 3)
    log_t = f >= 1000.0
    return np.where(log_t, 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / (np.log(6.4) / 27.0), mels)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    freqs = (200.0 / 3) * m
    return np.where(m >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (m - 15.0)), freqs)


def slaney_mel_basis(sr: int = 16000, n_fft: int = 512, n_mels: int = 96) -> np.ndarray:
    """librosa.filters.mel(sr, n_fft, n_mels) with its defaults (Slaney scale and area normalisation)."""
    fft_freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(sr / 2.0), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fft_freqs)
    weights = np.zeros((n_mels, len(fft_freqs)))
    for i in range(n_mels):
        weights[i] = np.maximum(0, np.minimum(-ramps[i] / fdiff[i], ramps[i + 2] / fdiff[i + 1]))
    weights *= (2.0 / (mel_f[2:n_mels + 2] - mel_f[:n_mels]))[:, None]
    return weights.astype(np.float32)


def _labels(package: Path, name: str) -> list[str]:
    tree = ast.parse((package / "configuration.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and node.targets[0].id == name:
            return list(ast.literal_eval(node.value))
    raise KeyError(name)


def main(argv: list[str] | None = None) -> int:
    import torch
    from safetensors.torch import save_file

    from tunelens.embed.musicnn_model import Musicnn, tf_to_torch_state

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("package", type=Path, help="the unzipped musicnn/ package folder")
    ap.add_argument("out", type=Path)
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    mel = torch.from_numpy(slaney_mel_basis())
    meta = {
        "source": "musicnn 0.1.0 (PyPI wheel), https://github.com/jordipons/musicnn",
        "licence": "ISC",
        "models": {},
    }
    for model in ("MTT", "MSD"):
        folder = args.package / f"{model}_musicnn"
        tf = read_checkpoint(str(folder) + "/")  # the checkpoint files are named ".index", ".data-…"
        net = Musicnn()
        net.load_state_dict(tf_to_torch_state(tf), strict=True)
        state = {
            f"net.{k}": v.contiguous() for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")
        }
        state["frontend.mel_basis"] = mel
        path = args.out / f"musicnn_{model}.safetensors"
        save_file(state, str(path), metadata={"source": f"musicnn 0.1.0 {model}_musicnn", "licence": "ISC"})
        data = (folder / ".data-00000-of-00001").read_bytes()
        meta["models"][model] = {
            "labels": _labels(args.package, f"{model}_LABELS"),
            "checkpoint_blake2b": hashlib.blake2b(data, digest_size=16).hexdigest(),
            "safetensors_blake2b": hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest(),
        }
        print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    (args.out / "musicnn_tags.json").write_text(json.dumps(meta, indent=1))
    licence = args.package.parent / "musicnn-0.1.0.dist-info" / "LICENSE.md"
    if licence.exists():
        (args.out / "MUSICNN_LICENSE.md").write_text(licence.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
