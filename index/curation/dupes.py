"""Duplicate recordings in a library.

Exact: the same decoded samples (embed.quality's audio hash), so a WAV and its FLAC match. Near: the same
recording re-encoded, gain-changed, resampled, down-mixed, faded, or edited (up to 30 s or 20% cut at the
start or end). Candidates come from a range search of the track index (cosine >= `min_cosine`) whose
durations an edit could explain; each is confirmed by aligning the two fingerprints (embed.fingerprint) and
scoring the part they share, because two different pieces for the same instruments at the same tempo sit
just as close in an embedding space. Confirmed pairs are joined into clusters, each with a suggested keeper
(lossless over lossy, then the complete version over an edit, then higher bitrate) and every other copy's
relation to it ("same recording", "edit: 12 s shorter at the start").

    duplicates.parquet   one row per track in a cluster: cluster, track_id, keeper, how it matched, relation
"""
from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from tunelens.embed.fingerprint import EditRules
from tunelens.index.core.atomic import atomic_write
from tunelens.index.core.library import Library
from tunelens.index.curation.components import Components
from tunelens.index.curation.quality import is_lossless

DUPES_FILE = "duplicates.parquet"
DUPES_SCHEMA = {
    "cluster": pl.Int64, "track_id": pl.String, "rel_path": pl.String, "keeper": pl.Boolean, "matched_by": pl.String,
    "match": pl.Float64, "relation": pl.String, "lossless": pl.Boolean, "bitrate_kbps": pl.Float64,
    "duration": pl.Float64,
}
RULES_VERSION = 3  # raised when the confirmation rules change (2: level contours; 3: chroma at a fixed A440 tuning),
# so older clusters are found again
KEEPER = "keeper"
IDENTICAL = "identical audio"


@dataclass(frozen=True)
class DupesConfig:
    min_cosine: float = 0.8  # range-search radius over track vectors: only these pairs are looked at
    max_neighbours: int = 50  # per track, the closest candidates kept
    min_harmony: float = 0.93  # chroma agreement that confirms a pair (see embed.fingerprint)
    min_spectral: float = 0.8  # log-mel agreement that confirms a pair
    max_drift_s: float = 0.07  # timing drift across the shared part (under one mel frame): a copy keeps its timing
    max_dynamics_db: float = 0.5  # level contours parting, dB (embed.fingerprint._dynamics): a copy keeps its dynamics
    edits: EditRules = field(default_factory=EditRules)  # how far apart in extent two copies may be
    workers: int = 2  # threads decoding candidates for fingerprints


@dataclass
class DupesResult:
    clusters: pl.DataFrame  # DUPES_SCHEMA
    pairs: pl.DataFrame  # a, b (track ids), matched_by, cosine, harmony, spectral, match: every pair confirmed
    candidates: int | None  # pairs the fingerprint looked at (None: clusters saved by an earlier run)
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (rel_path, reason)
    config: DupesConfig = field(default_factory=DupesConfig)


ProgressFn = Callable[[int, int], None]


def _candidate_pairs(lib: Library, cat: pl.DataFrame, config: DupesConfig) -> dict[tuple[int, int], float]:
    """(vec_row a < b) → cosine, for pairs within the radius whose durations an edit could explain."""
    vecs = lib.track_vectors()
    index = lib.vector_index
    durations = np.full(len(vecs), np.nan)
    durations[cat["vec_row"].to_numpy()] = cat["duration"].to_numpy()
    out: dict[tuple[int, int], float] = {}
    for start in range(0, len(vecs), 4096):
        found = index.neighbours_within(
            np.asarray(vecs[start : start + 4096]), config.min_cosine, config.max_neighbours + 1
        )
        for q, (rows, scores) in enumerate(found):
            a = start + q
            for b, cos in zip(rows, scores):
                b = int(b)
                gap = abs(durations[a] - durations[b])
                if b != a and gap <= config.edits.allowed_cut(max(durations[a], durations[b])) + 0.5:
                    key = (min(a, b), max(a, b))
                    out[key] = max(out.get(key, -1.0), float(cos))
    return out


def _keeper_order(rows: pl.DataFrame) -> pl.DataFrame:
    """Keeper first: lossless, then the longest (whole seconds: an edit loses to the complete version, while a
    resampled copy's fraction of a sample does not count), then the highest bitrate."""
    return rows.with_columns(pl.col("duration").round(0).alias("_whole")).sort(
        ["lossless", "_whole", "bitrate_kbps", "rel_path"], descending=[True, True, True, False]).drop("_whole")


def find_duplicates(
    lib: Library, config: DupesConfig = DupesConfig(), progress: ProgressFn | None = None
) -> DupesResult:
    from tunelens.embed.audio import error_reason
    from tunelens.embed.fingerprint import Fingerprint, align, fingerprint

    cat = lib.ok_tracks()
    by_row = {r["vec_row"]: r for r in cat.select("vec_row", "track_id", "path", "rel_path").iter_rows(named=True)}
    pairs: dict[tuple[int, int], dict] = {}
    # exact: one decoded-audio hash
    hashed = cat.filter(pl.col("audio_hash").is_not_null()).group_by("audio_hash").agg(pl.col("vec_row").sort())
    for rows in hashed["vec_row"]:
        for b in rows[1:]:
            pairs[(rows[0], b)] = {"matched_by": "exact", "cosine": None, "harmony": 1.0, "spectral": 1.0, "match": 1.0,
                                   "offset_s": 0.0, "dynamics_db": 0.0, "relation": IDENTICAL}
    candidates = {k: v for k, v in _candidate_pairs(lib, cat, config).items() if k not in pairs}
    exact_of = {b: a for a, b in pairs}  # a copy's fingerprint is its original's
    needed = sorted({exact_of.get(r, r) for pair in candidates for r in pair})
    prints: dict[int, Fingerprint] = {}
    unreadable: list[tuple[str, str]] = []

    def compute(row: int) -> tuple[int, Fingerprint | None, str | None]:
        try:
            return row, fingerprint(by_row[row]["path"]), None
        except Exception as e:  # a file changed or vanished since indexing: skip it, say why
            return row, None, error_reason(e)

    with ThreadPoolExecutor(max_workers=max(1, config.workers)) as pool:
        for n, (row, fp, error) in enumerate(pool.map(compute, needed), 1):
            if fp is not None:
                prints[row] = fp
            else:
                unreadable.append((by_row[row]["rel_path"], error or "unreadable"))
            if progress:
                progress(n, len(needed))
    for (a, b), cos in candidates.items():
        fa, fb = prints.get(exact_of.get(a, a)), prints.get(exact_of.get(b, b))
        if fa is None or fb is None:
            continue
        found = align(fa, fb, config.edits)
        if (found.harmony >= config.min_harmony and found.spectral >= config.min_spectral
                and abs(found.drift_s) <= config.max_drift_s and found.dynamics_db <= config.max_dynamics_db):
            pairs[(a, b)] = {
                "matched_by": "near",
                "cosine": cos,
                "harmony": found.harmony,
                "spectral": found.spectral,
                "match": min(found.harmony, found.spectral),
                "offset_s": round(found.offset_s, 2),
                "dynamics_db": found.dynamics_db,
                "relation": found.relation(),
            }

    def relation_to(keeper: int, row: int) -> str:
        """How `row` differs from its cluster's keeper, aligned directly (a cluster may be joined through a
        third copy)."""
        if exact_of.get(row, row) == exact_of.get(keeper, keeper):
            return IDENTICAL
        if keeper < row and (keeper, row) in pairs:  # aligned already, the keeper first
            return pairs[(keeper, row)]["relation"]
        fk, fr = (prints.get(exact_of.get(r, r)) for r in (keeper, row))
        if fk is None or fr is None:
            return pairs.get((min(keeper, row), max(keeper, row)), {}).get("relation") or "same recording"
        return align(fk, fr, config.edits).relation()

    components = Components()
    for a, b in pairs:
        components.link(a, b)
    best_match: dict[int, tuple[str, float]] = {}
    for (a, b), p in pairs.items():
        for r in (a, b):
            if r not in best_match or p["match"] > best_match[r][1]:
                best_match[r] = (p["matched_by"], p["match"])
    info = cat.with_columns(
        is_lossless().alias("lossless"),
        (pl.col("size") * 8 / pl.col("duration").clip(lower_bound=1e-3) / 1000).round(1).alias("bitrate_kbps"),
    )
    frames = []
    for cid, rows in enumerate(sorted(components.groups(), key=lambda rs: min(by_row[r]["rel_path"] for r in rs))):
        part = _keeper_order(info.filter(pl.col("vec_row").is_in(rows)))
        part = part.with_columns(
            pl.lit(cid, pl.Int64).alias("cluster"),
            (pl.int_range(pl.len()) == 0).alias("keeper"),
            pl.col("vec_row")
            .replace_strict({r: best_match[r][0] for r in rows}, return_dtype=pl.String)
            .alias("matched_by"),
            pl.col("vec_row")
            .replace_strict({r: best_match[r][1] for r in rows}, return_dtype=pl.Float64)
            .alias("match"),
        )
        keeper = part["vec_row"][0]
        part = part.with_columns(
            pl.Series("relation", [KEEPER] + [relation_to(keeper, r) for r in part["vec_row"][1:]], pl.String)
        )
        frames.append(part.select(list(DUPES_SCHEMA)))
    clusters = pl.concat(frames) if frames else pl.DataFrame(schema=DUPES_SCHEMA)
    pair_df = pl.DataFrame(
        [{"a": by_row[a]["track_id"], "b": by_row[b]["track_id"], **p} for (a, b), p in sorted(pairs.items())],
        schema={
            "a": pl.String,
            "b": pl.String,
            "matched_by": pl.String,
            "cosine": pl.Float64,
            "harmony": pl.Float64,
            "spectral": pl.Float64,
            "match": pl.Float64,
            "offset_s": pl.Float64,
            "dynamics_db": pl.Float64,
            "relation": pl.String,
        },
    )
    return DupesResult(clusters, pair_df, len(candidates), unreadable, config)


def save_duplicates(lib: Library, result: DupesResult) -> Path:
    """Write the clusters beside the catalog, stamped with the library state they were found in."""
    path = lib.root / DUPES_FILE
    meta = {"library_updated": lib.manifest.updated, "rules": RULES_VERSION, "config": asdict(result.config)}
    df = result.clusters

    def write(p: Path) -> None:
        import pyarrow.parquet as pq

        table = df.to_arrow()
        pq.write_table(
            table.replace_schema_metadata({**(table.schema.metadata or {}), b"tunelens": json.dumps(meta).encode()}), p
        )

    atomic_write(path, write)
    return path


def load_duplicates(lib: Library) -> pl.DataFrame | None:
    """The saved clusters, or None when there are none, the library changed since they were found, or an older
    version's rules found them."""
    path = lib.root / DUPES_FILE
    if not path.exists():
        return None
    import pyarrow.parquet as pq

    try:
        meta = json.loads((pq.read_schema(path).metadata or {}).get(b"tunelens", b"{}"))
        if meta.get("library_updated") != lib.manifest.updated or meta.get("rules") != RULES_VERSION:
            return None  # the library changed, or an older version's rules found these clusters
        saved = pl.read_parquet(path)
    except Exception:  # damaged: the clusters are derived, so they are found again (and the file rewritten)
        return None
    return saved if saved.schema == pl.Schema(DUPES_SCHEMA) else None  # written by an older version: find again


def duplicates(
    library: Library | str | Path, config: DupesConfig | None = None, progress: ProgressFn | None = None
) -> DupesResult:
    """The library's duplicate clusters, as `tunelens dupes` finds them: the saved ones while the library is
    unchanged and no `config` is given, else found now (and saved)."""
    lib = Library.coerce(library)
    saved = load_duplicates(lib) if config is None else None
    if saved is not None:
        return DupesResult(saved, pl.DataFrame(), None, [], DupesConfig())
    result = find_duplicates(lib, config or DupesConfig(), progress)
    save_duplicates(lib, result)
    return result


def cluster_records(clusters: pl.DataFrame) -> list[dict]:
    """Clusters (DUPES_SCHEMA rows) as `[{"cluster": n, "tracks": [{track_id, rel_path, keeper, ...}]}]`, keeper
    first, as `tunelens dupes --json` prints them."""
    fields = [c for c in DUPES_SCHEMA if c != "cluster"]
    groups = clusters.group_by("cluster", maintain_order=True).agg(pl.all())
    return [{"cluster": row["cluster"], "tracks": [dict(zip(fields, t)) for t in zip(*(row[f] for f in fields))]}
            for row in groups.iter_rows(named=True)]
