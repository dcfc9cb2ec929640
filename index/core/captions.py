"""Rows written in batches beside the catalog, by jobs that must resume after a kill: captions and measurements.

    captions.parquet    one row per (track, captioner): caption, description, measured descriptors, error
    captions/*.parquet  batches written since the last compaction (each written to .tmp, then renamed)
    measures.parquet    one row per track: descriptors measured by the analysis pass of `tunelens index`
    measures/*.parquet  its batches, the same way

A batch file is complete or absent, so a killed run loses at most the batch in flight; the next run reads every
batch, skips what is done and compacts them into the main file.
"""
from __future__ import annotations

import time
import uuid
from pathlib import Path

import polars as pl

from tunelens.index.core.atomic import atomic_write
from tunelens.index.core.schema import CAPTION_SCHEMA, MEASURE_SCHEMA


class BatchStore:
    """The newest row per `key` of one table, written as atomic batch files and compacted into `NAME.parquet`."""

    def __init__(self, library_root: Path, name: str, schema: dict[str, pl.DataType], key: tuple[str, ...],
                 stamp: str):
        self.root = Path(library_root)
        self.main = self.root / f"{name}.parquet"
        self.batch_dir = self.root / name
        self.schema, self.key, self.stamp = schema, list(key), stamp

    def _batches(self) -> list[Path]:
        return sorted(self.batch_dir.glob("batch-*.parquet")) if self.batch_dir.exists() else []

    def files(self) -> list[Path]:
        """The main file (when there is one) and the batches, oldest first."""
        return ([self.main] if self.main.exists() else []) + self._batches()

    def _frames(self) -> list[pl.DataFrame]:
        frames = []
        for p in self.files():
            try:
                frames.append(pl.read_parquet(p).select(list(self.schema)).cast(self.schema))
            except Exception as e:  # noqa: BLE001 - truncated, zeroed, another table: the file is damaged
                from tunelens.index.core.errors import LibraryError, damage_sentence

                name = str(p.relative_to(self.root))
                effect = f"so its {self.main.stem} cannot be read"
                raise LibraryError(damage_sentence(self.root, name, e, effect)) from None
        return frames

    def read_all(self) -> pl.DataFrame:
        """The newest row per key."""
        frames = self._frames()
        if not frames:
            return pl.DataFrame(schema=self.schema)
        return pl.concat(frames).sort(self.stamp).unique(self.key, keep="last", maintain_order=True)

    @staticmethod
    def todo(tracks: pl.DataFrame, done: pl.DataFrame, retry_errors: bool = False) -> list[dict]:
        """Rows of `tracks` with no row in `done` for their current content (a changed file is redone; with
        `retry_errors`, a failed row does not count as done)."""
        if retry_errors:
            done = done.filter(pl.col("status") == "ok")
        keys = set(zip(done["track_id"], done["content_hash"]))
        return [r for r in tracks.iter_rows(named=True) if (r["track_id"], r["content_hash"]) not in keys]

    def write_batch(self, rows: list[dict]) -> Path:
        now = time.time()
        df = pl.DataFrame([{**{k: None for k in self.schema}, self.stamp: now, **r} for r in rows], schema=self.schema)
        self.batch_dir.mkdir(exist_ok=True)
        path = self.batch_dir / f"batch-{time.time_ns():020d}-{uuid.uuid4().hex[:6]}.parquet"
        atomic_write(path, lambda p: df.write_parquet(p))
        return path

    def compact(self, keep_track_ids: set[str] | None = None) -> None:
        """Merge batches into the main file (dropping tracks no longer in the catalog), then remove them."""
        batches = self._batches()
        df = self.read_all()
        kept = df if keep_track_ids is None else df.filter(pl.col("track_id").is_in(list(keep_track_ids)))
        if batches or len(kept) < len(df):
            self._replace(kept, batches)

    def _replace(self, df: pl.DataFrame, batches: list[Path]) -> None:
        """Write `df` as the main file, then remove the batches it already holds."""
        atomic_write(self.main, lambda p: df.write_parquet(p))
        for b in batches:
            b.unlink(missing_ok=True)


class CaptionStore(BatchStore):
    def __init__(self, library_root: Path):
        super().__init__(library_root, "captions", CAPTION_SCHEMA, ("track_id", "captioner"), "captioned_at")

    def read(self, captioner: str | None = None) -> pl.DataFrame:
        """The newest row per (track, captioner); all captioners unless one is named."""
        df = self.read_all()
        return df.filter(pl.col("captioner") == captioner) if captioner else df

    def drop(self, captioner: str) -> None:
        """Forget one captioner's rows (for --overwrite)."""
        self._replace(self.read().filter(pl.col("captioner") != captioner), self._batches())


class MeasureStore(BatchStore):
    def __init__(self, library_root: Path):
        super().__init__(library_root, "measures", MEASURE_SCHEMA, ("track_id",), "measured_at")

    def current(self, version: str) -> pl.DataFrame:
        """Successful rows measured by `version` (the caller matches content hashes to the catalog)."""
        df = self.read_all()
        return df.filter((pl.col("measure_version") == version) & (pl.col("status") == "ok"))
