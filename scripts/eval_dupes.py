"""Precision and recall of duplicate detection on a test set built from a rendered corpus (the demo's by default).

    python scripts/eval_dupes.py --music demo/music [--work /tmp/tunelens-eval-dupes] [--model musicnn]
    python scripts/eval_dupes.py --no-dupes LIB [--truth GT.parquet]   # false merges in a library of distinct clips

Each transformation is applied to its own random half of the tracks: a lossless WAV copy (an exact
duplicate), MP3 at 128 and at 64 kbps, a gain change of +-6 dB, a small trim (up to 2 s, split between start
and end), edits that cut 3 s up to 30 s or 20% of the track (whichever is less) at the start, at the end, or
at both, fades (in 2-5 s, out 3-8 s), resampling to another rate, and mono stored as stereo.

Hard negatives, which must never join a cluster: the corpus's other pieces for the same instrument and tempo
class, and (rendered here from the same score through the same soundfont) the same piece played by another
instrument, the same piece played 20% faster or slower, and the same piece with the same notes at the same
times but its level swelling and ebbing over the phrases (velocities scaled by 0.4-1.0 on a 6-16 s cycle).
A pair counts as found when both files land in one cluster; precision and recall are over all such pairs.

`--no-dupes` runs the detector on a library that holds no duplicates (the development corpus of the "Hear
real music" issue holds the same scores in several arrangements) and counts the pairs it joins.
"""
from __future__ import annotations

import argparse
import itertools
import random
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

TRANSFORMS = ["wav_copy", "mp3_128k", "mp3_64k", "gain", "trim", "edit_start", "edit_end", "edit_both", "fade",
              "resample", "stereo"]
NEGATIVES = ["other_instrument", "other_tempo", "other_dynamics"]


def write_mp3(path: Path, data: np.ndarray, sr: int, bitrate: int = 128_000) -> None:
    import av

    layout = "mono" if data.shape[1] == 1 else "stereo"
    with av.open(str(path), "w", format="mp3") as c:
        stream = c.add_stream("libmp3lame", rate=sr, layout=layout)
        stream.bit_rate = bitrate
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data.T, dtype=np.float32), format="fltp", layout=layout)
        frame.sample_rate = sr
        for packet in stream.encode(frame):
            c.mux(packet)
        for packet in stream.encode(None):
            c.mux(packet)


def transform(kind: str, src: Path, out_dir: Path, rng: random.Random) -> tuple[Path, str]:
    """Write the transformed copy of `src`; returns (path, what was done)."""
    import soundfile as sf
    import soxr

    from tunelens.embed.audio import read_audio

    data, sr = read_audio(src)
    stem = f"{src.stem}__{kind}"
    if kind == "wav_copy":
        path = out_dir / f"{stem}.wav"
        sf.write(path, data, sr, subtype="PCM_16")
        return path, "wav"
    if kind in ("mp3_128k", "mp3_64k"):
        path = out_dir / f"{stem}.mp3"
        kbps = int(kind[4:-1])
        write_mp3(path, data, sr, kbps * 1000)
        return path, f"mp3 {kbps}k"
    path = out_dir / f"{stem}.flac"
    if kind == "gain":
        db = 6.0 if np.abs(data).max() * 10 ** (6 / 20) < 1.0 and rng.random() < 0.5 else -6.0
        sf.write(path, data * 10 ** (db / 20), sr)
        return path, f"{db:+.0f} dB"
    if kind == "trim":
        total = rng.uniform(0.5, 2.0)
        head = rng.uniform(0, total)
        sf.write(path, data[int(head * sr): len(data) - int((total - head) * sr)], sr)
        return path, f"trim {head:.2f}s+{total - head:.2f}s"
    if kind.startswith("edit_"):
        seconds = len(data) / sr
        cut = rng.uniform(3.0, max(3.0, min(30.0, 0.2 * seconds)))
        head = {"edit_start": cut, "edit_end": 0.0, "edit_both": rng.uniform(0.3, 0.7) * cut}[kind]
        sf.write(path, data[int(head * sr) : len(data) - int((cut - head) * sr)], sr)
        return path, f"edit: -{head:.1f}s start, -{cut - head:.1f}s end"
    if kind == "fade":
        fade_in, fade_out = rng.uniform(2, 5), rng.uniform(3, 8)
        env = np.ones(len(data))
        n_in, n_out = int(fade_in * sr), int(fade_out * sr)
        env[:n_in] = np.linspace(0, 1, n_in)
        env[len(env) - n_out :] = np.minimum(env[len(env) - n_out :], np.linspace(1, 0, n_out))
        sf.write(path, data * env[:, None], sr)
        return path, f"fade in {fade_in:.1f}s, out {fade_out:.1f}s"
    if kind == "resample":
        new_sr = rng.choice([r for r in (16000, 32000, 44100, 48000) if r != sr])
        sf.write(path, soxr.resample(data, sr, new_sr, quality="HQ"), new_sr)
        return path, f"{sr}->{new_sr} Hz"
    if kind == "stereo":
        out = np.repeat(data[:, :1], 2, axis=1) if data.shape[1] == 1 else data.mean(axis=1, keepdims=True)
        sf.write(path, out, sr)
        return path, "mono->stereo" if data.shape[1] == 1 else "stereo->mono"
    raise ValueError(kind)


def render_negative(kind: str, row: dict, out_dir: Path, rng: random.Random, soundfont: str) -> tuple[Path, str]:
    """The same score as the demo track `row`, rendered through `soundfont` by another instrument or at a tempo
    20% away: another recording of the same piece, which must not be taken for a copy."""
    import make_demo_corpus as demo  # a sibling script, imported by name
    import soundfile as sf

    programs = dict(demo.PROGRAMS)
    instrument, bpm = row["instrument"], float(row["quarter_bpm"])
    detail = ""
    if kind == "other_instrument":
        instrument = rng.choice(sorted(set(programs) - {instrument}))
    elif kind == "other_tempo":
        bpm *= rng.choice([0.8, 1.2])
    job = demo.Job(row["source"], instrument, bpm, melody_only=bool(row.get("melody_only")))
    events, _ = demo._score_events(job, float(row["duration"]) + 5)
    if kind == "other_dynamics":  # same notes at the same times, the level swelling and ebbing over phrases
        period, phase = rng.uniform(6.0, 16.0), rng.uniform(0, 2 * np.pi)
        events = [(a, b, p, int(np.clip(round(v * (0.7 + 0.3 * np.sin(2 * np.pi * a / period + phase))), 1, 127)))
                  for a, b, p, v in events]
        detail = f", velocity swelling every {period:.0f} s"
    audio = demo.render(events, programs[instrument], soundfont)
    path = out_dir / f"{Path(row['file']).stem}__{kind}.flac"
    sf.write(path, audio, demo.SR)
    return path, f"{instrument} at {bpm:.0f} bpm{detail}"


def build(music: Path, work: Path, seed: int, limit: int | None, soundfont: str | None = None) -> pl.DataFrame:
    """Copy the originals, write the transformed copies and render the negatives; returns (rel_path, original,
    transform, detail)."""
    gt = pl.read_parquet(music / "ground_truth.parquet").sort("file")
    if limit:
        gt = gt.head(limit)
    rng = random.Random(seed)
    files = gt["file"].to_list()
    target = work / "music"
    if target.exists():
        shutil.rmtree(target)
    rows = []
    for f in files:
        dst = target / "originals" / Path(f).name
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(music / f, dst)
        rows.append(
            {"rel_path": str(dst.relative_to(target)), "original": f, "transform": "original", "detail": "", "of": f}
        )
    for kind in TRANSFORMS:
        out_dir = target / kind
        out_dir.mkdir(parents=True, exist_ok=True)
        for f in sorted(rng.sample(files, len(files) // 2)):
            path, detail = transform(kind, music / f, out_dir, rng)
            rows.append(
                {"rel_path": str(path.relative_to(target)), "original": f, "transform": kind, "detail": detail, "of": f}
            )
    scores = [r for r in gt.iter_rows(named=True) if not str(r["source"]).startswith("drums:")]
    for kind in NEGATIVES if soundfont else []:
        out_dir = target / kind
        out_dir.mkdir(parents=True, exist_ok=True)
        for r in sorted(rng.sample(scores, len(scores) // 2), key=lambda r: r["file"]):
            try:
                path, detail = render_negative(kind, r, out_dir, rng, soundfont)
            except Exception as e:  # a score music21 cannot read again is left out, loudly
                print(f"could not render {kind} of {r['file']}: {e}", file=sys.stderr)
                continue
            # its own recording: the original column names the file itself, so no pair is expected
            rel = str(path.relative_to(target))
            rows.append({"rel_path": rel, "original": rel, "transform": kind, "detail": detail, "of": r["file"]})
    return pl.DataFrame(rows).join(gt, left_on="of", right_on="file", how="left")


def pairs_of(groups: list[list[str]]) -> set[tuple[str, str]]:
    return {tuple(sorted(p)) for g in groups for p in itertools.combinations(g, 2)}  # type: ignore[misc]


def _config(args):
    from tunelens.index.curation.dupes import DupesConfig

    d = DupesConfig()
    return DupesConfig(min_cosine=args.min_cosine if args.min_cosine is not None else d.min_cosine,
                       min_harmony=args.min_harmony if args.min_harmony is not None else d.min_harmony,
                       min_spectral=args.min_spectral if args.min_spectral is not None else d.min_spectral,
                       max_dynamics_db=args.max_dynamics_db if args.max_dynamics_db is not None else d.max_dynamics_db)


def no_dupes(lib_dir: Path, truth: Path | None, config) -> int:
    """Run the detector on a library without duplicates: every pair it joins is a false merge."""
    from tunelens.index import Library
    from tunelens.index.curation.dupes import find_duplicates

    lib = Library.open(lib_dir)
    t0 = time.time()
    res = find_duplicates(lib, config)
    groups = res.clusters.group_by("cluster").agg("rel_path")["rel_path"].to_list() if len(res.clusters) else []
    joined = pairs_of(groups)
    print(f"{lib_dir}: {lib.ok_tracks().height} tracks, {res.candidates} fingerprint comparisons in "
          f"{time.time() - t0:.0f} s; false merges: {len(joined)} pairs in {len(groups)} clusters")
    if truth is not None:
        gt = pl.read_parquet(truth)
        source = dict(gt.select("file", "source").iter_rows())
        files = sorted(source)
        key = {rel: next((f for f in files if rel.endswith(f) or f.endswith(rel)), None) for g in groups for rel in g}
        same_piece = sum(
            1 for a, b in itertools.combinations(files, 2) if source[a] == source[b]
        )
        joined_same = sum(1 for a, b in joined if key.get(a) and key.get(b) and source[key[a]] == source[key[b]])
        print(f"  pairs of clips of one score in different arrangements: {same_piece}; joined: {joined_same}")
    for g in groups[:10]:
        print("  joined:", *g)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--music", type=Path, default=Path("demo/music"), help="the demo corpus (with ground_truth.parquet)"
    )
    ap.add_argument("--work", type=Path, default=Path("/tmp/tunelens-eval-dupes"))
    ap.add_argument("--model", default=None, help="encoder spec (default: the offline default)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit", type=int, help="use only the first N originals")
    ap.add_argument("--soundfont", help="soundfont for the same-piece negatives (default: the demo's TimGM6mb)")
    ap.add_argument("--min-cosine", type=float, help="candidate radius (default: DupesConfig's)")
    ap.add_argument("--min-harmony", type=float, help="chroma threshold (default: DupesConfig's)")
    ap.add_argument("--min-spectral", type=float, help="log-mel threshold (default: DupesConfig's)")
    ap.add_argument("--max-dynamics-db", type=float, help="level-contour threshold (default: DupesConfig's)")
    ap.add_argument("--reuse", action="store_true", help="reuse the test set and library already in --work")
    ap.add_argument("--no-dupes", type=Path, metavar="LIB", help="count false merges in LIB (holds no duplicates)")
    ap.add_argument("--truth", type=Path, help="with --no-dupes: LIB's ground_truth.parquet (file, source)")
    args = ap.parse_args(argv)
    if args.no_dupes:
        return no_dupes(args.no_dupes, args.truth, _config(args))

    from tunelens.embed import load_encoder
    from tunelens.index import Library
    from tunelens.index.core.indexer import index_folder
    from tunelens.index.curation.dupes import find_duplicates

    soundfont = args.soundfont
    if soundfont is None:
        import pretty_midi

        soundfont = str(Path(pretty_midi.__file__).parent / "TimGM6mb.sf2")
    lib_dir = args.work / "library"
    truth_file = args.work / "truth.parquet"
    if args.reuse and truth_file.exists() and (lib_dir / "manifest.json").exists():
        truth = pl.read_parquet(truth_file)
        print(f"reusing the test set and library in {args.work}")
    else:
        t0 = time.time()
        truth = build(args.music, args.work, args.seed, args.limit, soundfont)
        print(
            f"test set: {truth.filter(pl.col('transform') == 'original').height} originals, "
            f"{truth.filter(pl.col('transform').is_in(TRANSFORMS)).height} transformed copies, "
            f"{truth.filter(pl.col('transform').is_in(NEGATIVES)).height} same-piece negatives "
            f"({time.time() - t0:.0f} s to write)"
        )
        shutil.rmtree(lib_dir, ignore_errors=True)
        rep = index_folder(lib_dir, args.work / "music", load_encoder(args.model))
        print(
            f"indexed {rep.indexed} files ({rep.audio_seconds / 60:.0f} min of audio) in {rep.seconds:.0f} s; "
            f"failed {len(rep.failed)}"
        )
        truth.write_parquet(truth_file)
    lib = Library.open(lib_dir)
    t0 = time.time()
    res = find_duplicates(lib, _config(args))
    took = time.time() - t0
    rel_of = dict(lib.ok_tracks().select("track_id", "rel_path").iter_rows())
    predicted = pairs_of(
        [[rel_of[t] for t in g] for g in res.clusters.group_by("cluster").agg("track_id")["track_id"].to_list()]
    )
    expected = pairs_of(truth.group_by("original").agg("rel_path")["rel_path"].to_list())
    hit = predicted & expected
    precision = len(hit) / len(predicted) if predicted else 1.0
    recall = len(hit) / len(expected) if expected else 1.0
    print(
        f"dupes: {res.candidates} fingerprint comparisons, {len(res.pairs)} confirmed pairs, "
        f"{res.clusters['cluster'].n_unique() if len(res.clusters) else 0} clusters in {took:.1f} s"
    )
    info = {r["rel_path"]: r for r in truth.iter_rows(named=True)}
    hard = {  # different pieces, same instrument and tempo class
        p
        for p in itertools.combinations(sorted(info), 2)
        if info[p[0]]["of"] != info[p[1]]["of"]
        and info[p[0]]["instrument"] == info[p[1]]["instrument"]
        and info[p[0]]["tempo_class"] == info[p[1]]["tempo_class"]
    }
    same_piece = {  # one score, another recording of it (and that recording's copies)
        p
        for p in itertools.combinations(sorted(info), 2)
        if info[p[0]]["of"] == info[p[1]]["of"] and info[p[0]]["original"] != info[p[1]]["original"]
    }
    print(
        f"hard-negative pairs (other piece, same instrument and tempo class): {len(hard)}, "
        f"wrongly joined: {len(hard & predicted)}"
    )
    for kind in NEGATIVES:
        pairs = {p for p in same_piece if kind in (info[p[0]]["transform"], info[p[1]]["transform"])}
        print(f"same piece, {kind.replace('_', ' ')} (and its copies): {len(pairs)} pairs, "
              f"wrongly joined: {len(pairs & predicted)}")
    relation = dict(res.clusters.select("rel_path", "relation").iter_rows()) if len(res.clusters) else {}
    keeper_of = {}
    for part in res.clusters.partition_by("cluster") if len(res.clusters) else []:
        keeper = part.filter(pl.col("keeper"))["rel_path"][0]
        keeper_of.update({r: keeper for r in part["rel_path"]})
    per = []
    for kind in TRANSFORMS:
        copies = truth.filter(pl.col("transform") == kind)
        want = {
            tuple(sorted((r["rel_path"], "originals/" + Path(r["original"]).name)))
            for r in copies.iter_rows(named=True)
        }
        per.append({"transform": kind, "pairs": len(want), "recall": len(want & predicted) / max(1, len(want))})
    pl.Config.set_tbl_rows(20)
    print(pl.DataFrame(per))
    edits = truth.filter(pl.col("transform").str.starts_with("edit_")).head(4)
    for r in edits.iter_rows(named=True):
        print(f"  {r['rel_path']}: made as '{r['detail']}' of its original; against its cluster's keeper "
              f"{keeper_of.get(r['rel_path'])}: '{relation.get(r['rel_path'], 'not found')}'")
    print(
        f"pair precision {precision:.3f}  recall {recall:.3f}  ({len(hit)} of {len(expected)} true pairs found; "
        f"{len(predicted) - len(hit)} false pairs)"
    )
    missed = sorted(expected - predicted)[:10]
    if missed:
        print("missed, e.g.:", *missed, sep="\n  ")
    wrong = sorted(predicted - expected)[:10]
    if wrong:
        print("false, e.g.:", *wrong, sep="\n  ")
    return 0


if __name__ == "__main__":
    sys.exit(main())
