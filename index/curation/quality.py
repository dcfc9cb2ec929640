"""Quality flags: when the signal facts measured while decoding (`embed.quality`, catalog columns) mark a track as
a problem. Thresholds are one dataclass; the flags are polars expressions, so every table gets them the same way."""
from __future__ import annotations

from dataclasses import dataclass

import polars as pl

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
    names = pl.concat_list(
        [pl.when(expr.fill_null(False)).then(pl.lit(name)) for name, expr in flags.items()]
    ).list.drop_nulls()
    return cols + [names.alias("quality_flags")]


def quality_report(table: pl.DataFrame) -> dict:
    """Counts per flag and every flagged track with its measures, from a track table (`core.tracks.track_table`),
    as `tunelens quality --json` prints it."""
    from tunelens.index.core.schema import QUALITY_COLUMNS

    flagged = table.filter(pl.col("quality_flags").list.len() > 0).sort("rel_path")
    measures = [c for c in QUALITY_COLUMNS if c != "audio_hash"]
    return {
        "tracks": len(table),
        "unmeasured": int(table["audio_hash"].is_null().sum()),
        "counts": {f: int(table[f"flag_{f}"].sum()) for f in QUALITY_FLAGS},
        "flagged": [
            {
                "file": r["rel_path"],
                "flags": r["quality_flags"],
                **{c: r[c] for c in measures},
                "duration": r["duration"],
            }
            for r in flagged.iter_rows(named=True)
        ],
    }
