"""FAISS inner-product search over L2-normalised vectors, on GPU when faiss sees one."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def gpu_count() -> int:
    import faiss

    return faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0


class VectorIndex:
    """A flat inner-product index whose positions are rows of the library's vector file."""

    def __init__(self, index, use_gpu: bool | None = None):
        import faiss

        self.cpu_index = index
        self.index = index
        if use_gpu is None:
            use_gpu = gpu_count() > 0
        if use_gpu and hasattr(faiss, "StandardGpuResources"):
            self._res = faiss.StandardGpuResources()
            self.index = faiss.index_cpu_to_gpu(self._res, 0, index)

    @classmethod
    def build(cls, vectors: np.ndarray, use_gpu: bool | None = None) -> "VectorIndex":
        import faiss

        dim = vectors.shape[1]
        index = faiss.IndexFlatIP(dim)
        if len(vectors):
            index.add(np.ascontiguousarray(vectors, dtype=np.float32))
        return cls(index, use_gpu)

    @classmethod
    def load(cls, path: Path, use_gpu: bool | None = None) -> "VectorIndex":
        import faiss

        return cls(faiss.read_index(str(path)), use_gpu)

    def save(self, path: Path) -> None:
        import faiss

        faiss.write_index(self.cpu_index, str(path))

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = max(1, min(k, self.ntotal))
        return self.index.search(queries, k)
