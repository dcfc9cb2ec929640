"""The on-disk library and everything read from it.

    core/      the library folder: schema, manifest, catalog, vectors, captions, atomic commits, indexing
    vectors/   FAISS indexes: choice under a memory budget, build, tuned search
    search/    text, moment and similarity search
    curation/  quality flags, duplicates, caption-audio agreement, dataset export
"""
from tunelens.index.core.library import Library, LibraryError

__all__ = ["Library", "LibraryError"]
