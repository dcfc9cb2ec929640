"""The one table of what a library stores, column by column (beets' one field table).

Records that are produced elsewhere and stored here are dataclasses (`embed.quality.AudioQuality`, measured
while decoding; `embed.descriptors.Descriptors`, measured by the analysis pass of `tunelens index`), and their
columns are derived from their fields, so a new measure is added in one place. Every other module takes its
column lists from here.
"""
from __future__ import annotations

import dataclasses
import types
import typing

import polars as pl

from tunelens.embed.descriptors import Descriptors
from tunelens.embed.quality import AudioQuality

_SCALARS = {float: pl.Float64, int: pl.Int64, str: pl.String, bool: pl.Boolean}


def polars_type(annotation: object) -> pl.DataType:
    """The polars type of a dataclass field annotation (`float | None`, `list[float]`, `str`...)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        (inner,) = [a for a in typing.get_args(annotation) if a is not type(None)]
        return polars_type(inner)
    if typing.get_origin(annotation) is list:
        return pl.List(polars_type(typing.get_args(annotation)[0]))
    return _SCALARS[annotation]


def dataclass_schema(cls: type) -> dict[str, pl.DataType]:
    """{field: polars type} of a dataclass, in field order."""
    hints = typing.get_type_hints(cls)
    return {f.name: polars_type(hints[f.name]) for f in dataclasses.fields(cls)}


# -- catalog.parquet: one row per file found --------------------------------------------------------------------
FILE_TAG_COLUMNS = ("title", "artist", "album", "genre", "date")  # read from the file's own tags (mutagen)
QUALITY_COLUMNS = tuple(dataclass_schema(AudioQuality))  # null in catalogs written before quality was measured
VECTOR_COLUMNS = ("vec_row", "window_offset", "window_count")  # where the track's vectors sit; set by a commit
CATALOG_SCHEMA: dict[str, pl.DataType] = {
    "track_id": pl.String, "path": pl.String, "rel_path": pl.String, "size": pl.Int64, "mtime_ns": pl.Int64,
    "content_hash": pl.String, "duration": pl.Float64, "sample_rate": pl.Int64, "channels": pl.Int64,
    **{c: pl.String for c in FILE_TAG_COLUMNS},
    "file_tags": pl.String,  # every tag of the file, as JSON
    "tags": pl.String,  # the encoder's predicted tags at or above 0.05, as JSON {tag: probability}
    "status": pl.String, "error": pl.String, "indexed_at": pl.Float64,
    **dataclass_schema(AudioQuality),
    **{c: pl.Int64 for c in VECTOR_COLUMNS},
}

# -- windows.parquet: one row per row of windows.npy -------------------------------------------------------------
WINDOW_SCHEMA: dict[str, pl.DataType] = {"track_id": pl.String, "window": pl.Int64, "start_s": pl.Float64,
                                         "end_s": pl.Float64}

# -- measures.parquet: one row per track, the descriptors the analysis pass of `tunelens index` measured ----------
DESCRIPTOR_COLUMNS = tuple(dataclass_schema(Descriptors))
MEASURE_SCHEMA: dict[str, pl.DataType] = {
    "track_id": pl.String, "content_hash": pl.String, "measure_version": pl.String, "status": pl.String,
    "error": pl.String, "measured_at": pl.Float64,
    **dataclass_schema(Descriptors),
}
# what measurements add to a track's row (duration is the catalog's own)
MEASURE_COLUMNS = tuple(c for c in DESCRIPTOR_COLUMNS if c != "duration")

# -- captions.parquet: one row per (track, captioner) -------------------------------------------------------------
CAPTION_SCHEMA: dict[str, pl.DataType] = {
    "track_id": pl.String, "content_hash": pl.String, "captioner": pl.String, "captioner_version": pl.String,
    "caption": pl.String, "description": pl.String, "status": pl.String, "error": pl.String,
    "captioned_at": pl.Float64,
    **dataclass_schema(Descriptors),
}
# what a caption adds to a track's row (its descriptors are those the measurements hold, or were before them)
CAPTION_COLUMNS = ("caption", "description", *MEASURE_COLUMNS)
