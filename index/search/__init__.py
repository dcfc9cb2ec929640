"""Queries against a library: text → tracks or moments, track or audio file → similar tracks.

    query.py    a query read into concepts for the model and facets on measurements and file tags
    hybrid.py   one ranking over both, with what explains each hit
    nearest.py  search, similar, moments, playlists of hits
"""
from tunelens.index.search.hybrid import SearchResults
from tunelens.index.search.nearest import (
                                           MAX_QUERY_CHARS,
                                           Hit,
                                           find_track,
                                           search,
                                           search_moments,
                                           search_text,
                                           search_vector,
                                           similar,
                                           to_csv,
                                           to_m3u,
)

__all__ = ["MAX_QUERY_CHARS", "Hit", "SearchResults", "find_track", "search", "search_moments", "search_text",
           "search_vector", "similar", "to_csv", "to_m3u"]
