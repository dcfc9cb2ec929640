"""Choosing, building and tuning a FAISS index for a set of L2-normalised vectors, under a memory budget.

`auto` keeps exact search (flat) while one query scans fast enough, then IVF-Flat while the vectors fit the
budget, then IVF-PQ whose candidates are re-ranked exactly from the vectors on disk (`tracks.npy`,
memory-mapped). nlist follows the size (≈ 2·√n, ≥ 39 training points per list); the search depth (nprobe,
HNSW's efSearch, the re-rank depth) is the cheapest that reaches `target_recall` for recall@k on a held-out
sample of the library's own vectors (left out of k-means training), against exact search. The choice, its
parameters and the recall measured are returned for the manifest.
"""
from __future__ import annotations

import math
import re
import time
import warnings
from dataclasses import dataclass

import numpy as np

from tunelens.index.vectors.faiss_module import import_faiss, to_gpu
from tunelens.index.vectors.vector_index import VectorIndex

KINDS = ("auto", "flat", "ivf", "ivfpq", "hnsw")
MIN_TRAIN = 39 * 256  # faiss wants ≥ 39 training points per centroid, and PQ codebooks have 256


@dataclass(frozen=True)
class IndexChoice:
    kind: str = "auto"  # auto | flat | ivf | ivfpq | hnsw
    max_memory: int = 4 * 2**30  # bytes the index may hold in RAM (vectors kept only on disk do not count)
    target_recall: float = 0.95  # recall@k against exact search that the tuned search depth must reach
    k: int = 10
    flat_max: int = 20_000  # auto: exact search up to this many vectors (a single query then takes ≲ 2 ms)
    sample: int = 500  # held-out vectors used to measure recall
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown index type {self.kind!r}; use one of {', '.join(KINDS)}")

    def request(self) -> dict:
        return {"kind": self.kind, "max_memory": self.max_memory, "target_recall": self.target_recall}


def parse_memory(text: str) -> int:
    """'4GB', '512MB', '1.5G', '2000000000' → bytes."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kmgt]?)(i?b)?\s*", text.lower())
    if not m:
        raise ValueError(f"cannot read the memory size {text!r}; write it like 4GB or 512MB")
    return int(float(m.group(1)) * 1024 ** " kmgt".index(m.group(2) or " "))


def _nlist(n: int) -> int:
    return max(1, min(65536, 2 ** round(math.log2(max(1.0, 2 * math.sqrt(n)))), n // 39))


def _pq_m(dim: int, budget_per_vector: float) -> int:
    """Sub-quantizers for IVF-PQ: dim/8 bytes a vector where the budget allows, fewer where it does not."""
    divisors = [m for m in range(1, dim + 1) if dim % m == 0 and m <= dim // 2]
    fitting = [m for m in divisors if m <= max(1.0, budget_per_vector)]
    pref = [m for m in fitting if m <= max(1, dim // 8)]
    return max(pref or fitting or divisors[:1])


def decide(n: int, dim: int, choice: IndexChoice, gpu: bool = False) -> tuple[str, str]:
    """(kind, why) for `n` vectors of `dim` under `choice`."""
    if choice.kind in ("ivf", "ivfpq") and n < MIN_TRAIN:
        return "flat", f"{choice.kind} asked for, but {n} vectors are too few to train quantizers: exact search"
    if choice.kind != "auto":
        return choice.kind, "asked for"
    flat_bytes = n * dim * 4
    if n <= choice.flat_max:
        return "flat", f"{n} vectors: exact search is fast enough"
    if gpu and flat_bytes <= choice.max_memory:
        return "flat", "a GPU searches the vectors exactly"
    if n < MIN_TRAIN:
        return "flat", "too few vectors to train quantizers"
    if flat_bytes * 1.05 <= choice.max_memory:
        return "ivf", f"{flat_bytes / 2**30:.2f} GiB of vectors fit the {choice.max_memory / 2**30:.2f} GiB budget"
    return "ivfpq", f"{flat_bytes / 2**30:.2f} GiB of vectors exceed the {choice.max_memory / 2**30:.2f} GiB budget"


def exact_neighbours(vectors: np.ndarray, queries: np.ndarray, k: int, chunk: int = 65536) -> np.ndarray:
    """[q, k] rows of the k largest inner products, scanning `vectors` (which may be memory-mapped) in chunks."""
    best_s = np.full((len(queries), k), -np.inf, np.float32)
    best_i = np.full((len(queries), k), -1, np.int64)
    for s in range(0, len(vectors), chunk):
        block = np.asarray(vectors[s:s + chunk], np.float32)
        scores = queries @ block.T
        kk = min(k, scores.shape[1])
        part = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
        cand_s = np.concatenate([best_s, np.take_along_axis(scores, part, 1)], 1)
        cand_i = np.concatenate([best_i, part + s], 1)
        order = np.argsort(-cand_s, axis=1, kind="stable")[:, :k]
        best_s, best_i = np.take_along_axis(cand_s, order, 1), np.take_along_axis(cand_i, order, 1)
    return best_i


def recall_at(found: np.ndarray, truth: np.ndarray, own: np.ndarray, k: int) -> float:
    """Mean share of each query's k true neighbours (itself left out) among the k found."""
    hits = 0
    for f, t, q in zip(found, truth, own):
        t = [x for x in t if x != q][:k]
        f = [x for x in f if x != q][:k]
        hits += len(set(t) & set(f))
    return hits / (k * len(truth))


@dataclass
class Built:
    index: object  # a CPU faiss index, ready to save
    info: dict  # for the manifest: type, parameters, recall, memory, build seconds


def _params_for(kind: str, nlist: int) -> list[dict]:
    """Search settings to try, cheapest first."""
    if kind == "ivf":
        return [{"nprobe": p} for p in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024) if p <= nlist] or [{"nprobe": 1}]
    if kind == "ivfpq":
        probes = [p for p in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512) if p <= nlist] or [1]
        return [{"nprobe": p, "rerank": r} for p in probes for r in (4, 10, 25, 50, 100)]
    if kind == "hnsw":
        return [{"efSearch": e} for e in (16, 32, 64, 128, 256, 512)]
    return [{}]


def build(vectors: np.ndarray, choice: IndexChoice, gpu: bool = False) -> Built:
    """Build the index `choice` asks for over `vectors` ([n, dim], L2-normalised; may be memory-mapped)."""
    faiss = import_faiss()

    t0 = time.perf_counter()
    n, dim = vectors.shape
    kind, why = decide(n, dim, choice, gpu)
    rng = np.random.default_rng(choice.seed)
    held = np.sort(rng.choice(n, size=min(choice.sample, n // 10 if kind in ("ivf", "ivfpq") else n), replace=False))
    info: dict = {"type": kind, "why": why, "vectors": n}
    train = None
    if kind == "flat":
        index = faiss.IndexFlatIP(dim)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 80
    else:
        nlist = _nlist(n)
        quantizer = faiss.IndexFlatIP(dim)
        if kind == "ivf":
            index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        else:
            m = _pq_m(dim, (choice.max_memory - nlist * dim * 4) / max(n, 1) - 8)
            index = faiss.IndexIVFPQ(quantizer, dim, nlist, m, 8, faiss.METRIC_INNER_PRODUCT)
            info["pq_bytes"] = m
        index.own_fields = True
        quantizer.this.disown()
        info["nlist"] = nlist
        mask = np.ones(n, bool)
        mask[held] = False
        pool = np.flatnonzero(mask)
        train_rows = np.sort(rng.choice(pool, size=min(len(pool), 50 * nlist), replace=False))
        train = np.ascontiguousarray(vectors[train_rows], np.float32)
        index.cp.niter = 10  # k-means converges well enough for coarse lists; 25 iterations cost 2.5x the time
    index = _fill(index, train, vectors, gpu)
    del train
    info["build_s"] = round(time.perf_counter() - t0, 2)

    # tune the search depth on the held-out sample
    k = min(choice.k, max(n - 1, 1))
    info["recall_k"] = k
    if n > 1 and kind != "flat":
        queries = np.ascontiguousarray(vectors[held], np.float32)
        truth = exact_neighbours(vectors, queries, k + 1)
        chosen, got = {}, 0.0
        for params in _params_for(kind, info.get("nlist", 1)):
            vi = VectorIndex(index, params=params, vectors=vectors, use_gpu=False)
            _, found = vi.search(queries, k + 1)
            got = recall_at(found, truth, held, k)
            chosen = params
            if got >= choice.target_recall:
                break
        info.update(chosen)
        info["recall"] = round(got, 4)
        info["recall_queries"] = int(len(held))
    else:
        info["recall"] = 1.0  # exact search
    info["memory_bytes"] = _memory(index, kind, n, dim)
    info["over_budget"] = info["memory_bytes"] > choice.max_memory
    return Built(index, info)


def _memory(index, kind: str, n: int, dim: int) -> int:
    if kind in ("flat", "ivf"):
        return n * dim * 4 + (getattr(index, "nlist", 0) * dim * 4)
    if kind == "hnsw":
        return n * dim * 4 + n * 32 * 2 * 4
    return n * (index.pq.M + 8) + index.nlist * dim * 4


def _fill(index, train: np.ndarray | None, vectors: np.ndarray, gpu: bool, chunk: int = 100_000):
    """Train (when `train` is given) and add every vector, on the GPU where one is asked for and the index type
    has a GPU version, else on the CPU. Returns the CPU index."""
    faiss = import_faiss()

    if gpu and not isinstance(index, faiss.IndexHNSWFlat):
        try:
            _, target = to_gpu(index)
        except (RuntimeError, AttributeError) as e:  # a CPU-only faiss, or no GPU version of this index
            warnings.warn(
                f"building the index on the CPU: the GPU clone failed ({str(e).splitlines()[0][:200]})", stacklevel=2
            )
            target = None
    else:
        target = None
    work = target if target is not None else index
    if train is not None:
        work.train(train)
    for s in range(0, len(vectors), chunk):
        work.add(np.ascontiguousarray(vectors[s : s + chunk], np.float32))
    return faiss.index_gpu_to_cpu(work) if target is not None else index


def info_summary(info: dict) -> str:
    if not isinstance(info, dict) or not info:  # libraries from before index choice kept one flat index
        return "flat"
    params = ", ".join(f"{k}={info[k]}" for k in ("nlist", "nprobe", "pq_bytes", "rerank", "efSearch") if k in info)
    recall = f"recall@{info.get('recall_k', 10)} {info.get('recall', 1.0):.3f}"
    return f"{info.get('type', 'flat')}{f' ({params})' if params else ''}, {recall}"
