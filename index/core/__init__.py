"""The library core: the folder of plain files (manifest, catalog, vectors, captions), its one schema table,
atomic commits, scanning a music folder and indexing it incrementally."""
