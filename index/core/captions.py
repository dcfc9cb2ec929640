"""Captions and descriptors of a library's tracks, beside the catalog:

    captions.parquet    one row per (track, captioner): caption, description, measured descriptors, error
    captions/*.parquet  batches written since the last compaction (each written to .tmp, then renamed)

A batch file is complete or absent, so a killed captioning run loses at most the batch in flight; the
next run reads every batch, skips what is done and compacts them into captions.parquet.
"""
from __future__ import annotations

import time
import uuid
from pathlib import Path

import polars as pl

from tunelens.index.core.atomic import atomic_write
from tunelens.index.core.schema import CAPTION_SCHEMA


class CaptionStore:
    def __init__(self, library_root: Path):
        self.root = Path(library_root)
        self.main = self.root / "captions.parquet"
        self.batch_dir = self.root / "captions"

    def _batches(self) -> list[Path]:
        return sorted(self.batch_dir.glob("batch-*.parquet")) if self.batch_dir.exists() else []

    def _frames(self) -> list[pl.DataFrame]:
        frames = [pl.read_parquet(p) for p in ([self.main] if self.main.exists() else []) + self._batches()]
        return [f.select(list(CAPTION_SCHEMA)).cast(CAPTION_SCHEMA) for f in frames]

    def read(self, captioner: str | None = None) -> pl.DataFrame:
        """The newest row per (track, captioner); all captioners unless one is named."""
        frames = self._frames()
        if not frames:
            return pl.DataFrame(schema=CAPTION_SCHEMA)
        df = pl.concat(frames).sort("captioned_at").unique(["track_id", "captioner"], keep="last", maintain_order=True)
        return df.filter(pl.col("captioner") == captioner) if captioner else df

    def write_batch(self, rows: list[dict]) -> Path:
        now = time.time()
        df = pl.DataFrame(
            [{**{k: None for k in CAPTION_SCHEMA}, "captioned_at": now, **r} for r in rows], schema=CAPTION_SCHEMA
        )
        self.batch_dir.mkdir(exist_ok=True)
        path = self.batch_dir / f"batch-{time.time_ns():020d}-{uuid.uuid4().hex[:6]}.parquet"
        atomic_write(path, lambda p: df.write_parquet(p))
        return path

    def compact(self, keep_track_ids: set[str] | None = None) -> None:
        """Merge batches into captions.parquet (dropping tracks no longer in the catalog), then remove them."""
        batches = self._batches()
        df = self.read()
        kept = df if keep_track_ids is None else df.filter(pl.col("track_id").is_in(list(keep_track_ids)))
        if batches or len(kept) < len(df):
            self._replace(kept, batches)

    def drop(self, captioner: str) -> None:
        """Forget one captioner's rows (for --overwrite)."""
        self._replace(self.read().filter(pl.col("captioner") != captioner), self._batches())

    def _replace(self, df: pl.DataFrame, batches: list[Path]) -> None:
        """Write `df` as captions.parquet, then remove the batches it already holds."""
        atomic_write(self.main, lambda p: df.write_parquet(p))
        for b in batches:
            b.unlink(missing_ok=True)
