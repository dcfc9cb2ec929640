"""Query → results latency of search on a large library: the library calls and the app's search page.

    python scripts/bench_app_search.py --source demo/library --tracks 10000

Builds a library of --tracks tracks from a real one (its catalog rows, measurements, captions and vectors, each
copy's vectors jittered by small noise and re-normalised, its audio a link to the source track's file, in a folder
`audio/` beside the library), then prints p50/p99
of (a) the library calls one search makes: the model alone (`search_text`: text encoder, FAISS, best window), with
sidebar filters, and parse + hybrid ranking (`tunelens.search`: the query read into concepts and facets, every
track scored on both) over compositional queries; and (b) the whole Streamlit script run for a new query
(AppTest, in-process: everything but the browser painting).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

COMPOSITIONAL = ["slow sad piano", "fast drums around 120 bpm", "Bach on the organ", "instrumental jazz from the 80s",
                 "quiet guitar under 3 minutes", "choir, no organ", "strings in a minor key", "up-tempo brass",
                 "harpsichord, not piano", "flute in D major", "loud rock with a singer", "calm strings 60-80 bpm"]
QUERIES = ["slow solo piano", "choir singing", "fast drums", "acoustic guitar", "flute melody", "string orchestra",
           "calm ambient", "harpsichord", "loud rock", "sad classical", "happy pop", "church organ"]


def build(source: Path, out: Path, n: int, seed: int = 0) -> None:
    import polars as pl

    from tunelens.index import Library
    from tunelens.index.core.captions import CaptionStore, MeasureStore
    from tunelens.index.core.library import StagedBatch
    from tunelens.index.core.schema import VECTOR_COLUMNS

    src = Library.open(source)
    ok = src.ok_tracks()
    tv, wv, wt = np.asarray(src.track_vectors()), np.asarray(src.window_vectors()), src.windows_table()
    lib = Library.create_or_open(out, src.manifest.pipeline)
    caps = CaptionStore(src.root).read().filter(pl.col("status") == "ok")
    measures = {r["track_id"]: r for r in MeasureStore(src.root).read_all().iter_rows(named=True)}
    rng = np.random.default_rng(seed)
    staged, cap_rows, measure_rows = [], [], []
    for start in range(0, n, 2000):
        rows, tvecs, wvecs, counts, starts, ends = [], [], [], [], [], []
        for i in range(start, min(n, start + 2000)):
            t = ok.row(i % len(ok), named=True)
            tid = f"{i:016x}"
            rel = f"copy{i // len(ok):04d}/{t['rel_path']}"
            link = out.parent / "audio" / rel  # each copy its own path (a link to the source's audio), as in a
            link.parent.mkdir(parents=True, exist_ok=True)  # real library, so that a later commit keeps them all
            if not link.is_symlink():
                link.symlink_to(t["path"])
            copy = i // len(ok)  # each copy its own recording (audio hash) and title, as distinct tracks would be
            rows.append({**{k: v for k, v in t.items() if k not in VECTOR_COLUMNS}, "track_id": tid,
                         "rel_path": rel, "path": str(link), "audio_hash": f"{t['audio_hash']}-{copy}",
                         "title": f"{t['title'] or 'track'} ({copy})"})
            v = tv[t["vec_row"]] + rng.normal(0, 0.02, tv.shape[1]).astype(np.float32)
            tvecs.append(v / np.linalg.norm(v))
            off, cnt = t["window_offset"], t["window_count"]
            wvecs.append(wv[off:off + cnt] + rng.normal(0, 0.02, (cnt, wv.shape[1])).astype(np.float32))
            counts.append(cnt)
            starts.append(wt["start_s"][off:off + cnt].to_numpy())
            ends.append(wt["end_s"][off:off + cnt].to_numpy())
            if t["track_id"] in measures:
                measure_rows.append({**measures[t["track_id"]], "track_id": tid})
            cap = caps.filter(pl.col("track_id") == t["track_id"])
            if len(cap):
                cap_rows.append({**cap.row(0, named=True), "track_id": tid})
        staged.append(lib.stage(StagedBatch(rows, np.stack(tvecs), np.concatenate(wvecs), np.array(counts),
                                            np.concatenate(starts), np.concatenate(ends))))
    lib.commit(set(), staged)
    for store, rows in ((CaptionStore(out), cap_rows), (MeasureStore(out), measure_rows)):
        if rows:
            store.write_batch(rows)
            store.compact()


def pct(xs: list[float]) -> str:
    a = np.array(xs) * 1000
    return f"p50 {np.percentile(a, 50):7.1f} ms   p99 {np.percentile(a, 99):7.1f} ms   ({len(a)} queries)"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", type=Path, required=True, help="a real library (e.g. demo/library, captioned)")
    ap.add_argument("--tracks", type=int, default=10000)
    ap.add_argument("--app-queries", type=int, default=24)
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import tunelens
    from tunelens.embed import load_encoder
    from tunelens.index import Library
    from tunelens.index.core.tracks import TrackFilter, track_table
    from tunelens.index.search import search_text

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "lib"
        t0 = time.perf_counter()
        build(args.source, root, args.tracks)
        print(f"built a {args.tracks:,}-track library in {time.perf_counter() - t0:.1f} s")
        lib = Library.open(root)
        enc = load_encoder(lib.manifest.pipeline.model)
        table = track_table(lib)
        search_text(lib, enc, "warm-up")
        plain, filtered = [], []
        for i in range(200):
            q = QUERIES[i % len(QUERIES)]
            t0 = time.perf_counter()
            search_text(lib, enc, q, k=10)
            plain.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            allowed = set(TrackFilter(min_tempo=60, max_tempo=140, mode="major").apply(table)["track_id"])
            search_text(lib, enc, q, k=10, allowed=allowed)
            filtered.append(time.perf_counter() - t0)
        print(f"library calls, text search, k=10:            {pct(plain)}")
        print(f"library calls, with tempo + mode filters:    {pct(filtered)}")
        tunelens.search(lib, "warm-up slow piano", encoder=enc)  # builds the facet table once per library state
        hybrid = []
        for i in range(200):
            t0 = time.perf_counter()
            tunelens.search(lib, COMPOSITIONAL[i % len(COMPOSITIONAL)], k=10, encoder=enc)
            hybrid.append(time.perf_counter() - t0)
        print(f"parse + hybrid search, compositional, k=10:  {pct(hybrid)}")

        from streamlit.testing.v1 import AppTest

        os.environ["TUNELENS_LIBRARY"] = str(root)
        at = AppTest.from_file(
            str(Path(__file__).resolve().parents[1] / "app" / "streamlit_app.py"), default_timeout=300
        )
        at.run()
        at.text_input(key="q").input("warm-up").run()
        runs = []
        for i in range(args.app_queries):
            t0 = time.perf_counter()
            at.text_input(key="q").input(f"{QUERIES[i % len(QUERIES)]} {i}").run()
            runs.append(time.perf_counter() - t0)
            assert not at.exception, at.exception
        print(f"whole app script run for a new query:        {pct(runs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
