"""Indexing throughput and search latency.

    python scripts/bench_index.py DEMO_DIR [--models musicnn,tiny-clap,default-clap] [--processes 0,1,2]

For each model and engine setting: files/s and x-realtime for indexing DEMO_DIR into a fresh library
(decoding, quality measures, the commit and the analysis pass that measures tempo, key and loudness included;
"embed x" leaves the analysis pass out, "measure x" is that pass alone), then p50/p99 latency of 1,000 text
queries (text encoder + FAISS search + best window). `processes` 0 is one process (decoding threads feeding a
multi-threaded model); N > 0 is N worker processes each decoding and embedding with a one-thread model. With
`--load N` every setting runs again with N busy processes competing for the cores ("load" column).
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from busy import busy_processes  # scripts/busy.py, beside this file

WORDS = "slow fast piano guitar choir organ strings drums calm bright dark solo flute brass harpsichord warm".split()


def main(argv: list[str] | None = None) -> int:
    from tunelens.embed import EncoderOptions, load_encoder
    from tunelens.embed.random_checkpoints import make_random_clap
    from tunelens.index import Library
    from tunelens.index.core.indexer import IndexConfig, index_folder
    from tunelens.index.search import search_text

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("music", type=Path)
    ap.add_argument("--models", default="musicnn,tiny-clap,default-clap")
    ap.add_argument("--max-files", type=int, default=0, help="index only the first N files (for slow models)")
    ap.add_argument("--workers", type=int, default=2, help="decoding threads of the in-process engine")
    ap.add_argument("--processes", default="0,1,2", help="worker processes, comma-separated to compare")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--load", type=int, default=0, help="also run each setting with this many busy processes "
                    "(started and stopped here) competing for the cores; search latency is timed under the same load")
    args = ap.parse_args(argv)
    if not args.music.is_dir():
        ap.error(f"{args.music} is not a folder of music (the demo corpus is made by `make demo`)")
    tmp = Path(tempfile.mkdtemp(prefix="tunelens-bench-"))
    music = args.music
    if args.max_files:
        music = tmp / "music"
        files = sorted(p for p in args.music.rglob("*") if p.suffix in {".flac", ".ogg", ".mp3", ".wav"})[
            : args.max_files
        ]
        for f in files:
            (music / f.parent.name).mkdir(parents=True, exist_ok=True)
            shutil.copy(f, music / f.parent.name / f.name)
    rng = np.random.default_rng(0)
    queries = [" ".join(rng.choice(WORDS, size=rng.integers(1, 4))) for _ in range(args.queries)]
    print(
        f"{'model':<16}{'load':>5}{'procs':>8}{'files':>7}{'audio h':>9}{'files/s':>9}{'x realtime':>12}{'embed x':>9}"
        f"{'measure x':>11}{'p50 ms':>9}{'p99 ms':>9}"
    )
    for name in args.models.split(","):
        if name == "tiny-clap":
            spec = f"clap:{make_random_clap(tmp / 'tiny')}"
        elif name == "default-clap":
            spec = f"clap:{make_random_clap(tmp / 'default', size='default')}"
        else:
            spec = name
        encoder = load_encoder(spec, EncoderOptions(device=args.device))
        for load, procs in ((load, int(w)) for load in sorted({0, args.load}) for w in args.processes.split(",")):
            lib_dir = tmp / f"lib-{name}-{procs}-{load}"
            with busy_processes(load):
                t = time.perf_counter()
                report = index_folder(lib_dir, music, encoder, IndexConfig(workers=args.workers, processes=procs))
                dt = time.perf_counter() - t
                lib = Library.open(lib_dir)
                search_text(lib, encoder, "warm up", k=10)
                lat = []
                for q in queries:  # under the same load
                    t = time.perf_counter()
                    search_text(lib, encoder, q, k=10)
                    lat.append((time.perf_counter() - t) * 1000)
            m = report.measures.seconds if report.measures else 0.0
            print(
                f"{name:<16}{load:>5}{procs:>8}{report.indexed:>7}{report.audio_seconds / 3600:>9.2f}"
                f"{report.indexed / dt:>9.2f}"
                f"{report.audio_seconds / dt:>12.1f}{report.audio_seconds / (dt - m):>9.1f}"
                f"{report.audio_seconds / max(m, 1e-9):>11.1f}"
                f"{np.percentile(lat, 50):>9.2f}{np.percentile(lat, 99):>9.2f}",
                flush=True,
            )
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
