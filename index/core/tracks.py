"""One row per indexed track with what a person filters and reads by: file tags, predicted tags, caption and
measured descriptors (when captioned), quality flags. Filters here serve the app and any batch job alike."""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import polars as pl

from tunelens.embed.musicnn_encoder import INSTRUMENT_PREFIX
from tunelens.index.core.captions import CaptionStore
from tunelens.index.core.library import Library
from tunelens.index.core.measures import current_measures
from tunelens.index.core.schema import CAPTION_COLUMNS, FILE_TAG_COLUMNS, MEASURE_COLUMNS
from tunelens.index.curation.quality import QUALITY_FLAGS, QualityThresholds, quality_flag_columns


def track_table(lib: Library, captioner: str | None = None) -> pl.DataFrame:
    """Indexed tracks joined with their measurements (tempo, key, loudness... from `tunelens index`) and their newest
    successful caption row (the named captioner's, else any), with quality flags at the default thresholds. A track
    measured before its caption's descriptors existed shows the caption's."""
    ok = lib.ok_tracks()
    caps = CaptionStore(lib.root).read(captioner).filter(pl.col("status") == "ok")
    if captioner is None and len(caps):
        # One caption per track: `describe` first (it always carries descriptors), then the newest other.
        caps = (caps.with_columns((pl.col("captioner") != "describe").alias("_order"))
                .sort(["_order", "captioned_at"], descending=[False, True]).unique("track_id", keep="first")
                .drop("_order"))
    caps = caps.select("track_id", "content_hash", *CAPTION_COLUMNS).rename({"content_hash": "_caption_hash"})
    out = ok.join(caps, on="track_id", how="left")
    stale = pl.col("_caption_hash").is_not_null() & (pl.col("_caption_hash") != pl.col("content_hash"))
    out = out.with_columns([pl.when(stale).then(None).otherwise(pl.col(c)).alias(c) for c in CAPTION_COLUMNS]).drop(
        "_caption_hash"
    )
    measured = current_measures(lib).drop("duration").rename({c: f"_m_{c}" for c in MEASURE_COLUMNS})
    out = out.join(measured, on="track_id", how="left").with_columns(
        pl.col("track_id").is_in(measured["track_id"].implode()).alias("measured"),
        *[pl.when(pl.col("track_id").is_in(measured["track_id"].implode())).then(pl.col(f"_m_{c}"))
          .otherwise(pl.col(c)).alias(c) for c in MEASURE_COLUMNS],
    ).drop([f"_m_{c}" for c in MEASURE_COLUMNS])
    return out.with_columns(quality_flag_columns())


def tag_probs(tags_json: str | None) -> dict[str, float]:
    """The catalog's `tags` column (JSON of predicted tag → probability, or null) as a dict."""
    return json.loads(tags_json) if tags_json else {}


# Predicted tags that mean singing: the taggers' vocal tags and the recogniser's choir. The strongest of them is
# the evidence of vocals, for captions and answers (caption.evidence) and for search (index.search.hybrid).
VOICE_TAGS = ("vocal", "vocals", "singing", "voice", "choir", "choral", "female", "male", "woman", "man",
              "female vocal", "male vocal", "female voice", "male voice", "female vocalists", "male vocalists",
              "female vocalist", "opera", INSTRUMENT_PREFIX + "choir")


def voice_probability(tags: dict[str, float]) -> float:
    """The strongest vocal tag's probability (tags below the catalog's 0.05 floor count as 0)."""
    return max(tags.get(t, 0.0) for t in VOICE_TAGS)


@dataclass
class TrackFilter:
    """Every field left at its default lets all tracks through."""

    min_duration: float | None = None
    max_duration: float | None = None
    min_tempo: float | None = None  # BPM; needs captions (tracks with no measured tempo are dropped)
    max_tempo: float | None = None
    keys: list[str] = field(default_factory=list)  # e.g. ["G major"]
    mode: str | None = None  # "major" | "minor"
    tags: list[str] = field(default_factory=list)  # predicted tags that must each reach `min_tag_prob`
    min_tag_prob: float = 0.3
    folder: str | None = None  # relative folder prefix, e.g. "jazz/live"
    file_tag: tuple[str, str] | None = None  # (field, substring), e.g. ("artist", "Bach"), case-insensitive
    exclude_flags: list[str] = field(default_factory=list)  # quality flags (QUALITY_FLAGS) a track must not have
    thresholds: QualityThresholds = field(default_factory=QualityThresholds)

    def is_empty(self) -> bool:
        return self == TrackFilter()

    def apply(self, table: pl.DataFrame) -> pl.DataFrame:
        t = table
        if self.min_duration is not None:
            t = t.filter(pl.col("duration") >= self.min_duration)
        if self.max_duration is not None:
            t = t.filter(pl.col("duration") <= self.max_duration)
        if self.min_tempo is not None:
            t = t.filter(pl.col("tempo_bpm") >= self.min_tempo)
        if self.max_tempo is not None:
            t = t.filter(pl.col("tempo_bpm") <= self.max_tempo)
        if self.keys:
            t = t.filter(pl.col("key").is_in(self.keys))
        if self.mode:
            t = t.filter(pl.col("key").str.ends_with(" " + self.mode))
        if self.folder:
            prefix = self.folder.strip("/") + "/"
            t = t.filter(pl.col("rel_path").str.starts_with(prefix))
        if self.tags:
            keep = [all(tag_probs(j).get(tag, 0.0) >= self.min_tag_prob for tag in self.tags) for j in t["tags"]]
            t = t.filter(pl.Series(keep, dtype=pl.Boolean))
        if self.file_tag and self.file_tag[1]:
            name, value = self.file_tag
            if name not in t.columns:
                raise ValueError(f"unknown file tag {name!r}; use one of {', '.join(FILE_TAG_COLUMNS)}")
            t = t.filter(pl.col(name).str.to_lowercase().str.contains(value.lower(), literal=True))
        if self.exclude_flags:
            unknown = set(self.exclude_flags) - set(QUALITY_FLAGS)
            if unknown:
                raise ValueError(f"unknown quality flag {sorted(unknown)[0]!r}; use one of {', '.join(QUALITY_FLAGS)}")
            if "quality_flags" not in t.columns:
                t = t.with_columns(quality_flag_columns(self.thresholds))
            t = t.filter(~pl.any_horizontal([pl.col(f"flag_{f}") for f in self.exclude_flags]))
        return t
