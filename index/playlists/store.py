"""Named playlists kept in the library, with their recipes, so that they can be refreshed after it changes.

    LIB/playlists/NAME.json   the playlist as `Playlist.to_dict()`: its recipe (kind, seeds, text, ends, length,
                              rules, group centroids), its tracks, when it was made and last refreshed

Plain JSON a user can read; each written atomically. `refresh` re-runs the recipe on the library as it is now and
offers the tracks the playlist had first: what still fits stays, in place of new picks; what was removed from the
library, is now flagged or no longer matches drops out.
"""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

from tunelens.embed.base import AudioTextEncoder
from tunelens.index.core.atomic import atomic_write_json
from tunelens.index.core.library import Library, LibraryError
from tunelens.index.playlists.clusters import cluster_members
from tunelens.index.playlists.make import Playlist, path_between, query_playlist, radio
from tunelens.index.playlists.rules import PlaylistRules

FOLDER = "playlists"


class PlaylistNotFound(LibraryError, LookupError):
    """No saved playlist of that name."""


def _file(lib: Library, name: str) -> Path:
    slug = re.sub(r"[^\w\-. ]+", "_", name).strip(" .")[:120]
    if not slug:
        raise ValueError(f"{name!r} cannot be a playlist name: use letters or digits")
    return lib.root / FOLDER / f"{slug}.json"


def save_playlist(library: Library | str | Path, playlist: Playlist) -> Path:
    lib = Library.coerce(library)
    path = _file(lib, playlist.name)
    path.parent.mkdir(exist_ok=True)
    atomic_write_json(path, playlist.to_dict())
    return path


def load_playlist(library: Library | str | Path, name: str) -> Playlist:
    lib = Library.coerce(library)
    path = _file(lib, name)
    if not path.exists():
        have = ", ".join(p.name for p in list_playlists(lib)) or "none yet"
        raise PlaylistNotFound(f"no playlist {name!r} in this library (saved playlists: {have})")
    try:
        return Playlist.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, KeyError, TypeError) as e:
        raise LibraryError(f"{path} is not a readable playlist ({e}); delete it or save it again") from None


def list_playlists(library: Library | str | Path) -> list[Playlist]:
    lib = Library.coerce(library)
    out = []
    for p in sorted((lib.root / FOLDER).glob("*.json")):
        try:
            out.append(Playlist.from_dict(json.loads(p.read_text(encoding="utf-8"))))
        except (ValueError, KeyError, TypeError):
            continue  # a damaged file is reported by `load`, not by listing
    return out


def delete_playlist(library: Library | str | Path, name: str) -> None:
    lib = Library.coerce(library)
    path = _file(lib, name)
    if not path.exists():
        raise PlaylistNotFound(f"no playlist {name!r} in this library")
    path.unlink()


def refresh_playlist(library: Library | str | Path, name: str, encoder=None,
                     device: str = "auto") -> tuple[Playlist, dict]:
    """Re-run a saved playlist's recipe, keeping what still fits first; saves it and returns it with what changed
    ({"kept", "added", "removed"} track ids)."""
    lib = Library.coerce(library)
    old = load_playlist(lib, name)
    new = build(lib, old.recipe, old.name, encoder=encoder, device=device, keep=old.track_ids)
    new.created, new.refreshed = old.created, time.time()
    save_playlist(lib, new)
    before, after = set(old.track_ids), set(new.track_ids)
    return new, {"kept": [t for t in new.track_ids if t in before], "added": [t for t in new.track_ids
                                                                            if t not in before],
                 "removed": [t for t in old.track_ids if t not in after]}


def build(library: Library | str | Path, recipe: dict, name: str, encoder: AudioTextEncoder | None = None,
          device: str = "auto", keep: list[str] = ()) -> Playlist:
    """A playlist from a stored recipe (what `refresh` runs), keeping `keep` first where they still fit."""
    rules = PlaylistRules.from_dict(recipe.get("rules", {}))
    kind = recipe.get("kind")
    common = dict(rules=rules, name=name, encoder=encoder, device=device)
    if kind == "radio":
        return radio(library, recipe["seeds"], recipe.get("text"), recipe.get("n"), recipe.get("minutes"),
                     keep=keep, **common)
    if kind == "query":
        return query_playlist(library, recipe["text"], recipe.get("n"), recipe.get("minutes"), keep=keep, **common)
    if kind == "path":
        return path_between(library, recipe["start"], recipe["end"], recipe.get("n") or 12, **common)
    if kind == "cluster":
        return cluster_members(library, recipe, name, keep=keep)
    raise LibraryError(f"playlist {name!r} has an unknown kind {kind!r}")
