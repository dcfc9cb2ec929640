"""One row per indexed track with what a person filters and reads by: file tags, predicted tags, caption and
measured descriptors (when captioned). Filters here serve the app and any batch job alike."""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import polars as pl

from index.captions import CaptionStore
from index.library import Library

CAPTION_COLUMNS = ["caption", "description", "tempo_bpm", "tempo_confidence", "key", "key_confidence",
                   "loudness_lufs", "loudness_range_lu", "brightness_hz", "onset_rate", "energy_db"]


def track_table(lib: Library, captioner: str | None = None) -> pl.DataFrame:
    """Indexed tracks joined with their newest successful caption row (the named captioner's, else any), with
    quality flags at the default thresholds."""
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
    out = out.with_columns([pl.when(stale).then(None).otherwise(pl.col(c)).alias(c) for c in CAPTION_COLUMNS]).drop("_caption_hash")
    return out.with_columns(quality_flag_columns())


LOSSLESS_SUFFIXES = (".wav", ".flac", ".aif", ".aiff")
QUALITY_FLAGS = ("silent", "clipped", "lowpass", "too_short", "too_long", "dc_offset", "fake_stereo")


@dataclass(frozen=True)
class QualityThresholds:
    """When a measured fact (embed.quality) marks a track as a problem; tracks not yet measured are never flagged."""

    max_silence: float = 0.9  # share of silent 50 ms frames (sparse drums can be half silence)
    max_clipping: float = 0.001  # share of samples flattened at the peak
    lowpass_share: float = 0.9  # a lossless file cut off below this share of its Nyquist frequency was lossy once
    min_duration: float = 5.0  # seconds
    max_duration: float = 1800.0
    max_dc_offset: float = 0.02  # -34 dBFS; soundfont strings in the demo corpus sit near 0.01
    max_side_db: float = -60.0  # a stereo file whose side channel is this quiet is mono


def is_lossless() -> pl.Expr:
    """True where the file's container is lossless, by its `rel_path` suffix."""
    name = pl.col("rel_path").str.to_lowercase()
    return pl.any_horizontal([name.str.ends_with(suffix) for suffix in LOSSLESS_SUFFIXES])


def quality_flag_columns(th: QualityThresholds = QualityThresholds()) -> list[pl.Expr]:
    """One boolean `flag_<name>` column per quality flag, and `quality_flags`: the list of names raised."""
    lossless = is_lossless()
    flags = {
        "silent": pl.col("silence_ratio") > th.max_silence,
        "clipped": pl.col("clipping_ratio") > th.max_clipping,
        "lowpass": lossless & (pl.col("lowpass_hz") < th.lowpass_share * pl.col("sample_rate") / 2),
        "too_short": pl.col("duration") < th.min_duration,
        "too_long": pl.col("duration") > th.max_duration,
        "dc_offset": pl.col("dc_offset") > th.max_dc_offset,
        "fake_stereo": (pl.col("channels") == 2) & (pl.col("side_db") <= th.max_side_db),
    }
    cols = [expr.fill_null(False).alias(f"flag_{name}") for name, expr in flags.items()]
    names = pl.concat_list([pl.when(expr.fill_null(False)).then(pl.lit(name)) for name, expr in flags.items()]).list.drop_nulls()
    return cols + [names.alias("quality_flags")]


def tag_probs(tags_json: str | None) -> dict[str, float]:
    """The catalog's `tags` column (JSON of predicted tag → probability, or null) as a dict."""
    return json.loads(tags_json) if tags_json else {}


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
                raise ValueError(f"unknown file tag {name!r}; use one of title, artist, album, genre, date")
            t = t.filter(pl.col(name).str.to_lowercase().str.contains(value.lower(), literal=True))
        if self.exclude_flags:
            unknown = set(self.exclude_flags) - set(QUALITY_FLAGS)
            if unknown:
                raise ValueError(f"unknown quality flag {sorted(unknown)[0]!r}; use one of {', '.join(QUALITY_FLAGS)}")
            if "quality_flags" not in t.columns:
                t = t.with_columns(quality_flag_columns(self.thresholds))
            t = t.filter(~pl.any_horizontal([pl.col(f"flag_{f}") for f in self.exclude_flags]))
        return t
