"""tunelens: text-to-music search, captioning and curation over your own music folders, offline first.

The public API, one call per `tunelens` CLI verb, with the CLI's defaults and behaviour:

    import tunelens

    report = tunelens.index_folder("LIB", "MUSIC")           # tunelens index MUSIC --library LIB
    hits = tunelens.search("LIB", "slow solo piano", k=5)    # tunelens search "slow solo piano" --library LIB
    print(hits.understood, hits[0].why)                      # what the query was read as; why a hit is there
    hits = tunelens.similar("LIB", hits[0].track_id)         # tunelens similar TRACK --library LIB
    tunelens.caption_library("LIB")                          # tunelens caption --library LIB
    answer = tunelens.ask(hits[0].track_id, "what key is it in?", library="LIB")
    clusters = tunelens.duplicates("LIB").clusters           # tunelens dupes --library LIB
    mix = tunelens.radio("LIB", [hits[0].track_id], "calmer", n=20)   # tunelens playlist radio TRACK --text calmer
    tunelens.save_playlist("LIB", mix); tunelens.refresh_playlist("LIB", mix.name)
    tunelens.export_dataset("LIB", "OUT")                    # tunelens export --library LIB --to OUT

Everything else is reachable under `tunelens.embed`, `tunelens.index`, `tunelens.caption` and `tunelens.app`.
Names load on first use, so `import tunelens` stays cheap (no torch until a model is needed).
"""
from __future__ import annotations

import importlib
import os
import sys
from typing import TYPE_CHECKING


def _thread_policy() -> None:
    """Torch's OpenMP threads spin-wait between parallel regions by default. On a machine doing other work that
    burns the cores the others need: in-process indexing fell from 31.1x to 10.7x realtime with another job on the
    2 cores. So before torch loads, tunelens makes idle threads sleep (OMP_WAIT_POLICY=PASSIVE), unless the
    environment already chose; every process tunelens starts inherits it. Thread counts: `--processes` (and
    OMP_NUM_THREADS / torch.set_num_threads for the in-process engine)."""
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


_thread_policy()

# public name → the module that defines it (each written once, there)
_API = {
    "Library": "tunelens.index.core.library",  # Library.open(path), Library.create_or_open(path, pipeline)
    "LibraryError": "tunelens.index.core.library",
    "index_folder": "tunelens.index.core.indexer",
    "IndexConfig": "tunelens.index.core.indexer",
    "repair_library": "tunelens.index.core.repair",
    "search": "tunelens.index.search.nearest",
    "similar": "tunelens.index.search.nearest",
    "Hit": "tunelens.index.search.nearest",
    "write_playlists": "tunelens.index.search.nearest",
    "SearchResults": "tunelens.index.search.hybrid",
    "radio": "tunelens.index.playlists.make",
    "path_between": "tunelens.index.playlists.make",
    "query_playlist": "tunelens.index.playlists.make",
    "Playlist": "tunelens.index.playlists.make",
    "group_playlists": "tunelens.index.playlists.clusters",
    "PlaylistRules": "tunelens.index.playlists.rules",
    "save_playlist": "tunelens.index.playlists.store",
    "load_playlist": "tunelens.index.playlists.store",
    "list_playlists": "tunelens.index.playlists.store",
    "refresh_playlist": "tunelens.index.playlists.store",
    "caption_library": "tunelens.caption.batch",
    "CaptionConfig": "tunelens.caption.batch",
    "ask": "tunelens.caption.qa",
    "duplicates": "tunelens.index.curation.dupes",
    "export_dataset": "tunelens.index.curation.export",
    "ExportConfig": "tunelens.index.curation.export",
    "load_encoder": "tunelens.embed.registry",
    "load_captioner": "tunelens.caption.base",
    "embed_file": "tunelens.embed.pipeline",
    "all_models": "tunelens.caption.catalog",
    "verify_encoder": "tunelens.embed.catalog",
}
__all__ = sorted(_API)

if TYPE_CHECKING:
    from tunelens.caption.base import load_captioner as load_captioner
    from tunelens.caption.batch import CaptionConfig as CaptionConfig
    from tunelens.caption.batch import caption_library as caption_library
    from tunelens.caption.catalog import all_models as all_models
    from tunelens.caption.qa import ask as ask
    from tunelens.embed.catalog import verify_encoder as verify_encoder
    from tunelens.embed.pipeline import embed_file as embed_file
    from tunelens.embed.registry import load_encoder as load_encoder
    from tunelens.index.core.indexer import IndexConfig as IndexConfig
    from tunelens.index.core.indexer import index_folder as index_folder
    from tunelens.index.core.library import Library as Library
    from tunelens.index.core.library import LibraryError as LibraryError
    from tunelens.index.core.repair import repair_library as repair_library
    from tunelens.index.curation.dupes import duplicates as duplicates
    from tunelens.index.curation.export import ExportConfig as ExportConfig
    from tunelens.index.curation.export import export_dataset as export_dataset
    from tunelens.index.playlists.clusters import group_playlists as group_playlists
    from tunelens.index.playlists.make import Playlist as Playlist
    from tunelens.index.playlists.make import path_between as path_between
    from tunelens.index.playlists.make import query_playlist as query_playlist
    from tunelens.index.playlists.make import radio as radio
    from tunelens.index.playlists.rules import PlaylistRules as PlaylistRules
    from tunelens.index.playlists.store import list_playlists as list_playlists
    from tunelens.index.playlists.store import load_playlist as load_playlist
    from tunelens.index.playlists.store import refresh_playlist as refresh_playlist
    from tunelens.index.playlists.store import save_playlist as save_playlist
    from tunelens.index.search.hybrid import SearchResults as SearchResults
    from tunelens.index.search.nearest import Hit as Hit
    from tunelens.index.search.nearest import search as search
    from tunelens.index.search.nearest import similar as similar
    from tunelens.index.search.nearest import write_playlists as write_playlists


def __getattr__(name: str) -> object:
    if name not in _API:
        raise AttributeError(f"module 'tunelens' has no attribute {name!r}")
    value = getattr(importlib.import_module(_API[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
