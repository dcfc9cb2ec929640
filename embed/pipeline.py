"""Streaming many files through an encoder: decoding runs ahead in worker threads while the model works on
fixed-size batches of windows, so the model is never idle on one slow file and memory stays bounded.

Every model call gets exactly `batch_windows` windows (the last is zero-padded), so a window's vector never
depends on which other files shared its batch: the same file gives bit-identical vectors on CPU.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

import numpy as np

from tunelens.embed.audio import AudioError, DecodedAudio, check_file, decoded, error_reason, read_audio, watched
from tunelens.embed.base import AudioTextEncoder, l2_normalize
from tunelens.embed.quality import AudioQuality, measure
from tunelens.embed.windows import make_windows, pool_track, window_samples, window_times

T = TypeVar("T")


@dataclass
class TrackEmbedding:
    track_vector: np.ndarray  # [dim], L2-normalised
    window_vectors: np.ndarray  # [n, dim], each L2-normalised
    window_starts: np.ndarray  # [n] seconds
    window_ends: np.ndarray  # [n] seconds
    duration: float
    source_rate: int
    channels: int
    tag_probs: np.ndarray | None = None  # [tags] mean over windows, for encoders that are taggers
    quality: AudioQuality | None = None  # signal facts of the file at its own rate, when asked for


@dataclass
class EmbeddedFile(Generic[T]):
    """What embedding one input gave: its vectors, or the reason it failed (never both).

    `item` is the input as given (a path, or the caller's record of a file); `extra` is whatever the caller's
    `prepare_extra` computed for it next to decoding (content hash, file tags...)."""

    item: T
    embedding: TrackEmbedding | None
    extra: object = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.embedding is not None


@dataclass
class Prepared(Generic[T]):
    item: T
    audio: DecodedAudio | None = None
    windows: np.ndarray | None = None
    starts: list[int] | None = None
    extra: object = None  # whatever `prepare_extra` computed in the worker (hash, tags...)
    quality: AudioQuality | None = None
    error: str | None = None


def embed_stream(
    items: Iterable[T],
    encoder: AudioTextEncoder,
    path_of: Callable[[T], Path] = lambda x: Path(x),  # type: ignore[arg-type, return-value]
    prepare_extra: Callable[[T], object] | None = None,
    workers: int = 2,
    batch_windows: int = 16,
    prefetch: int = 8,
    measure_quality: bool = False,
) -> Iterator[EmbeddedFile[T]]:
    """Yield an `EmbeddedFile` for every item, in input order."""
    window = window_samples(encoder.window_seconds, encoder.sample_rate)

    def prepare(item: T) -> Prepared[T]:
        out: Prepared[T] = Prepared(item)
        try:
            check_file(path_of(item))
            if prepare_extra is not None:
                out.extra = prepare_extra(item)
            with watched(path_of(item)):
                data, sr = read_audio(path_of(item))
            if measure_quality:
                out.quality = measure(data, sr)
            out.audio = decoded(data, sr, encoder.sample_rate)
            del data
            out.windows, out.starts = make_windows(out.audio.samples, window)
        except Exception as e:  # a broken file, or a decoder bug, must not stop the batch
            out.error = error_reason(e)
        return out

    pending: deque[Prepared[T]] = deque()  # decoded, waiting for (some of) their windows to be embedded
    queue: list[np.ndarray] = []
    results: list[list[np.ndarray]] = []  # per pending track, its embedded window vectors so far
    tag_results: list[list[np.ndarray]] = []
    n_queued = 0
    with_tags = hasattr(encoder, "embed_audio_with_tags")

    def run_batch(flush: bool) -> None:
        nonlocal queue, n_queued
        while n_queued >= batch_windows or (flush and n_queued > 0):
            take = min(batch_windows, n_queued)
            stacked = np.concatenate(queue)
            batch, rest = stacked[:take], stacked[take:]
            if take < batch_windows:
                batch = np.concatenate([batch, np.zeros((batch_windows - take, window), np.float32)])
            if with_tags:
                vecs, probs = encoder.embed_audio_with_tags(batch)  # type: ignore[attr-defined]
                probs = np.asarray(probs, np.float32)[:take]
            else:
                vecs, probs = encoder.embed_audio(batch), None
            vecs = np.asarray(vecs, dtype=np.float32)[:take]
            queue, n_queued = ([rest] if len(rest) else []), len(rest)
            # hand vectors back to the tracks that own them, in order
            pos = 0
            for p, got, got_tags in zip(pending, results, tag_results):
                if p.windows is None:
                    continue
                need = len(p.windows) - sum(len(g) for g in got)
                if need <= 0:
                    continue
                n = min(need, take - pos)
                if n > 0:
                    got.append(vecs[pos:pos + n])
                    if probs is not None:
                        got_tags.append(probs[pos:pos + n])
                    pos += n
                if pos >= take:
                    break

    def finished() -> Iterator[EmbeddedFile[T]]:
        while pending:
            p, got = pending[0], results[0]
            if p.error is None and sum(len(g) for g in got) < len(p.windows):
                return
            pending.popleft()
            results.pop(0)
            tags = tag_results.pop(0)
            if p.error is not None:
                yield EmbeddedFile(p.item, None, p.extra, p.error)
                continue
            raw = np.concatenate(got)
            sr, a = encoder.sample_rate, p.audio
            starts, ends = window_times(p.starts, sr, encoder.window_seconds, a.duration)
            emb = TrackEmbedding(
                pool_track(raw, getattr(encoder, "vector_blocks", None)), l2_normalize(raw), starts, ends, a.duration,
                a.source_rate, a.channels,
                np.concatenate(tags).mean(axis=0) if tags else None, p.quality,
            )
            p.audio = p.windows = None
            yield EmbeddedFile(p.item, emb, p.extra)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures: deque = deque()
        it = iter(items)
        exhausted = False
        while True:
            while not exhausted and len(futures) < prefetch:
                try:
                    futures.append(pool.submit(prepare, next(it)))
                except StopIteration:
                    exhausted = True
            if not futures:
                break
            p = futures.popleft().result()
            pending.append(p)
            results.append([])
            tag_results.append([])
            if p.error is None:
                queue.append(p.windows)
                n_queued += len(p.windows)
                run_batch(flush=False)
            yield from finished()
        run_batch(flush=True)
        yield from finished()


def embed_file(path: str | Path, encoder: AudioTextEncoder, measure_quality: bool = False) -> TrackEmbedding:
    """The embedding of one audio file; raises `AudioError` with the reason when the file cannot be used."""
    (result,) = embed_stream([Path(path)], encoder, workers=1, measure_quality=measure_quality)
    if result.embedding is None:
        raise AudioError(f"cannot read {path}: {result.error}")
    return result.embedding
