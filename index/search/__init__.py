"""Queries against a library: text → tracks or moments, track or audio file → similar tracks."""
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

__all__ = ["MAX_QUERY_CHARS", "Hit", "find_track", "search", "search_moments", "search_text", "search_vector",
           "similar", "to_csv", "to_m3u"]
