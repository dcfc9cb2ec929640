"""Queries against a library: text → tracks, track → similar tracks, each with its best-matching window."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import polars as pl

from tunelens.embed.audio import AudioError
from tunelens.embed.base import AudioTextEncoder, PipelineSpec
from tunelens.embed.pipeline import embed_file
from tunelens.index.core.library import Library, LibraryError

MAX_QUERY_CHARS = 1000


@dataclass
class Hit:
    rank: int
    score: float
    track_id: str
    path: str
    rel_path: str
    title: str | None
    artist: str | None
    duration: float
    best_start_s: float  # where in the track the query matches best ("find the moment")
    best_end_s: float

    def to_dict(self) -> dict:
        return asdict(self)


def _hit(track: dict, rank: int, score: float, wtab: pl.DataFrame, window_row: int) -> Hit:
    return Hit(rank=rank, score=score, track_id=track["track_id"], path=track["path"], rel_path=track["rel_path"],
               title=track["title"], artist=track["artist"], duration=float(track["duration"]),
               best_start_s=float(wtab["start_s"][window_row]), best_end_s=float(wtab["end_s"][window_row]))


def _query_vector(lib: Library, encoder: AudioTextEncoder, text: str) -> np.ndarray:
    text = (text or "").strip()
    if not text:
        raise ValueError("the query is empty; describe the music you want, e.g. \"slow solo piano\"")
    lib.check_pipeline(PipelineSpec.for_encoder(encoder))
    return encoder.embed_text([text[:MAX_QUERY_CHARS]])[0]


def _hits(lib: Library, query: np.ndarray, scores: np.ndarray, rows: np.ndarray, exclude: set[str],
          allowed: set[str] | None = None, k: int | None = None) -> list[Hit]:
    ok = lib.ok_tracks()
    windows = lib.window_vectors()
    wtab = lib.windows_table()
    hits: list[Hit] = []
    for score, row in zip(scores, rows):
        if row < 0:
            continue
        t = ok.row(int(row), named=True)
        if t["track_id"] in exclude or (allowed is not None and t["track_id"] not in allowed):
            continue
        if k is not None and len(hits) >= k:
            break
        off, cnt = t["window_offset"], t["window_count"]
        w = np.asarray(windows[off:off + cnt]) @ query
        hits.append(_hit(t, len(hits) + 1, float(score), wtab, off + int(np.argmax(w))))
    return hits


def search_vector(lib: Library, query: np.ndarray, k: int = 10, exclude: set[str] = frozenset(),
                  allowed: set[str] | None = None) -> list[Hit]:
    """The k nearest tracks; with `allowed` (track ids passing a filter), only those, searching deeper as needed."""
    n = lib.vector_index.ntotal
    if n == 0 or (allowed is not None and not allowed):
        return []
    query = np.asarray(query, np.float32).reshape(-1)
    depth = k + len(exclude) if allowed is None else min(n, max(8 * (k + len(exclude)), 256))
    while True:
        scores, rows = lib.vector_index.search(query[None, :], min(depth, n))
        hits = _hits(lib, query, scores[0], rows[0], set(exclude), allowed, k)
        if len(hits) >= k or depth >= n:
            return hits
        depth *= 4


def search_text(lib: Library, encoder: AudioTextEncoder, text: str, k: int = 10,
                allowed: set[str] | None = None) -> list[Hit]:
    return search_vector(lib, _query_vector(lib, encoder, text), k, allowed=allowed)


def search(library: Library | str | Path, text: str, k: int = 10, moments: bool = False,
           encoder: AudioTextEncoder | None = None, device: str = "auto") -> list[Hit]:
    """The k tracks (or, with `moments`, the k best 10 s windows, one per track) that best match `text`, as
    `tunelens search` finds them; the library's own model embeds the text unless `encoder` is given."""
    lib = Library.coerce(library)
    encoder = encoder or lib.encoder(device)
    return (search_moments if moments else search_text)(lib, encoder, text, k)


def search_moments(lib: Library, encoder: AudioTextEncoder, text: str, k: int = 10) -> list[Hit]:
    """The k best-matching 10 s windows across the library, at most one per track, from the window index."""
    query = _query_vector(lib, encoder, text)
    index = lib.window_index
    if index.ntotal == 0:
        return []
    ok = lib.ok_tracks()
    offsets = ok["window_offset"].to_numpy()
    wtab = lib.windows_table()
    depth = min(index.ntotal, 8 * k)
    while True:
        scores, rows = index.search(query[None, :], depth)
        hits: list[Hit] = []
        seen: set[int] = set()
        for score, w in zip(scores[0], rows[0]):
            if w < 0:
                continue
            t_row = int(np.searchsorted(offsets, w, side="right")) - 1
            if t_row in seen:
                continue
            seen.add(t_row)
            hits.append(_hit(ok.row(t_row, named=True), len(hits) + 1, float(score), wtab, int(w)))
            if len(hits) >= k:
                return hits
        if depth >= index.ntotal:
            return hits
        depth = min(index.ntotal, depth * 4)


def find_track(lib: Library, ref: str) -> dict | None:
    """A catalog row by track id, absolute path or path relative to the music folder."""
    cat = lib.catalog
    absolute = str(Path(ref).absolute()) if ref else ""
    match = cat.filter((pl.col("track_id") == ref) | (pl.col("path") == absolute) | (pl.col("rel_path") == ref))
    return match.row(0, named=True) if len(match) else None


def similar(library: Library | str | Path, ref: str, k: int = 10, encoder: AudioTextEncoder | None = None,
            allowed: set[str] | None = None, device: str = "auto") -> list[Hit]:
    """Tracks like a library track (by id or path), or like any audio file (embedded on the fly by `encoder`,
    by default the library's own model)."""
    lib = Library.coerce(library)
    ref = str(ref)
    track = find_track(lib, ref)
    if track is not None:
        if track["status"] != "ok":
            raise LibraryError(f"{track['rel_path']} is in the library but failed to index: {track['error']}")
        vec = np.asarray(lib.track_vectors()[track["vec_row"]])
        return search_vector(lib, vec, k, exclude={track["track_id"]}, allowed=allowed)
    if not Path(ref).is_file():
        raise LibraryError(f"{ref!r} is neither a track id or path in {lib.root} nor an audio file")
    encoder = encoder or lib.encoder(device)
    lib.check_pipeline(PipelineSpec.for_encoder(encoder))
    try:
        emb = embed_file(ref, encoder)
    except AudioError as e:
        raise LibraryError(str(e)) from None
    return search_vector(lib, emb.track_vector, k, allowed=allowed)


def to_m3u(hits: list[Hit]) -> str:
    """An extended M3U playlist of the hits (absolute paths, durations, titles)."""
    lines = ["#EXTM3U"]
    for h in hits:
        name = " - ".join(x for x in (h.artist, h.title or Path(h.rel_path).stem) if x)
        lines += [f"#EXTINF:{int(round(h.duration))},{name}", h.path]
    return "\n".join(lines) + "\n"


def to_csv(hits: list[Hit]) -> str:
    return pl.DataFrame([h.to_dict() for h in hits] or None, schema=list(Hit.__dataclass_fields__)).write_csv()
