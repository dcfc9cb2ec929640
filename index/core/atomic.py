"""Write-then-rename helpers: a reader never sees a half-written file."""
from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path


def tmp_path(path: Path) -> Path:
    return path.with_name(path.name + ".tmp")


def write_tmp(path: Path, writer: Callable[[Path], None]) -> Path:
    """Write `path`'s future content to its `.tmp` sibling, flushed to disk; returns the temp path."""
    tmp = tmp_path(path)
    writer(tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    return tmp


def atomic_write(path: Path, writer: Callable[[Path], None]) -> None:
    os.replace(write_tmp(path, writer), path)


def atomic_write_json(path: Path, obj: object) -> None:
    atomic_write(path, lambda p: p.write_text(json.dumps(obj, indent=1, sort_keys=True)))


def file_stamp(root: str | Path, names: tuple[str, ...] | list[str]) -> tuple:
    """(mtime, inode, size) of each of `names` in `root`, None for a missing one: changes whenever an atomic write
    replaces one of them, so caches keyed by it are rebuilt. Plain `os.stat` on strings: callers run it per
    request."""
    out = []
    for name in names:
        try:
            s = os.stat(os.path.join(root, name))
            out.append((s.st_mtime_ns, s.st_ino, s.st_size))
        except FileNotFoundError:
            out.append(None)
    return tuple(out)
