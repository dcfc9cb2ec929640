"""Calibrate what captions may state, and print the reliability table on soundfonts left out.

    python scripts/calibrate_evidence.py CORPUS [CORPUS ...] [--calibrate-on musescore,csound] [--write]

Reuses the caches of `scripts/train_instruments.py` (musicnn features) and `scripts/train_descriptors.py`
(tempo and key measurements) in each corpus folder; what they lack is computed here, in one process.

For every clip it rebuilds the evidence a library would hold (musicnn tag probabilities, the instrument
recogniser's probabilities, tempo and key) and lists every statement a caption or answer could make, each with
its score and whether the ground truth agrees. On the calibration soundfonts the recogniser's probabilities come
from heads trained without that soundfont (leave-one-soundfont-out), so they are as unsure as on music it never
heard; the key probabilities likewise come from key models fitted without it. For each kind of fact and strength
the threshold is the lowest score down to which the statements of that band (above it, below the stronger
strength's threshold) were right at least 95% ("clear"), 80% ("likely") or 50% ("possible") of the time for
answers, 98% and 95% for captions (which state several facts at once), with at least `MIN_SUPPORT` statements, on
each calibration soundfont on its own (the strictest of their thresholds: the promise must hold on every soundfont
the recogniser never heard, not on their average); a kind that never gets there is never stated at that strength.
"Instrumental" is weighted as if half the clips had singing, "no, I don't hear X" as if X were there half the time
(`BALANCED`). The reliability table, the share of captions with a contradicted statement and QA accuracy are then
measured on the other soundfonts (never trained on, never calibrated on), one by one and together, with the
shipped recogniser, and on each calibration soundfont.
`--write` stores the thresholds and these figures in `caption/weights/calibration.json`.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
from pathlib import Path

import numpy as np
import polars as pl
import train_descriptors as td  # sibling scripts, imported by name
import train_instruments as ti

from tunelens.caption.evidence import BELOW_THRESHOLDS, WORD_MEMBERS

ROOT = Path(__file__).resolve().parents[1]
MIN_SUPPORT = 20
# Precision each strength must reach: answers to a question (their confidence goes with them, and "possibly"
# means better than even), and captions, which state facts unprompted and must rarely be wrong as a whole.
ANSWER_LEVELS = {"clear": 0.95, "likely": 0.8, "possible": 0.5}
# Caption levels (plain, hedged), tried on the calibration soundfonts pooled, before thresholds were fitted per
# soundfont (contradicted captions, facts per caption):
# 97/90 7.5%, 2.14; 97/95 2.5%, 1.66; 98/95 1.5%, 1.46; 99/95 2.1%, 1.31. The loosest under 2.5% is kept.
CAPTION_LEVELS = {"clear": 0.98, "likely": 0.95}
# Which ground-truth classes make an instrument word true (a general word is true of any of its members).
WORD_TRUTH = {**{word: set(members) for word, members in WORD_MEMBERS.items()},
              "French horn": {"french horn"}, "sitar": set()}
# The `caption.evidence.Thresholds` field each kind of statement sets at each strength.
FIELDS = {"instrument (tagger)": {"clear": "instrument_clear", "likely": "instrument_likely",
                                  "possible": "instrument_possible"},
          "instrument (recogniser)": {"clear": "recogniser_clear", "likely": "recogniser_likely",
                                      "possible": "recogniser_possible"},
          "lead instrument": {"clear": "lead_clear", "likely": "lead_likely"},
          "absent (tagger)": {"clear": "instrument_absent", "likely": "instrument_absent_likely"},
          "absent (recogniser)": {"clear": "recogniser_absent", "likely": "recogniser_absent_likely"},
          "vocals": {"clear": "vocals_clear", "likely": "vocals_likely"}, "no vocals": {"clear": "no_vocals"},
          "tempo": {"clear": "tempo_confidence", "likely": "tempo_min_confidence", "possible": "tempo_possible"},
          "key": {"clear": "key_clear", "likely": "key_likely", "possible": "key_possible"}}
# Each claim is calibrated at the base rate least kind to it. Singing is rare in the development corpus (its
# choirs) and common in libraries: "singing" is calibrated at the corpus's own rate (rare), "instrumental" as if
# half the clips had singing, so the corpus's few singers do not make "instrumental" look safe. Likewise "No, I
# don't hear a clarinet": any one of the 36 classes is absent from 97% of clips, which makes "no" look safe at
# almost any score, but people ask about an instrument they suspect is there; so absences are calibrated as if
# the instrument asked about were there half the time (calibrated at the corpus's rate, "no" answers were right
# 98% of the time on the calibration soundfonts, but 76% / 74% weighted so: MuseScore / csound, 2026-12-01).
BALANCED = {"no vocals", "absent (tagger)", "absent (recogniser)"}
# Claims of absence, stated when a score falls below their threshold: the kinds whose fields `caption.evidence` lists.
LOWER_IS_SURER = {kind for kind, by_level in FIELDS.items() if set(by_level.values()) <= BELOW_THRESHOLDS}


def truth_of(word: str, present: set[str]) -> bool:
    return bool(WORD_TRUTH.get(word, {word.lower()}) & present)


def build_evidence(corpus: pl.DataFrame, calibrate_on: list[str], provenance: dict, processes: int = 1) -> list:
    """Evidence of every clip, as a library would hold it (see the module docstring for the recogniser);
    `provenance` is the shipped recogniser's `instruments.json`; `processes` workers compute what the training
    scripts' caches lack."""
    from tunelens.caption.evidence import RECOGNISER_PREFIX, Evidence
    from tunelens.embed import EncoderOptions
    from tunelens.embed.descriptors import key, tempo
    from tunelens.embed.musicnn_encoder import WEIGHTS, InstrumentHead, MusicnnEncoder, instrument_classes, tag_names
    from tunelens.index.core.schema import Descriptors

    version = MusicnnEncoder("", EncoderOptions(device="cpu"), with_head=False).features_version
    feats = ti.clip_features(corpus, version, processes)
    meas = td.measurements(corpus, processes)
    classes = list(instrument_classes())
    labels = np.array([[c in set(names) for c in classes] for names in corpus["instruments"]], np.float32)
    fonts = np.array(corpus["soundfont"].to_list())
    # the left-out heads are trained as the shipped one was (on its soundfonts, with its augmented copies of each
    # clip) less the soundfont left out; the left-out key models likewise on the shipped key model's soundfonts
    copies = provenance.get("augment", {}).get("copies", 0)
    trained = [i for i, f in enumerate(fonts) if f in provenance["trained_on"]]
    key_fonts = json.loads((WEIGHTS / "descriptors.json").read_text())["fitted_on"]
    augmented = ti.augmented_features(corpus, trained, version, processes, copies)
    keys = [td.parse_key(k) for k in corpus["key"]]
    heads, key_models = {}, {}
    for s in calibrate_on:
        rows = [i for i in trained if fonts[i] != s]
        heads[s] = InstrumentHead(ti.train_head(*ti.training_windows(rows, feats, augmented, labels)))
        keyed = [i for i, f in enumerate(fonts) if f in key_fonts and f != s and keys[i] is not None]
        key_models[s] = td.fit_key_model(np.stack([meas[i][3] for i in keyed]), [keys[i] for i in keyed])
    shipped = InstrumentHead.load()
    names = tag_names()[:100]
    out = []
    for i, (f, (reg, rate, harmony, chroma)) in enumerate(zip(feats, meas)):
        head = heads.get(fonts[i], shipped)
        probs = 1 / (1 + np.exp(-f[:, :100]))
        rec = 1 / (1 + np.exp(-head.logits(f)))
        tags = {n: float(p) for n, p in zip(names, probs.mean(axis=0))}
        tags.update({RECOGNISER_PREFIX + c: float(p) for c, p in zip(classes, rec.mean(axis=0))})
        bpm, conf = tempo(reg, rate, harmony)
        k, margin = key(chroma, key_models.get(fonts[i]))
        d = Descriptors(duration=10.0, tempo_bpm=bpm, tempo_confidence=conf, key=k, key_confidence=margin,
                        loudness_lufs=None, loudness_range_lu=None, brightness_hz=0.0, onset_rate=rate)
        out.append(Evidence(d, tags))
    return out


def statements(ev, gt: dict) -> list[tuple[str, float, bool]]:
    """(kind, score, right) for every statement the evidence could support about one clip."""
    from tunelens.caption.evidence import (
        RECOGNISER_PREFIX,
        RECOGNISER_WORDS,
        has_recogniser,
        instrument_sources,
        voice_score,
    )

    present = set(gt["instruments"])
    out = []
    for word, sources in instrument_sources().items():
        right = truth_of(word, present)
        for tag, src in sources:
            if src == "recogniser" and not has_recogniser(ev):
                continue
            p = float(ev.tags.get(tag, 0.0))
            out.append((f"instrument ({src})", p, right))
            out.append((f"absent ({src})", p, not right))
    heard = [t for t in ev.tags if t.startswith(RECOGNISER_PREFIX)]
    if heard:  # the statement `caption.evidence.lead_instrument` makes
        top = max(heard, key=lambda t: ev.tags[t])
        name = top[len(RECOGNISER_PREFIX):]
        out.append(("lead instrument", float(ev.tags[top]), truth_of(RECOGNISER_WORDS.get(name, name), present)))
    voice = voice_score(ev)[1]
    sung = "choir" in present
    out += [("vocals", voice, sung), ("no vocals", voice, not sung)]
    d = ev.descriptors
    if d.tempo_bpm:
        out.append(("tempo", d.tempo_confidence, abs(d.tempo_bpm / gt["tempo_bpm"] - 1) <= 0.04))
    if d.key and gt["key"]:
        est, ref = td.parse_key(d.key), td.parse_key(gt["key"])
        out.append(("key", d.key_confidence, est == ref))
        out.append(("mode", d.key_confidence, est[1] == ref[1]))
    return out


def weights(kind: str, right: np.ndarray) -> np.ndarray:
    """Per-statement weights: 1, or for `BALANCED` kinds half the weight to each truth value."""
    if kind not in BALANCED or right.all() or not right.any():
        return np.ones(len(right))
    return np.where(right, 0.5 / right.sum(), 0.5 / (~right).sum()) * len(right)


def threshold(scores: np.ndarray, right: np.ndarray, level: float, lower: bool, w: np.ndarray | None = None
              ) -> float | None:
    """The loosest threshold such that every cumulative set of the surest statements (at least MIN_SUPPORT of them)
    down to it is right at `level` or better (weighted by `w`); None when even the surest MIN_SUPPORT fall short."""
    order = np.argsort(scores if lower else -scores, kind="stable")
    s, r = scores[order], right[order]
    w = np.ones(len(r)) if w is None else w[order]
    precision = np.cumsum(w * r) / np.cumsum(w)
    k = MIN_SUPPORT
    if len(r) < k or precision[k - 1] < level:
        return None
    while k < len(r) and precision[k] >= level:
        k += 1
    # all statements with a score at least as sure as s[k-1]; ties beyond it are included, so step past them
    t = float(s[k - 1])
    return float(np.nextafter(t, np.inf)) if lower else t


def fit_levels(folds: list[list[tuple[str, float, bool]]], levels: dict[str, float]) -> dict[str, float | None]:
    """Thresholds fields → calibrated threshold (None: no score reached the level's precision). Each calibration
    soundfont (its statements, heard by a recogniser trained without it) is a fold, and the threshold is the
    strictest of the folds' own: the level's precision must hold on every soundfont the recogniser never heard, not
    on their average (a kind that reaches it on one only is never stated at that strength). Each weaker level is
    fitted on the statements beyond the stronger one's threshold, so its own band ("likely", "possible") is right at
    its level, not just the whole set above it."""
    values: dict[str, float | None] = {}
    for kind, by_level in FIELDS.items():
        lower = kind in LOWER_IS_SURER
        parts = [(np.array([s for k, s, _ in rows if k == kind]), np.array([r for k, _, r in rows if k == kind], bool))
                 for rows in folds]
        # the last threshold found: a level that finds none leaves its band to the next one
        stronger = -np.inf if lower else np.inf
        for level in ("clear", "likely", "possible"):
            if level not in by_level or level not in levels:
                continue
            found = []
            for sc, ok in parts:
                band = sc >= stronger if lower else sc < stronger
                found.append(threshold(sc[band], ok[band], levels[level], lower, weights(kind, ok)[band])
                             if band.sum() else None)
            t = None if None in found or not found else (min(found) if lower else max(found))
            values[by_level[level]] = t
            stronger = stronger if t is None else t
    return values


def reliability(rows: list[tuple[str, float, bool]], th, levels: dict[str, float]) -> pl.DataFrame:
    """Per kind and strength: the statements made at exactly that strength on these clips, and their precision."""
    table = []
    for kind in sorted({k for k, _, _ in rows}):
        by_level = FIELDS.get(kind) or FIELDS[kind.replace("mode", "key")]
        sc = np.array([s for k, s, _ in rows if k == kind])
        ok = np.array([r for k, _, r in rows if k == kind], bool)
        w = weights(kind, ok)
        lower = kind in LOWER_IS_SURER
        stronger = -np.inf if lower else np.inf
        for level in ("clear", "likely", "possible"):
            if level not in by_level or level not in levels:
                continue
            t = getattr(th, by_level[level])
            mask = (sc < t) & (sc >= stronger) if lower else (sc >= t) & (sc < stronger)
            stronger = max(stronger, t) if lower else min(stronger, t)
            table.append({"fact": kind, "strength": level, "threshold": t, "statements": int(mask.sum()),
                          "precision": float(np.average(ok[mask], weights=w[mask])) if mask.any() else float("nan"),
                          "required": levels[level]})
    return pl.DataFrame(table)


def caption_statements(ev, th) -> list[tuple[str, object]]:
    """(kind, value) of each fact a caption at `th` states (hedged ones too): what `DescribeCaptioner` says."""
    from tunelens.caption import evidence as E

    out: list[tuple[str, object]] = [("instrument", j.value) for j in E.instruments(ev, th) if j.strength != "possible"]
    v = E.vocals(ev, th)
    if v is not None and (v.value or v.strength == "clear"):
        out.append(("vocals", v.value))
    t = E.tempo(ev, th)
    if t is not None:
        out.append(("tempo", t.value))
    k = E.key(ev, th)
    if k is not None:
        out.append(("key", k.value))
    return out


def absence_answers(evs: list, gts: list[dict], th) -> pl.DataFrame:
    """What "Is there a X?" gets for every instrument word on every clip, grouped by answer ("yes" at any strength,
    "no", "probably not", "possibly not"), with each answer's precision at the corpus's rate and as if the
    instrument asked about were there half the time (the rate absences are calibrated at)."""
    from tunelens.caption import evidence as E

    said, right = [], []
    for ev, gt in zip(evs, gts):
        present = set(gt["instruments"])
        for word in E.instrument_sources():
            heard = E.covered_instrument(ev, word, th) is not None  # as `caption.qa.answer` hears it
            said.append("yes" if heard else {"clear": "no", "likely": "probably not"}.get(
                E.instrument_absent(ev, word, th), "possibly not"))
            right.append(not truth_of(word, present))  # right for an answer of absence
    ok = np.array(right, bool)
    w = weights("absent (recogniser)", ok)
    table = []
    for kind in ("no", "probably not", "possibly not"):
        m = np.array([x == kind for x in said])
        table.append({"answer": kind, "n": int(m.sum()), "share": float(m.mean()),
                      "precision": float(ok[m].mean()) if m.any() else float("nan"),
                      "precision, asked half the time": float(np.average(ok[m], weights=w[m])) if m.any()
                      else float("nan")})
    return pl.DataFrame(table)


def general_word_answers(evs: list, gts: list[dict], th) -> pl.DataFrame:
    """ "Is there brass / a guitar / ...?" for every general word on every clip (`caption.qa.answer` says yes at the
    strength of `covered_instrument`): how often it is yes (at any strength) where the word is true and where it is
    not, and how often each strength of yes is right; per word and over all of them."""
    from tunelens.caption.evidence import covered_instrument

    answers: dict[str, tuple[list[str], list[bool]]] = {}
    for word in WORD_MEMBERS:
        said, true = [], []
        for ev, gt in zip(evs, gts):
            found = covered_instrument(ev, word, th)
            said.append("not yes" if found is None else {"clear": "yes", "likely": "probably yes"}.get(
                found[1].strength, "possibly yes"))
            true.append(truth_of(word, set(gt["instruments"])))
        answers[word] = (said, true)
    answers["all of them"] = ([x for s, _ in answers.values() for x in s], [x for _, t in answers.values() for x in t])
    table = []
    for word, (said, true) in answers.items():
        said_a, true_a = np.array(said), np.array(true, bool)
        row = {"word": word, "clips with it": int(true_a.sum()),
               "yes where it is": float((said_a[true_a] != "not yes").mean()) if true_a.any() else float("nan"),
               "yes where it is not": float((said_a[~true_a] != "not yes").mean()) if (~true_a).any() else float("nan")}
        for level in ("yes", "possibly yes"):
            m = said_a == level
            row[f"{level}: right"] = float(true_a[m].mean()) if m.any() else float("nan")
        table.append(row)
    return pl.DataFrame(table)


def caption_contradictions(ev, gt: dict, th) -> list[str]:
    """What a caption at `th` states that the ground truth contradicts."""
    present = set(gt["instruments"])
    wrong = []
    for kind, value in caption_statements(ev, th):
        if kind == "instrument" and not truth_of(value, present):
            wrong.append(f"says {value}")
        elif kind == "vocals" and value != ("choir" in present):
            wrong.append("says singing" if value else "says instrumental")
        elif kind == "tempo" and abs(value / gt["tempo_bpm"] - 1) > 0.04:
            wrong.append(f"says {value:.0f} BPM (true {gt['tempo_bpm']:.0f})")
        elif kind == "key" and gt["key"] and td.parse_key(value) != td.parse_key(gt["key"]):
            wrong.append(f"says {value} (true {gt['key']})")
    return wrong


def qa(evs: list, gts: list[dict], th, rng: random.Random) -> pl.DataFrame:
    """Instrument questions over every class (yes/no for a present and an absent one, which instrument plays),
    vocals, and an instrument outside the vocabulary (the right answer is "I can't tell")."""
    from tunelens.caption.evidence import RECOGNISER_WORDS
    from tunelens.caption.qa import answer
    from tunelens.embed.musicnn_encoder import instrument_classes

    words = {c: RECOGNISER_WORDS.get(c, c) for c in instrument_classes()}
    rows = []
    for ev, gt in zip(evs, gts):
        present = set(gt["instruments"])
        yes = rng.choice(sorted(present))
        no = rng.choice(sorted(c for c in words if not truth_of(words[c], present)))
        for cls, expected in ((yes, True), (no, False)):
            a = answer(f"Is there a {words[cls]} in this track?", ev, th)
            rows.append({"question": "is there X (present)" if expected else "is there X (absent)",
                         "right": a.value is expected, "cant_tell": not a.known})
        a = answer("Which instruments play in this track?", ev, th)
        first = a.value[0] if isinstance(a.value, list) and a.value else None
        rows.append({"question": "which instrument", "right": first is not None and truth_of(first, present),
                     "cant_tell": not a.known})
        a = answer("Is there singing?", ev, th)
        rows.append({"question": "vocals", "right": a.value is ("choir" in present), "cant_tell": not a.known})
        a = answer("Is there a ukulele in this track?", ev, th)
        rows.append({"question": "unknown instrument", "right": not a.known, "cant_tell": not a.known})
    return pl.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    from tunelens.caption.evidence import CALIBRATION, calibrated_thresholds, caption_thresholds

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("corpora", type=Path, nargs="+", help="development corpus folders (make_dev_corpus.py output)")
    ap.add_argument("--calibrate-on", default=None,
                    help="soundfonts to set thresholds on, each left out in turn (default: the recogniser's training "
                         "soundfonts, from instruments.json)")
    ap.add_argument("--write", action="store_true", help=f"store the thresholds in {CALIBRATION.relative_to(ROOT)}")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--processes", type=int, default=os.cpu_count() or 1,
                    help="worker processes for the features and measurements not cached yet")
    args = ap.parse_args(argv)

    from tunelens.embed.musicnn_encoder import WEIGHTS

    corpus = ti.load_corpus(args.corpora)
    provenance = json.loads((WEIGHTS / "instruments.json").read_text())
    calibrate_on = (provenance["trained_on"] if args.calibrate_on is None
                    else [s for s in args.calibrate_on.split(",") if s])
    # checked before any work: the left-out heads retrain on the recogniser's soundfonts, and an empty calibration
    # fold would silence every kind of fact
    needed = {**{s: "to calibrate on" for s in calibrate_on},
              **{s: "the recogniser was trained on it" for s in provenance["trained_on"]}}
    missing = sorted(set(needed) - set(corpus["soundfont"]))
    if missing:
        raise SystemExit("error: no clips of " + "; ".join(f"{s} ({needed[s]})" for s in missing)
                         + " in these corpora: pass the corpus of each")
    evs = build_evidence(corpus, calibrate_on, provenance, args.processes)
    gts = corpus.select("instruments", "tempo_bpm", "key", "soundfont").to_dicts()
    said = [statements(ev, gt) for ev, gt in zip(evs, gts)]  # every clip's statements, made once
    by_font: dict[str, list[int]] = {}
    for i, g in enumerate(gts):
        by_font.setdefault(g["soundfont"], []).append(i)
    cal = [i for i, g in enumerate(gts) if g["soundfont"] in calibrate_on]
    folds = [[st for i in by_font[s] for st in said[i]] for s in calibrate_on]
    answer_values, caption_values = fit_levels(folds, ANSWER_LEVELS), fit_levels(folds, CAPTION_LEVELS)
    answer_th = calibrated_thresholds(answer_values)
    th = caption_thresholds(calibrated_thresholds(caption_values))
    pl.Config.set_tbl_rows(60)
    pl.Config.set_tbl_width_chars(140)
    print("answer thresholds:", json.dumps(answer_values))
    print("caption thresholds:", json.dumps(caption_values))
    report = {}
    parts = [("calibration soundfonts (recogniser left out in turn)", cal)]
    parts += [(f"calibration soundfont {font} (recogniser trained without it)", by_font[font]) for font in calibrate_on]
    held = [font for font in sorted(by_font) if font not in calibrate_on]
    parts += [(f"held-out soundfont {font}", by_font[font]) for font in held]
    if len(held) > 1:  # every clip neither the recogniser nor the thresholds have heard, as one collection
        parts.append((f"held-out soundfonts together ({', '.join(held)})", [i for f in held for i in by_font[f]]))
    for name, idx in parts:
        if not idx:
            continue
        made = [st for i in idx for st in said[i]]
        table = reliability(made, th, CAPTION_LEVELS)
        answers = reliability(made, answer_th, ANSWER_LEVELS)
        contra = [caption_contradictions(evs[i], gts[i], th) for i in idx]
        q = qa([evs[i] for i in idx], [gts[i] for i in idx], answer_th, random.Random(args.seed))
        per_q = q.group_by("question").agg(pl.len().alias("n"), pl.col("right").mean().alias("accuracy"),
                                           pl.col("cant_tell").mean().alias("can't tell")).sort("question")
        share = float(np.mean([bool(c) for c in contra]))
        print(f"\n== {name}: {len(idx)} clips")
        print("captions:")
        print(table.with_columns(pl.selectors.float().round(3)))
        print("answers:")
        print(answers.with_columns(pl.selectors.float().round(3)))
        stated = np.mean([len(caption_statements(evs[i], th)) for i in idx])
        print(f"facts stated per caption: {stated:.2f}")
        print(f"captions with a contradicted statement: {share:.3f}")
        for c in [c for c in contra if c][:6]:
            print("  ", "; ".join(c))
        print(f"QA accuracy {q['right'].mean():.3f} over {len(q)} questions")
        print(per_q.with_columns(pl.selectors.float().round(3)))
        absences = absence_answers([evs[i] for i in idx], [gts[i] for i in idx], answer_th)
        print('"Is there a X?" for every instrument word, answers of absence:')
        print(absences.with_columns(pl.selectors.float().round(3)))
        general = general_word_answers([evs[i] for i in idx], [gts[i] for i in idx], answer_th)
        print("general words, heard through the instruments they cover:")
        print(general.with_columns(pl.selectors.float().round(3)))
        report[name] = {"clips": len(idx), "caption reliability": table.to_dicts(),
                        "answer reliability": answers.to_dicts(), "facts stated per caption": float(stated),
                        "contradicted captions": share, "answers of absence": absences.to_dicts(),
                        "general words": general.to_dicts(),
                        "QA accuracy": float(q["right"].mean()), "QA per question": per_q.to_dicts()}
    if args.write:
        CALIBRATION.parent.mkdir(exist_ok=True)
        CALIBRATION.write_text(json.dumps({
            "answer_thresholds": answer_values, "caption_thresholds": caption_values, "answer_levels": ANSWER_LEVELS,
            "caption_levels": CAPTION_LEVELS, "min_support": MIN_SUPPORT, "calibrated_on": calibrate_on,
            "recipe": "scripts/calibrate_evidence.py " + " ".join(sys.argv[1:] if argv is None else argv),
            "report": report}, indent=1, default=float))
        print(f"\nwrote {CALIBRATION}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
