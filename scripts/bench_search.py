"""Vector search: tunelens' index (index.ann, `auto`) against numpy brute force, hnswlib and usearch, in one
process, on the same clustered vectors.

    python scripts/bench_search.py [--sizes 100000,1000000] [--dim 512] [--queries 1000] [--skip hnswlib]

Data: L2-normalised 512-d vectors from a mixture of Gaussian clusters with Zipf-distributed sizes and
different spreads (real embedding collections are lumpy, not uniform); queries are fresh draws from the
same mixture, not points of the index. For each method: build seconds, memory added (RSS), single-query
p50/p99 latency, batched latency per query (batches of `--batch`), and recall@10 against exact search.
Graph indexes (hnswlib, usearch) get the smallest search breadth reaching `--target` recall, tunelens
the depth its own build-time tuning picked (on held-out library vectors, not on these queries).
"""
from __future__ import annotations

import argparse
import gc
import os
import sys
import time

import numpy as np


def rss() -> int:
    with open(f"/proc/{os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def clustered(n: int, dim: int, seed: int, clusters: int = 2000) -> np.ndarray:
    """n vectors from a fixed mixture (the mixture depends on dim and clusters only, so queries match)."""
    mix = np.random.default_rng(12345)
    centres = mix.standard_normal((clusters, dim)).astype(np.float32)
    weights = 1.0 / np.arange(1, clusters + 1) ** 0.7
    weights /= weights.sum()
    spread = mix.uniform(0.6, 1.4, clusters).astype(np.float32)
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), np.float32)
    for s in range(0, n, 100_000):
        m = min(100_000, n - s)
        which = rng.choice(clusters, size=m, p=weights)
        block = centres[which] + spread[which, None] * rng.standard_normal((m, dim), dtype=np.float32)
        out[s:s + m] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def exact(x: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    from tunelens.index.vectors.choice import exact_neighbours

    return exact_neighbours(x, q, k)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)]))


def timed_single(search, queries: np.ndarray, limit: int) -> tuple[np.ndarray, float, float]:
    lat, found = [], []
    for q in queries[:limit]:
        t = time.perf_counter()
        found.append(search(q[None, :]))
        lat.append((time.perf_counter() - t) * 1000)
    return np.concatenate(found), float(np.percentile(lat, 50)), float(np.percentile(lat, 99))


def timed_batched(search, queries: np.ndarray, batch: int) -> tuple[np.ndarray, float]:
    t = time.perf_counter()
    found = np.concatenate([search(queries[s:s + batch]) for s in range(0, len(queries), batch)])
    return found, (time.perf_counter() - t) * 1000 / len(queries)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--target", type=float, default=0.95)
    ap.add_argument("--skip", default="", help="comma-separated methods to leave out: numpy,tunelens,hnswlib,usearch")
    ap.add_argument("--numpy-single", type=int, default=100, help="single queries timed for brute force (slow at 1M)")
    args = ap.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    k = args.k
    print(
        f"CPU threads: {os.cpu_count()}; k={k}; queries={args.queries}; batch={args.batch}; dim={args.dim}", flush=True
    )
    header = (f"{'n':>9} {'method':<34}{'build s':>9}{'mem MB':>9}{'p50 ms':>9}{'p99 ms':>9}{'batch ms/q':>11}"
              f"{'recall@10':>10}")
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        t = time.perf_counter()
        x = clustered(n, args.dim, seed=1)
        q = clustered(args.queries, args.dim, seed=2)
        truth = exact(x, q, k)
        print(f"\n{n:,} vectors generated, exact neighbours in {time.perf_counter() - t:.1f} s", flush=True)
        print(header, flush=True)

        def report(method: str, build_s: float, mem: int, single, batched) -> None:
            found_s, p50, p99 = single
            found_b, per_q = batched
            r = recall(found_b, truth)
            line = (
                f"{n:>9} {method:<34}{build_s:>9.1f}{mem / 2**20:>9.0f}{p50:>9.2f}{p99:>9.2f}{per_q:>11.3f}{r:>10.3f}"
            )
            rows.append(line)
            print(line, flush=True)

        if "numpy" not in skip:

            def np_search(qq):
                s = qq @ x.T
                part = np.argpartition(-s, k - 1, axis=1)[:, :k]
                return np.take_along_axis(part, np.argsort(-np.take_along_axis(s, part, 1), axis=1), 1)

            report("numpy brute force", 0.0, 0, timed_single(np_search, q, args.numpy_single),
                   timed_batched(np_search, q, args.batch))

        if "tunelens" not in skip:
            from tunelens.index.vectors.choice import IndexChoice, build
            from tunelens.index.vectors.vector_index import VectorIndex

            gc.collect()
            m0, t = rss(), time.perf_counter()
            built = build(x, IndexChoice(k=k, target_recall=args.target))
            vi = VectorIndex(built.index, built.info, vectors=x, use_gpu=False)
            bt, mem = time.perf_counter() - t, rss() - m0
            info = built.info
            params = ",".join(f"{p}={info[p]}" for p in ("nlist", "nprobe", "rerank", "efSearch") if p in info)
            search = lambda qq: vi.search(qq, k)[1]  # noqa: E731
            report(f"tunelens {info['type']} {params}", bt, mem, timed_single(search, q, len(q)),
                   timed_batched(search, q, args.batch))
            print(f"{'':>10}(build-time recall on held-out library vectors: {info['recall']:.3f}; {info['why']})",
                  flush=True)
            del vi, built

        for lib in ("hnswlib", "usearch"):
            if lib in skip:
                continue
            gc.collect()
            m0, t = rss(), time.perf_counter()
            if lib == "hnswlib":
                import hnswlib

                idx = hnswlib.Index(space="ip", dim=args.dim)
                idx.init_index(max_elements=n, M=16, ef_construction=100, random_seed=0)
                idx.set_num_threads(os.cpu_count() or 1)
                idx.add_items(x, np.arange(n))
                bt, mem = time.perf_counter() - t, rss() - m0

                def searcher(ef):
                    idx.set_ef(max(ef, k))
                    return lambda qq: idx.knn_query(qq, k=k)[0].astype(np.int64)
            else:
                from usearch.index import Index

                idx = Index(ndim=args.dim, metric="ip", dtype="f32", connectivity=16, expansion_add=100)
                idx.add(np.arange(n), x, threads=os.cpu_count() or 1)
                bt, mem = time.perf_counter() - t, rss() - m0

                def searcher(ef):
                    idx.expansion_search = max(ef, k)
                    return lambda qq: np.atleast_2d(idx.search(qq, k, threads=os.cpu_count() or 1).keys).astype(
                        np.int64
                    )

            chosen = 512
            for ef in (16, 32, 64, 128, 256, 512):
                found, _ = timed_batched(searcher(ef), q[:200], args.batch)
                if recall(found, truth[:200]) >= args.target:
                    chosen = ef
                    break
            s = searcher(chosen)
            report(f"{lib} M=16 ef={chosen}", bt, mem, timed_single(s, q, len(q)), timed_batched(s, q, args.batch))
            idx = None  # free it before the next method is built
        x = None
    print("\nsummary")
    print(header)
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
