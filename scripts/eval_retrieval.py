"""Text-to-music retrieval quality on a library with ground truth: the demo corpus (`make_demo_corpus.py`) or a
development-corpus soundfont (`make_dev_corpus.py`).

    python scripts/eval_retrieval.py --library LIB --ground-truth DEMO/ground_truth.parquet [--compare]

Single-concept families (demo corpus): instrument, tempo (slow/fast), ensemble size. Compositional families (both
corpora): instrument x tempo class, instrument x mode, instrument x vocals, file-tag artist x instrument, negation.
Every query runs as `tunelens search` runs it (the query read into concepts and facets); `--compare` also runs it
with the whole text to the model alone, as search worked before the query parser. For each query the relevant
tracks come from the ground truth. R@k = relevant tracks in the top k / min(k, number relevant), so 1.0 is
reachable; AP = mean over the relevant tracks of the precision at each (a relevant track a hard filter left out
counts as never found); mAP = mean AP.

Tempo classes: the demo's own (`tempo_class`: slow under 90 BPM); on the development corpus slow is under 85 BPM
and fast over 110 (the bands the parser reads "slow" and "fast" as), tracks between are relevant to neither.
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


def average_precision(relevant: np.ndarray, n_relevant: int | None = None) -> float:
    """AP of a ranking; `n_relevant` counts relevant tracks the ranking may not hold (left out by a filter)."""
    n_relevant = int(relevant.sum()) if n_relevant is None else n_relevant
    if not n_relevant:
        return 0.0
    hits = np.cumsum(relevant)
    return float((hits / np.arange(1, len(relevant) + 1))[relevant].sum() / n_relevant)


def truth_rows(gt: pl.DataFrame) -> list[dict]:
    """One row per file in the common shape both corpora are judged on: instruments (a set), tempo class, mode,
    vocals, artist."""
    out = []
    for r in gt.iter_rows(named=True):
        demo = "instrument" in r
        insts = {r["instrument"]} if demo else set(r["instruments"])
        bpm = r["tempo_bpm"]
        tclass = r["tempo_class"] if demo else "slow" if bpm < 85 else "fast" if bpm > 110 else "moderate"
        key = r.get("key")
        mode = r.get("mode") or (key.split()[1] if key else None)
        out.append({**r, "instruments": insts, "tempo_class": tclass, "mode": mode, "vocals": "choir" in insts,
                    "artist": r.get("tag_artist")})
    return out


# what a person types for an instrument class of the ground truth (the demo's classes; dev classes as named)
SAY = {"organ": "organ", "strings": "strings", "brass": "brass", "drums": "drums", "drum kit": "drums"}


def compositional(rows: list[dict]) -> dict[str, list[tuple[str, object]]]:
    """Query families that combine a concept with a measured or tagged facet, built from the ground truth."""
    count: dict[str, int] = {}
    for r in rows:
        for i in r["instruments"]:
            count[i] = count.get(i, 0) + 1
    insts = sorted(i for i, c in count.items() if c >= 3)
    fam: dict[str, list[tuple[str, object]]] = {k: [] for k in ("instrument x tempo", "instrument x mode",
                                                                 "instrument x vocals", "file tag x instrument",
                                                                 "negation")}
    for n, inst in enumerate(insts):
        say = SAY.get(inst, inst)
        has = (lambda i: lambda r: i in r["instruments"])(inst)
        fam["instrument x tempo"] += [
            (["slow {}", "slow {} music"][n % 2].format(say), lambda r, h=has: h(r) and r["tempo_class"] == "slow"),
            (["fast {}", "up-tempo {}"][n % 2].format(say), lambda r, h=has: h(r) and r["tempo_class"] == "fast"),
        ]
        if inst != "drums" and inst != "drum kit":
            fam["instrument x mode"] += [
                (f"{say} in a minor key", lambda r, h=has: h(r) and r["mode"] == "minor"),
                (f"{say} in a major key", lambda r, h=has: h(r) and r["mode"] == "major"),
            ]
        if inst != "choir":
            fam["instrument x vocals"].append((["instrumental {}", "{} without vocals"][n % 2].format(say),
                                               lambda r, h=has: h(r) and not r["vocals"]))
            fam["instrument x vocals"].append((f"{say} with a singer", lambda r, h=has: h(r) and r["vocals"]))
    artists = sorted({r["artist"].split()[-1] for r in rows if r.get("artist")})
    for a in artists:
        for n, inst in enumerate(insts):
            phrase = [f"{a} {SAY.get(inst, inst)}", f"{SAY.get(inst, inst)} by {a}", f"{a} on the {inst}"][n % 3]
            fam["file tag x instrument"].append(
                (phrase, lambda r, a=a, i=inst: i in r["instruments"] and a in (r.get("artist") or "")))
    # negation: each instrument without the one it most often plays with (or, in solos only, the next one)
    for n, inst in enumerate(insts):
        with_counts = {}
        for r in rows:
            if inst in r["instruments"]:
                for o in r["instruments"] - {inst}:
                    with_counts[o] = with_counts.get(o, 0) + 1
        other = max(with_counts, key=with_counts.get) if with_counts else insts[(n + 1) % len(insts)]
        phrase = [f"{SAY.get(inst, inst)}, no {SAY.get(other, other)}",
                  f"{SAY.get(inst, inst)} without {SAY.get(other, other)}",
                  f"{SAY.get(inst, inst)} but not {SAY.get(other, other)}"][n % 3]
        fam["negation"].append((phrase, lambda r, i=inst, o=other: i in r["instruments"] and o not in r["instruments"]))
    drums = next((i for i in ("drums", "drum kit") if i in count), None)
    if drums:
        fam["negation"].append(("music without drums", lambda r, d=drums: d not in r["instruments"]))
    fam["negation"].append(("instrumental music, no singing", lambda r: not r["vocals"]))
    fam["tempo"] = [("slow music", lambda r: r["tempo_class"] == "slow"),
                    ("fast, up-tempo music", lambda r: r["tempo_class"] == "fast")]
    return {k: v for k, v in fam.items() if v}


def families(rows: list[dict], demo: bool) -> dict[str, list[tuple[str, object]]]:
    single = {k: v for k, v in QUERIES.items() if k != "tempo"} if demo else {}
    return {**single, **compositional(rows)}


COMPOSITIONAL = ("instrument x tempo", "instrument x mode", "instrument x vocals", "file tag x instrument", "negation")


def evaluate(library: Path, ground_truth: Path, model: str | None = None, encoder=None,
             parse_query: bool = True) -> pl.DataFrame:
    import tunelens
    from tunelens.embed import load_encoder
    from tunelens.index import Library

    lib = Library.open(library)
    encoder = encoder or load_encoder(model or lib.manifest.pipeline.model)
    gt = pl.read_parquet(ground_truth)
    n = len(lib.ok_tracks())
    in_library = set(lib.ok_tracks()["rel_path"].to_list())
    rows = truth_rows(gt)
    if not any(r["file"] in in_library for r in rows):  # the library indexed the folder inside the corpus root
        rows = [{**r, "file": r["file"].split("/", 1)[-1]} for r in rows]
    rows = [r for r in rows if r["file"] in in_library]
    rows_by_file = {r["file"]: r for r in rows}
    out = []
    for family, queries in families(rows, "instrument" in gt.columns).items():
        for text, is_rel in queries:
            n_rel = int(sum(bool(is_rel(r)) for r in rows))
            if n_rel == 0:
                continue
            hits = tunelens.search(lib, text, k=n, encoder=encoder, parse_query=parse_query)
            rel = np.array([bool(is_rel(rows_by_file[h.rel_path])) if h.rel_path in rows_by_file else False
                            for h in hits], dtype=bool)
            out.append({"family": family, "query": text, "relevant": n_rel,
                        "R@1": float(rel[:1].sum() / min(1, n_rel)), "R@10": float(rel[:10].sum() / min(10, n_rel)),
                        "AP": average_precision(rel, n_rel)})
    return pl.DataFrame(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--library", required=True, type=Path)
    ap.add_argument("--ground-truth", required=True, type=Path)
    ap.add_argument("--per-query", action="store_true", help="also print every query's figures")
    ap.add_argument("--compare", action="store_true",
                    help="also run every query with the whole text to the model alone (no query parser)")
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
    if args.compare:
        plain = evaluate(args.library, args.ground_truth, parse_query=False)
        res = res.join(plain.select("query", pl.col("AP").alias("AP without parser"),
                                    pl.col("R@10").alias("R@10 without parser")), on="query", how="left")
    if args.per_query:
        print(res)
    print(summarise(res))
    comp = res.filter(pl.col("family").is_in(COMPOSITIONAL))
    if len(comp):
        line = f"compositional ({len(comp)} queries): mAP {comp['AP'].mean():.3f}, R@10 {comp['R@10'].mean():.3f}"
        if args.compare:
            line += (f"; without the parser mAP {comp['AP without parser'].mean():.3f}, "
                     f"R@10 {comp['R@10 without parser'].mean():.3f}")
        print(line)
    return 0


def summarise(res: pl.DataFrame) -> pl.DataFrame:
    extra = [pl.col(c).mean().alias(c.replace("AP", "mAP")) for c in ("R@10 without parser", "AP without parser")
             if c in res.columns]
    return res.group_by("family", maintain_order=True).agg(pl.len().alias("queries"), pl.col("R@1").mean(),
                                                           pl.col("R@10").mean(), pl.col("AP").mean().alias("mAP"),
                                                           *extra)


if __name__ == "__main__":
    sys.exit(main())
