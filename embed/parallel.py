"""Embedding in worker processes, each decoding and embedding whole files with a one-thread model.

On CPU this beats one process running a multi-threaded model: small convolutions scale poorly across
threads, and decoding no longer competes with the model for its cores (musicnn on 2 cores: two 1-thread
processes give 43x realtime against 35x for one 2-thread process). Work goes out in chunks of files with at
most `2 × processes` chunks in flight, so memory stays flat however large the folder; results come back in
input order. Vectors do not depend on which worker or chunk a file lands in (fixed, zero-padded model
batches and one model thread everywhere), so any number of processes, or Ray actors (`embed.ray_engine`)
running the same `ChunkEmbedder`, give bit-identical vectors.

A worker that dies (a decoder crashing on a corrupt file) costs only its chunk: those files are retried one
by one in a fresh pool, and a file that kills a worker on its own is recorded as failed. A decode running past
`embed.audio.DECODE_LIMIT_S` stops its worker the same way (a decoder stuck in C cannot be interrupted), and the
file is recorded with that reason. Workers send the C decoders' stderr chatter (libmpg123's "bad frame" notes)
to /dev/null: every file's fate comes back as a result.
"""
from __future__ import annotations

import dataclasses
import multiprocessing as mp
import os
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from tunelens.embed.base import EncoderOptions
from tunelens.embed.pipeline import EmbeddedFile, embed_stream

T = TypeVar("T")


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker process needs to rebuild the encoder and run the pipeline exactly as the parent would."""

    model: str  # the registry spec, `encoder.name`
    options: EncoderOptions
    batch_windows: int = 16
    measure_quality: bool = False
    threads: int = 1  # torch threads per worker; 1 keeps vectors identical across engines and worker counts
    watch_dir: str | None = None  # where a worker stopped by the decode time limit names the file (set by the pool)


class ChunkEmbedder:
    """Embeds lists of files with one encoder, loaded once; the unit of work of process pools and Ray actors."""

    def __init__(self, spec: WorkerSpec):
        import torch

        from tunelens.embed.registry import load_encoder

        torch.set_num_threads(spec.threads)
        self.spec = spec
        self.encoder = load_encoder(spec.model, spec.options)

    def __call__(self, items: list, path_of: Callable, prepare_extra: Callable | None) -> list[EmbeddedFile]:
        return list(embed_stream(items, self.encoder, path_of=path_of, prepare_extra=prepare_extra, workers=1,
                                 batch_windows=self.spec.batch_windows, measure_quality=self.spec.measure_quality))


_embedder: ChunkEmbedder | None = None


def _init_worker(spec: WorkerSpec) -> None:
    global _embedder
    parent = os.getppid()
    threading.Thread(target=_exit_with, args=(parent,), daemon=True).start()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    if spec.watch_dir:
        import av  # noqa: F401 - the decoders load now, not inside the first file's time limit
        import soundfile  # noqa: F401

        from tunelens.embed.audio import arm_watch

        arm_watch(Path(spec.watch_dir))
    _embedder = ChunkEmbedder(spec)


def _exit_with(parent: int) -> None:
    """A worker whose parent was killed (kill -9 of `tunelens index`) would wait forever on its task queue."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def _run_chunk(items: list, path_of: Callable, prepare_extra: Callable | None) -> list[EmbeddedFile]:
    assert _embedder is not None
    return _embedder(items, path_of, prepare_extra)


def as_path(x) -> Path:
    return Path(x)


class _Pool:
    """A spawn-context process pool that can be replaced when a worker dies."""

    def __init__(self, spec: WorkerSpec, processes: int):
        self.spec, self.processes = spec, max(1, processes)
        self.executor = self._new()

    def _new(self) -> ProcessPoolExecutor:
        ctx = mp.get_context("spawn")  # never fork a process that may hold torch/OpenMP threads
        return ProcessPoolExecutor(self.processes, mp_context=ctx, initializer=_init_worker, initargs=(self.spec,))

    def renew(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.executor = self._new()


def embed_processes(items: Iterable[T], spec: WorkerSpec, processes: int = 2, chunk_files: int = 8,
                    path_of: Callable[[T], Path] = as_path, prepare_extra: Callable[[T], object] | None = None,
                    max_waiting: int | None = None) -> Iterator[EmbeddedFile[T]]:
    """Yield an `EmbeddedFile` for every item, in input order.

    Each worker has two chunks queued. A slow chunk at the head of the order does not stall the others: while it
    runs, later chunks keep being submitted and their results wait, up to `max_waiting` finished chunks.
    `path_of` and `prepare_extra` are sent to the workers, so they must be module-level functions.
    """
    from tunelens.embed.audio import DECODE_LIMIT_S, timed_out_files

    watch_dir = tempfile.TemporaryDirectory(prefix="tunelens-watch-")
    pool = _Pool(dataclasses.replace(spec, watch_dir=watch_dir.name), processes)
    in_flight: deque[tuple[list, Future]] = deque()
    it = iter(items)
    max_waiting = max_waiting or 8 * pool.processes

    def submit(chunk: list) -> None:
        in_flight.append((chunk, pool.executor.submit(_run_chunk, chunk, path_of, prepare_extra)))

    def fill() -> None:
        while sum(not f.done() for _, f in in_flight) < 2 * pool.processes and len(in_flight) < max_waiting:
            chunk = [x for _, x in zip(range(chunk_files), it)]
            if not chunk:
                return
            submit(chunk)

    try:
        fill()
        while in_flight:
            if not in_flight[0][1].done():
                wait([f for _, f in in_flight if not f.done()], return_when=FIRST_COMPLETED)
                fill()
                continue
            chunk, fut = in_flight.popleft()
            try:
                results = fut.result()
            except BrokenProcessPool:
                waiting = list(in_flight)
                in_flight.clear()
                pool.renew()
                for item in chunk:  # alone, so that only the file that kills a worker is lost
                    try:
                        yield from pool.executor.submit(_run_chunk, [item], path_of, prepare_extra).result()
                    except BrokenProcessPool:
                        pool.renew()
                        late = str(path_of(item)) in timed_out_files(Path(watch_dir.name))
                        yield EmbeddedFile(
                            item, None, None,
                            f"decoding took longer than {DECODE_LIMIT_S:g} s (the per-file limit)" if late
                            else "the decoder crashed on this file (a worker process died reading it)",
                        )
                for c, f in waiting:  # chunks that finished before the pool broke keep their results
                    if f.done() and not f.cancelled() and f.exception() is None:
                        in_flight.append((c, f))
                    else:
                        submit(c)
                continue
            yield from results
            fill()
    finally:
        pool.executor.shutdown(wait=True, cancel_futures=True)
        watch_dir.cleanup()
