"""Playlists: radio from seeds, a path between two tracks, a description ordered for listening, the library sorted
into named groups; the rules they keep; named playlists stored with their recipes and refreshed; export.

    rules.py     PlaylistRules, the per-track facts they judge, and a checker of finished playlists
    make.py      radio, path_between, query_playlist and the listening order
    clusters.py  group_playlists: the library in named groups
    store.py     LIB/playlists/NAME.json: save, load, list, delete, refresh
    export.py    M3U8, XSPF, CSV, JSON
"""
from tunelens.index.playlists.clusters import group_playlists
from tunelens.index.playlists.export import FORMATS, render
from tunelens.index.playlists.make import Playlist, PlaylistTrack, path_between, query_playlist, radio
from tunelens.index.playlists.rules import PlaylistRules, violations
from tunelens.index.playlists.store import (
                                            delete_playlist,
                                            list_playlists,
                                            load_playlist,
                                            refresh_playlist,
                                            save_playlist,
)

__all__ = ["FORMATS", "Playlist", "PlaylistRules", "PlaylistTrack", "delete_playlist", "group_playlists",
           "list_playlists", "load_playlist", "path_between", "query_playlist", "radio", "refresh_playlist", "render",
           "save_playlist", "violations"]
