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

SOLO_PLAYER = {"piano", "harpsichord", "organ", "guitar", "drums"}

QUERIES = {
    "instrument": [("solo piano", lambda r: r["instrument"] == "piano"),
                   ("harpsichord", lambda r: r["instrument"] == "harpsichord"),
                   ("church organ", lambda r: r["instrument"] == "organ"),
                   ("acoustic guitar", lambda r: r["instrument"] == "guitar"),
                   ("string orchestra, violins", lambda r: r["instrument"] == "strings"),
                   ("choir singing", lambda r: r["instrument"] == "choir"),
                   ("brass section, trumpets", lambda r: r["instrument"] == "brass"),
                   ("clarinet", lambda r: r["instrument"] == "clarinet"),
                   ("flute melody", lambda r: r["instrument"] == "flute"),
                   ("drums and percussion beat", lambda r: r["instrument"] == "drums")],
    "tempo": [("slow music", lambda r: r["tempo_class"] == "slow"),
              ("fast, up-tempo music", lambda r: r["tempo_class"] == "fast")],
    # Ensemble size = how many musicians play: keyboards, guitar and drum kit have one player, as does an
    # unaccompanied woodwind melody; strings, choir, brass and woodwind consorts have several.
    "ensemble": [
        ("a solo performer playing alone", lambda r: r["instrument"] in SOLO_PLAYER or r["melody_only"]),
        ("a large ensemble of many musicians playing together",
         lambda r: r["instrument"] not in SOLO_PLAYER and not r["melody_only"]),
        ("an unaccompanied melody, one single line", lambda r: r["melody_only"]),
    ],
}


def average_precision(relevant: np.ndarray) -> float:
    hits = np.cumsum(relevant)
    return float((hits / np.arange(1, len(relevant) + 1))[relevant].mean()) if relevant.any() else 0.0


def evaluate(library: Path, ground_truth: Path, model: str | None = None, encoder=None) -> pl.DataFrame:
    from tunelens.embed import load_encoder
    from tunelens.index import Library
    from tunelens.index.search import search_text

    lib = Library.open(library)
    encoder = encoder or load_encoder(model or lib.manifest.pipeline.model)
    gt = pl.read_parquet(ground_truth)
    cat = lib.ok_tracks().select("rel_path")
    rows_by_file = {r["file"]: r for r in gt.iter_rows(named=True)}
    n = len(cat)
    out = []
    for family, queries in QUERIES.items():
        for text, is_rel in queries:
            hits = search_text(lib, encoder, text, k=n)
            rel = np.array(
                [bool(is_rel(rows_by_file[h.rel_path])) if h.rel_path in rows_by_file else False for h in hits]
            )
            n_rel = int(sum(bool(is_rel(r)) for r in rows_by_file.values()))
            if n_rel == 0:
                continue
            out.append(
                {
                    "family": family,
                    "query": text,
                    "relevant": n_rel,
                    "R@1": float(rel[:1].sum() / min(1, n_rel)),
                    "R@10": float(rel[:10].sum() / min(10, n_rel)),
                    "AP": average_precision(rel),
                }
            )
    return pl.DataFrame(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--library", required=True, type=Path)
    ap.add_argument("--ground-truth", required=True, type=Path)
    ap.add_argument("--per-query", action="store_true", help="also print every query's figures")
    ap.add_argument("--sweep-temperature", metavar="T1,T2,...",
                    help="re-run the queries at each text temperature of the default encoder (audio vectors unchanged)")
    args = ap.parse_args(argv)
    pl.Config.set_tbl_rows(100)
    pl.Config.set_tbl_width_chars(140)
    print(f"library: {args.library}")
    if args.sweep_temperature:
        from tunelens.embed import load_encoder
        from tunelens.index import Library

        encoder = load_encoder(Library.open(args.library).manifest.pipeline.model)
        if not hasattr(encoder, "text_temperature"):
            ap.error(f"{encoder.name} has no text temperature to sweep")
        rows = []
        for t in (float(x) for x in args.sweep_temperature.split(",")):
            encoder.text_temperature = t
            s = summarise(evaluate(args.library, args.ground_truth, encoder=encoder))
            rows.append(
                {
                    "T": t,
                    **{f"{f} {m}": v for f, *vals in s.iter_rows() for m, v in zip(("R@1", "R@10", "mAP"), vals[1:])},
                    "mean mAP": s["mAP"].mean(),
                }
            )
        print(pl.DataFrame(rows))
        return 0
    res = evaluate(args.library, args.ground_truth)
    if args.per_query:
        print(res)
    print(summarise(res))
    return 0


def summarise(res: pl.DataFrame) -> pl.DataFrame:
    return res.group_by("family", maintain_order=True).agg(pl.len().alias("queries"), pl.col("R@1").mean(),
                                                           pl.col("R@10").mean(), pl.col("AP").mean().alias("mAP"))


if __name__ == "__main__":
    sys.exit(main())
