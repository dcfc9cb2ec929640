"""Batch captioning throughput of the default captioner on an indexed library.

    python scripts/bench_caption.py --library LIB [--workers 1,2]

Copies LIB to a temporary folder, captions every track from scratch (decoding and analysis included) and
prints tracks per minute, minutes of audio per minute and the rate in three-minute-track equivalents.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from tunelens.caption.batch import CaptionConfig, caption_library
    from tunelens.index import Library

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--library", required=True, type=Path)
    ap.add_argument("--workers", default="2")
    args = ap.parse_args(argv)
    print(
        f"{'workers':>8}{'tracks':>8}{'audio min':>11}{'seconds':>9}{'tracks/min':>12}{'audio min/min':>15}"
        f"{'3-min tracks/min':>18}"
    )
    for workers in (int(w) for w in args.workers.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            lib_dir = Path(tmp) / "lib"
            shutil.copytree(args.library, lib_dir, ignore=shutil.ignore_patterns("captions", "captions.parquet"))
            t = time.perf_counter()
            r = caption_library(Library.open(lib_dir), config=CaptionConfig(workers=workers))
            dt = time.perf_counter() - t
        minutes = r.seconds_of_audio / 60
        print(
            f"{workers:>8}{r.captioned:>8}{minutes:>11.1f}{dt:>9.1f}{r.captioned / dt * 60:>12.1f}"
            f"{minutes / dt * 60:>15.1f}{minutes / 3 / dt * 60:>18.1f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
