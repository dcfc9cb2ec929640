"""One fused ranking over what the model hears, what `tunelens index` measured and what the files' tags say.

    score = z(similarity to the query's concepts) - Σ max(0, z(similarity to each concept to avoid))
            + Σ weight × agreement × certainty   (each soft facet)

z is the similarity's standard score over the library, so that a facet weighs the same against any encoder and any
query (a weight of 1 moves a track by one standard deviation of the semantic score). A soft facet's agreement runs
from -1 to +1 (slow: +1 at or under 85 BPM, -1 at or over 110, linear in log-tempo between); its certainty from 0.5
to 1 follows the measurement's own confidence. Hard facets (numbers, keys, names, years, folders) filter. A track
whose measurement is missing gets agreement 0 from a soft facet and is left out by a hard one; the explanation says
which and how many. The weights are fixed a priori (1 per stated facet, 0.5 per mood hint), not tuned on any corpus
we report.
"""
from __future__ import annotations

import math
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from tunelens.embed.base import AudioTextEncoder, PipelineSpec
from tunelens.index.core.display import clock
from tunelens.index.core.library import Library
from tunelens.index.core.tracks import tag_probs, track_table, voice_probability
from tunelens.index.search.query import (
    DURATION_RAMP,
    TEMPO_RAMP,
    CatalogNames,
    Facet,
    ParsedQuery,
    parse,
)

MAX_QUERY_CHARS = 1000
EXACT_LIMIT = 200_000  # up to this many tracks every track is scored exactly; above, the FAISS top candidates
CANDIDATES = 20_000
TEMPO_CONFIDENT = 0.3  # tempo margin (over the next candidate) at which a measured tempo counts fully
VOCAL_MIDPOINT, VOCAL_SPAN = 0.25, 0.25  # vocal-tag probability: +1 at 0.5 and above, -1 at 0
SHAPE_DB = 6.0  # energy rising this many dB from the first to the last tenths counts fully as "builds up"


@dataclass
class FacetTable:
    """The per-track values facets are judged on, in the order of the library's track vectors."""

    track_ids: list[str]
    columns: dict[str, np.ndarray]
    names: CatalogNames
    table: pl.DataFrame  # `index.core.tracks.track_table`, in the same row order

    @classmethod
    def build(cls, lib: Library) -> FacetTable:
        ok_ids = lib.ok_tracks()["track_id"].to_list()  # the row order of the vectors, which `rank` indexes by
        t = pl.DataFrame({"track_id": ok_ids}, schema={"track_id": pl.String}).join(
            track_table(lib), on="track_id", how="left", maintain_order="left")

        def col(name: str, dtype=np.float64) -> np.ndarray:
            s = t[name]
            return s.cast(pl.Float64).fill_null(np.nan).to_numpy() if dtype is np.float64 else \
                np.array(s.to_list(), dtype=object)

        energy = [e if e is not None else [] for e in t["energy_db"].to_list()]
        slope = np.array([np.mean(e[-3:]) - np.mean(e[:3]) if len(e) >= 6 else np.nan for e in energy])
        voice = np.array([np.nan if j is None else voice_probability(tag_probs(j)) for j in t["tags"].to_list()])
        years = np.array([_year(d) for d in t["date"].to_list()], dtype=np.float64)
        cols = {
            "tempo": col("tempo_bpm"), "tempo_confidence": col("tempo_confidence"), "key": col("key", object),
            "key_confidence": col("key_confidence"), "loudness": _rank(col("loudness_lufs")),
            "dynamics": _rank(col("loudness_range_lu")), "shape": slope, "duration": col("duration"), "voice": voice,
            "artist": col("artist", object), "album": col("album", object), "genre": col("genre", object),
            "year": years, "rel_path": col("rel_path", object),
        }
        cols["mode"] = np.array([k.split()[1] if isinstance(k, str) else None for k in cols["key"]], dtype=object)
        parts = [p.split("/")[:-1] for p in cols["rel_path"]]
        folders = sorted({"/".join(f[:i]) for f in parts for i in range(1, len(f) + 1)})
        names = CatalogNames(
            artists=tuple(sorted({a for a in cols["artist"] if a})),
            albums=tuple(sorted({a for a in cols["album"] if a})),
            genres=tuple(sorted({g for v in cols["genre"] if v for g in re.split(r"\s*[;,/]\s*", v) if g})),
            folders=tuple(folders), has_years=bool(np.isfinite(years).any()),
        )
        return cls(ok_ids, cols, names, t)


def _year(date: str | None) -> float:
    m = re.search(r"\b(1[89]\d\d|20\d\d)", date or "")
    return float(m.group(1)) if m else np.nan


def _rank(x: np.ndarray) -> np.ndarray:
    """Each value's place among the measured ones, 0 (lowest) to 1 (highest); NaN stays NaN."""
    out = np.full(len(x), np.nan)
    ok = np.isfinite(x)
    if ok.sum() == 1:
        out[ok] = 0.5
    elif ok.any():
        order = np.argsort(np.argsort(x[ok], kind="stable"), kind="stable")
        out[ok] = order / (ok.sum() - 1)
    return out


def facet_table(lib: Library) -> FacetTable:
    """The library's facet table, built once per state of its catalog, measurements and captions."""
    return lib.derived("facet_table", ("catalog.parquet", "measures.parquet", "captions.parquet"),
                       lambda: FacetTable.build(lib))


def encoder_vocabulary(encoder: AudioTextEncoder) -> frozenset[str]:
    """The encoder's own concept words (a tagger's tag names, its recogniser's instruments), lower-cased."""
    names = getattr(encoder, "tag_names", None) or []
    return frozenset(n.split(": ", 1)[-1].lower() for n in names)


# -- agreement of one soft facet, -1 to +1 (NaN where the value is missing) ----------------------------------------
def _band(x: np.ndarray, low: float | None, high: float | None, ramp: float) -> np.ndarray:
    """+1 inside [low, high], falling linearly in octaves (log2) to -1 at `ramp` octaves outside it."""
    with np.errstate(invalid="ignore", divide="ignore"):
        lx = np.log2(np.where(x > 0, x, np.nan))
        dist = np.zeros(len(x))
        if low is not None:
            dist = np.maximum(dist, math.log2(low) - lx)
        if high is not None:
            dist = np.maximum(dist, lx - math.log2(high))
        return np.where(np.isfinite(lx), 1.0 - 2.0 * np.clip(dist / ramp, 0.0, 1.0), np.nan)


def agreement(f: Facet, c: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(agreement, certainty) of every track with the soft facet `f`."""
    ones = np.ones(len(c["tempo"]))
    if f.kind == "tempo":
        a = _band(c["tempo"], f.low, f.high, TEMPO_RAMP)
        a = -a if f.value == "not" else a
        return a, 0.5 + 0.5 * np.clip(np.nan_to_num(c["tempo_confidence"]) / TEMPO_CONFIDENT, 0, 1)
    if f.kind == "mode":
        known = c["mode"] != None  # noqa: E711
        a = np.where(known, np.where(c["mode"] == f.value, 1.0, -1.0), np.nan)
        return a, 0.5 + 0.5 * np.clip(np.nan_to_num(c["key_confidence"]), 0, 1)
    if f.kind in ("loudness", "dynamics"):
        r = c[f.kind]
        return (1.0 - 2.0 * r if f.value in ("quiet", "compressed") else 2.0 * r - 1.0), ones
    if f.kind == "shape":
        a = np.clip(c["shape"] / SHAPE_DB, -1, 1)
        return (a if f.value == "builds" else -a), ones
    if f.kind == "duration":
        return _band(c["duration"], f.low, f.high, DURATION_RAMP), ones
    if f.kind == "vocals":
        a = np.clip((c["voice"] - VOCAL_MIDPOINT) / VOCAL_SPAN, -1, 1)
        return (a if f.value == "yes" else -a), ones
    if f.kind == "genre":
        g = c["genre"]
        a = np.array([np.nan if v is None else 1.0 if f.value.lower() in v.lower() else -1.0 for v in g])
        return a, ones
    raise ValueError(f"no soft reading of a {f.kind} facet")


def matches(f: Facet, c: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(matches, value known) of every track for the hard facet `f`."""
    def within(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        known = np.isfinite(x)
        lo = -np.inf if f.low is None else f.low
        hi = np.inf if f.high is None else f.high
        with np.errstate(invalid="ignore"):
            return known & (x >= lo) & (x <= hi), known

    if f.kind == "tempo":
        return within(c["tempo"])
    if f.kind == "duration":
        return within(c["duration"])
    if f.kind == "year":
        return within(c["year"])
    if f.kind == "key":
        known = c["key"] != None  # noqa: E711
        return known & (c["key"] == f.value), known
    if f.kind in ("artist", "album"):
        wanted = set(f.value.split(" | "))
        known = c[f.kind] != None  # noqa: E711
        return np.array([v in wanted for v in c[f.kind]]), known
    if f.kind == "folder":
        prefix = f.value.strip("/") + "/"
        return np.array([p.startswith(prefix) for p in c["rel_path"]]), np.ones(len(c["rel_path"]), bool)
    raise ValueError(f"no filter reading of a {f.kind} facet")


MISSING = {"tempo": "no measured tempo", "key": "no measured key", "mode": "no measured key",
           "loudness": "no measured loudness", "dynamics": "no measured loudness range", "shape": "no measured energy",
           "duration": "no duration", "vocals": "no vocal tags (the model predicts none)",
           "genre": "no genre tag", "artist": "no artist tag", "album": "no album tag", "year": "no year tag",
           "folder": "not in a folder"}


def _value(f: Facet, c: dict[str, np.ndarray], i: int) -> str:
    """The measured or tagged value a facet judged, for the explanation."""
    k = f.kind
    if k == "tempo":
        return f"{c['tempo'][i]:.0f} BPM"
    if k in ("key", "mode"):
        return str(c["key"][i])
    if k in ("loudness", "dynamics"):
        return f"{'louder' if k == 'loudness' else 'wider'} than {c[k][i]:.0%} of the library"
    if k == "shape":
        return f"energy {c['shape'][i]:+.0f} dB from start to end"
    if k == "duration":
        return clock(c["duration"][i])
    if k == "vocals":
        return f"vocal tags {c['voice'][i]:.2f}"
    if k == "year":
        return f"{c['year'][i]:.0f}"
    if k == "folder":
        return str(c["rel_path"][i])
    return str(c[k][i])


def _known(f: Facet, c: dict[str, np.ndarray], i: int) -> bool:
    col = {"mode": "key", "dynamics": "dynamics"}.get(f.kind, f.kind)
    col = {"vocals": "voice"}.get(col, col)
    v = c[col][i] if col in c else None
    return v is not None and not (isinstance(v, float) and not np.isfinite(v))


class SearchResults(list):
    """The hits (a list, as before) with what the query was understood as and why each hit is there."""

    def __init__(self, hits=(), query: ParsedQuery | None = None, notes: list[str] | None = None,
                 empty_reason: str | None = None):
        super().__init__(hits)
        self.query = query
        self.notes = notes or []
        self.empty_reason = empty_reason

    @property
    def understood(self) -> str:
        return self.query.understood() if self.query else ""

    def to_dict(self) -> dict:
        return {"query": self.query.to_dict() if self.query else None, "notes": self.notes,
                "empty_reason": self.empty_reason, "hits": [h.to_dict() for h in self]}


@dataclass
class Ranked:
    """The fused scores of the tracks a query keeps, with what explains them."""

    order: np.ndarray  # track rows (vector rows), best first
    score: np.ndarray  # fused score of each of `order`
    semantic: np.ndarray | None  # z of each track (all rows), None for a query with no concepts
    best_window: np.ndarray | None  # per track row: absolute window row of the best moment (moments search)
    query_vector: np.ndarray | None  # the semantic part's vector (None without concepts or a base)
    notes: list[str] = field(default_factory=list)
    empty_reason: str | None = None


TEXT_CACHE_SIZE = 4096  # concept vectors kept (the text model is 85% of a search's time; concepts repeat)
_text_cache: OrderedDict[tuple, np.ndarray] = OrderedDict()
_text_lock = threading.Lock()


def text_vector(encoder: AudioTextEncoder, text: str) -> np.ndarray:
    """The encoder's unit vector of one text, embedded alone (so it never depends on what else was asked with it)
    and kept in a bounded cache keyed by the model, its version and its text temperature."""
    key = (encoder.name, encoder.version, getattr(encoder, "text_temperature", None), text[:MAX_QUERY_CHARS])
    with _text_lock:
        hit = _text_cache.get(key)
        if hit is not None:
            _text_cache.move_to_end(key)
            return hit
    v = np.asarray(encoder.embed_text([key[-1]])[0], np.float32)
    v = v / max(float(np.linalg.norm(v)), 1e-12)
    v.setflags(write=False)
    with _text_lock:
        _text_cache[key] = v
        while len(_text_cache) > TEXT_CACHE_SIZE:
            _text_cache.popitem(last=False)
    return v


def concept_vector(encoder: AudioTextEncoder, texts: list[str]) -> np.ndarray | None:
    """The mean of the concepts' unit text vectors, re-normalised: each concept counts once, none wins alone."""
    if not texts:
        return None
    v = np.stack([text_vector(encoder, t) for t in texts])
    m = v.mean(axis=0)
    return m / max(float(np.linalg.norm(m)), 1e-12)


def _zscore(x: np.ndarray) -> np.ndarray:
    if not x.size:  # an empty library (its first index still running)
        return x
    sd = float(x.std())
    return (x - float(x.mean())) / (sd if sd > 1e-9 else 1.0)


def _similarities(lib: Library, q: np.ndarray, moments: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Per track row: similarity to `q` (of the track vector, or of its best window with `moments`), and the best
    window's row for moments. Exact up to EXACT_LIMIT tracks; above, the FAISS top candidates (others get the
    lowest candidate's score)."""
    ok = lib.ok_tracks()
    n = len(ok)
    if not moments:
        if n <= EXACT_LIMIT:
            return np.asarray(lib.track_vectors()[:n]) @ q, None
        scores, rows = lib.vector_index.search(q[None, :], min(n, CANDIDATES))
        out = np.full(n, float(scores[0][rows[0] >= 0].min()))
        out[rows[0][rows[0] >= 0]] = scores[0][rows[0] >= 0]
        return out, None
    offsets = ok["window_offset"].to_numpy()
    counts = ok["window_count"].to_numpy()
    windows = lib.window_vectors()
    if len(windows) <= 10 * EXACT_LIMIT:
        w = np.empty(len(windows), np.float32)
        for s in range(0, len(windows), 262_144):
            w[s:s + 262_144] = np.asarray(windows[s:s + 262_144]) @ q
    else:
        scores, rows = lib.window_index.search(q[None, :], min(len(windows), 10 * CANDIDATES))
        w = np.full(len(windows), float(scores[0][rows[0] >= 0].min()), np.float32)
        w[rows[0][rows[0] >= 0]] = scores[0][rows[0] >= 0]
    # the best window of each track: windows sorted by track, then by falling similarity; the first of each track
    track_of = np.repeat(np.arange(n), counts)
    rows = offsets[track_of] + (np.arange(len(track_of)) - np.repeat(np.cumsum(counts) - counts, counts))
    order = np.lexsort((-w[rows], track_of))
    firsts = order[np.r_[True, track_of[order][1:] != track_of[order][:-1]]] if len(order) else order
    best = offsets.astype(np.int64).copy()
    sims = np.full(n, -np.inf)
    best[track_of[firsts]] = rows[firsts]
    sims[track_of[firsts]] = w[rows[firsts]]
    return sims, best


def rank(lib: Library, encoder: AudioTextEncoder | None, q: ParsedQuery, moments: bool = False,
         allowed: set[str] | None = None, exclude: set[str] = frozenset(), base: np.ndarray | None = None,
         top: int | None = None) -> Ranked:
    """Fuse semantic similarity and facet agreement over the library's tracks (see the module docstring).
    `base`: a vector the semantic part starts from (a track, for `similar` with a steering phrase). `top`: order
    only the best `top` tracks (the same first `top` as the full order; a server answering k=10 skips sorting all)."""
    ft = facet_table(lib)
    c = ft.columns
    n = len(ft.track_ids)
    keep = np.ones(n, bool)
    notes: list[str] = []
    if allowed is not None:
        keep &= np.array([t in allowed for t in ft.track_ids], bool)
        if not keep.any():
            return Ranked(np.zeros(0, int), np.zeros(0), None, None, None, notes, "the filters leave no track")
    if exclude:
        keep &= np.array([t not in exclude for t in ft.track_ids], bool)
    empty_reason = None
    for f in (f for f in q.facets if f.hard):
        ok, known = matches(f, c)
        missing = int((keep & ~known).sum())
        if missing:
            notes.append(f"{missing} track{'s' if missing > 1 else ''} with {MISSING[f.kind]} left out by "
                         f"“{f.phrase}”" + (" (run `tunelens index` to measure them)"
                                            if f.kind in ("tempo", "key") else ""))
        before = int(keep.sum())
        keep &= ok
        if before and not keep.any() and empty_reason is None:
            empty_reason = (f"no track matches “{f.phrase}” ({f.label})" if before == n else
                            f"no track matches “{f.phrase}” ({f.label}) together with the rest of the query")
    score = np.zeros(n)
    semantic = None
    texts = list(q.concepts)
    if base is not None or texts:
        if encoder is None and texts:
            raise ValueError("an encoder is needed for the semantic part of the query")
        if encoder is not None:
            lib.check_pipeline(PipelineSpec.for_encoder(encoder))
        vec = concept_vector(encoder, texts) if texts else None
        if base is not None:
            b = np.asarray(base, np.float32) / max(float(np.linalg.norm(base)), 1e-12)
            vec = b if vec is None else (b + vec) / max(float(np.linalg.norm(b + vec)), 1e-12)
        sims, best = _similarities(lib, vec, moments)
        semantic = _zscore(sims)
        score += semantic
        query_vec = vec
    else:
        best, query_vec = None, None
    for text in q.excluded:
        if encoder is None:
            break
        sims, _ = _similarities(lib, concept_vector(encoder, [text]), False)
        score -= np.maximum(_zscore(sims), 0.0)
    for f in (f for f in q.facets if not f.hard):
        a, certainty = agreement(f, c)
        unknown = int((keep & ~np.isfinite(a)).sum())
        if unknown:
            notes.append(f"{unknown} track{'s' if unknown > 1 else ''} with {MISSING[f.kind]}: “{f.phrase}” neither "
                         f"helps nor hurts them")
        score += f.weight * np.nan_to_num(a) * certainty
    rows = np.flatnonzero(keep)
    if top is not None and top < len(rows):
        # the top `top` by score, ties broken by row as the stable full sort breaks them
        cut = np.partition(-score[rows], top - 1)[top - 1]
        rows = rows[-score[rows] <= cut]
    order = rows[np.argsort(-score[rows], kind="stable")][:top]
    return Ranked(order, score[order], semantic, best, query_vec, notes, empty_reason)


def explain(f: Facet, c: dict[str, np.ndarray], i: int) -> str:
    """"slow (< 85 BPM): 62 BPM ✓" — one facet's verdict on one track."""
    if not _known(f, c, i):
        return f"{f.label}: {MISSING[f.kind]}, so not judged"
    if f.hard:
        return f"{f.label}: {_value(f, c, i)} ✓"
    a, _ = agreement(f, {k: v[i:i + 1] for k, v in c.items()})
    mark = "✓" if a[0] > 0.33 else "✗" if a[0] < -0.33 else "~"
    return f"{f.label}: {_value(f, c, i)} {mark}"


def parse_for(lib: Library, text: str, encoder: AudioTextEncoder | None) -> ParsedQuery:
    """`text` parsed against this library's names and the encoder's vocabulary."""
    text = (text or "").strip()
    if not text:
        raise ValueError("the query is empty; describe the music you want, e.g. \"slow solo piano\"")
    vocab = encoder_vocabulary(encoder) if encoder is not None else frozenset()
    return parse(text[:MAX_QUERY_CHARS], facet_table(lib).names, vocab)

