"""Building playlists: radio from seeds, a path between two tracks, a description ordered for listening, and the
library sorted into named groups.

Every kind ends in the same two steps. Candidates come in order of preference (the hybrid ranking of
`index.search.hybrid`, so "calmer, no vocals" steers a radio as it steers a search), and `RuleState` takes them
while the rules allow. Then the tracks are put in a listening order: a chain that starts from the best one and
always goes to the nearest remaining track (cosine of the track vectors, plus a tempo and key term where both are
measured), improved by reversing stretches while that shortens it (2-opt). A path instead steps along the line
from one track's vector to the other's, one target per step, so its order is its progress.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tunelens.embed.base import AudioTextEncoder
from tunelens.index.core.library import Library
from tunelens.index.playlists.rules import PlaylistRules, RuleState, TrackFacts, keys_compatible, track_facts

KINDS = ("radio", "path", "query", "cluster")
POOL = 20  # candidates looked at per track wanted (rules and continuity reject some)
TEMPO_WEIGHT = 0.15  # ordering cost per octave of tempo step, in units of (1 - cosine)
KEY_WEIGHT = 0.05  # ordering cost of a key that is not a neighbour of the one before
PROGRESS_WEIGHT = 0.5  # a path step's penalty per unit of distance from its place along the way (0 at FROM, 1 at TO)
SMOOTH_WEIGHT = 4.0  # a path's reward per unit of cosine between neighbouring tracks, against nearness to its point


@dataclass
class PlaylistTrack:
    track_id: str
    path: str
    rel_path: str
    title: str | None
    artist: str | None
    album: str | None
    duration: float
    tempo_bpm: float | None
    key: str | None

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class Playlist:
    """A playlist and the recipe that made it (what `refresh` re-runs)."""

    name: str
    kind: str  # radio | path | query | cluster
    recipe: dict  # seeds, text, from/to, n, minutes, rules, centroid: everything `refresh` needs
    tracks: list[PlaylistTrack] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    created: float = field(default_factory=time.time)
    refreshed: float | None = None

    @property
    def duration(self) -> float:
        return float(sum(t.duration for t in self.tracks))

    @property
    def track_ids(self) -> list[str]:
        return [t.track_id for t in self.tracks]

    def to_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "recipe": self.recipe, "notes": self.notes,
                "created": self.created, "refreshed": self.refreshed, "duration": round(self.duration, 1),
                "tracks": [t.to_dict() for t in self.tracks]}

    @classmethod
    def from_dict(cls, d: dict) -> Playlist:
        return cls(name=d["name"], kind=d["kind"], recipe=d["recipe"], notes=list(d.get("notes", [])),
                   created=d.get("created", 0.0), refreshed=d.get("refreshed"),
                   tracks=[PlaylistTrack(**t) for t in d.get("tracks", [])])


def playlist_tracks(facts: TrackFacts, rows: list[int]) -> list[PlaylistTrack]:
    from tunelens.embed.descriptors import PITCH_CLASSES

    def key(k: int) -> str | None:
        return None if k < 0 else f"{PITCH_CLASSES[k % 12]} {'minor' if k >= 12 else 'major'}"

    return [PlaylistTrack(track_id=facts.ids[r], path=facts.paths[r], rel_path=facts.rel_paths[r],
                          title=facts.titles[r], artist=facts.artists[r], album=facts.albums[r],
                          duration=float(facts.duration[r]),
                          tempo_bpm=None if not np.isfinite(facts.tempo[r]) else round(float(facts.tempo[r]), 1),
                          key=key(int(facts.key[r]))) for r in rows]


def planned_length(facts: TrackFacts, n: int | None, minutes: float | None) -> int:
    """How many tracks a playlist aims at: `n`, or as many as `minutes` holds at the library's median duration."""
    if minutes:
        med = float(np.median(facts.duration)) if len(facts.duration) else 180.0
        return max(1, math.ceil(minutes * 60 / max(med, 1.0)))
    return max(1, int(n or 30))


def _full(state: RuleState, facts: TrackFacts, n: int, minutes: float | None) -> bool:
    return _full_rows(state.rows, facts, n, minutes)


def take(candidates, facts: TrackFacts, rules: PlaylistRules, n: int, minutes: float | None,
         seeds: list[int] = (), first: list[int] = ()) -> list[int]:
    """Tracks from `candidates` (rows, best first) while the rules allow, until `n` tracks or `minutes`; `first`
    (the tracks a refreshed playlist had, still among the candidates) are offered before the rest. Continuity rules
    are left to the ordering (they judge neighbours, not membership)."""
    loose = PlaylistRules(**{**rules.to_dict(), "key_continuity": False, "tempo_continuity": None})
    state = RuleState(facts, loose, n, seeds)
    for row in [*first, *candidates]:
        if _full(state, facts, n, minutes):
            break
        if state.admits(int(row)) is None:
            state.add(int(row))
    return state.rows


def step_costs(facts: TrackFacts, vecs: np.ndarray, rows: list[int]) -> np.ndarray:
    """[len(rows)]² cost of going from one track to another: 1 - cosine of their vectors, plus TEMPO_WEIGHT per
    octave of tempo change and KEY_WEIGHT for a key that is not a neighbour (terms only where both are measured)."""
    sub = np.asarray(vecs[rows], np.float32)
    cost = 1.0 - (sub @ sub.T).astype(np.float64)
    lt = np.log2(np.where(facts.tempo[rows] > 0, facts.tempo[rows], np.nan))
    cost += TEMPO_WEIGHT * np.nan_to_num(np.abs(lt[:, None] - lt[None, :]), nan=0.0)
    keys = facts.key[rows]
    cost += KEY_WEIGHT * np.array([[not keys_compatible(int(x), int(y)) for y in keys] for x in keys], float)
    np.fill_diagonal(cost, 0.0)
    return cost


def listening_order(rows: list[int], facts: TrackFacts, vecs: np.ndarray, rules: PlaylistRules,
                    start: int | None = None) -> tuple[list[int], list[int]]:
    """`rows` as a chain of small steps from `start` (default the first row), then 2-opt; with continuity rules
    each step must keep them. Returns (ordered, left out: tracks no step could reach under those rules)."""
    if len(rows) <= 2:
        return list(rows), []
    rows = list(dict.fromkeys(rows))
    cost = step_costs(facts, vecs, rows)
    ok = np.ones_like(cost, bool)
    if rules.key_continuity or rules.tempo_continuity:
        state = RuleState(facts, rules, len(rows))
        for i in range(len(rows)):
            for j in range(len(rows)):
                ok[i, j] = i == j or state.continuity(rows[i], rows[j]) is None
    first = rows.index(start) if start in rows else 0
    order, left = [first], set(range(len(rows))) - {first}
    while left:
        cur = order[-1]
        nxt = [j for j in left if ok[cur, j]]
        if not nxt:
            break
        j = min(nxt, key=lambda j: cost[cur, j])
        order.append(j)
        left.discard(j)
    improved = len(order) <= 200  # 2-opt is quadratic per pass: long playlists keep the greedy chain
    while improved:  # 2-opt on the open chain: reverse order[i:j+1] when that shortens it and keeps the rules
        improved = False
        for i in range(1, len(order) - 1):
            for j in range(i + 1, len(order)):
                a, b = order[i - 1], order[i]
                c, d = order[j], order[j + 1] if j + 1 < len(order) else None
                before = cost[a, b] + (cost[c, d] if d is not None else 0.0)
                after = cost[a, c] + (cost[b, d] if d is not None else 0.0)
                if after < before - 1e-9:
                    seg = order[i:j + 1][::-1]
                    chain = order[:i] + seg + order[j + 1:]
                    if all(ok[x, y] for x, y in zip(chain, chain[1:])):
                        order, improved = chain, True
    return [rows[i] for i in order], [rows[i] for i in sorted(left)]


def finish_playlist(lib: Library, facts: TrackFacts, name: str, kind: str, recipe: dict, rows: list[int],
            candidates: list[int], rules: PlaylistRules, n: int, minutes: float | None, seeds: list[int],
            first: list[int], start: int | None, notes: list[str]) -> Playlist:
    """Order `rows` for listening; tracks the continuity rules cannot place are replaced from further candidates."""
    vecs = lib.track_vectors()
    dropped: set[int] = set()
    for _ in range(4):
        ordered, left = listening_order(rows, facts, vecs, rules, start)
        if not left:
            break
        dropped |= set(left)
        rows = take([c for c in candidates if c not in dropped], facts, rules, n, minutes, seeds,
                    [r for r in ordered])
    if left:
        notes.append(f"{len(left)} track{'s' if len(left) > 1 else ''} left out: no neighbour in key or tempo")
    if minutes and float(facts.duration[ordered].sum()) < minutes * 60 * 0.9:
        notes.append(f"only {facts.duration[ordered].sum() / 60:.0f} of {minutes:g} minutes: the rules and the "
                     f"library allow no more")
    elif not minutes and len(ordered) < n:
        notes.append(f"only {len(ordered)} of {n} tracks: the rules and the library allow no more")
    return Playlist(name=name, kind=kind, recipe=recipe, tracks=playlist_tracks(facts, ordered), notes=notes)


KEEP_DEPTH = 3  # a refreshed playlist keeps a track while it ranks among KEEP_DEPTH × its length of candidates


def _still_fitting(keep: list[str], candidates: list[int], want: int, facts: TrackFacts) -> list[int]:
    """The rows of `keep` (a refreshed playlist's tracks) still ranked among the best KEEP_DEPTH × `want`."""
    still = set(candidates[:KEEP_DEPTH * want])
    return [facts.row_of[t] for t in keep if facts.row_of.get(t) in still]


def _deepening(ranked, facts: TrackFacts, rules: PlaylistRules, want: int, minutes: float | None,
               seeds: list[int], keep: list[str]) -> tuple[list[int], list[int], list[int]]:
    """(candidates, kept, chosen): the best POOL × `want` candidates (at least 200) from `ranked(depth)`, eight
    times deeper while the rules leave the playlist short (the nearest tracks all by one artist, say) and the
    library has more."""
    n_all = len(facts.ids)
    depth = min(n_all, max(POOL * want, 200))
    while True:
        candidates = ranked(depth)
        first = _still_fitting(keep, candidates, want, facts)
        rows = take(candidates, facts, rules, want, minutes, seeds, first)
        if _full_rows(rows, facts, want, minutes) or depth >= n_all:
            return candidates, first, rows
        depth = min(n_all, depth * 8)


def _full_rows(rows: list[int], facts: TrackFacts, want: int, minutes: float | None) -> bool:
    return float(facts.duration[rows].sum()) >= minutes * 60 if minutes else len(rows) >= want


def _recipe(kind: str, rules: PlaylistRules, n: int | None, minutes: float | None, **extra) -> dict:
    return {"kind": kind, "n": n, "minutes": minutes, "rules": rules.to_dict(), **extra}


def _seed_rows(lib: Library, facts: TrackFacts, seeds: list[str], encoder, device) -> tuple[np.ndarray, list[int]]:
    from tunelens.index.search.nearest import reference_vector

    if not seeds:
        raise ValueError("give at least one seed: a track id, a path in the library or an audio file")
    vecs, rows = [], []
    for s in seeds:
        v, track = reference_vector(lib, s, encoder, device)
        vecs.append(np.asarray(v, np.float32) / max(float(np.linalg.norm(v)), 1e-12))
        if track is not None:
            rows.append(facts.row_of[track["track_id"]])
    return np.stack(vecs), rows


def radio(library: Library | str | Path, seeds: list[str], text: str | None = None, n: int | None = 30,
          minutes: float | None = None, rules: PlaylistRules = PlaylistRules(), name: str | None = None,
          encoder: AudioTextEncoder | None = None, device: str = "auto", keep: list[str] = ()) -> Playlist:
    """Tracks like the seeds (ids, paths in the library, or audio files), optionally steered by `text` ("calmer,
    no vocals"), `n` tracks or `minutes` long, in listening order starting near the first seed. Several seeds take
    turns: each contributes its own nearest tracks, so two different seeds give a mix, not their average."""
    from tunelens.index.search.hybrid import parse_for, rank
    from tunelens.index.search.query import ParsedQuery

    lib = Library.coerce(library)
    facts = track_facts(lib)
    want = planned_length(facts, n, minutes)
    seed_vecs, seed_rows = _seed_rows(lib, facts, [str(s) for s in seeds], encoder, device)
    notes: list[str] = []
    q = ParsedQuery(text="")
    if text and text.strip():
        encoder = encoder or lib.encoder(device)
        q = parse_for(lib, text, encoder)
        notes += q.notes
    def ranked(depth: int) -> list[int]:
        rankings = []
        for v in seed_vecs:
            r = rank(lib, encoder, q, base=v, exclude={facts.ids[s] for s in seed_rows}, top=depth)
            rankings.append([int(x) for x in r.order])
            notes.extend(x for x in r.notes if x not in notes)
        return list(dict.fromkeys(x for group in zip(*rankings) for x in group))  # the seeds take turns

    candidates, first, rows = _deepening(ranked, facts, rules, want, minutes, seed_rows, keep)
    start = min(rows, key=lambda r: -float(np.asarray(lib.track_vectors()[r]) @ seed_vecs[0])) if rows else None
    recipe = _recipe("radio", rules, n if not minutes else None, minutes, seeds=[str(s) for s in seeds],
                     text=text or None)
    return finish_playlist(lib, facts, name or _name("radio", [facts.titles[r] or facts.rel_paths[r] for r in seed_rows]
                                              or [Path(str(s)).stem for s in seeds]), "radio", recipe, rows,
                   candidates, rules, want, minutes, seed_rows, first, start, notes)


def query_playlist(library: Library | str | Path, text: str, n: int | None = 30, minutes: float | None = None,
               rules: PlaylistRules = PlaylistRules(), name: str | None = None,
               encoder: AudioTextEncoder | None = None, device: str = "auto", keep: list[str] = ()) -> Playlist:
    """The tracks that best match a description (read like a search: "rainy day jazz", "slow piano, no vocals"),
    ordered for listening (small steps from one to the next), not by score."""
    from tunelens.index.search.hybrid import parse_for, rank

    lib = Library.coerce(library)
    facts = track_facts(lib)
    want = planned_length(facts, n, minutes)
    encoder = encoder or lib.encoder(device)
    q = parse_for(lib, text, encoder)
    notes = list(q.notes)

    def ranked(depth: int) -> list[int]:
        r = rank(lib, encoder, q, top=depth)
        notes.extend(x for x in r.notes + ([r.empty_reason] if r.empty_reason else []) if x not in notes)
        return [int(x) for x in r.order]

    candidates, first, rows = _deepening(ranked, facts, rules, want, minutes, [], keep)
    recipe = _recipe("query", rules, n if not minutes else None, minutes, text=text)
    return finish_playlist(lib, facts, name or _name("query", [text]), "query", recipe, rows, candidates, rules, want,
                   minutes, [], first, rows[0] if rows else None, notes)


def path_between(library: Library | str | Path, start: str, end: str, n: int = 12,
                 rules: PlaylistRules = PlaylistRules(), name: str | None = None,
                 encoder: AudioTextEncoder | None = None, device: str = "auto") -> Playlist:
    """`n` tracks from `start` to `end` (both included when they are library tracks) that move in even steps: step
    i is the track nearest the point i/(n-1) of the way along the arc between their vectors (and, where measured,
    near the tempo that far between theirs), not yet used and allowed by the rules."""
    lib = Library.coerce(library)
    facts = track_facts(lib)
    if n < 3:
        raise ValueError("a path needs at least 3 tracks (the two ends and one step)")
    (a, b), _ = _seed_rows(lib, facts, [str(start), str(end)], encoder, device)
    vecs = lib.track_vectors()
    V = np.asarray(vecs, np.float32)
    from_row = facts.row_of.get(_track_id(lib, start))
    to_row = facts.row_of.get(_track_id(lib, end))
    if from_row is not None and from_row == to_row:
        raise ValueError("the path's two ends are the same track")
    omega = math.acos(float(np.clip(a @ b, -1.0, 1.0)))
    steps = n - 2 + (from_row is None) + (to_row is None)  # ends outside the library are not playlist tracks
    fractions = np.linspace(0, 1, n)[(0 if from_row is None else 1):(n if to_row is None else n - 1)][:steps]
    targets = np.stack([_slerp(a, b, t, omega) for t in fractions])
    direction = (b - a) / max(float(np.linalg.norm(b - a)), 1e-12)
    proj = (V @ direction - float(a @ direction)) / max(float((b - a) @ direction), 1e-12)
    sims = targets @ V.T  # [steps, tracks]
    ta = facts.tempo[from_row] if from_row is not None else np.nan
    tb = facts.tempo[to_row] if to_row is not None else np.nan
    no_cap = PlaylistRules(**{**rules.to_dict(), "skip_seeds": False})  # the ends are the path's own tracks
    state = RuleState(facts, no_cap, n)
    if from_row is not None:
        state.add(from_row)
    if to_row is not None:
        state.reserve(to_row)  # counted against the limits now, placed last
    reserved = {to_row} if to_row is not None else set()
    notes: list[str] = []
    emission = sims - PROGRESS_WEIGHT * np.abs(proj[None, :] - fractions[:, None])  # near the point, that far along
    if np.isfinite(ta) and np.isfinite(tb) and ta > 0 and tb > 0:
        want_bpm = ta * (tb / ta) ** fractions
        emission -= TEMPO_WEIGHT * np.nan_to_num(np.abs(np.log2(facts.tempo[None, :] / want_bpm[:, None])), nan=0.0)
    eligible = np.ones(len(facts.ids), bool)
    if rules.skip_flagged:
        eligible &= ~facts.flagged
    for r in (from_row, to_row):
        if r is not None:
            eligible &= facts.recording != facts.recording[r]
    proposal = _smoothest(emission, eligible, V, from_row, to_row)

    def greedy(i: int) -> int | None:
        """The best track for step i that the rules allow after the path so far (the whole library if need be)."""
        score = emission[i]
        depth = min(len(score), POOL * n)
        best = np.argpartition(-score, depth - 1)[:depth]
        for pool in (best[np.argsort(-score[best], kind="stable")], np.argsort(-score, kind="stable")[depth:]):
            for row in pool:  # the nearest candidates first; the rest of the library only if none fits
                if fits(i, int(row)):
                    return int(row)
        return None

    def fits(i: int, row: int) -> bool:
        return row not in reserved and state.admits(row) is None and (
            to_row is None or i < len(fractions) - 1 or state.continuity(row, to_row) is None)

    for i in range(len(fractions)):
        picked = proposal[i] if i < len(proposal) and fits(i, proposal[i]) else greedy(i)
        if picked is None:
            notes.append(f"no track fits step {i + 1} under the rules; the path skips it")
            continue
        state.add(picked)
    rows = state.rows
    first = 1 if from_row is not None else 0
    steps = rows[first:]
    # in order of progress along the way (the targets' order, except where two picks near one point came out of
    # order); under continuity rules only if the sorted order keeps them
    by_progress = sorted(steps, key=lambda r: proj[r])
    chain = rows[:first] + by_progress + ([to_row] if to_row is not None else [])
    if all(state.continuity(x, y) is None for x, y in zip(chain, chain[1:])):
        rows = rows[:first] + by_progress
    if to_row is not None:
        while len(rows) > first and state.continuity(rows[-1], to_row):  # a skipped last step: end where it joins
            rows = rows[:-1]
            notes.append("a step was dropped: the end track would not have followed it in key or tempo")
        if rows and state.continuity(rows[-1], to_row):
            raise ValueError(f"no path from {start} to {end} keeps key and tempo continuity: their keys or tempos "
                             "are too far apart for any track in the library to bridge; loosen the rules")
        rows = rows + [to_row]
    recipe = _recipe("path", rules, n, None, start=str(start), end=str(end))
    ends = [facts.titles[r] or facts.rel_paths[r] for r in (from_row, to_row) if r is not None]
    return Playlist(name=name or _name("path", ends), kind="path", recipe=recipe, tracks=playlist_tracks(facts, rows),
                    notes=notes)


def _smooth(cos: np.ndarray) -> np.ndarray:
    """The reward of a step between neighbours: minus SMOOTH_WEIGHT × (1 - cosine)², so one big jump costs more
    than several small ones."""
    return -SMOOTH_WEIGHT * (1.0 - cos) ** 2


def _smoothest(emission: np.ndarray, eligible: np.ndarray, V: np.ndarray, from_row: int | None,
               to_row: int | None, m: int = 12) -> list[int]:
    """The sequence of one track per step (each among its step's m best by `emission`) that maximises the sum of
    emissions plus SMOOTH_WEIGHT × the cosine between neighbours, ends included (Viterbi). Rules are checked after,
    by the caller; a track never follows itself."""
    steps = len(emission)
    if steps == 0 or not eligible.any():
        return []
    cand = []
    for i in range(steps):
        e = np.where(eligible, emission[i], -np.inf)
        k = min(m, int(eligible.sum()))
        top = np.argpartition(-e, k - 1)[:k]
        cand.append(top[np.argsort(-e[top], kind="stable")])
    score = emission[0, cand[0]] + (_smooth(V[cand[0]] @ V[from_row]) if from_row is not None else 0.0)
    back = []
    for i in range(1, steps):
        trans = _smooth(V[cand[i - 1]] @ V[cand[i]].T)  # [prev, cur]
        trans[cand[i - 1][:, None] == cand[i][None, :]] = -np.inf
        total = score[:, None] + trans
        back.append(np.argmax(total, axis=0))
        score = total.max(axis=0) + emission[i, cand[i]]
    if to_row is not None:
        score = score + _smooth(V[cand[-1]] @ V[to_row])
    j = int(np.argmax(score))
    seq = [int(cand[-1][j])]
    for i in range(steps - 1, 0, -1):
        j = int(back[i - 1][j])
        seq.append(int(cand[i - 1][j]))
    return seq[::-1]


def _track_id(lib: Library, ref: str) -> str | None:
    from tunelens.index.search.nearest import find_track

    t = find_track(lib, str(ref))
    return t["track_id"] if t is not None else None


def _slerp(a: np.ndarray, b: np.ndarray, t: float, omega: float) -> np.ndarray:
    if omega < 1e-6:
        return a
    v = (math.sin((1 - t) * omega) * a + math.sin(t * omega) * b) / math.sin(omega)
    return v / max(float(np.linalg.norm(v)), 1e-12)


def _name(kind: str, parts: list[str]) -> str:
    label = " + ".join(p for p in parts if p)[:60] or kind
    return f"{kind}: {label}"
