"""The library sorted into groups of tracks that sound alike, each named from what its tracks share.

k-means (FAISS, fixed seed) over the track vectors, on the unit sphere. With `k="auto"` the k of the best mean
silhouette (cosine distance, on at most 2,000 tracks) between √(n/2) and 24 (at most a quarter of the library): on
its own, silhouette preferred 2 groups of 125 on a 250-clip development corpus (purity 0.26; 0.72 at 12). A group is
named from its most distinctive predicted tags (the highest mean probability over the library's, among tags its
tracks hold at 0.3 or more on average) and from measurements most of its tracks share (slow or fast by the query
parser's tempo bands, minor or major when three in four agree): "choir, classical · slow, minor".
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from tunelens.index.core.library import Library
from tunelens.index.playlists.make import Playlist, finish_playlist, playlist_tracks, take
from tunelens.index.playlists.rules import PlaylistRules, TrackFacts, track_facts

# clusters are groups, not radios: no per-artist or per-album limit (a composer's group stays whole)
CLUSTER_RULES = PlaylistRules(max_per_artist=None, max_per_album=None)
MAX_AUTO_K = 24
SEED = 1234
ORDER_LIMIT = 300  # larger groups are ordered along their main axis instead of as a chain


def kmeans(x: np.ndarray, k: int, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """(centroids [k, d] unit, assignment [n]) of spherical k-means."""
    import faiss

    x = np.ascontiguousarray(x, np.float32)
    km = faiss.Kmeans(x.shape[1], k, niter=25, seed=seed, spherical=True, verbose=False, min_points_per_centroid=1)
    km.train(x)
    assign = np.argmax(x @ km.centroids.T, axis=1)
    return np.asarray(km.centroids, np.float32), assign


def silhouette(x: np.ndarray, labels: np.ndarray) -> float:
    """Mean silhouette under cosine distance (x unit rows)."""
    d = 1.0 - x @ x.T
    ks = np.unique(labels)
    if len(ks) < 2:
        return -1.0
    mean_to = np.stack([d[:, labels == k].mean(axis=1) for k in ks], axis=1)  # [n, k]
    own = np.searchsorted(ks, labels)
    counts = np.array([(labels == k).sum() for k in ks])
    a = mean_to[np.arange(len(x)), own] * counts[own] / np.maximum(counts[own] - 1, 1)  # without the point itself
    mean_to[np.arange(len(x)), own] = np.inf
    b = mean_to.min(axis=1)
    s = (b - a) / np.maximum(np.maximum(a, b), 1e-12)
    s[counts[own] == 1] = 0.0
    return float(s.mean())


def choose_k(x: np.ndarray, seed: int = SEED) -> int:
    n = len(x)
    hi = min(MAX_AUTO_K, n // 4)
    if hi < 2:
        return 1
    lo = min(hi, max(2, math.ceil(math.sqrt(n / 2))))  # the usual √(n/2): silhouette alone favours 2 big groups
    rng = np.random.default_rng(seed)
    sample = x if n <= 2000 else x[rng.choice(n, 2000, replace=False)]
    best, best_k = -2.0, lo
    for k in range(lo, hi + 1):
        cents, _ = kmeans(x, k, seed)
        s = silhouette(sample, np.argmax(sample @ cents.T, axis=1))
        if s > best + 1e-6:
            best, best_k = s, k
    return best_k


def _tag_matrix(lib: Library) -> tuple[list[str], np.ndarray]:
    from tunelens.index.core.tracks import tag_probs
    from tunelens.index.search.hybrid import facet_table

    probs = [tag_probs(t) for t in facet_table(lib).table["tags"].to_list()]
    names = sorted({k for p in probs for k in p})
    col = {k: i for i, k in enumerate(names)}
    m = np.zeros((len(probs), len(names)), np.float32)
    for i, p in enumerate(probs):
        for k, v in p.items():
            m[i, col[k]] = v
    return names, m


def cluster_name(members: np.ndarray, tags: tuple[list[str], np.ndarray], facts: TrackFacts) -> str:
    """"choir, classical · slow, minor": its distinctive tags, then what most of its tracks measure."""
    from tunelens.index.search.query import TEMPO_BANDS

    names, m = tags
    words: list[str] = []
    if len(names) and len(members):
        inside = m[members].mean(axis=0)
        lift = inside - m.mean(axis=0)
        for i in np.argsort(-lift):
            if inside[i] < 0.3 or lift[i] <= 0 or len(words) == 2:
                break
            w = names[i].split(": ", 1)[-1]
            if w not in words:
                words.append(w)
    facets: list[str] = []
    tempo = facts.tempo[members]
    tempo = tempo[np.isfinite(tempo)]
    if len(tempo) >= max(2, len(members) // 2):
        med = float(np.median(tempo))
        if med <= TEMPO_BANDS["slow"][1]:
            facets.append("slow")
        elif med >= TEMPO_BANDS["fast"][0]:
            facets.append("fast")
    keys = facts.key[members]
    keys = keys[keys >= 0]
    if len(keys) >= max(2, len(members) // 2):
        minor = float((keys >= 12).mean())
        facets += ["minor"] if minor >= 0.75 else ["major"] if minor <= 0.25 else []
    return " · ".join(x for x in (", ".join(words), ", ".join(facets)) if x) or "mixed"


def group_playlists(library: Library | str | Path, k: int | str = "auto", rules: PlaylistRules = CLUSTER_RULES,
             seed: int = SEED) -> list[Playlist]:
    """The library in k groups (or `k="auto"`), each a named playlist in listening order, largest first."""
    lib = Library.coerce(library)
    facts = track_facts(lib)
    x = np.asarray(lib.track_vectors()[:len(facts.ids)], np.float32)
    if not len(x):
        return []
    k = choose_k(x, seed) if k == "auto" else max(1, min(int(k), len(x)))
    cents, assign = kmeans(x, k, seed) if k > 1 else (x.mean(axis=0, keepdims=True), np.zeros(len(x), int))
    tags = _tag_matrix(lib)
    out, used = [], set()
    order = sorted(range(k), key=lambda c: -(assign == c).sum())
    for c in order:
        members = np.flatnonzero(assign == c)
        if not len(members):
            continue
        label = cluster_name(members, tags, facts)
        name = label
        i = 2
        while name in used:
            name, i = f"{label} ({i})", i + 1
        used.add(name)
        recipe = {"kind": "cluster", "n": None, "minutes": None, "rules": rules.to_dict(), "label": label,
                  "index": int(c), "centroids": np.round(cents, 6).tolist()}
        out.append(cluster_members(lib, recipe, name))
    return out


def cluster_members(library: Library | str | Path, recipe: dict, name: str, keep: list[str] = ()) -> Playlist:
    """The playlist of one group: the tracks whose nearest stored centroid is this group's (so a refresh after the
    library changed places new tracks in the groups they sound like), under the rules, in listening order."""
    lib = Library.coerce(library)
    facts = track_facts(lib)
    cents = np.asarray(recipe["centroids"], np.float32)
    x = np.asarray(lib.track_vectors()[:len(facts.ids)], np.float32)
    if cents.shape[1] != x.shape[1]:
        raise ValueError(f"the group {name!r} was made with {cents.shape[1]}-dimensional vectors and the library now "
                         f"has {x.shape[1]}: run `tunelens playlist clusters` again")
    sims = x @ cents.T
    members = np.flatnonzero(np.argmax(sims, axis=1) == recipe["index"])
    members = members[np.argsort(-sims[members, recipe["index"]], kind="stable")]  # most typical first
    rules = PlaylistRules.from_dict(recipe.get("rules", {}))
    rows = take([int(r) for r in members], facts, rules, len(members) + 1, None, [],
                [facts.row_of[t] for t in keep if t in facts.row_of and facts.row_of[t] in set(members.tolist())])
    if len(rows) > ORDER_LIMIT:  # along the group's main axis: a smooth order without a quadratic chain
        sub = x[rows] - x[rows].mean(axis=0)
        axis = np.linalg.svd(sub, full_matrices=False)[2][0]
        rows = [rows[i] for i in np.argsort(sub @ axis, kind="stable")]
        return Playlist(name=name, kind="cluster", recipe=recipe,
                        tracks=playlist_tracks(facts, rows), notes=[])
    return finish_playlist(lib, facts, name, "cluster", recipe, rows, rows, rules, len(rows), None, [], [],
                   rows[0] if rows else None, [])
