"""The one table of what a library stores, column by column (beets' one field table).

Records that are produced elsewhere and stored here are dataclasses (`embed.quality.AudioQuality`, measured
while decoding; `Descriptors`, measured while captioning), and their columns are derived from their fields,
so a new measure is added in one place. Every other module takes its column lists from here.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import asdict, dataclass, field

import polars as pl

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


@dataclass
class Descriptors:
    """Musical facts measured from a track's audio (`caption.descriptors.analyse`), stored with its caption."""

    duration: float
    tempo_bpm: float | None
    tempo_confidence: float  # margin of the chosen tempo over the next candidate (caption.descriptors.tempo)
    key: str | None  # "G major"
    key_confidence: float  # probability of that key (caption.descriptors.key)
    loudness_lufs: float | None
    loudness_range_lu: float | None
    brightness_hz: float
    onset_rate: float  # onsets per second
    energy_db: list[float] = field(default_factory=list)  # RMS in ten equal spans, dB relative to the loudest

    @property
    def mode(self) -> str | None:
        return self.key.split()[1] if self.key else None

    def as_row(self) -> dict:
        row = asdict(self)
        row["energy_db"] = [float(x) for x in self.energy_db]
        return row


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

# -- captions.parquet: one row per (track, captioner) -------------------------------------------------------------
DESCRIPTOR_COLUMNS = tuple(dataclass_schema(Descriptors))
CAPTION_SCHEMA: dict[str, pl.DataType] = {
    "track_id": pl.String, "content_hash": pl.String, "captioner": pl.String, "captioner_version": pl.String,
    "caption": pl.String, "description": pl.String, "status": pl.String, "error": pl.String,
    "captioned_at": pl.Float64,
    **dataclass_schema(Descriptors),
}
# what a caption adds to a track's row (duration is the catalog's own)
CAPTION_COLUMNS = ("caption", "description", *(c for c in DESCRIPTOR_COLUMNS if c != "duration"))
