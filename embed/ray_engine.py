"""Embedding on a Ray cluster (`tunelens index --engine ray`): Ray Data's `map_batches` runs the same
`ChunkEmbedder` as the local worker processes in a pool of actors (one GPU each where the cluster has GPUs,
one CPU each otherwise), and streams results back to the driver, which stages and commits them into the
library exactly as the local engine does. Files must be readable at the same paths on every node.
Ray is an optional extra: `pip install 'tunelens[ray]'`.
"""
from __future__ import annotations

import os
import pickle
from collections.abc import Callable, Iterable, Iterator

import numpy as np

from tunelens.embed.parallel import ChunkEmbedder, WorkerSpec, as_path
from tunelens.embed.pipeline import EmbeddedFile


class EngineUnavailableError(RuntimeError):
    """The engine asked for cannot run here; the message says what to install or start."""


class _EmbedActor:
    """A Ray Data callable class: the encoder is loaded once per actor, then embeds batches of files."""

    def __init__(self, spec: WorkerSpec, path_of: Callable, prepare_extra: Callable | None):
        self.embedder = ChunkEmbedder(spec)
        self.path_of, self.prepare_extra = path_of, prepare_extra

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        items = [pickle.loads(b) for b in batch["item"]]
        results = self.embedder(items, self.path_of, self.prepare_extra)
        payload = np.empty(len(results), dtype=object)
        payload[:] = [pickle.dumps((r.embedding, r.extra, r.error), protocol=5) for r in results]
        return {"i": batch["i"], "result": payload}


def _connect(address: str | None):
    """The `ray` module, joined to the cluster at `address` ("auto" for the one this machine belongs to), or to a
    local Ray started when none is running and no address is given."""
    try:
        import ray
    except ImportError:
        raise EngineUnavailableError("the Ray engine needs Ray: pip install 'tunelens[ray]'") from None
    if not ray.is_initialized():
        try:
            # the job's actors get this process's thread policy (tunelens.__init__), on this machine or a cluster
            policy = {k: os.environ[k] for k in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS") if k in os.environ}
            ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False,
                     runtime_env={"env_vars": policy} if policy else None)
        except ConnectionError as e:
            raise EngineUnavailableError(f"cannot reach a Ray cluster at {address!r}: {e}") from None
    return ray


def embed_ray(
    items: Iterable, spec: WorkerSpec, address: str | None = None, actors: int | None = None, chunk_files: int = 8,
    path_of: Callable = as_path, prepare_extra: Callable | None = None,
) -> Iterator[EmbeddedFile]:
    """Yield an `EmbeddedFile` for every item, in input order, computed on Ray (joined as `_connect` does)."""
    ray = _connect(address)
    items = list(items)
    if not items:
        return
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    use_gpu = gpus > 0 and spec.options.device.startswith("cuda")
    pool = actors or (gpus if use_gpu else max(1, int(resources.get("CPU", 1))))

    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True
    ds = ray.data.from_items([{"i": i, "item": pickle.dumps(x, protocol=5)} for i, x in enumerate(items)],
                             override_num_blocks=max(1, -(-len(items) // chunk_files)))
    ds = ds.map_batches(_EmbedActor, fn_constructor_args=(spec, path_of, prepare_extra), batch_size=chunk_files,
                        batch_format="numpy", concurrency=pool, num_cpus=1, num_gpus=1 if use_gpu else 0)
    for batch in ds.iter_batches(batch_size=chunk_files, batch_format="numpy"):
        for i, payload in zip(batch["i"], batch["result"]):
            yield EmbeddedFile(items[int(i)], *pickle.loads(payload))



def _analyse_on_ray(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    from tunelens.embed.descriptors import analyse_paths

    out = np.empty(len(batch["paths"]), dtype=object)
    out[:] = [pickle.dumps(analyse_paths(list(pickle.loads(p))), protocol=5) for p in batch["paths"]]
    return {"i": batch["i"], "result": out}


def analyse_ray(batches: list[list[str]], address: str | None = None) -> Iterator[list]:
    """`embed.descriptors.analyse_paths` of each batch of paths, in input order, computed on Ray (one CPU a task):
    the analysis pass of `tunelens index --engine ray`."""
    ray = _connect(address)
    if not batches:
        return
    ray.data.DataContext.get_current().execution_options.preserve_order = True
    ds = ray.data.from_items([{"i": i, "paths": pickle.dumps(b, protocol=5)} for i, b in enumerate(batches)],
                             override_num_blocks=len(batches))
    ds = ds.map_batches(_analyse_on_ray, batch_size=1, batch_format="numpy", num_cpus=1)
    for batch in ds.iter_batches(batch_size=1, batch_format="numpy"):
        for payload in batch["result"]:
            yield pickle.loads(payload)
