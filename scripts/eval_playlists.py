"""Playlists measured: rules kept, paths smooth and monotone, radios relevant, groups pure, and fast.

    python scripts/eval_playlists.py --library demo/library --ground-truth demo/music/ground_truth.parquet \
        [--label instrument] [--playlists 200] [--latency-tracks 100000]

On one library with ground truth (a parquet with `file`, relative to the music folder, and a label column: the
demo's `instrument`, a development corpus's `ensemble`):
  - rules: `--playlists` random radios, paths and query playlists (default rules, and with key and tempo continuity
    on), every finished list checked afresh by `index.playlists.violations`;
  - path: mean cosine between consecutive tracks against the same tracks in random order (20 shuffles), and the
    Spearman correlation between step index and projection on the FROM→TO direction;
  - radio: the share of a single-seed radio in the seed's label, n = the other tracks of that label (all of them
    would be 100%), with default rules and with no artist/album limit, against a random playlist;
  - groups: purity of `group_playlists` (k=auto and k = the number of labels) against the labels, and of k-means on
    random unit vectors of the same shape.
With --latency-tracks it builds the synthetic library `bench_app_search.py` builds and prints p50/p99 of a radio of
50 and a path of 12 (after one warm-up call that builds the per-library tables).
"""
from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

QUERIES = ["slow piano", "fast drums", "choir", "calm strings", "organ", "flute melody", "guitar", "brass",
           "quiet music", "happy major key music", "harpsichord", "clarinet", "sad music", "energetic"]


def _labels(lib, gt_path: Path, label: str) -> np.ndarray:
    import polars as pl

    from tunelens.index.playlists.rules import track_facts

    gt = pl.read_parquet(gt_path)
    by_file = dict(zip(gt["file"].to_list(), gt[label].cast(str).to_list()))
    by_file.update({k.split("/", 1)[1]: v for k, v in list(by_file.items()) if "/" in k and k.split("/", 1)[1]
                    not in by_file})  # a development corpus names files under its soundfont's folder
    f = track_facts(lib)
    return np.array([by_file.get(r) for r in f.rel_paths], object)


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1]) if len(a) > 2 else 1.0


def purity(assign: np.ndarray, labels: np.ndarray) -> float:
    total = 0
    for c in np.unique(assign):
        _, counts = np.unique(labels[assign == c], return_counts=True)
        total += counts.max()
    return total / len(labels)


def evaluate(lib_path: Path, gt: Path, label: str, n_lists: int, seed: int = 0,
             parts: tuple[str, ...] = ("rules", "path", "radio", "groups")) -> None:
    from tunelens.index import Library
    from tunelens.index.playlists.rules import track_facts

    lib = Library.open(lib_path)
    f = track_facts(lib)
    labels = _labels(lib, gt, label)
    vecs = np.asarray(lib.track_vectors()[:len(f.ids)], np.float32)
    rng = random.Random(seed)
    n_ids = len(f.ids)
    print(f"library {lib_path}: {n_ids} tracks, {len(set(labels) - {None})} labels ({label})")

    if "rules" in parts:
        _rules(lib, f, rng, n_lists)
    if "path" in parts:
        _path(lib, f, vecs, random.Random(seed + 1))
    if "radio" in parts:
        _radio(lib, f, labels, n_ids, label)
    if "groups" in parts:
        _groups(lib, f, labels, vecs, n_ids, seed)


def _rules(lib, f, rng, n_lists) -> None:
    import tunelens
    from tunelens.index.playlists import PlaylistRules, violations

    n_ids = len(f.ids)
    rule_sets = {"default": PlaylistRules(), "continuity": PlaylistRules(key_continuity=True, tempo_continuity=0.08)}
    bad, checked, lengths = [], 0, []
    for i in range(n_lists):
        rules = rule_sets["default" if i % 2 == 0 else "continuity"]
        kind = ("radio", "path", "query")[i % 3]
        n = rng.choice([5, 10, 20])
        if kind == "radio":
            seeds = rng.sample(range(n_ids), rng.choice([1, 1, 2]))
            text = rng.choice([None, None, "calmer", "faster, no drums"])
            pl = tunelens.radio(lib, [f.ids[s] for s in seeds], text, n=n, rules=rules, device="cpu")
        elif kind == "path":
            a, b = rng.sample(range(n_ids), 2)
            seeds = []
            pl = tunelens.path_between(lib, f.ids[a], f.ids[b], n=max(n, 3), rules=rules, device="cpu")
        else:
            seeds = []
            pl = tunelens.query_playlist(lib, rng.choice(QUERIES), n=n, rules=rules, device="cpu")
        rows = [f.row_of[t] for t in pl.track_ids]
        lengths.append(len(rows))
        v = violations(rows, f, rules, seeds, n)
        if kind == "path":  # the ends are the user's: a flagged end is not the path's choice
            v = [x for x in v if x not in {f"flagged: {f.rel_paths[rows[0]]}", f"flagged: {f.rel_paths[rows[-1]]}"}]
        checked += 1
        bad += [(kind, x) for x in v]
    print(f"rules: {len(bad)} violations in {checked} playlists (radios, paths, queries; half with key and tempo "
          f"continuity), mean length {np.mean(lengths):.1f}")
    for k, x in bad[:5]:
        print(f"   {k}: {x}")



def _path(lib, f, vecs, rng) -> None:
    import tunelens

    n_ids = len(f.ids)
    spear, steps, shuffled, ideal, jumps, direct = [], [], [], [], [], []
    for _ in range(min(100, n_ids)):
        a, b = rng.sample(range(n_ids), 2)
        pl = tunelens.path_between(lib, f.ids[a], f.ids[b], n=min(12, n_ids // 3), device="cpu")
        rows = [f.row_of[t] for t in pl.track_ids]
        p = vecs[rows]
        consec = float(np.mean(np.sum(p[:-1] * p[1:], axis=1)))
        rand = float(np.mean([np.mean(np.sum(q[:-1] * q[1:], axis=1)) for q in
                              (p[np.random.default_rng(j).permutation(len(p))] for j in range(20))]))
        steps.append(consec)
        shuffled.append(rand)
        # the same ratio for evenly spaced points on the great circle between the same ends: the geometric ceiling
        omega = float(np.arccos(np.clip(vecs[a] @ vecs[b], -1, 1)))
        ang = np.linspace(0, omega, len(rows))
        cos_ij = np.cos(np.abs(ang[:, None] - ang[None, :]))
        ideal.append(float(np.cos(omega / (len(rows) - 1)) / cos_ij[~np.eye(len(rows), dtype=bool)].mean()))
        jumps.append(float(np.min(np.sum(p[:-1] * p[1:], axis=1))))
        direct.append(float(vecs[a] @ vecs[b]))
        d = vecs[b] - vecs[a]
        spear.append(_spearman(np.arange(len(rows)), p @ d))
    print(f"path (n=12): mean consecutive cosine {np.mean(steps):.3f} vs {np.mean(shuffled):.3f} in random order "
          f"(x{np.mean(steps) / np.mean(shuffled):.2f}); Spearman(step, progress) mean {np.mean(spear):.3f}, "
          f"median {np.median(spear):.3f}, min {np.min(spear):.3f}")
    print(f"   evenly spaced points on the arc between the same ends would score x{np.mean(ideal):.2f}; the largest "
          f"jump in a path: cosine {np.mean(jumps):.3f} on average, against {np.mean(direct):.3f} for going straight "
          f"from FROM to TO")



def _radio(lib, f, labels, n_ids, label) -> None:
    import tunelens
    from tunelens.index.playlists import PlaylistRules
    from tunelens.index.playlists.make import take

    have = [i for i in range(n_ids) if labels[i] is not None]
    for name, rules in (("default rules", PlaylistRules()),
                        ("no artist/album limit", PlaylistRules(max_per_artist=None, max_per_album=None))):
        shares, base, bound = [], [], []
        for s in have:
            same = sum(1 for j in have if labels[j] == labels[s]) - 1
            if same < 1:
                continue
            pl = tunelens.radio(lib, [f.ids[s]], n=same, rules=rules, device="cpu")
            rows = [f.row_of[t] for t in pl.track_ids]
            if rows:
                shares.append(np.mean([labels[r] == labels[s] for r in rows]))
                base.append(same / (len(have) - 1))
                # the best any radio could do under these rules: the seed's label first, then anything
                order = sorted(range(n_ids), key=lambda j: labels[j] != labels[s])
                best = take(order, f, rules, same, None, [s])
                bound.append(np.mean([labels[r] == labels[s] for r in best]) if best else 0.0)
        print(f"radio relevance ({name}): {np.mean(shares) * 100:.1f}% of a single-seed radio shares the seed's "
              f"{label} (n = the rest of that {label}; {len(shares)} seeds); random playlist {np.mean(base) * 100:.1f}%"
              f"; the most these rules allow {np.mean(bound) * 100:.1f}%")



def _groups(lib, f, labels, vecs, n_ids, seed) -> None:
    import tunelens
    from tunelens.index.playlists.clusters import kmeans

    have = [i for i in range(n_ids) if labels[i] is not None]
    lab = labels[have]
    for k in ("auto", len(set(lab))):
        groups = tunelens.group_playlists(lib, k)
        assign = np.full(n_ids, -1)
        for gi, g in enumerate(groups):
            for t in g.track_ids:
                assign[f.row_of[t]] = gi
        ok = assign[have] >= 0
        rnd = np.random.default_rng(seed).normal(size=vecs.shape).astype(np.float32)
        rnd /= np.linalg.norm(rnd, axis=1, keepdims=True)
        _, ra = kmeans(rnd[have], len(groups))
        print(f"groups (k={k}: {len(groups)}): purity {purity(assign[have][ok], lab[ok]):.3f} "
              f"({ok.sum()} of {len(have)} tracks placed); k-means on random vectors {purity(ra, lab):.3f}")
        for g in groups[:12]:
            members = [labels[f.row_of[t]] for t in g.track_ids]
            top = max(set(members), key=members.count) if members else "-"
            print(f"   {g.name:<45} {len(members):4d} tracks, {members.count(top) / max(len(members), 1):.0%} {top}")


def latency(source: Path, n_tracks: int, reps: int = 40) -> None:
    import bench_app_search as bas  # a sibling script, imported by name

    import tunelens
    from tunelens.index import Library
    from tunelens.index.playlists.rules import track_facts

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        bas.build(source, Path(tmp) / "lib", n_tracks)
        print(f"built a {n_tracks:,}-track library in {time.perf_counter() - t0:.0f} s")
        lib = Library.open(Path(tmp) / "lib")
        t0 = time.perf_counter()
        ids = track_facts(lib).ids
        tunelens.radio(lib, [ids[0]], n=50, device="cpu")
        print(f"first call (builds the facet and rule tables): {time.perf_counter() - t0:.1f} s")
        rng = random.Random(1)
        for name, fn, n in (("radio of 50", lambda: tunelens.radio(lib, [rng.choice(ids)], n=50, device="cpu"), 50),
                            ("path of 12", lambda: tunelens.path_between(lib, *rng.sample(ids, 2), n=12,
                                                                         device="cpu"), 12)):
            times, short = [], 0
            for _ in range(reps):
                t = time.perf_counter()
                pl = fn()
                times.append(time.perf_counter() - t)
                short += len(pl.tracks) < n
            a = np.array(times) * 1000
            print(f"{name:<12} on {n_tracks:,} tracks: p50 {np.percentile(a, 50):.0f} ms, p99 "
                  f"{np.percentile(a, 99):.0f} ms ({reps} runs, {short} shorter than asked)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--library", type=Path, required=True)
    ap.add_argument("--ground-truth", type=Path, required=True)
    ap.add_argument("--label", default="instrument", help="the ground truth's column of the setting (demo: "
                    "instrument; development corpus: ensemble)")
    ap.add_argument("--playlists", type=int, default=200)
    ap.add_argument("--parts", default="rules,path,radio,groups", help="which measurements, comma-separated")
    ap.add_argument("--latency-tracks", type=int, default=0, help="also time radio and path on a synthetic library "
                    "of this many tracks built from --library")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(2)
    evaluate(args.library, args.ground_truth, args.label, args.playlists, parts=tuple(args.parts.split(",")))
    if args.latency_tracks:
        latency(args.library, args.latency_tracks)
    return 0


if __name__ == "__main__":
    sys.exit(main())
