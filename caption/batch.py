"""Caption a whole library: resumable, batched, failures recorded per track.

Audio analysis runs in a pool of worker processes; each finished batch of tracks is written to the
library's caption store at once, so a killed run loses at most the batches in flight.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from tunelens.caption.base import Captioner, load_captioner
from tunelens.caption.evidence import Evidence, parse_tags
from tunelens.embed.descriptors import DESCRIPTORS_VERSION, Descriptors
from tunelens.index import Library
from tunelens.index.core.captions import CaptionStore
from tunelens.index.core.measures import analysed, current_measures


@dataclass
class CaptionConfig:
    workers: int = 2
    batch_tracks: int = 16
    overwrite: bool = False
    retry_errors: bool = False


@dataclass
class CaptionReport:
    tracks: int = 0
    done_before: int = 0
    captioned: int = 0
    failed: int = 0
    seconds_of_audio: float = 0.0
    errors: list[str] = field(default_factory=list)  # why each track of this captioner failed (this run or before)


def full_version(captioner) -> str:
    """Captioner and descriptor versions together: a change in either redoes the captions."""
    return f"{captioner.version}+{DESCRIPTORS_VERSION}"


def caption_library(library: Library | str | Path, captioner: Captioner | str | None = None,
                    config: CaptionConfig = CaptionConfig(),
                    progress: Callable[[int, int, float], None] | None = None) -> CaptionReport:
    """Caption every track of `library` that has no current caption from `captioner` (an instance, a spec such
    as "describe" or "qwen2-audio:FOLDER", or None for describe), as `tunelens caption` does."""
    lib = Library.coerce(library)
    if captioner is None or isinstance(captioner, str):
        captioner = load_captioner(captioner)
    store = CaptionStore(lib.root)
    with lib.lock():
        if config.overwrite:
            store.drop(captioner.name)
        tracks = lib.ok_tracks().select("track_id", "path", "content_hash", "tags", "duration")
        done = store.read(captioner.name).filter(pl.col("captioner_version") == full_version(captioner))
        todo = store.todo(tracks, done, config.retry_errors)
        measured = {r["track_id"]: r for r in current_measures(lib).iter_rows(named=True)}
        report = CaptionReport(tracks=len(tracks), done_before=len(tracks) - len(todo))
        batches = [todo[i:i + config.batch_tracks] for i in range(0, len(todo), config.batch_tracks)]
        finished = 0
        for batch, results in zip(batches, _run(batches, config.workers, measured)):
            rows = []
            for track, (desc, error) in zip(batch, results):
                rows.append(_caption_row(captioner, track, desc, error))
                report.captioned += error is None
                report.failed += error is not None
                report.seconds_of_audio += track["duration"] or 0.0
            store.write_batch(rows)
            finished += len(batch)
            if progress:
                progress(finished, len(todo), report.seconds_of_audio)
        store.compact(set(tracks["track_id"]))
        report.errors = store.read(captioner.name).filter(pl.col("status") == "error")["error"].to_list()
    return report


def _run(batches: list[list[dict]], workers: int, measured: dict[str, dict]) -> Iterator[list]:
    """(descriptor row, error) per track of each batch: the measurement `tunelens index` stored when it is
    current, else measured now (an index run with --no-measure, or a library indexed before measurements)."""
    paths = [[t["path"] for t in b if t["track_id"] not in measured] for b in batches]
    for batch, results in zip(batches, analysed(paths, workers)):
        new = iter(results)
        yield [({k: v for k, v in measured[t["track_id"]].items() if k != "track_id"}, None)
               if t["track_id"] in measured else next(new) for t in batch]


def _caption_row(captioner, track: dict, desc: dict | None, error: str | None) -> dict:
    row = {"track_id": track["track_id"], "content_hash": track["content_hash"], "captioner": captioner.name,
           "captioner_version": full_version(captioner)}
    if error is not None:
        return {**row, "status": "error", "error": f"{track['path']}: {error}"}
    ev = Evidence(Descriptors(**desc), parse_tags(track.get("tags")))
    try:
        cap = captioner.caption(ev, track["track_id"], track["path"])
    except Exception as e:  # noqa: BLE001
        return {**row, **desc, "status": "error", "error": f"{track['path']}: captioner failed: {e}"}
    return {**row, **desc, "caption": cap.caption, "description": cap.description, "status": "ok"}
