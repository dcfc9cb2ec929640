"""The analysis pass of `tunelens index`: tempo, key and mode, loudness, energy and brightness of every indexed
track (`embed.descriptors.analyse`), so that search can filter and rank by them without captioning first.

It runs after the vectors are committed, in worker processes, and writes each finished batch to the library's
`MeasureStore` at once: a killed run loses at most the batches in flight, and the next `tunelens index` measures
only what is missing, changed, or was measured by another version of the descriptors.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import polars as pl

from tunelens.embed.descriptors import DESCRIPTORS_VERSION, analyse_paths
from tunelens.index.core.captions import MeasureStore
from tunelens.index.core.library import Library
from tunelens.index.core.schema import MEASURE_COLUMNS


@dataclass
class MeasureReport:
    tracks: int = 0
    done_before: int = 0
    measured: int = 0
    failed: int = 0
    audio_seconds: float = 0.0
    seconds: float = 0.0  # wall time of the pass
    errors: list[str] = field(default_factory=list)  # why each failed track failed (this run)


def current_measures(lib: Library) -> pl.DataFrame:
    """track_id and the measured columns of every track whose measurement matches its file and this version."""
    rows = MeasureStore(lib.root).read_all().filter(
        (pl.col("measure_version") == DESCRIPTORS_VERSION) & (pl.col("status") == "ok")
    )
    hashes = lib.ok_tracks().select("track_id", pl.col("content_hash").alias("_file_hash"))
    return (rows.join(hashes, on="track_id").filter(pl.col("content_hash") == pl.col("_file_hash"))
            .select("track_id", "duration", *MEASURE_COLUMNS))


def measure_library(lib: Library, processes: int = 2, batch_tracks: int = 16, retry_errors: bool = False,
                    progress: Callable[[int, int, float], None] | None = None, engine: str = "local",
                    ray_address: str | None = None) -> MeasureReport:
    """Measure every track of `lib` without a current measurement, in `processes` local worker processes or on
    Ray (`engine="ray"`, one task per batch). The caller holds the library's lock."""
    t0 = time.time()
    store = MeasureStore(lib.root)
    tracks = lib.ok_tracks().select("track_id", "path", "content_hash", "duration")
    todo = store.todo(tracks, store.read_all().filter(pl.col("measure_version") == DESCRIPTORS_VERSION), retry_errors)
    report = MeasureReport(tracks=len(tracks), done_before=len(tracks) - len(todo))
    batches = [todo[i:i + batch_tracks] for i in range(0, len(todo), batch_tracks)]
    finished = 0
    results_of = analysed([[t["path"] for t in b] for b in batches], processes, engine, ray_address)
    for batch, results in zip(batches, results_of):
        rows = []
        for track, (desc, error) in zip(batch, results):
            row = {"track_id": track["track_id"], "content_hash": track["content_hash"],
                   "measure_version": DESCRIPTORS_VERSION}
            if error is None:
                rows.append({**row, **desc, "status": "ok"})
                report.measured += 1
            else:
                rows.append({**row, "status": "error", "error": f"{track['path']}: {error}"})
                report.failed += 1
                report.errors.append(rows[-1]["error"])
            report.audio_seconds += track["duration"] or 0.0
        store.write_batch(rows)
        finished += len(batch)
        if progress:
            progress(finished, len(todo), report.audio_seconds)
    store.compact(set(tracks["track_id"]))
    report.seconds = time.time() - t0
    return report


def analysed(batches: list[list[str]], processes: int, engine: str = "local",
             ray_address: str | None = None) -> Iterator[list]:
    """`analyse_paths` of each batch of paths, in order, as batches finish: in this process, in `processes` worker
    processes, or on Ray."""
    if engine == "ray":
        from tunelens.embed.ray_engine import analyse_ray

        yield from analyse_ray(batches, ray_address)
    elif processes <= 1 or sum(map(bool, batches)) <= 1:
        yield from (analyse_paths(b) for b in batches)
    else:
        with ProcessPoolExecutor(max_workers=processes) as pool:
            yield from pool.map(analyse_paths, batches)
