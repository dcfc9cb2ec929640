"""Queries against a library: text → tracks, track → similar tracks, each with its best-matching window.

`search` and `similar` read the query first (`index.search.query`) and rank with measurements and file tags as well
as the model (`index.search.hybrid`); `search_text` and `search_moments` are the model alone, as before.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from tunelens.embed.audio import AudioError
from tunelens.embed.base import AudioTextEncoder, PipelineSpec
from tunelens.embed.pipeline import embed_file
from tunelens.index.core.atomic import atomic_write
from tunelens.index.core.library import Library, LibraryError
from tunelens.index.search.hybrid import MAX_QUERY_CHARS, SearchResults, explain, facet_table, parse_for, rank
from tunelens.index.search.query import Facet


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
    why: list[str] = field(default_factory=list)  # the facets each hit meets or misses, with its measured values

    def to_dict(self) -> dict:
        return asdict(self)


def _hit(track: dict, rank: int, score: float, wtab: pl.DataFrame, window_row: int) -> Hit:
    return Hit(rank=rank, score=score, track_id=track["track_id"], path=track["path"], rel_path=track["rel_path"],
               title=track["title"], artist=track["artist"], duration=float(track["duration"]),
               best_start_s=float(wtab["start_s"][window_row]), best_end_s=float(wtab["end_s"][window_row]))


def _query_vector(lib: Library, encoder: AudioTextEncoder, text: str) -> np.ndarray:
    """The whole text to the model, unread (`search_text`, `search_moments`)."""
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
           encoder: AudioTextEncoder | None = None, device: str = "auto", allowed: set[str] | None = None,
           parse_query: bool = True) -> SearchResults:
    """The k tracks (or, with `moments`, the k best 10 s windows, one per track) that best match `text`, as
    `tunelens search` finds them: the query is read into concepts for the library's model and facets on measurements
    and file tags, and ranked on both (`parse_query=False`: the whole text to the model alone). The result is a list
    of hits that also says what the query was understood as (`.query`), and why it is empty when it is."""
    lib = Library.coerce(library)
    encoder = encoder or lib.encoder(device)
    if not parse_query:
        hits = (search_moments(lib, encoder, text, k) if moments else
                search_text(lib, encoder, text, k, allowed=allowed))
        return SearchResults(hits)
    q = parse_for(lib, text, encoder)
    return ranked_hits(lib, encoder, q, k, moments=moments, allowed=allowed)


def ranked_hits(lib: Library, encoder: AudioTextEncoder | None, q, k: int, moments: bool = False,
                allowed: set[str] | None = None, exclude: set[str] = frozenset(),
                base: np.ndarray | None = None) -> SearchResults:
    """The top k of `hybrid.rank` as hits, each with its best moment and why it is there."""
    r = rank(lib, encoder, q, moments=moments, allowed=allowed, exclude=exclude, base=base, top=k)
    notes = list(q.notes) + r.notes
    if not len(r.order):
        why = r.empty_reason or (lib.why_empty() if not len(lib.ok_tracks()) else "no track matches the query")
        return SearchResults([], q, notes, why)
    ok = lib.ok_tracks()
    wtab = lib.windows_table()
    windows = lib.window_vectors()
    cols = facet_table(lib).columns
    hits: list[Hit] = []
    for score, row in zip(r.score[:k], r.order[:k]):
        t = ok.row(int(row), named=True)
        off, cnt = t["window_offset"], t["window_count"]
        if r.best_window is not None:
            w = int(r.best_window[row])
        elif r.query_vector is not None and cnt:
            w = off + int(np.argmax(np.asarray(windows[off:off + cnt]) @ r.query_vector))
        else:
            w = off
        hit = _hit(t, len(hits) + 1, float(score), wtab, w)
        if r.semantic is not None:
            what = ", ".join(q.concepts) if q.concepts else "this track"
            hit.why.append(f"sounds like {what}: {r.semantic[row]:+.1f} sd")
        hit.why += [explain(f, cols, int(row)) for f in q.facets]
        hits.append(hit)
    return SearchResults(hits, q, notes)


def search_moments(lib: Library, encoder: AudioTextEncoder, text: str, k: int = 10) -> list[Hit]:
    """The k best-matching 10 s windows across the library, at most one per track, from the window index (the
    model alone; `search(..., moments=True)` also reads facets)."""
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
    row = lib.track_row(ref)
    if row is not None:  # an indexed track's id: the common case, from a map instead of a scan
        return lib.ok_tracks().row(row, named=True)
    cat = lib.catalog
    absolute = str(Path(ref).absolute()) if ref else ""
    match = cat.filter((pl.col("track_id") == ref) | (pl.col("path") == absolute) | (pl.col("rel_path") == ref))
    return match.row(0, named=True) if len(match) else None


def reference_vector(lib: Library, ref: str | Path, encoder: AudioTextEncoder | None = None,
                     device: str = "auto") -> tuple[np.ndarray, dict | None]:
    """The track vector of a library track (by id or path, with its catalog row), or of any audio file (embedded
    on the fly by `encoder`, by default the library's own model; no row)."""
    ref = str(ref)
    track = find_track(lib, ref)
    if track is not None:
        if track["status"] != "ok":
            raise LibraryError(f"{track['rel_path']} is in the library but failed to index: {track['error']}")
        return np.asarray(lib.track_vectors()[track["vec_row"]]), track
    if not Path(ref).is_file():
        raise LibraryError(f"{ref!r} is neither a track id or path in {lib.root} nor an audio file")
    encoder = encoder or lib.encoder(device)
    lib.check_pipeline(PipelineSpec.for_encoder(encoder))
    try:
        return embed_file(ref, encoder).track_vector, None
    except AudioError as e:
        raise LibraryError(str(e)) from None


def similar(library: Library | str | Path, ref: str, k: int = 10, encoder: AudioTextEncoder | None = None,
            allowed: set[str] | None = None, device: str = "auto", steer: str | None = None) -> SearchResults:
    """Tracks like a library track (by id or path), or like any audio file (embedded on the fly by `encoder`,
    by default the library's own model). `steer` moves the search: "slower", "without vocals", "with piano",
    "in a minor key" (tempo words relative to the track: "slower" prefers under 92% of its tempo)."""
    lib = Library.coerce(library)
    vec, track = reference_vector(lib, ref, encoder, device)
    exclude = {track["track_id"]} if track is not None else set()
    if not (steer or "").strip():
        return SearchResults(search_vector(lib, vec, k, exclude=exclude, allowed=allowed))
    encoder = encoder or lib.encoder(device)
    q = parse_for(lib, steer, encoder)
    if track is not None:
        q.facets = [_relative(f, facet_table(lib).columns, int(track["vec_row"])) for f in q.facets]
    return ranked_hits(lib, encoder, q, k, allowed=allowed, exclude=exclude, base=vec)


def _relative(f: Facet, cols: dict, row: int) -> Facet:
    """"slower"/"faster" said of a track: a preference under 92% or over 108% of its measured tempo."""
    from dataclasses import replace

    bpm = cols["tempo"][row]
    comparative = any(w in f.phrase.lower() for w in ("slower", "faster"))
    if f.kind != "tempo" or f.hard or not np.isfinite(bpm) or not comparative:
        return f
    if "slower" in f.phrase.lower():
        return replace(f, label=f"slower than this ({bpm:.0f} BPM)", low=None, high=0.92 * bpm)
    return replace(f, label=f"faster than this ({bpm:.0f} BPM)", low=1.08 * bpm, high=None)


def to_m3u(hits: list[Hit], relative_to: str | Path | None = None, title: str | None = None) -> str:
    """An extended M3U playlist of the hits (see `index.playlists.export.to_m3u`)."""
    from tunelens.index.playlists.export import to_m3u as m3u

    return m3u(hits, relative_to, title)


def write_playlists(library: Library | str | Path, queries: list[str], to: str | Path, k: int = 50,
                    encoder: AudioTextEncoder | None = None) -> list[Path]:
    """One `.m3u8` (UTF-8 M3U) per query in the folder `to`, named after the query, its entries relative to `to`
    so that a player scanning the music folder resolves them: what `tunelens playlist-dir` writes."""
    lib = Library.coerce(library)
    to = Path(to)
    to.mkdir(parents=True, exist_ok=True)
    written = []
    for q in queries:
        hits = search(lib, q, k, encoder=encoder)
        name = re.sub(r"[^\w\- ]+", "", q).strip()[:80] or "tunelens"
        path = to / f"{name}.m3u8"
        atomic_write(path, lambda p, hits=hits, q=q: p.write_text(to_m3u(hits, to, title=q), encoding="utf-8"))
        written.append(path)
    return written


def to_csv(hits: list[Hit]) -> str:
    rows = [{**h.to_dict(), "why": "; ".join(h.why)} for h in hits]
    return pl.DataFrame(rows or None, schema=list(Hit.__dataclass_fields__)).write_csv()
