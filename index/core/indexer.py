"""Incremental indexing of a music folder into a library: new and changed files are embedded, unchanged
ones skipped, deleted ones dropped, moved ones relinked. Finished batches are staged on disk as they complete,
so a killed run loses at most the batch in flight and the next run picks up where it stopped.

Track ids hash the path relative to the scanned folder (`scan.track_id_for`), so moving or renaming the music
folder keeps every id: a file found under a new root with the same relative path, size and mtime as a
catalogued file that is gone is relinked, its vectors kept.
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from tunelens.embed.base import AudioTextEncoder, EncoderOptions, PipelineSpec
from tunelens.embed.parallel import WorkerSpec, embed_processes
from tunelens.embed.pipeline import EmbeddedFile, embed_stream
from tunelens.embed.registry import load_encoder
from tunelens.index.core.library import Library, StagedBatch
from tunelens.index.core.measures import MeasureReport, measure_library
from tunelens.index.core.scan import FoundFile, content_hash, read_file_tags, scan_folder, tag_columns, track_id_for
from tunelens.index.vectors.choice import IndexChoice, parse_memory

FIRST_COMMIT = 256  # files before a new library's first commit (then every `commit_every`)


@dataclass(frozen=True)
class IndexConfig:
    """How to index; the defaults are `tunelens index`'s."""

    batch_files: int = 32  # files per staged batch: what a kill can lose
    commit_every: int = 2000  # files between commits, bounding what staging holds
    workers: int = 2  # decoding threads (in-process engine)
    batch_windows: int = 16  # windows per model call
    retry_errors: bool = False  # re-try files that failed before even when unchanged
    # worker processes each decoding and embedding whole files (CPU); 0 = in this process; None = one per core
    # when the model runs on the CPU and there is more than one core, else 0
    processes: int | None = None
    engine: str = "local"  # "local" | "ray" (Ray Data actors; see embed.ray_engine)
    ray_address: str | None = None  # a running Ray cluster ("auto"), or None to start a local one
    device: str = "auto"  # where the model runs when `index_folder` loads it: auto, cpu, cuda, cuda:N
    # FAISS index type (auto, flat, ivf, ivfpq, hnsw) and memory budget ("4GB" or bytes); None keeps what the
    # library asked for before (auto, 4 GiB for a new one)
    index_kind: str | None = None
    max_memory: int | str | None = None
    # measure tempo, key, loudness and energy of every track after embedding (`index.core.measures`), so that
    # search can use them; off, a run only embeds (a later run with it on measures what is missing)
    measure: bool = True

    def processes_for(self, encoder: AudioTextEncoder) -> int:
        """Worker processes this config runs for `encoder` (resolving the per-core default)."""
        if self.processes is not None:
            return self.processes
        cores = os.cpu_count() or 1
        on_cpu = not str(getattr(encoder, "device", "cpu")).startswith("cuda")
        return cores if self.engine == "local" and on_cpu and cores > 1 else 0

    def index_choice(self, previous: IndexChoice | None) -> IndexChoice | None:
        """The index to build: the library's earlier request with this config's changes, or None for no change."""
        if self.index_kind is None and self.max_memory is None:
            return None
        base = previous or IndexChoice()
        memory = base.max_memory if self.max_memory is None else self.max_memory
        return IndexChoice(kind=self.index_kind or base.kind, target_recall=base.target_recall,
                           max_memory=parse_memory(memory) if isinstance(memory, str) else memory)


@dataclass
class IndexReport:
    found: int = 0
    indexed: int = 0
    skipped: int = 0
    removed: int = 0
    moved: int = 0  # found under a new path (the music folder moved): relinked without embedding again
    resumed: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    audio_seconds: float = 0.0
    seconds: float = 0.0
    library_tracks: int = 0
    index: dict = field(default_factory=dict)  # the FAISS indexes the library now has (manifest "index")
    measures: MeasureReport | None = None  # the analysis pass (None when the config turned it off)


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


def _row(f: FoundFile, track_id: str, extra: dict | None, emb, error: str | None, names: list[str] | None) -> dict:
    extra = extra or {}
    row = {
        "track_id": track_id,
        "path": str(f.path),
        "rel_path": f.rel_path,
        "size": f.size,
        "mtime_ns": f.mtime_ns,
        "content_hash": extra.get("content_hash"),
        "duration": emb.duration if emb else None,
        "sample_rate": emb.source_rate if emb else None,
        "channels": emb.channels if emb else None,
        "tags": _top_tags(emb, names),
        "status": "ok" if emb else "error",
        "error": error,
        "indexed_at": time.time(),
        **(emb.quality.as_row() if emb is not None and emb.quality is not None else {}),
    }
    row.update(tag_columns(extra.get("tags") or {}))
    return row


def _stage(lib: Library, done: list[EmbeddedFile[FoundFile]], ids: dict[str, str], names: list[str] | None) -> Path:
    rows = [_row(r.item, ids[str(r.item.path)], r.extra, r.embedding, r.error, names) for r in done]
    return lib.stage(StagedBatch.of(rows, [r.embedding for r in done if r.embedding is not None], lib.dim))


def embed_items(todo: list, encoder: AudioTextEncoder, config: IndexConfig, path_of: Callable,
                prepare_extra: Callable | None, measure_quality: bool) -> Iterator[EmbeddedFile]:
    """An `EmbeddedFile` for every item to do, from the engine the config names (worker processes, Ray, or this
    process). `path_of` and `prepare_extra` go to worker processes, so they must be module-level functions."""
    processes = config.processes_for(encoder)
    if config.engine == "ray" or processes > 0:
        on_gpu = str(getattr(encoder, "device", "cpu")).startswith("cuda")
        if config.engine == "local" and on_gpu:
            raise ValueError(
                "worker processes embed on the CPU; with a GPU leave processes at 0 (decoding threads feed the GPU)"
            )
        spec = WorkerSpec(
            encoder.name,
            EncoderOptions(device="cuda" if on_gpu else "cpu", batch_size=getattr(encoder, "batch_size", 16)),
            batch_windows=config.batch_windows,
            measure_quality=measure_quality,
        )
        if config.engine == "ray":
            from tunelens.embed.ray_engine import embed_ray

            return embed_ray(todo, spec, address=config.ray_address, actors=processes or None, path_of=path_of,
                             prepare_extra=prepare_extra)
        return embed_processes(todo, spec, processes, path_of=path_of, prepare_extra=prepare_extra)
    return embed_stream(todo, encoder, path_of=path_of, prepare_extra=prepare_extra, workers=config.workers,
                        batch_windows=config.batch_windows, measure_quality=measure_quality)


def _model(existing: Library | None, model: AudioTextEncoder | str | None, config: IndexConfig) -> AudioTextEncoder:
    """The encoder to index with: the one given, else the model of the existing library, else the default."""
    if model is not None and not isinstance(model, str):
        return model
    if model is None and existing is not None:
        model = existing.manifest.pipeline.model
    return load_encoder(model, EncoderOptions(device=config.device, batch_size=config.batch_windows))


BAD_NAME = "the file name is not valid UTF-8 (shown here with \\x escapes); rename the file to index it"


def _printable_names(found: Iterator[FoundFile]) -> tuple[list[FoundFile], set[str]]:
    """The found files, those whose names are not valid UTF-8 (a library cannot store them, and a catalog row
    needs one) renamed in the listing to their `\\xNN`-escaped form, and the set of those escaped paths: they are
    recorded as failed with the reason, never stopping the run."""
    out, bad = [], set()
    for f in found:
        try:
            str(f.path).encode("utf-8")
            out.append(f)
        except UnicodeEncodeError:
            path = os.fsencode(f.path).decode("utf-8", "backslashreplace")
            rel = os.fsencode(f.rel_path).decode("utf-8", "backslashreplace")
            out.append(FoundFile(Path(path), rel, f.size, f.mtime_ns))
            bad.add(path)
    return out, bad


def _assign_ids(found: list[FoundFile], catalog: pl.DataFrame) -> tuple[dict[str, str], dict[str, tuple[str, str]],
                                                                          set[str]]:
    """(track id per found path, moved files: old path → (new path, new relative path), old paths that vanished
    under a new one).

    A found file takes the id of its path relative to the scanned folder. A catalogued file at another path with
    that id whose file is gone was moved (same size and mtime: relinked, its vectors kept) or moved and changed
    (its old row is dropped and the file embedded again). When the id belongs to another file that still exists
    (a second music folder with the same layout), the new file's id hashes its absolute path instead."""
    owner = dict(zip(catalog["track_id"].to_list(), catalog.select("path", "size", "mtime_ns", "status").rows()))
    here = {str(f.path) for f in found}
    ids: dict[str, str] = {}
    moved: dict[str, tuple[str, str]] = {}
    vanished: set[str] = set()
    for f in found:
        path, tid = str(f.path), track_id_for(f.rel_path)
        old = owner.get(tid)
        if old is not None and old[0] != path:
            if old[0] in here or os.path.lexists(old[0]):  # another file owns the id
                tid = track_id_for(path)
            elif (old[1], old[2], old[3]) == (f.size, f.mtime_ns, "ok"):
                moved[old[0]] = (path, f.rel_path)
            else:
                vanished.add(old[0])
        ids[path] = tid
    return ids, moved, vanished


def index_folder(library: str | Path, music_dir: str | Path, encoder: AudioTextEncoder | str | None = None,
                 config: IndexConfig = IndexConfig(), progress: ProgressFn | None = None,
                 precision: str = "fp32", measure_progress: ProgressFn | None = None) -> IndexReport:
    """Index `music_dir` into `library`, as `tunelens index` does: embed, commit, then measure (tempo, key,
    loudness...) what has no current measurement.

    `encoder`: an encoder, a model spec ("musicnn", "clap:FOLDER"), or None for the library's own model (the
    default model for a new library). Files that cannot be used are recorded with a reason; the run goes on.
    `progress` follows embedding, `measure_progress` the analysis pass: (tracks done, to do, audio seconds)."""
    t0 = time.time()
    library, music_dir = Path(library), Path(music_dir)
    if not music_dir.is_dir():
        raise FileNotFoundError(f"{music_dir} is not a folder")
    if config.engine not in ("local", "ray"):
        raise ValueError(f"unknown engine {config.engine!r}; use local or ray")
    existing = Library.open(library) if (library / "manifest.json").exists() else None
    encoder = _model(existing, encoder, config)
    pipeline = PipelineSpec.for_encoder(encoder)
    if existing is not None:
        existing.check_pipeline(pipeline)
        existing.check_writable()
    lib = existing or Library.create_or_open(library, pipeline, precision=precision)
    choice = config.index_choice(lib.index_choice() if lib.manifest.index.get("request") else None)
    report = IndexReport()
    with lib.lock():
        found, badly_named = _printable_names(scan_folder(music_dir))
        report.found = len(found)
        root = str(music_dir.absolute()).rstrip("/") + "/"
        ids, moved, vanished = _assign_ids(found, lib.catalog)
        known = {
            r[0]: r[1:] for r in lib.catalog.select("path", "size", "mtime_ns", "status", "audio_hash").iter_rows()
        }
        staged_files = lib.staged_batches()
        staged = {}
        for p in staged_files:
            for r in StagedBatch.load(p).rows:
                staged[r["path"]] = (r["size"], r["mtime_ns"])
        relinked = {new for new, _ in moved.values()}
        todo: list[FoundFile] = []
        unnameable: list[FoundFile] = []
        for f in found:
            key = str(f.path)
            if key in relinked:
                continue
            if key in badly_named:  # recorded as failed below, unless recorded before and unchanged
                if not (key in known and known[key][:2] == (f.size, f.mtime_ns)):
                    unnameable.append(f)
                else:
                    report.skipped += 1
                continue
            if key in staged and staged[key] == (f.size, f.mtime_ns):
                report.resumed += 1
            elif (
                key in known
                and known[key][:2] == (f.size, f.mtime_ns)
                and not (config.retry_errors and known[key][2] == "error")
                and not (known[key][2] == "ok" and known[key][3] is None)  # indexed before quality was measured
            ):
                report.skipped += 1
            else:
                todo.append(f)
        present = {str(f.path) for f in found}
        removed = {p for p in known if p.startswith(root) and p not in present} | vanished
        removed |= {p for p in staged if p.startswith(root) and p not in present}
        report.removed = len({p for p in removed if p in known})
        report.moved = len(moved)

        names = getattr(encoder, "tag_names", None)
        done: list[EmbeddedFile[FoundFile]] = [EmbeddedFile(f, None, None, BAD_NAME) for f in unnameable]
        report.failed.extend((f.rel_path, BAD_NAME) for f in unnameable)
        since_commit = 0
        # a new library commits early, so that it can be searched while the rest is indexed
        commit_every = min(config.commit_every, FIRST_COMMIT) if not len(lib.ok_tracks()) else config.commit_every
        for result in embed_items(todo, encoder, config, _path, _extra, measure_quality=True):
            done.append(result)
            if result.embedding is not None:
                report.indexed += 1
                report.audio_seconds += result.embedding.duration
            else:
                report.failed.append((result.item.rel_path, result.error or "unknown error"))
            if len(done) >= config.batch_files:
                _stage(lib, done, ids, names)
                since_commit += len(done)
                done = []
            if since_commit >= commit_every:
                lib.commit(removed, lib.staged_batches(), choice, moved)
                removed, moved, since_commit, commit_every = set(), {}, 0, config.commit_every
            if progress:
                progress(report.indexed + len(report.failed), len(todo), report.audio_seconds)
        if done:
            _stage(lib, done, ids, names)
        batches = lib.staged_batches()
        rechoose = choice is not None and choice.request() != lib.manifest.index.get("request")
        if batches or removed or moved or rechoose:
            lib.commit(removed, batches, choice, moved)
        report.library_tracks = int((lib.catalog["status"] == "ok").sum())
        report.index = lib.manifest.index
        if config.measure:
            workers = config.processes if config.processes is not None else (os.cpu_count() or 1)
            report.measures = measure_library(lib, max(1, workers), retry_errors=config.retry_errors,
                                              progress=measure_progress, engine=config.engine,
                                              ray_address=config.ray_address)
    report.seconds = time.time() - t0
    return report
