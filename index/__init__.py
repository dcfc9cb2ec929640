"""The on-disk library: catalog, vectors, FAISS index and manifest, written atomically and updated incrementally."""
from index.library import Library, LibraryError

__all__ = ["Library", "LibraryError"]
