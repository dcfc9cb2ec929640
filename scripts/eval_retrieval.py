"""Text-to-music retrieval quality on a library with ground truth (e.g. the demo corpus).

    python scripts/eval_retrieval.py --library LIB --ground-truth DEMO/ground_truth.parquet

Query families: instrument, tempo (slow/fast), ensemble size (solo line / ensemble). For each query the
relevant tracks come from the ground truth. R@k = relevant tracks in the top k / min(k, number relevant),
so 1.0 is reachable; mAP = mean average precision over the whole ranking.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

QUERIES = {
    "instrument": [
        ("solo piano", lambda r: r["instrument"] == "piano"),
        ("harpsichord", lambda r: r["instrument"] == "harpsichord"),
        ("church organ", lambda r: r["instrument"] == "organ"),
        ("acoustic guitar", lambda r: r["instrument"] == "guitar"),
        ("string orchestra, violins", lambda r: r["instrument"] == "strings"),
        ("choir singing", lambda r: r["instrument"] == "choir"),
        ("brass section, trumpets", lambda r: r["instrument"] == "brass"),
        ("clarinet", lambda r: r["instrument"] == "clarinet"),
        ("flute melody", lambda r: r["instrument"] == "flute"),
        ("drums and percussion beat", lambda r: r["instrument"] == "drums"),
    ],
    "tempo": [
        ("slow music", lambda r: r["tempo_class"] == "slow"),
        ("fast, up-tempo music", lambda r: r["tempo_class"] == "fast"),
    ],
    "ensemble": [
        ("a single melody played solo", lambda r: r["melody_only"] or (r["parts"] == 1 and r["instrument"] != "drums")),
        ("a full ensemble, several voices together", lambda r: r["parts"] >= 3 and not r["melody_only"]),
    ],
}


def average_precision(relevant: np.ndarray) -> float:
    hits = np.cumsum(relevant)
    return float((hits / np.arange(1, len(relevant) + 1))[relevant].mean()) if relevant.any() else 0.0


def evaluate(library: Path, ground_truth: Path, model: str | None = None) -> pl.DataFrame:
    from embed import load_encoder
    from index import Library
    from index.search import search_text

    lib = Library.open(library)
    encoder = load_encoder(model or lib.manifest.pipeline.model)
    gt = pl.read_parquet(ground_truth)
    cat = lib.ok_tracks().select("rel_path")
    rows_by_file = {r["file"]: r for r in gt.iter_rows(named=True)}
    n = len(cat)
    out = []
    for family, queries in QUERIES.items():
        for text, is_rel in queries:
            hits = search_text(lib, encoder, text, k=n)
            rel = np.array([bool(is_rel(rows_by_file[h.rel_path])) if h.rel_path in rows_by_file else False for h in hits])
            n_rel = int(sum(bool(is_rel(r)) for r in rows_by_file.values()))
            if n_rel == 0:
                continue
            out.append({
                "family": family, "query": text, "relevant": n_rel, "R@1": float(rel[:1].sum() / min(1, n_rel)),
                "R@10": float(rel[:10].sum() / min(10, n_rel)), "AP": average_precision(rel),
            })
    return pl.DataFrame(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--library", required=True, type=Path)
    ap.add_argument("--ground-truth", required=True, type=Path)
    ap.add_argument("--per-query", action="store_true", help="also print every query's figures")
    args = ap.parse_args(argv)
    res = evaluate(args.library, args.ground_truth)
    pl.Config.set_tbl_rows(100)
    pl.Config.set_tbl_width_chars(140)
    if args.per_query:
        print(res)
    summary = res.group_by("family", maintain_order=True).agg(
        pl.len().alias("queries"), pl.col("R@1").mean(), pl.col("R@10").mean(), pl.col("AP").mean().alias("mAP"),
    )
    print(f"library: {args.library}")
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
