"""Vector indexes: FAISS search over L2-normalised vectors and the choice of index type under a memory budget.

`faiss_module` imports faiss and clones to the GPU; `vector_index` searches one index; `choice` picks, builds
and tunes an index. Imports run one way (choice → vector_index → faiss_module)."""
from tunelens.index.vectors.choice import IndexChoice, build, info_summary, parse_memory
from tunelens.index.vectors.faiss_module import faiss_build, gpu_count, import_faiss
from tunelens.index.vectors.vector_index import VectorIndex

__all__ = ["IndexChoice", "VectorIndex", "build", "faiss_build", "gpu_count", "import_faiss", "info_summary",
           "parse_memory"]
