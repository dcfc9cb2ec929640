"""The faiss module itself: importing it (faiss-cpu and faiss-gpu share the name), which build is installed, and
cloning an index onto the GPU. Everything else in tunelens reaches faiss through here."""
from __future__ import annotations


def import_faiss():
    """The faiss module, or a sentence saying how to install it."""
    try:
        import faiss
    except ImportError:
        raise ImportError(
            "faiss is not installed: pip install 'tunelens[cpu]', or 'tunelens[gpu]' on a CUDA machine"
        ) from None
    return faiss


def gpu_count() -> int:
    try:
        faiss = import_faiss()
    except ImportError:
        return 0
    return faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0


def faiss_build() -> str:
    """Which faiss is installed: 'gpu' or 'cpu' (the two builds share the module name)."""
    from importlib.metadata import PackageNotFoundError, distribution

    found = []
    for dist in ("faiss-gpu-cu12", "faiss-gpu-cu11", "faiss-gpu", "faiss-cpu"):
        try:
            distribution(dist)
            found.append(dist)
        except PackageNotFoundError:
            pass
    return ", ".join(found) or "none"


def to_gpu(index):
    """(GPU resources, a GPU clone of the CPU `index`); the resources must live as long as the clone."""
    faiss = import_faiss()

    res = faiss.StandardGpuResources()
    opts = faiss.GpuClonerOptions()
    opts.useFloat16LookupTables = True  # IVF-PQ with many sub-quantizers needs it; re-ranking restores precision
    return res, faiss.index_cpu_to_gpu(res, 0, index, opts)
