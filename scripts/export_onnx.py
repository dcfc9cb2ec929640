"""Export the two musicnn taggers (MTT, MSD) to ONNX for ONNX Runtime, tunelens' default CPU runtime.

    pip install onnx      # the exporter's only extra need; tunelens itself runs the files with onnxruntime
    python scripts/export_onnx.py [--out embed/weights]

Writes `musicnn_MTT.onnx` and `musicnn_MSD.onnx` from the safetensors weights beside them (a dynamic batch axis,
[B, 187, 96] mel patches in, 50 logits and the 200-d penultimate layer out), then checks each against the torch
model on random patches and prints the largest difference. `tests/test_musicnn.py` checks the shipped files the
same way, so weights and graphs cannot drift apart.
"""
from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np


def export(model: str, out: Path) -> float:
    import onnxruntime as ort
    import torch
    from safetensors.torch import load_file

    from tunelens.embed.musicnn_model import N_FRAMES, N_MELS, Musicnn

    weights = Path(__file__).resolve().parents[1] / "embed" / "weights" / f"musicnn_{model}.safetensors"
    net = Musicnn()
    net.load_state_dict({k[4:]: v for k, v in load_file(str(weights)).items() if k.startswith("net.")},
                        strict=False)
    net.eval().export_graph = True
    example = torch.rand(4, N_FRAMES, N_MELS) * 3
    buf = io.BytesIO()
    with torch.inference_mode():
        torch.onnx.export(net, (example,), buf, dynamo=False, opset_version=17, input_names=["mel"],
                          output_names=["logits", "penultimate"], dynamic_axes={"mel": {0: "batch"}})
    target = out / f"musicnn_{model}.onnx"
    tmp = target.with_suffix(".onnx.tmp")
    tmp.write_bytes(buf.getvalue())
    tmp.replace(target)
    session = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    x = (torch.rand(8, N_FRAMES, N_MELS) * 3)
    with torch.inference_mode():
        want = net(x)
    got = session.run(None, {"mel": x.numpy()})
    return max(float(np.abs(g - w.numpy()).max()) for g, w in zip(got, want))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "embed" / "weights")
    args = ap.parse_args(argv)
    for model in ("MTT", "MSD"):
        diff = export(model, args.out)
        print(f"musicnn_{model}.onnx: largest difference from the torch model {diff:.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
