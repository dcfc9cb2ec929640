"""Busy processes competing for the cores, for the benchmarks' "one core busy" rows (`--load N` of
bench_index.py, bench_runtimes.py and bench_original.py, which import this file from beside them)."""
from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def busy_processes(n: int) -> Iterator[None]:
    """`n` processes spinning in a Python loop for the duration, stopped (and reaped) however the block ends."""
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        yield
    finally:
        for h in hogs:
            h.kill()
            h.wait()
