"""The rules a playlist keeps, and the per-track facts they are judged on.

Listeners' complaints about the peers, each a rule here, on by default: the seed comes back in its own radio
(`skip_seeds`, which also skips the seeds' duplicates), the same song repeats from another album or as another file
(`one_per_duplicate`, `no_repeat_title`), one artist or one album fills the list (`max_per_artist`,
`max_per_album`), broken files play (`skip_flagged`). Two more are off by default, for mixing: neighbouring keys on
the circle of fifths (`key_continuity`) and tempo steps within a ratio, half and double time allowed
(`tempo_continuity`). A measurement a track lacks never breaks a continuity rule: it is not judged.
"""
from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, fields

import numpy as np

from tunelens.embed.descriptors import PITCH_CLASSES
from tunelens.index.core.library import Library

KEY_MIN_CONFIDENCE = 0.5  # a key read less surely than this is not judged by key continuity
TEMPO_MIN_CONFIDENCE = 0.3  # likewise for tempo


@dataclass(frozen=True)
class PlaylistRules:
    """What a playlist never does. `max_per_*`: 0 is automatic, None is no limit. Automatic: at least 2, a fifth of
    the playlist, or the artist's (album's) share of the library, whichever is most: an artist never fills a list
    beyond what the library holds of them, and a library that is mostly one composer can still make a radio."""

    skip_seeds: bool = True  # never the seeds, nor a duplicate of one
    one_per_duplicate: bool = True  # one recording per duplicate cluster (and per identical audio)
    no_repeat_title: bool = True  # no same title by the same artist from another album
    max_per_artist: int | None = 0
    max_per_album: int | None = 0
    skip_flagged: bool = True  # quality-flagged tracks (silent, clipped, fake lossless ...) left out
    key_continuity: bool = False  # each key the same as, a fifth from, or the relative of the one before
    tempo_continuity: float | None = None  # e.g. 0.08: each tempo within 8% of the one before (or of its half/double)

    def cap(self, limit: int | None, n: int, share: float = 0.0) -> int | None:
        """The most tracks of one artist (album) in a playlist of `n`, for one that is `share` of the library."""
        if limit is None:
            return None
        return limit if limit > 0 else max(2, math.ceil(n / 5), math.ceil(n * share - 1e-9))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> PlaylistRules:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def _norm(text: str | None) -> str | None:
    """A name compared loosely: case, accents of spacing, "The", bracketed and " - remastered"-style suffixes."""
    if not text or not str(text).strip():
        return None
    t = str(text).lower()
    t = re.sub(r"[\(\[][^\)\]]*[\)\]]", " ", t)  # "(Remastered 2011)", "[Live]"
    t = re.sub(r"\s+-\s+.*\b(remaster\w*|live|version|mix|edit|mono|stereo|take)\b.*$", " ", t)
    t = re.sub(r"^the\s+", "", t.strip())
    t = re.sub(r"[^\w]+", " ", t).strip()
    return t or None


def key_index(key: str | None) -> int:
    """0-11 major, 12-23 minor ("A minor" → 21); -1 when unknown."""
    if not key:
        return -1
    name, _, mode = str(key).partition(" ")
    if name not in PITCH_CLASSES or mode not in ("major", "minor"):
        return -1
    return PITCH_CLASSES.index(name) + (12 if mode == "minor" else 0)


def keys_compatible(a: int, b: int) -> bool:
    """The same key, its relative (same key signature) or a fifth away in the same mode: the neighbours on the
    circle of fifths (the Camelot wheel's ±1 and inner/outer ring). Unknown keys (-1) are not judged."""
    if a < 0 or b < 0:
        return True

    def signature(k: int) -> int:  # position on the circle of fifths of the key's relative major
        return (((k % 12) + (3 if k >= 12 else 0)) * 7) % 12

    d = (signature(a) - signature(b)) % 12
    d = min(d, 12 - d)
    return d == 0 or (d == 1 and (a >= 12) == (b >= 12))


def tempos_compatible(a: float, b: float, tolerance: float) -> bool:
    """Within `tolerance` (relative) of each other, or of each other's half or double time. NaN is not judged."""
    if not (np.isfinite(a) and np.isfinite(b)) or a <= 0 or b <= 0:
        return True
    return min(abs(math.log(b / (a * f))) for f in (0.5, 1.0, 2.0)) <= math.log1p(tolerance)


@dataclass
class TrackFacts:
    """What the rules and the ordering read, per track row (the order of the library's track vectors)."""

    ids: list[str]
    paths: list[str]
    rel_paths: list[str]
    titles: list[str | None]
    artists: list[str | None]
    albums: list[str | None]
    duration: np.ndarray
    tempo: np.ndarray  # BPM, NaN where unmeasured or unsure
    key: np.ndarray  # key_index, -1 where unmeasured or unsure
    flagged: np.ndarray  # bool: any quality flag
    recording: np.ndarray  # same number: the same recording (duplicate cluster or identical audio)
    artist_key: list[str | None]  # normalised, for the per-artist limit
    album_key: list[tuple | None]  # (normalised album, folder): two albums of one name are two albums
    title_key: list[tuple | None]  # (normalised artist, normalised title)
    row_of: dict[str, int]
    share: dict  # artist key or album key → its share of the library's tracks

    @classmethod
    def build(cls, lib: Library) -> TrackFacts:
        from tunelens.index.curation.dupes import load_duplicates
        from tunelens.index.search.hybrid import facet_table

        t = facet_table(lib).table
        n = len(t)
        ids = t["track_id"].to_list()
        tempo = t["tempo_bpm"].cast(float).fill_null(float("nan")).to_numpy().copy()
        tempo[t["tempo_confidence"].fill_null(0.0).to_numpy() < TEMPO_MIN_CONFIDENCE] = np.nan
        keys = np.array([key_index(k) for k in t["key"].to_list()], int)
        keys[t["key_confidence"].fill_null(0.0).to_numpy() < KEY_MIN_CONFIDENCE] = -1
        flags = t["quality_flags"].to_list()
        # one number per recording: identical audio first, then `tunelens dupes` clusters join their members
        by_hash: dict[str, int] = {}
        recording = np.array([by_hash.setdefault(h, i) if h else i
                              for i, h in enumerate(t["audio_hash"].to_list())], np.int64)
        dupes = load_duplicates(lib)
        if dupes is not None and len(dupes):
            row_of = {tid: i for i, tid in enumerate(ids)}
            for _, members in dupes.group_by("cluster", maintain_order=True):
                rows = [row_of[x] for x in members["track_id"].to_list() if x in row_of]
                if rows:
                    recording[np.isin(recording, recording[rows])] = recording[rows].min()
        artists, albums, titles = t["artist"].to_list(), t["album"].to_list(), t["title"].to_list()
        rel = t["rel_path"].to_list()
        artist_key = [_norm(a) for a in artists]
        album_key = [(_norm(al), r.rsplit("/", 1)[0] if "/" in r else "") if _norm(al) else None
                     for al, r in zip(albums, rel)]
        title_key = [(a, _norm(ti)) if a and _norm(ti) else None for a, ti in zip(artist_key, titles)]
        return cls(ids=ids, paths=t["path"].to_list(), rel_paths=rel, titles=titles, artists=artists, albums=albums,
                   duration=t["duration"].cast(float).fill_null(0.0).to_numpy(), tempo=tempo, key=keys,
                   flagged=np.array([bool(f) for f in flags], bool) if n else np.zeros(0, bool),
                   recording=recording, artist_key=artist_key, album_key=album_key, title_key=title_key,
                   row_of={tid: i for i, tid in enumerate(ids)}, share=_shares(artist_key + album_key, n))


def _shares(keys: list, n: int) -> dict:
    counts: dict = {}
    for k in keys:
        if k:
            counts[k] = counts.get(k, 0) + 1
    return {k: c / max(n, 1) for k, c in counts.items()}


def track_facts(lib: Library) -> TrackFacts:
    """The library's track facts, built once per state of its catalog, measurements and duplicates."""
    return lib.derived("track_facts", ("catalog.parquet", "measures.parquet", "captions.parquet", "duplicates.parquet"),
                       lambda: TrackFacts.build(lib))


class RuleState:
    """The rules applied while a playlist is built: `admits(row)` says why a track may not come next (None: it
    may), `add(row)` takes it."""

    def __init__(self, facts: TrackFacts, rules: PlaylistRules, n: int, seeds: list[int] = ()):
        self.f, self.rules = facts, rules
        self.n = n
        self.rows: list[int] = []
        self.recordings: set[int] = set()
        self.titles: set[tuple] = set()
        self.artists: dict[str, int] = {}
        self.albums: dict[tuple, int] = {}
        self.seeds = set(seeds)
        if rules.skip_seeds:
            self.recordings |= {int(facts.recording[s]) for s in seeds}
            self.titles |= {facts.title_key[s] for s in seeds if facts.title_key[s]}

    def admits(self, row: int, after: int | None = None) -> str | None:
        """Why `row` may not be added (after the track `after`, default the last one), or None."""
        f, r = self.f, self.rules
        if row in self.rows:
            return "already in the playlist"
        if r.skip_seeds and row in self.seeds:
            return "a seed"
        if r.skip_flagged and f.flagged[row]:
            return "quality-flagged"
        if (r.one_per_duplicate or r.skip_seeds) and int(f.recording[row]) in self.recordings:
            return "the same recording as one already chosen (or a seed)"
        if r.no_repeat_title and f.title_key[row] and f.title_key[row] in self.titles:
            return "the same title by the same artist"
        a = f.artist_key[row]
        cap = r.cap(r.max_per_artist, self.n, f.share.get(a, 0.0)) if a else None
        if cap is not None and self.artists.get(a, 0) >= cap:
            return f"already {cap} by this artist"
        al = f.album_key[row]
        cap = r.cap(r.max_per_album, self.n, f.share.get(al, 0.0)) if al else None
        if cap is not None and self.albums.get(al, 0) >= cap:
            return f"already {cap} from this album"
        prev = self.rows[-1] if after is None and self.rows else after
        return self.continuity(prev, row) if prev is not None else None

    def continuity(self, prev: int, row: int) -> str | None:
        """Why `row` may not follow `prev` under the continuity rules, or None."""
        f, r = self.f, self.rules
        if r.key_continuity and not keys_compatible(int(f.key[prev]), int(f.key[row])):
            return "its key does not follow the one before"
        if r.tempo_continuity and not tempos_compatible(f.tempo[prev], f.tempo[row], r.tempo_continuity):
            return "its tempo does not follow the one before"
        return None

    def add(self, row: int) -> None:
        self.rows.append(row)
        self.reserve(row)

    def reserve(self, row: int) -> None:
        """Count `row` against the limits without placing it (a path's end, placed last)."""
        f = self.f
        if self.rules.one_per_duplicate:
            self.recordings.add(int(f.recording[row]))
        if f.title_key[row]:
            self.titles.add(f.title_key[row])
        if f.artist_key[row]:
            self.artists[f.artist_key[row]] = self.artists.get(f.artist_key[row], 0) + 1
        if f.album_key[row]:
            self.albums[f.album_key[row]] = self.albums.get(f.album_key[row], 0) + 1


def violations(rows: list[int], facts: TrackFacts, rules: PlaylistRules, seeds: list[int] = (),
               n: int | None = None) -> list[str]:
    """Every rule a finished playlist breaks, counted afresh over the whole list (what `eval_playlists.py`
    checks; independent of the order `RuleState` saw tracks in)."""
    f, out = facts, []
    n = n or len(rows)
    if len(set(rows)) != len(rows):
        out.append("a track twice")
    if rules.skip_seeds:
        seed_recs = {int(f.recording[s]) for s in seeds}
        out += [f"seed or its duplicate: {f.rel_paths[r]}" for r in rows if r in seeds or int(f.recording[r])
                in seed_recs]
    if rules.skip_flagged:
        out += [f"flagged: {f.rel_paths[r]}" for r in rows if f.flagged[r]]
    if rules.one_per_duplicate:
        recs = [int(f.recording[r]) for r in rows]
        out += [f"a recording twice ({recs.count(x)}x)" for x in set(recs) if recs.count(x) > 1]
    if rules.no_repeat_title:
        ts = [f.title_key[r] for r in rows if f.title_key[r]]
        out += [f"title twice: {t}" for t in set(ts) if ts.count(t) > 1]
    for limit, keys, what in ((rules.max_per_artist, f.artist_key, "artist"), (rules.max_per_album, f.album_key,
                                                                                "album")):
        ks = [keys[r] for r in rows if keys[r]]
        for k in set(ks):
            cap = rules.cap(limit, n, f.share.get(k, 0.0))
            if cap is not None and ks.count(k) > cap:
                out.append(f"{what} {k} {ks.count(k)}x > {cap}")
    for a, b in zip(rows, rows[1:]):
        if rules.key_continuity and not keys_compatible(int(f.key[a]), int(f.key[b])):
            out.append(f"key jump {f.key[a]} -> {f.key[b]}")
        if rules.tempo_continuity and not tempos_compatible(f.tempo[a], f.tempo[b], rules.tempo_continuity):
            out.append(f"tempo jump {f.tempo[a]:.0f} -> {f.tempo[b]:.0f}")
    return out
