"""The tunelens plugin for beets: search a beets library by description, and copy what tunelens measured into it.

    # config.yaml
    plugins: tunelens
    tunelens:
        library: ~/tunelens-library     # a library `tunelens index` built over (some of) the same files

    beet tunelens slow sad piano        # the beets items tunelens finds for a description, best first
    beet tunelens -k 50 Bach on the organ
    beet tunelens-sync                  # bpm, initial_key and tunelens_* fields for every item tunelens indexed

`tunelens-sync` writes beets' own `bpm` and `initial_key` fields (as tunelens measured them) and flexible attributes
`tunelens_id`, `tunelens_caption`, `tunelens_instruments`, `tunelens_mood`, `tunelens_loudness` into the beets
database (not into the files: `beet write` does that, as for any field). Items are matched by path. Query the fields
as usual: `beet ls tunelens_instruments:organ bpm:60..80`. Measurements come from `tunelens index`; captions from
`tunelens caption`, when it has run.
"""
from __future__ import annotations

import os
from pathlib import Path

from beets import ui
from beets.plugins import BeetsPlugin

INSTRUMENT_PREFIX = "instrument: "


def initial_key(key: str | None) -> str | None:
    """beets' initial_key spelling of a tunelens key ("F# minor" → "F#m", "Bb major" → "Bb")."""
    if not key:
        return None
    tonic, mode = key.split()
    return tonic + ("m" if mode == "minor" else "")


def sync_fields(row: dict, tags: dict[str, float], min_probability: float = 0.5) -> dict:
    """The fields `tunelens-sync` writes for one track of the tunelens library (a row of its track table)."""
    from tunelens.caption.evidence import MOOD_TAGS

    instruments = sorted({t.removeprefix(INSTRUMENT_PREFIX) for t, p in tags.items()
                          if t.startswith(INSTRUMENT_PREFIX) and p >= min_probability})
    moods = sorted({MOOD_TAGS[t] for t, p in tags.items() if t in MOOD_TAGS and p >= min_probability})
    fields = {"tunelens_id": row["track_id"]}
    if row.get("tempo_bpm"):
        fields["bpm"] = int(round(row["tempo_bpm"]))
    if row.get("key"):
        fields["initial_key"] = initial_key(row["key"])
    if row.get("loudness_lufs") is not None:
        fields["tunelens_loudness"] = round(float(row["loudness_lufs"]), 1)
    if row.get("caption"):
        fields["tunelens_caption"] = row["caption"]
    if instruments:
        fields["tunelens_instruments"] = ", ".join(instruments)
    if moods:
        fields["tunelens_mood"] = ", ".join(moods)
    return fields


class TunelensPlugin(BeetsPlugin):
    def __init__(self, name: str = "tunelens"):
        super().__init__(name)
        self.config.add({"library": "", "k": 20, "min_probability": 0.5})

    def _library(self):
        import tunelens

        path = self.config["library"].as_str()
        if not path:
            raise ui.UserError("set tunelens.library in the beets config to a library `tunelens index` built")
        try:
            return tunelens.Library.open(os.path.expanduser(path))
        except tunelens.LibraryError as e:
            raise ui.UserError(str(e)) from None

    def commands(self):
        search = ui.Subcommand("tunelens", help="find items by a description, as tunelens search does")
        search.parser.add_option("-k", type="int", default=None, help="how many tunelens results to look at")
        search.func = self._search
        sync = ui.Subcommand("tunelens-sync", help="write tunelens' tempo, key, instruments, mood and caption "
                                                   "into the beets database")
        sync.func = self._sync
        return [search, sync]

    def _search(self, lib, opts, args):
        import tunelens

        text = " ".join(args).strip()
        if not text:
            raise ui.UserError("describe the music, e.g. beet tunelens slow sad piano")
        hits = tunelens.search(self._library(), text, opts.k or self.config["k"].get(int))
        if hits.query is not None:
            ui.print_(f"understood as: {hits.query.understood()}")
        for item in items_for(lib, [h.path for h in hits]):
            ui.print_(format(item))
        if not hits and hits.empty_reason:
            ui.print_(f"no results: {hits.empty_reason}")

    def _sync(self, lib, opts, args):
        from tunelens.index.core.tracks import tag_probs, track_table

        table = track_table(self._library())
        by_path = {os.path.normpath(r["path"]): r for r in table.iter_rows(named=True)}
        threshold = self.config["min_probability"].as_number()
        changed = 0
        with lib.transaction():
            for item in lib.items():
                row = by_path.get(os.path.normpath(os.fsdecode(item.path)))
                if row is None:
                    continue
                for k, v in sync_fields(row, tag_probs(row.get("tags")), threshold).items():
                    item[k] = v
                item.store()
                changed += 1
        self._log.info("tunelens: {} of {} items updated", changed, len(lib.items()))
        ui.print_(f"tunelens: {changed} items updated from {len(by_path)} indexed tracks")


def items_for(lib, paths: list[str]) -> list:
    """The beets items at `paths`, in that order (paths beets does not hold are skipped)."""
    out = []
    for p in paths:
        item = lib.items(f"path:{Path(p)}").get()
        if item is not None:
            out.append(item)
    return out
