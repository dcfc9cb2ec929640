"""Playlist files players read: M3U8 (paths relative to a music root or to the playlist's folder), XSPF, CSV and
JSON. One writer per format, for search hits and playlists alike (`entries` take anything with path, rel_path,
title, artist, duration)."""
from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from urllib.parse import quote
from xml.sax.saxutils import escape

from tunelens.index.core.display import clean

MEDIA_TYPES = {"m3u8": "audio/x-mpegurl", "xspf": "application/xspf+xml", "csv": "text/csv",
               "json": "application/json"}
FORMATS = tuple(MEDIA_TYPES)


def _display(e) -> str:
    """"Artist - Title" on one line, without control characters (a tag may hold anything)."""
    return clean(" - ".join(x for x in (e.artist, e.title or Path(e.rel_path).stem) if x), 300, one_line=True)


def to_m3u(entries, relative_to: str | Path | None = None, title: str | None = None) -> str:
    """An extended M3U playlist (durations, titles): absolute paths, or paths relative to `relative_to` (the folder
    the playlist is saved in, or the music root a server resolves playlists against), the form Navidrome, Jellyfin,
    MPD and Plex import."""
    lines = ["#EXTM3U"] + ([f"#PLAYLIST:{clean(title, 300, one_line=True)}"] if title else [])
    for e in entries:
        path = os.path.relpath(e.path, Path(relative_to).absolute()) if relative_to is not None else e.path
        lines += [f"#EXTINF:{int(round(e.duration))},{_display(e)}", path]
    return "\n".join(lines) + "\n"


def to_xspf(entries, title: str | None = None, relative_to: str | Path | None = None) -> str:
    """XSPF 1 (the XML playlist VLC, Strawberry and Clementine read): file URIs, or relative URIs."""
    out = ['<?xml version="1.0" encoding="UTF-8"?>', '<playlist version="1" xmlns="http://xspf.org/ns/0/">']
    if title:
        out.append(f"  <title>{escape(clean(title, 1000, one_line=True))}</title>")
    out.append("  <trackList>")
    for e in entries:
        if "://" in e.path:  # already a URL (a server's audio route)
            loc = e.path
        elif relative_to is not None:
            loc = quote(os.path.relpath(e.path, Path(relative_to).absolute()).replace(os.sep, "/"))
        else:
            loc = Path(e.path).absolute().as_uri()
        out.append("    <track>")
        out.append(f"      <location>{escape(loc)}</location>")
        for tag, value in (("title", e.title), ("creator", e.artist), ("album", getattr(e, "album", None))):
            if value:  # XML 1.0 has no control characters: cleaned, then escaped
                out.append(f"      <{tag}>{escape(clean(value, 1000, one_line=True))}</{tag}>")
        out.append(f"      <duration>{int(round(e.duration * 1000))}</duration>")
        out.append("    </track>")
    out += ["  </trackList>", "</playlist>"]
    return "\n".join(out) + "\n"


def to_csv(entries) -> str:
    rows = [e.to_dict() for e in entries]
    buf = io.StringIO()
    if rows:
        w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows({k: "; ".join(v) if isinstance(v, list) else v for k, v in r.items()} for r in rows)
    return buf.getvalue()


def render(playlist, fmt: str, relative_to: str | Path | None = None) -> str:
    """A stored `Playlist` in one of FORMATS."""
    if fmt == "m3u8":
        return to_m3u(playlist.tracks, relative_to, playlist.name)
    if fmt == "xspf":
        return to_xspf(playlist.tracks, playlist.name, relative_to)
    if fmt == "csv":
        return to_csv(playlist.tracks)
    if fmt == "json":
        return json.dumps(playlist.to_dict(), indent=1, ensure_ascii=False) + "\n"
    raise ValueError(f"unknown playlist format {fmt!r}: use one of {', '.join(FORMATS)}")
