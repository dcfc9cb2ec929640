"""FAISS inner-product search over L2-normalised vectors (flat, IVF, IVF-PQ with exact re-ranking, HNSW), on GPU
when faiss sees one and the index type has a GPU version, on the CPU otherwise."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from tunelens.index.vectors.faiss_module import gpu_count, import_faiss, to_gpu


class VectorIndex:
    """A FAISS index whose positions are rows of the library's vector file.

    `params` are the search settings tuned at build time (`index.ann`): nprobe for IVF, efSearch for HNSW,
    and for IVF-PQ `rerank`, how many times k candidates are re-scored exactly from `vectors`.
    """

    def __init__(
        self, index, params: dict | None = None, vectors: np.ndarray | None = None, use_gpu: bool | None = None
    ):
        faiss = import_faiss()

        self.cpu_index = index
        self.params = dict(params or {})
        self.vectors = vectors
        self.rerank = int(self.params.get("rerank", 0))
        if "nprobe" in self.params:
            faiss.extract_index_ivf(index).nprobe = int(self.params["nprobe"])
        if "efSearch" in self.params:
            index.hnsw.efSearch = int(self.params["efSearch"])
        self.index = index
        self.on_gpu = False
        if use_gpu is None:
            use_gpu = gpu_count() > 0
        if use_gpu and hasattr(faiss, "StandardGpuResources") and not isinstance(index, faiss.IndexHNSWFlat):
            try:
                self._res, self.index = to_gpu(index)
                if "nprobe" in self.params:
                    faiss.GpuParameterSpace().set_index_parameter(self.index, "nprobe", int(self.params["nprobe"]))
                self.on_gpu = True
            except (RuntimeError, AttributeError) as e:
                warnings.warn(
                    f"searching on the CPU: moving the index to the GPU failed ({str(e).splitlines()[0][:200]})",
                    stacklevel=2,
                )
                self.index = index

    @classmethod
    def build(cls, vectors: np.ndarray, use_gpu: bool | None = None) -> VectorIndex:
        """An exact (flat) index over `vectors`."""
        faiss = import_faiss()

        index = faiss.IndexFlatIP(vectors.shape[1])
        if len(vectors):
            index.add(np.ascontiguousarray(vectors, dtype=np.float32))
        return cls(index, use_gpu=use_gpu)

    @classmethod
    def load(
        cls, path: Path, params: dict | None = None, vectors: np.ndarray | None = None, use_gpu: bool | None = None
    ) -> VectorIndex:
        faiss = import_faiss()

        return cls(faiss.read_index(str(path)), params, vectors, use_gpu)

    def save(self, path: Path) -> None:
        faiss = import_faiss()

        faiss.write_index(self.cpu_index, str(path))

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, rows), each [q, k], best first; rows are -1 where fewer than k were found."""
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = max(1, min(k, self.ntotal))
        if not self.rerank or self.vectors is None:
            return self.index.search(queries, k)
        _, cand = self.index.search(queries, min(self.ntotal, k * self.rerank))
        scores = np.full((len(queries), k), -np.inf, np.float32)
        rows = np.full((len(queries), k), -1, np.int64)
        for i, (q, c) in enumerate(zip(queries, cand)):
            c = np.sort(c[c >= 0])  # sorted rows read a memory-mapped file in order
            exact = np.asarray(self.vectors[c], np.float32) @ q
            top = np.argsort(-exact, kind="stable")[:k]
            scores[i, : len(top)], rows[i, : len(top)] = exact[top], c[top]
        return scores, rows

    def neighbours_within(
        self, queries: np.ndarray, min_score: float, max_k: int
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """For each query, (rows, scores) of up to `max_k` neighbours scoring at least `min_score`, best first."""
        faiss = import_faiss()

        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        base = faiss.downcast_index(self.cpu_index)
        if isinstance(base, (faiss.IndexFlat, faiss.IndexIVFFlat)):  # a true radius search
            lims, dist, ids = self.cpu_index.range_search(queries, min_score)
            out = []
            for q in range(len(queries)):
                d, i = dist[lims[q] : lims[q + 1]], ids[lims[q] : lims[q + 1]]
                order = np.argsort(-d, kind="stable")[:max_k]
                out.append((i[order].astype(np.int64), d[order]))
            return out
        scores, rows = self.search(queries, max_k)
        return [(r[(s >= min_score) & (r >= 0)], s[(s >= min_score) & (r >= 0)]) for s, r in zip(scores, rows)]
