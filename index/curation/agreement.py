"""Text-audio agreement: the cosine between a track's caption, embedded by the library's encoder, and the
track's audio vector (as clip-retrieval scores image-text pairs). A low score marks a caption that does not
describe what the encoder hears: a filter for noisy captions. Scores are kept so that only new or changed
captions are embedded again:

    agreement.parquet   track_id, caption_hash, encoder_version, agreement
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl

from tunelens.embed.base import AudioTextEncoder, PipelineSpec
from tunelens.index.core.atomic import atomic_write
from tunelens.index.core.library import Library
from tunelens.index.core.tracks import track_table

AGREEMENT_FILE = "agreement.parquet"
AGREEMENT_SCHEMA = {
    "track_id": pl.String,
    "caption_hash": pl.String,
    "encoder_version": pl.String,
    "agreement": pl.Float64,
}


def _caption_hash(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def agreement_scores(library: Library | str | Path, encoder: AudioTextEncoder | None = None,
                     captions: pl.DataFrame | None = None, batch_size: int = 256,
                     progress: Callable[[int, int], None] | None = None) -> pl.DataFrame:
    """(track_id, agreement) for every row of `captions` (track_id, caption; by default every captioned track)
    with a caption, under `encoder` (by default the library's own model); new scores are saved beside the
    library."""
    lib = Library.coerce(library)
    encoder = encoder or lib.encoder()
    if captions is None:
        captions = track_table(lib).select("track_id", "caption")
    lib.check_pipeline(PipelineSpec.for_encoder(encoder))
    version = encoder.version
    path = lib.root / AGREEMENT_FILE
    try:
        stored = pl.read_parquet(path) if path.exists() else pl.DataFrame(schema=AGREEMENT_SCHEMA)
    except Exception:  # noqa: BLE001 - damaged: scores are derived, so they are computed again (and rewritten)
        stored = pl.DataFrame(schema=AGREEMENT_SCHEMA)
    stored = stored.filter(pl.col("encoder_version") == version)
    want = (
        captions.filter(pl.col("caption").is_not_null() & (pl.col("caption") != ""))
        .select("track_id", "caption")
        .unique("track_id")
        .with_columns(pl.col("caption").map_elements(_caption_hash, return_dtype=pl.String).alias("caption_hash"))
    )
    known = want.join(stored, on=["track_id", "caption_hash"], how="inner")
    todo = want.join(stored, on=["track_id", "caption_hash"], how="anti")
    if len(todo):
        rows = dict(lib.ok_tracks().select("track_id", "vec_row").iter_rows())
        vectors = lib.track_vectors()
        scores = []
        ids, texts = todo["track_id"].to_list(), todo["caption"].to_list()
        for start in range(0, len(texts), batch_size):
            text_vecs = np.asarray(encoder.embed_text(texts[start : start + batch_size]), np.float32)
            audio_vecs = np.stack([vectors[rows[t]] for t in ids[start : start + batch_size]]).astype(np.float32)
            scores.extend(np.sum(text_vecs * audio_vecs, axis=1).round(4).tolist())
            if progress:
                progress(min(start + batch_size, len(texts)), len(texts))
        fresh = todo.select("track_id", "caption_hash").with_columns(
            pl.lit(version).alias("encoder_version"), pl.Series("agreement", scores, pl.Float64)
        )
        keep_ids = set(rows)
        merged = pl.concat([stored.join(fresh, on="track_id", how="anti"), fresh]).filter(
            pl.col("track_id").is_in(list(keep_ids))
        )
        atomic_write(path, lambda p: merged.select(list(AGREEMENT_SCHEMA)).write_parquet(p))
        known = pl.concat([known.select("track_id", "agreement"), fresh.select("track_id", "agreement")])
    return known.select("track_id", "agreement")
