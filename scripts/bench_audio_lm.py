"""Memory and speed of the Qwen2-Audio captioner on a random-weight checkpoint of the given size.

    python scripts/bench_audio_lm.py --size default --segments 32 --batch-size 8   # on a GPU machine
    python scripts/bench_audio_lm.py --size tiny                                    # a quick check anywhere

The checkpoint is built locally (no hub) and loaded through the same code as a real one. Every answer is
forced to --new-tokens tokens so the figure does not depend on when random weights happen to stop.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=["tiny", "default"], default="tiny")
    ap.add_argument("--segments", type=int, default=8, help="30 s segments to describe")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--new-tokens", type=int, default=96)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args(argv)

    import torch

    from tunelens.caption.audio_lm import AudioLMOptions
    from tunelens.caption.base import load_captioner
    from tunelens.caption.random_audio_lm import make_random_qwen2_audio

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        dtype = "bfloat16" if args.size == "default" else "float32"
        folder = make_random_qwen2_audio(Path(tmp) / "qwen2-audio", size=args.size, dtype=dtype)
        built = time.perf_counter() - t0
        opts = AudioLMOptions(device=args.device, batch_size=args.batch_size, max_new_tokens=args.new_tokens)
        t0 = time.perf_counter()
        lm = load_captioner(f"qwen2-audio:{folder}", opts)
        loaded = time.perf_counter() - t0
    lm.model.generation_config.min_new_tokens = args.new_tokens
    params = sum(p.numel() for p in lm.model.parameters())
    sr = lm.sample_rate
    t = np.arange(30 * sr) / sr
    clips = [[(0.2 * np.sin(2 * np.pi * (110 * (i + 2)) * t)).astype(np.float32)] for i in range(args.segments)]
    prompts = ["Describe the music in this clip."] * args.segments
    lm.generate(prompts[:1], clips[:1])  # warm-up
    if lm.device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    lm.generate(prompts, clips)
    if lm.device.startswith("cuda"):
        torch.cuda.synchronize()
    el = time.perf_counter() - t0
    print(f"Qwen2-Audio random {args.size}: {params / 1e9:.2f} B parameters, {lm.dtype}, on {lm.device}")
    print(f"build {built:.1f} s, load {loaded:.1f} s")
    print(f"{args.segments} segments of 30 s, batch {args.batch_size}, {args.new_tokens} new tokens each: "
          f"{el:.2f} s, {args.segments / el:.2f} segments/s, {args.segments * args.new_tokens / el:.0f} tokens/s")
    if lm.device.startswith("cuda"):
        print(f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
    else:
        import resource

        print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
