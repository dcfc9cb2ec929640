"""What the app loads once per process (library, encoder) or once per library state (track table, map),
and the one gate through which it reads audio: only files in the library's catalog are ever served."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import polars as pl
import streamlit as st

from tunelens.embed.audio import AUDIO_MIME
from tunelens.index import Library
from tunelens.index.core.atomic import file_stamp
from tunelens.index.core.tracks import tag_probs, track_table
from tunelens.index.search import find_track

LIBRARY_ENV = "TUNELENS_LIBRARY"


def library_path() -> Path | None:
    value = os.environ.get(LIBRARY_ENV)
    return Path(value) if value else None


def _state_stamp(root: Path) -> tuple:
    """Changes whenever an index or caption run commits, so cached views are rebuilt."""
    batches = sorted((root / "captions").glob("batch-*.parquet")) if (root / "captions").exists() else []
    return file_stamp(root, ("manifest.json", "catalog.parquet", "captions.parquet")) + (len(batches),)


@st.cache_resource(show_spinner="Opening the library…")
def _open(root: str, stamp: tuple) -> Library:
    return Library.open(root)


def library(root: Path) -> Library:
    return _open(str(root.resolve()), _state_stamp(root))


@st.cache_resource(show_spinner="Loading the model…")
def encoder(spec: str):
    from tunelens.embed import load_encoder

    return load_encoder(spec)


@st.cache_data(show_spinner=False, max_entries=4)
def tracks(root: str, stamp: tuple) -> pl.DataFrame:
    return track_table(_open(root, stamp))


def table(root: Path) -> pl.DataFrame:
    return tracks(str(root.resolve()), _state_stamp(root))


@st.cache_data(show_spinner=False, max_entries=8)
def tag_names(table: pl.DataFrame) -> list[str]:
    """Every predicted tag stored for the tracks (the tag filter's choices)."""
    return sorted({t for j in table["tags"].drop_nulls() for t in tag_probs(j)})


def catalog_track(lib: Library, ref: str) -> dict | None:
    """A playable catalog row for a track id or a path in the library; None for anything else."""
    row = find_track(lib, ref.strip()) if ref and ref.strip() else None
    return row if row is not None and row["status"] == "ok" else None


def audio_bytes(lib: Library, track_id: str) -> tuple[bytes, str]:
    """The bytes of a catalog track, by id only: a path or id outside the catalog raises ValueError."""
    cat = lib.catalog.filter(pl.col("track_id") == track_id)
    if not len(cat):
        raise ValueError(f"{track_id!r} is not a track of this library")
    path = Path(cat["path"][0])
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ValueError(f"{cat['rel_path'][0]} cannot be read any more: {e.strerror or e}") from None
    return data, AUDIO_MIME.get(path.suffix.lower(), "audio/wav")


@st.cache_data(show_spinner="Drawing the spectrogram…", max_entries=32)
def spectrogram(path: str, content_hash: str, width: int = 1000) -> np.ndarray:
    """A mel spectrogram of the whole track as an 8-bit image (low notes at the bottom)."""
    import librosa

    from tunelens.embed.audio import decode

    y = decode(path, 16000).samples
    mel = librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=16000, n_fft=1024, hop_length=512, n_mels=96),
                              ref=np.max, top_db=80)
    cols = np.array_split(np.arange(mel.shape[1]), min(width, mel.shape[1]))
    img = np.stack([mel[:, c].mean(axis=1) for c in cols], axis=1)[::-1]
    img = (img - img.min()) / max(img.max() - img.min(), 1e-6)
    return np.repeat((img * 255).astype(np.uint8), 2, axis=0)


def map_points(root: Path) -> pl.DataFrame:
    return collection_map(str(root.resolve()), _state_stamp(root))


@st.cache_data(show_spinner="Mapping the collection…", max_entries=4)
def collection_map(root: str, stamp: tuple) -> pl.DataFrame:
    """A 2-D PCA projection of the track vectors, one row per indexed track."""
    lib = _open(root, stamp)
    ok = lib.ok_tracks()
    vec = np.asarray(lib.track_vectors())[ok["vec_row"].to_numpy()]
    if len(vec) < 3:
        xy = np.zeros((len(vec), 2), np.float32)
    else:
        centred = vec - vec.mean(axis=0)
        sample = centred[np.random.default_rng(0).choice(len(centred), min(len(centred), 20000), replace=False)]
        _, _, vt = np.linalg.svd(sample, full_matrices=False)
        xy = centred @ vt[:2].T
    return ok.select("track_id", "rel_path", "title", "artist", "tags").with_columns(
        pl.Series("x", xy[:, 0]), pl.Series("y", xy[:, 1]),
        pl.when(pl.col("rel_path").str.contains("/")).then(pl.col("rel_path").str.split("/").list.first())
        .otherwise(pl.lit("(top folder)")).alias("folder"),
    )
