"""Export a clean, captioned dataset from a library, split without leakage.

Formats:
  parquet     data/{split}-NNNNN-of-NNNNN.parquet, the layout Hugging Face `datasets` reads: an `audio`
              column of {bytes, path} (the `Audio` feature) and plain columns for the rest; a README.md
              whose YAML names the splits, so `load_dataset("parquet", data_dir=...)` or
              `load_dataset(DIR)` finds them.
  webdataset  {split}-NNNNNN.tar shards: per track `KEY.<ext>` (the file's own bytes), `KEY.json`, `KEY.txt`.
  jsonl       {split}.jsonl: one object per track with the audio file's path.

Rows: indexed tracks with a caption (unless asked otherwise), without quality flags (unless asked), one
keeper per duplicate cluster (unless asked), then the user's SQL filter. Splits are drawn by group: a
duplicate cluster, and every track of one artist where the file tags name one, land in the same split.
The export is written to a temp folder and renamed into place, so a killed export leaves nothing half-done.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import time
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import polars as pl

from tunelens.index.core.library import Library
from tunelens.index.core.schema import DESCRIPTOR_COLUMNS, FILE_TAG_COLUMNS
from tunelens.index.core.tracks import track_table
from tunelens.index.curation.agreement import agreement_scores
from tunelens.index.curation.components import Components
from tunelens.index.curation.dupes import duplicates
from tunelens.index.curation.quality import QUALITY_FLAGS

FORMATS = ("parquet", "webdataset", "jsonl")
SPLIT_NAMES = ("train", "validation", "test")
SHARD_BYTES = 512 * 1024 * 1024  # audio bytes per shard before a new one starts
EXPORT_COLUMNS = [
    "track_id", "file", *FILE_TAG_COLUMNS, "caption", "description", "tags", "tag_scores", *DESCRIPTOR_COLUMNS,
    "sample_rate", "channels", "agreement", "cluster", "quality_flags", "content_hash",
]


class ExportError(ValueError):
    """An export that cannot be done as asked; the message says why."""


@dataclass(frozen=True)
class ExportConfig:
    format: str = "parquet"
    split: tuple[float, ...] = (0.8, 0.1, 0.1)  # train, validation, test; fewer parts name fewer splits
    filter: str | None = None  # SQL WHERE clause over the export columns, e.g. "agreement > 0.2 AND duration > 30"
    audio: str = "bytes"  # parquet: embed the file's bytes, or "path" to reference it
    require_caption: bool = True
    keep_flagged: bool = False
    keep_duplicates: bool = False
    min_tag_prob: float = 0.3  # tags listed in the `tags` column
    seed: int = 0
    overwrite: bool = False


@dataclass
class ExportReport:
    out_dir: Path
    splits: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)  # reason → tracks
    files: list[str] = field(default_factory=list)
    groups: int = 0
    seconds: float = 0.0


PhaseProgressFn = Callable[[str, int, int], None]  # (phase, done, total)


def parse_split(text: str) -> tuple[float, ...]:
    try:
        parts = tuple(float(x) for x in text.split(","))
    except ValueError:
        raise ExportError(f"--split {text!r} is not a list of numbers like 0.8,0.1,0.1") from None
    if not 1 <= len(parts) <= len(SPLIT_NAMES) or any(p < 0 for p in parts) or abs(sum(parts) - 1.0) > 1e-6:
        raise ExportError(f"--split {text!r} must be 1 to 3 non-negative shares that sum to 1")
    return parts


def _groups(rows: pl.DataFrame) -> list[int]:
    """A group number per row: rows sharing a duplicate cluster or an artist share a group."""
    components = Components()
    for key in ("cluster", "artist_key"):
        first: dict = {}
        for i, value in enumerate(rows[key].to_list()):
            components.root(i)
            if value is None:
                continue
            if value in first:
                components.link(i, first[value])
            else:
                first[value] = i
    return [components.root(i) for i in range(len(rows))]


def assign_splits(rows: pl.DataFrame, shares: tuple[float, ...], seed: int) -> pl.DataFrame:
    """Add `split`: whole groups in a seeded order, each to the split furthest below its share."""
    names = SPLIT_NAMES[: len(shares)]
    groups = _groups(rows)
    ids = rows["track_id"].to_list()
    members: dict[int, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    order = sorted(members, key=lambda g: zlib.crc32(f"{seed}:{min(ids[i] for i in members[g])}".encode()))
    counts = [0] * len(shares)
    split_of = [""] * len(rows)
    total = len(rows)
    for g in order:
        deficit = [shares[s] * total - counts[s] for s in range(len(shares))]
        s = max(range(len(shares)), key=lambda k: (deficit[k], shares[k]))
        for i in members[g]:
            split_of[i] = names[s]
        counts[s] += len(members[g])
    return rows.with_columns(pl.Series("split", split_of, pl.String), pl.Series("_group", groups, pl.Int64))


def export_rows(lib: Library, config: ExportConfig, dupes: pl.DataFrame | None, agreement: pl.DataFrame | None,
                dropped: dict[str, int]) -> pl.DataFrame:
    """The tracks to export with their columns, after the caption, quality, duplicate and user filters."""
    from tunelens.index.core.tracks import tag_probs

    t = track_table(lib)
    if agreement is None:
        agreement = pl.DataFrame(schema={"track_id": pl.String, "agreement": pl.Float64})
    t = t.join(agreement, on="track_id", how="left")
    clusters = (
        dupes.select("track_id", "cluster")
        if dupes is not None
        else pl.DataFrame(schema={"track_id": pl.String, "cluster": pl.Int64})
    )
    t = t.join(clusters, on="track_id", how="left")
    tags = [[(k, v) for k, v in tag_probs(j).items() if v >= config.min_tag_prob] for j in t["tags"].to_list()]
    t = t.with_columns(pl.col("rel_path").alias("file"),
                       pl.Series("tags", [[k for k, _ in ts] for ts in tags], pl.List(pl.String)),
                       pl.Series("tag_scores", [[v for _, v in ts] for ts in tags], pl.List(pl.Float64)),
                       pl.col("artist").str.strip_chars().str.to_lowercase().replace("", None).alias("artist_key"))

    def drop(reason: str, keep: pl.Expr) -> None:
        nonlocal t
        before = len(t)
        t = t.filter(keep)
        if before - len(t):
            dropped[reason] = dropped.get(reason, 0) + before - len(t)

    if config.require_caption:
        drop("no caption", pl.col("caption").is_not_null() & (pl.col("caption") != ""))
    if not config.keep_flagged:
        for flag in QUALITY_FLAGS:
            drop(f"quality: {flag}", ~pl.col(f"flag_{flag}"))
    if config.filter:
        try:
            drop("--filter", pl.sql_expr(config.filter))
        except Exception as e:  # polars raises several types for bad SQL or unknown columns
            raise ExportError(
                f"--filter {config.filter!r} cannot be used: {str(e).splitlines()[0]}. Columns: "
                f"{', '.join(c for c in EXPORT_COLUMNS if c not in ('tags', 'tag_scores', 'quality_flags'))}"
            ) from None
    if not config.keep_duplicates and dupes is not None:
        order = dupes.select("track_id", pl.int_range(pl.len()).alias("_rank"))  # keeper first within each cluster
        t = t.join(order, on="track_id", how="left")
        keep = pl.col("cluster").is_null() | (pl.col("_rank") == pl.col("_rank").min().over("cluster"))
        drop("duplicate of a kept track", keep)
        t = t.drop("_rank")
    return t.sort("track_id")


def _audio_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _metadata(row: dict) -> dict:
    return {c: row[c] for c in EXPORT_COLUMNS}


# `datasets` takes the features named here and infers the rest from the Arrow types
HF_METADATA = {b"huggingface": json.dumps({"info": {"features": {"audio": {"_type": "Audio"}}}}).encode()}


def _write_parquet(
    rows: pl.DataFrame, split: str, tmp: Path, config: ExportConfig, progress: Callable[[], None]
) -> list[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    data_dir = tmp / "data"
    data_dir.mkdir(exist_ok=True)
    audio_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    meta = rows.select(EXPORT_COLUMNS).to_arrow()
    written: list[Path] = []
    start, size = 0, 0
    paths = rows["path"].to_list()

    def flush(end: int) -> None:
        nonlocal start, size
        if end <= start:
            return
        audio = []
        for p in paths[start:end]:
            audio.append(
                {
                    "bytes": _audio_bytes(p) if config.audio == "bytes" else None,
                    "path": Path(p).name if config.audio == "bytes" else p,
                }
            )
        table = pa.Table.from_arrays([pa.array(audio, audio_type)] + list(meta.slice(start, end - start).columns),
                                     names=["audio"] + meta.column_names)
        table = table.replace_schema_metadata(HF_METADATA)
        path = data_dir / f"{split}-{len(written):05d}.parquet"
        pq.write_table(table, path)
        written.append(path)
        start, size = end, 0

    for i, p in enumerate(paths):
        size += os.path.getsize(p) if config.audio == "bytes" else 0
        progress()
        if size >= SHARD_BYTES:
            flush(i + 1)
    flush(len(paths))
    names = []
    for k, path in enumerate(written):
        final = path.with_name(f"{split}-{k:05d}-of-{len(written):05d}.parquet")
        path.rename(final)
        names.append(str(final.relative_to(tmp)))
    return names


def _write_webdataset(rows: pl.DataFrame, split: str, tmp: Path, progress: Callable[[], None]) -> list[str]:
    names: list[str] = []
    tar = None
    size = 0
    for row in rows.iter_rows(named=True):
        if tar is None or size >= SHARD_BYTES:
            if tar is not None:
                tar.close()
            name = f"{split}-{len(names):06d}.tar"
            tar, size = tarfile.open(tmp / name, "w"), 0
            names.append(name)
        key = row["track_id"]
        ext = Path(row["path"]).suffix.lower().lstrip(".") or "audio"
        members = [(f"{key}.{ext}", _audio_bytes(row["path"])),
                   (f"{key}.json", json.dumps(_metadata(row), ensure_ascii=False).encode()),
                   (f"{key}.txt", (row["caption"] or "").encode())]
        for member, data in members:
            info = tarfile.TarInfo(member)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tar.addfile(info, io.BytesIO(data))
            size += len(data)
        progress()
    if tar is not None:
        tar.close()
    return names


def _write_jsonl(rows: pl.DataFrame, split: str, tmp: Path, progress: Callable[[], None]) -> list[str]:
    name = f"{split}.jsonl"
    with open(tmp / name, "w", encoding="utf-8") as f:
        for row in rows.iter_rows(named=True):
            f.write(json.dumps({"audio": row["path"], **_metadata(row)}, ensure_ascii=False) + "\n")
            progress()
    return [name]


def _card(lib: Library, report: ExportReport, config: ExportConfig) -> str:
    lines = ["---", "configs:", "- config_name: default", "  data_files:"]
    for split in report.splits:
        pattern = {"parquet": f"data/{split}-*.parquet", "webdataset": f"{split}-*.tar", "jsonl": f"{split}.jsonl"}[
            config.format
        ]
        lines += [f"  - split: {split}", f"    path: {pattern}"]
    lines += [
        "---",
        "",
        f"# Dataset exported by tunelens from `{lib.root}`",
        "",
        f"Embeddings and tags: {lib.manifest.pipeline.model} ({lib.manifest.pipeline.encoder_version}).",
        "Tracks per split: " + ", ".join(f"{k} {v}" for k, v in report.splits.items()) + ".",
        "Splits keep every duplicate cluster and every artist on one side.",
        "",
    ]
    if report.dropped:
        lines.append("Left out: " + ", ".join(f"{v} ({k})" for k, v in report.dropped.items()) + ".")
    return "\n".join(lines) + "\n"


def export_dataset(library: Library | str | Path, out_dir: str | Path, config: ExportConfig = ExportConfig(),
                   dupes: pl.DataFrame | None = None, agreement: pl.DataFrame | None = None,
                   progress: PhaseProgressFn | None = None) -> ExportReport:
    """Write the dataset to `out_dir` (see the module docstring), as `tunelens export` does. `dupes` are the
    library's duplicate clusters (`curation.dupes`) and `agreement` its caption scores (`curation.agreement`);
    each is found (or read where saved) when not given. `progress(phase, done, total)` follows the phases:
    "fingerprinting candidates", "scoring captions", "exporting"."""
    t0 = time.time()
    lib = Library.coerce(library)
    if config.format not in FORMATS:
        raise ExportError(f"unknown format {config.format!r}; use one of {', '.join(FORMATS)}")
    if config.audio not in ("bytes", "path"):
        raise ExportError(f"--audio must be bytes or path, not {config.audio!r}")
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        if not (config.overwrite and (out_dir / "export.json").exists()):
            raise ExportError(
                f"{out_dir} is not empty; pick a new folder, or pass --overwrite to replace an earlier export"
            )
    report = ExportReport(out_dir)
    if dupes is None:
        dupes = duplicates(lib, progress=progress and partial(progress, "fingerprinting candidates")).clusters
    if agreement is None:
        agreement = agreement_scores(lib, progress=progress and partial(progress, "scoring captions"))
    rows = export_rows(lib, config, dupes, agreement, report.dropped)
    if not len(rows):
        hint = (
            " (the library has no captions yet: run `tunelens caption`, or pass --uncaptioned)"
            if report.dropped.get("no caption")
            else ""
        )
        raise ExportError(f"no track passes the filters{hint}; left out: {report.dropped or 'nothing'}")
    rows = assign_splits(rows, config.split, config.seed)
    report.groups = rows["_group"].n_unique()
    tmp = out_dir.with_name(out_dir.name + ".tmp-export")
    shutil.rmtree(tmp, ignore_errors=True)
    old = out_dir.with_name(out_dir.name + ".old-export")
    if old.exists():  # a run killed between its two renames: the earlier export is `old`, or already replaced
        if out_dir.exists():
            shutil.rmtree(old)
        else:
            old.rename(out_dir)
    tmp.mkdir(parents=True)
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        if progress:
            progress("exporting", done, len(rows))

    for split in SPLIT_NAMES[: len(config.split)]:
        part = rows.filter(pl.col("split") == split)
        if not len(part):
            continue
        report.splits[split] = len(part)
        if config.format == "parquet":
            report.files += _write_parquet(part, split, tmp, config, tick)
        elif config.format == "webdataset":
            report.files += _write_webdataset(part, split, tmp, tick)
        else:
            report.files += _write_jsonl(part, split, tmp, tick)
    (tmp / "README.md").write_text(_card(lib, report, config))
    report.seconds = round(time.time() - t0, 2)
    (tmp / "export.json").write_text(
        json.dumps(
            {
                "library": str(lib.root.absolute()),
                "pipeline": lib.manifest.pipeline.to_dict(),
                "config": asdict(config),
                "splits": report.splits,
                "dropped": report.dropped,
                "groups": report.groups,
                "files": report.files,
                "exported_at": time.time(),
            },
            indent=1,
            default=str,
        )
    )
    old = out_dir.with_name(out_dir.name + ".old-export")
    if out_dir.exists():  # the earlier export stays whole until the new one is in place
        out_dir.rename(old)
    tmp.rename(out_dir)
    shutil.rmtree(old, ignore_errors=True)
    return report
