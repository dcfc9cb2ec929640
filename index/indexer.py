"""Incremental indexing of a music folder into a library: new and changed files are embedded, unchanged
ones skipped, deleted ones dropped. Finished batches are staged on disk as they complete, so a killed run
loses at most the batch in flight and the next run picks up where it stopped."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import polars as pl

from embed.base import AudioTextEncoder, EncoderOptions, PipelineSpec
from embed.parallel import WorkerSpec, embed_processes
from embed.pipeline import embed_stream
from index.ann import IndexChoice
from index.library import Library, StagedBatch
from index.scan import FoundFile, content_hash, read_file_tags, scan_folder, tag_columns, track_id_for


@dataclass(frozen=True)
class IndexConfig:
    batch_files: int = 32  # files per staged batch: what a kill can lose
    commit_every: int = 2000  # files between commits, bounding what staging holds
    workers: int = 2  # decoding threads (in-process engine)
    batch_windows: int = 16  # windows per model call
    retry_errors: bool = False  # re-try files that failed before even when unchanged
    processes: int = 0  # worker processes each decoding and embedding whole files (CPU); 0 = in this process
    engine: str = "local"  # "local" | "ray" (Ray Data actors; see embed.ray_engine)
    ray_address: str | None = None  # a running Ray cluster ("auto"), or None to start a local one
    index: IndexChoice | None = None  # which FAISS indexes to build; None keeps what the library asked for before


@dataclass
class IndexReport:
    found: int = 0
    indexed: int = 0
    skipped: int = 0
    removed: int = 0
    resumed: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    audio_seconds: float = 0.0
    seconds: float = 0.0
    library_tracks: int = 0


ProgressFn = Callable[[int, int, float], None]  # (files done, files to do, audio seconds done)


def _path(f: FoundFile) -> Path:
    return f.path


def _extra(f: FoundFile) -> dict:
    return {"content_hash": content_hash(f.path), "tags": read_file_tags(f.path)}


def _top_tags(emb, names: list[str] | None, threshold: float = 0.05) -> str | None:
    """JSON of the encoder's tag probabilities for the track (tags at or above `threshold`), highest first."""
    if emb is None or emb.tag_probs is None or not names:
        return None
    order = np.argsort(-emb.tag_probs, kind="stable")
    return json.dumps({names[i]: round(float(emb.tag_probs[i]), 4) for i in order if emb.tag_probs[i] >= threshold})


def _row(f: FoundFile, extra: dict | None, emb, error: str | None, names: list[str] | None = None) -> dict:
    extra = extra or {}
    row = {
        "track_id": track_id_for(str(f.path)), "path": str(f.path), "rel_path": f.rel_path, "size": f.size,
        "mtime_ns": f.mtime_ns, "content_hash": extra.get("content_hash"),
        "duration": emb.duration if emb else None, "sample_rate": emb.source_rate if emb else None,
        "channels": emb.channels if emb else None, "tags": _top_tags(emb, names),
        "status": "ok" if emb else "error", "error": error,
        "indexed_at": time.time(),
        **(emb.quality.as_row() if emb is not None and emb.quality is not None else {}),
    }
    row.update(tag_columns(extra.get("tags") or {}))
    return row


def _stage(lib: Library, done: list, names: list[str] | None) -> Path:
    oks = [emb for _, emb, _, _ in done if emb is not None]
    dim = lib.dim
    batch = StagedBatch(
        rows=[_row(f, extra, emb, err, names) for f, emb, extra, err in done],
        track_vecs=np.stack([e.track_vector for e in oks]) if oks else np.zeros((0, dim), np.float32),
        window_vecs=np.concatenate([e.window_vectors for e in oks]) if oks else np.zeros((0, dim), np.float32),
        window_counts=np.array([len(e.window_vectors) for e in oks], np.int64),
        window_starts=np.concatenate([e.window_starts for e in oks]) if oks else np.zeros(0),
        window_ends=np.concatenate([e.window_ends for e in oks]) if oks else np.zeros(0),
    )
    return lib.stage(batch)


def _embedded(todo: list[FoundFile], encoder: AudioTextEncoder, config: IndexConfig) -> Iterator:
    """(file, embedding or None, extra, error) for every file to do, from the engine the config names."""
    if config.engine not in ("local", "ray"):
        raise ValueError(f"unknown engine {config.engine!r}; use local or ray")
    if config.engine == "ray" or config.processes > 0:
        on_gpu = str(getattr(encoder, "device", "cpu")).startswith("cuda")
        if config.engine == "local" and on_gpu:
            raise ValueError("worker processes embed on the CPU; with a GPU leave processes at 0 (decoding threads feed the GPU)")
        spec = WorkerSpec(
            encoder.name, EncoderOptions(device="cuda" if on_gpu else "cpu", batch_size=getattr(encoder, "batch_size", 16)),
            batch_windows=config.batch_windows, measure_quality=True,
        )
        if config.engine == "ray":
            from embed.ray_engine import embed_ray

            return embed_ray(todo, spec, address=config.ray_address, actors=config.processes or None,
                             path_of=_path, prepare_extra=_extra)
        return embed_processes(todo, spec, config.processes, path_of=_path, prepare_extra=_extra)
    return embed_stream(
        todo, encoder, path_of=_path, prepare_extra=_extra,
        workers=config.workers, batch_windows=config.batch_windows, measure_quality=True,
    )


def index_folder(
    library: str | Path, music_dir: str | Path, encoder: AudioTextEncoder,
    config: IndexConfig = IndexConfig(), progress: ProgressFn | None = None, precision: str = "fp32",
) -> IndexReport:
    t0 = time.time()
    music_dir = Path(music_dir)
    if not music_dir.is_dir():
        raise FileNotFoundError(f"{music_dir} is not a folder")
    lib = Library.create_or_open(library, PipelineSpec.for_encoder(encoder), precision=precision)
    report = IndexReport()
    with lib.lock():
        found = list(scan_folder(music_dir))
        report.found = len(found)
        root = str(music_dir.absolute()).rstrip("/") + "/"
        known = {r[0]: r[1:] for r in lib.catalog.select("path", "size", "mtime_ns", "status", "audio_hash").iter_rows()}
        staged_files = lib.staged_batches()
        staged = {}
        for p in staged_files:
            for r in StagedBatch.load(p).rows:
                staged[r["path"]] = (r["size"], r["mtime_ns"])
        todo: list[FoundFile] = []
        for f in found:
            key = str(f.path)
            if key in staged and staged[key] == (f.size, f.mtime_ns):
                report.resumed += 1
            elif key in known and known[key][:2] == (f.size, f.mtime_ns) and not (
                config.retry_errors and known[key][2] == "error"
            ) and not (known[key][2] == "ok" and known[key][3] is None):  # indexed before quality was measured
                report.skipped += 1
            else:
                todo.append(f)
        present = {str(f.path) for f in found}
        removed = {p for p in known if p.startswith(root) and p not in present}
        removed |= {p for p in staged if p.startswith(root) and p not in present}
        report.removed = len({p for p in removed if p in known})

        names = getattr(encoder, "tag_names", None)
        done: list = []
        new_batches: list[Path] = []
        since_commit = 0
        for f, emb, extra, err in _embedded(todo, encoder, config):
            done.append((f, emb, extra, err))
            if emb is not None:
                report.indexed += 1
                report.audio_seconds += emb.duration
            else:
                report.failed.append((f.rel_path, err or "unknown error"))
            if len(done) >= config.batch_files:
                new_batches.append(_stage(lib, done, names))
                since_commit += len(done)
                done = []
            if since_commit >= config.commit_every:
                lib.commit(removed, lib.staged_batches(), config.index)
                removed, since_commit = set(), 0
            if progress:
                progress(report.indexed + len(report.failed), len(todo), report.audio_seconds)
        if done:
            new_batches.append(_stage(lib, done, names))
        batches = lib.staged_batches()
        rechoose = config.index is not None and config.index.request() != lib.manifest.index.get("request")
        if batches or removed or rechoose:
            lib.commit(removed, batches, config.index)
        report.library_tracks = int((lib.catalog["status"] == "ok").sum())
    report.seconds = time.time() - t0
    return report


def failed_files(lib: Library) -> pl.DataFrame:
    return lib.catalog.filter(pl.col("status") == "error").select("rel_path", "path", "error").sort("rel_path")
