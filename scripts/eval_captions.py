"""Caption and QA accuracy against ground truth from the scores (e.g. the demo corpus).

    python scripts/eval_captions.py --library LIB --ground-truth DEMO/ground_truth.parquet

Needs a captioned library (`tunelens caption --library LIB`). Prints:
- tempo accuracy: measured BPM within 4% of the notated beat tempo; octave/metrical errors (x2, x1/2,
  x3, x1/3, x3/2, x2/3 within 4%) counted separately;
- key: MIREX weighted score (1 same key, 0.5 fifth, 0.3 relative, 0.2 parallel);
- contradictions: the share of captions whose text states an instrument (or voice), a tempo class or a
  key that the ground truth contradicts (hedged statements count too);
- QA accuracy on multiple-choice questions generated from the ground truth; the option nearest to
  `answer()`'s value is chosen, and "can't tell" counts as wrong.
"""
from __future__ import annotations

import argparse
import math
import random
import re
import sys
from pathlib import Path

import numpy as np
import polars as pl

PC = {
    "C": 0,
    "B#": 0,
    "C#": 1,
    "D-": 1,
    "Db": 1,
    "D": 2,
    "D#": 3,
    "E-": 3,
    "Eb": 3,
    "E": 4,
    "F-": 4,
    "F": 5,
    "E#": 5,
    "F#": 6,
    "G-": 6,
    "Gb": 6,
    "G": 7,
    "G#": 8,
    "A-": 8,
    "Ab": 8,
    "A": 9,
    "A#": 10,
    "B-": 10,
    "Bb": 10,
    "B": 11,
    "C-": 11,
    "Cb": 11,
}
# Words a caption may use for each ground-truth setting.
ALLOWED = {
    "piano": {"piano"},
    "harpsichord": {"harpsichord"},
    "organ": {"organ", "church organ"},
    "guitar": {"guitar", "acoustic guitar"},
    "strings": {"strings", "violin", "viola", "cello", "double bass", "string ensemble"},
    "choir": {"choir", "voices", "singing", "vocals"},
    "brass": {"brass", "trumpet", "trombone", "french horn", "tuba"},
    "clarinet": {"clarinet"},
    "flute": {"flute"},
    "drums": {"drums", "percussion", "drum kit"},
}


def instrument_words() -> list[str]:
    """Every instrument word a caption can use (taggers' and recogniser's), lower case."""
    from tunelens.caption.evidence import instrument_sources

    return sorted(set().union(*ALLOWED.values(), {w.lower() for w in instrument_sources()}))


# An answer's instrument word → the ground-truth setting it names.
TAGGER_TO_GT = {w: setting for setting, words in ALLOWED.items() for w in words if setting != "choir"}
TAGGER_TO_GT["choir"] = "choir"


def parse_key(text: str) -> tuple[int, str] | None:
    m = re.match(r"([A-G][#b-]?)\s+(major|minor)", text)
    return (PC[m.group(1)], m.group(2)) if m else None


def mirex(est: tuple[int, str], ref: tuple[int, str]) -> float:
    (e, em), (r, rm) = est, ref
    if (e, em) == (r, rm):
        return 1.0
    if em == rm and (e - r) % 12 in (5, 7):
        return 0.5
    if em != rm and ((rm == "major" and e == (r + 9) % 12) or (rm == "minor" and e == (r + 3) % 12)):
        return 0.3
    if e == r:
        return 0.2
    return 0.0


def tempo_scores(df: pl.DataFrame) -> dict:
    est, ref = df["tempo_bpm"].to_numpy().astype(float), df["gt_tempo"].to_numpy().astype(float)
    ok = np.abs(est / ref - 1) <= 0.04
    metrical = np.zeros_like(ok)
    for m in (2, 0.5, 3, 1 / 3, 1.5, 2 / 3):
        metrical |= np.abs(est / (ref * m) - 1) <= 0.04
    metrical &= ~ok
    return {
        "tempo accuracy (4%)": ok.mean(),
        "tempo octave/metrical errors": metrical.mean(),
        "tempo other errors": 1 - ok.mean() - metrical.mean(),
    }


def contradictions(caption: str, gt: dict) -> list[str]:
    text = caption.lower()
    found = []
    negated = re.sub(r"\b(no vocals|no voices|instrumental)\b", " ", text)
    for w in instrument_words():
        if re.search(rf"\b{w}\b", negated) and w not in ALLOWED[gt["instrument"]] and not any(
                w in a.split() for a in ALLOWED[gt["instrument"]]):
            found.append(f"instrument '{w}' but it is {gt['instrument']}")
    if gt["instrument"] == "choir" and re.search(r"\b(no vocals|instrumental)\b", text):
        found.append("says instrumental but it is a choir")
    if re.search(r"\bslow\b", text) and gt["tempo_class"] == "fast":
        found.append("says slow but the tempo is fast")
    if re.search(r"\bfast\b", text) and gt["tempo_class"] == "slow":
        found.append("says fast but the tempo is slow")
    for m in re.finditer(r"\bin ([A-G][#b]?) (major|minor)", caption):
        if gt["key"] and parse_key(f"{m.group(1)} {m.group(2)}") != parse_key(gt["key"]):
            found.append(f"says {m.group(1)} {m.group(2)} but it is {gt['key']}")
    return found


def questions(gt: dict, rng: random.Random) -> list[tuple[str, str, list, object]]:
    """(kind, question, options, correct option) for one track."""
    out = []
    bpm = gt["tempo_bpm"]
    opts = [bpm, bpm * 0.5, bpm * 0.75, bpm * 1.33]
    out.append(("tempo", "What is the tempo of this track in BPM?", opts, bpm))
    if gt["key"]:
        tonic, mode = parse_key(gt["key"])
        names = [n for n in ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")]
        correct = f"{names[tonic]} {mode}"
        others = [f"{n} {m}" for n in names for m in ("major", "minor") if f"{n} {m}" != correct]
        out.append(("key", "What key is this in?", [correct] + rng.sample(others, 3), correct))
        out.append(("mode", "Is it in a major or a minor key?", ["major", "minor"], mode))
    settings = list(ALLOWED)
    inst = gt["instrument"]
    out.append(
        ("instrument", "Which instrument plays in this track?",
         [inst] + rng.sample([s for s in settings if s != inst], 3), inst)
    )
    out.append(("vocals", "Is there singing in this track?", [True, False], inst == "choir"))
    dur = gt["duration"]
    out.append(("duration", "How long is this track?", [dur, dur * 0.5, dur * 1.5, dur * 2.0], dur))
    asked = inst if rng.random() < 0.5 else rng.choice([s for s in settings if s != inst])
    word = {"strings": "violin", "drums": "drums"}.get(asked, asked)
    out.append(("instrument yes/no", f"Is there a {word} in this track?", [True, False], asked == inst))
    return out


def choose(kind: str, options: list, value) -> object | None:
    if value is None:
        return None
    if kind in ("tempo", "duration"):
        return min(options, key=lambda o: abs(math.log(o / value)))
    if kind == "key":
        est = parse_key(str(value))
        return next((o for o in options if parse_key(o) == est), None)
    if kind == "instrument":
        for v in value if isinstance(value, list) else [value]:
            g = TAGGER_TO_GT.get(str(v).lower())
            if g in options:
                return g
        return None
    return value if value in options else None


def evaluate(library: Path, ground_truth: Path, seed: int = 0) -> dict:
    from tunelens.caption.evidence import Evidence
    from tunelens.caption.qa import answer
    from tunelens.index import Library
    from tunelens.index.core.captions import CaptionStore

    lib = Library.open(library)
    caps = CaptionStore(lib.root).read("describe").filter(pl.col("status") == "ok")
    gt = pl.read_parquet(ground_truth).rename({"tempo_bpm": "gt_tempo", "key": "gt_key", "duration": "gt_duration"})
    df = (
        lib.ok_tracks()
        .select("track_id", "rel_path", "tags")
        .join(caps, on="track_id")
        .join(gt, left_on="rel_path", right_on="file")
    )
    res: dict = {"tracks": len(df)}
    res.update(tempo_scores(df))
    keyed = df.filter(pl.col("gt_key").is_not_null() & pl.col("key").is_not_null())
    res["key MIREX score"] = float(
        np.mean([mirex(parse_key(k), parse_key(g)) for k, g in zip(keyed["key"], keyed["gt_key"])])
    )
    res["key exact"] = float(np.mean([parse_key(k) == parse_key(g) for k, g in zip(keyed["key"], keyed["gt_key"])]))
    rng = random.Random(seed)
    bad, qa, examples = 0, [], []
    for row in df.iter_rows(named=True):
        g = {
            "instrument": row["instrument"],
            "tempo_class": row["tempo_class"],
            "key": row["gt_key"],
            "tempo_bpm": row["gt_tempo"],
            "duration": row["gt_duration"],
        }
        c = contradictions(row["caption"], g)
        bad += bool(c)
        if c and len(examples) < 8:
            examples.append(f"{row['rel_path']}: {'; '.join(c)}")
        ev = Evidence.from_row(row)
        for kind, q, options, correct in questions(g, rng):
            a = answer(q, ev)
            picked = choose(kind.split()[0] if kind != "instrument yes/no" else "yes/no", options, a.value)
            qa.append({"kind": kind, "correct": picked == correct, "abstained": not a.known})
    res["captions with a contradiction"] = bad / max(len(df), 1)
    qa_df = pl.DataFrame(qa)
    res["QA questions"] = len(qa_df)
    res["QA accuracy"] = float(qa_df["correct"].mean())
    res["QA abstained (can't tell)"] = float(qa_df["abstained"].mean())
    res["per kind"] = (
        qa_df.group_by("kind")
        .agg(pl.len().alias("n"), pl.col("correct").mean().alias("accuracy"),
             pl.col("abstained").mean().alias("abstained"))
        .sort("kind")
    )
    res["contradiction examples"] = examples
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--library", required=True, type=Path)
    ap.add_argument("--ground-truth", required=True, type=Path)
    ap.add_argument("--seeds", type=int, default=1, metavar="N",
                    help="also draw the multiple-choice options with seeds 0..N-1 and print the spread of QA accuracy")
    args = ap.parse_args(argv)
    res = evaluate(args.library, args.ground_truth)
    if args.seeds > 1:
        accs = [res["QA accuracy"]] + [
            evaluate(args.library, args.ground_truth, seed)["QA accuracy"] for seed in range(1, args.seeds)
        ]
        res[f"QA accuracy over {args.seeds} seeds"] = (
            f"min {min(accs):.3f}, mean {np.mean(accs):.3f}, max {max(accs):.3f}"
        )
    for k, v in res.items():
        if k == "per kind":
            print(v)
        elif k == "contradiction examples":
            for e in v:
                print("  contradiction:", e)
        else:
            print(f"{k:<34}{v:.3f}" if isinstance(v, float) else f"{k:<34}{v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
