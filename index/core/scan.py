"""Finding audio files under a folder and reading what the file system and the file's tags say about them."""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tunelens.embed.audio import is_audio_path
from tunelens.index.core.schema import FILE_TAG_COLUMNS


@dataclass(frozen=True)
class FoundFile:
    path: Path  # absolute, not resolved (the user's path, symlinks kept)
    rel_path: str
    size: int  # -1 when the file cannot be stat'ed
    mtime_ns: int


def track_id_for(rel_path: str) -> str:
    """Stable id of a track: its path relative to the scanned music folder, hashed, so it survives content
    changes, re-indexing and moving the whole folder."""
    return hashlib.blake2b(rel_path.encode("utf-8"), digest_size=8).hexdigest()


def scan_folder(root: str | Path) -> Iterator[FoundFile]:
    """Every audio-named file under `root`, recursively, following directory symlinks once (no loops)."""
    root = Path(root).absolute()
    seen_dirs: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen_dirs:
            dirnames[:] = []
            continue
        seen_dirs.add(real)
        dirnames.sort()
        for name in sorted(filenames):
            if not is_audio_path(name):
                continue
            p = Path(dirpath) / name
            try:
                st = os.stat(p)
                size, mtime = st.st_size, st.st_mtime_ns
            except OSError:
                size, mtime = -1, 0
            yield FoundFile(p, p.relative_to(root).as_posix(), size, mtime)


def content_hash(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def read_file_tags(path: Path) -> dict[str, str]:
    """Tags from the file (ID3, Vorbis comments, MP4 atoms...) as plain strings; empty when there are none."""
    try:
        import mutagen

        f = mutagen.File(str(path), easy=True)
    except Exception:
        return {}
    if f is None or not f.tags:
        return {}
    out = {}
    for key, value in f.tags.items():
        if isinstance(value, list):
            value = "; ".join(str(v) for v in value)
        out[str(key).lower()] = str(value)[:500]
    return out


def tag_columns(tags: dict[str, str]) -> dict[str, str | None]:
    cols = {k: tags.get(k) for k in FILE_TAG_COLUMNS}
    cols["file_tags"] = json.dumps(tags, sort_keys=True) if tags else None
    return cols
