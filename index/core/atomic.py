"""Write-then-rename helpers: a reader never sees a half-written file."""
from __future__ import annotations

import errno
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

FULL = (errno.ENOSPC, errno.EDQUOT)


class DiskFullError(OSError):
    """A write that found no space left; the message says what was kept and what to do."""

    def __init__(self, path: Path, what: str | None = None):
        super().__init__(errno.ENOSPC, f"the disk holding {path.parent} is full (no space left to write "
                         f"{what or path.name}). Nothing finished was lost: the files there are as they were before "
                         "this write, and work already saved is kept. Free some space and run the same command again "
                         "to resume")

    def __str__(self) -> str:
        return str(self.strerror)


def is_disk_full(e: BaseException, where: Path) -> bool:
    """An OSError for ENOSPC/EDQUOT, or another library's write error (FAISS, Arrow) on a disk with under 1 MiB
    left: they report a full disk in their own words."""
    if isinstance(e, OSError) and e.errno in FULL:
        return True
    if "No space left" in str(e) or "Disk quota" in str(e):
        return True
    try:
        return shutil.disk_usage(where).free < 2**20
    except OSError:
        return False


def tmp_path(path: Path, tag: str = "") -> Path:
    """`path`'s temp sibling, `NAME.tmp` or `NAME.TAG.tmp` (a commit tags its temp files with its own id)."""
    return path.with_name(f"{path.name}.{tag}.tmp" if tag else f"{path.name}.tmp")


def write_tmp(path: Path, writer: Callable[[Path], None], tag: str = "") -> Path:
    """Write `path`'s future content to its temp sibling (`tmp_path`), flushed to disk; returns the temp path. A
    failed write leaves no temp file behind; on a full disk it raises `DiskFullError`."""
    tmp = tmp_path(path, tag)
    try:
        writer(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
    except Exception as e:
        tmp.unlink(missing_ok=True)
        if not isinstance(e, DiskFullError) and is_disk_full(e, path.parent):
            raise DiskFullError(path) from None
        raise
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
