"""Caption a whole library: resumable, batched, failures recorded per track.

Audio analysis runs in a pool of worker processes; each finished batch of tracks is written to the
library's caption store at once, so a killed run loses at most the batches in flight.
"""
from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterator

import polars as pl

from caption.describe import DescribeCaptioner
from caption.descriptors import DESCRIPTORS_VERSION, Descriptors, analyse
from caption.evidence import Evidence, parse_tags
from embed.audio import error_reason
from index import Library
from index.captions import CaptionStore


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


CAPTIONERS = ("describe", "qwen2-audio:FOLDER|HUB_ID")


def load_captioner(spec: str | None = None, options=None):
    """`describe` (the offline default) or `qwen2-audio:FOLDER|HUB_ID` (an audio LM; `options`: AudioLMOptions).

    Both answer `caption(evidence, track_id, path)`; an audio LM also reads the audio at `path`."""
    spec = spec or "describe"
    if spec == "describe":
        return DescribeCaptioner()
    prefix, _, arg = spec.partition(":")
    if prefix == "qwen2-audio":
        from caption.audio_lm import load_qwen2_audio

        return load_qwen2_audio(arg, options)
    raise ValueError(f"unknown captioner {spec!r}; use one of {', '.join(CAPTIONERS)}")


def full_version(captioner) -> str:
    """Captioner and descriptor versions together: a change in either redoes the captions."""
    return f"{captioner.version}+{DESCRIPTORS_VERSION}"


def _analyse_one(path: str) -> tuple[dict | None, str | None]:
    try:
        return analyse(path).as_row(), None
    except Exception as e:  # noqa: BLE001 - any failure is recorded against this file, the batch goes on
        return None, error_reason(e)


def _analyse_batch(paths: list[str]) -> list[tuple[dict | None, str | None]]:
    return [_analyse_one(p) for p in paths]


def caption_library(lib: Library, captioner=None, config: CaptionConfig = CaptionConfig(),
                    progress: Callable[[int, int, float], None] | None = None) -> CaptionReport:
    captioner = captioner or DescribeCaptioner()
    store = CaptionStore(lib.root)
    with lib.lock():
        if config.overwrite:
            store.drop(captioner.name)
        tracks = lib.ok_tracks().select("track_id", "path", "content_hash", "tags", "duration")
        done = store.read(captioner.name).filter(pl.col("captioner_version") == full_version(captioner))
        if not config.retry_errors:
            done_keys = set(zip(done["track_id"], done["content_hash"]))
        else:
            ok = done.filter(pl.col("status") == "ok")
            done_keys = set(zip(ok["track_id"], ok["content_hash"]))
        todo = [r for r in tracks.iter_rows(named=True) if (r["track_id"], r["content_hash"]) not in done_keys]
        report = CaptionReport(tracks=len(tracks), done_before=len(tracks) - len(todo))
        batches = [todo[i:i + config.batch_tracks] for i in range(0, len(todo), config.batch_tracks)]
        finished = 0
        for batch, results in zip(batches, _run(batches, config.workers)):
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
    return report


def _run(batches: list[list[dict]], workers: int) -> Iterator[list]:
    paths = [[t["path"] for t in b] for b in batches]
    if workers <= 1:
        yield from (_analyse_batch(p) for p in paths)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        yield from pool.map(_analyse_batch, paths)  # in order; results stream as batches finish


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
