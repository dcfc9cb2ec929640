"""Precision and recall of duplicate detection on a test set built from the demo corpus.

    python scripts/eval_dupes.py --music demo/music [--work /tmp/tunelens-eval-dupes] [--model musicnn]

Each transformation is applied to its own random half of the tracks: a lossless WAV copy (an exact
duplicate), MP3 at 128 kbps, a gain change of +-6 dB, a trim of up to 2 s (split between start and end),
resampling to another rate, and mono stored as stereo. The corpus's other pieces for the same instrument
and tempo class are the hard negatives. A pair counts as found when both files land in one cluster;
precision and recall are over all such pairs.
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

TRANSFORMS = ["wav_copy", "mp3_128k", "gain", "trim", "resample", "stereo"]


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
    if kind == "mp3_128k":
        path = out_dir / f"{stem}.mp3"
        write_mp3(path, data, sr)
        return path, "mp3 128k"
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
    if kind == "resample":
        new_sr = rng.choice([r for r in (16000, 32000, 44100, 48000) if r != sr])
        sf.write(path, soxr.resample(data, sr, new_sr, quality="HQ"), new_sr)
        return path, f"{sr}->{new_sr} Hz"
    if kind == "stereo":
        out = np.repeat(data[:, :1], 2, axis=1) if data.shape[1] == 1 else data.mean(axis=1, keepdims=True)
        sf.write(path, out, sr)
        return path, "mono->stereo" if data.shape[1] == 1 else "stereo->mono"
    raise ValueError(kind)


def build(music: Path, work: Path, seed: int, limit: int | None) -> pl.DataFrame:
    """Copy the originals and write the transformed copies; returns (rel_path, original, transform, detail)."""
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
        rows.append({"rel_path": str(dst.relative_to(target)), "original": f, "transform": "original", "detail": ""})
    for kind in TRANSFORMS:
        out_dir = target / kind
        out_dir.mkdir(parents=True, exist_ok=True)
        for f in sorted(rng.sample(files, len(files) // 2)):
            path, detail = transform(kind, music / f, out_dir, rng)
            rows.append({"rel_path": str(path.relative_to(target)), "original": f, "transform": kind, "detail": detail})
    return pl.DataFrame(rows).join(gt, left_on="original", right_on="file", how="left")


def pairs_of(groups: list[list[str]]) -> set[tuple[str, str]]:
    return {tuple(sorted(p)) for g in groups for p in itertools.combinations(g, 2)}  # type: ignore[misc]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--music", type=Path, default=Path("demo/music"), help="the demo corpus (with ground_truth.parquet)"
    )
    ap.add_argument("--work", type=Path, default=Path("/tmp/tunelens-eval-dupes"))
    ap.add_argument("--model", default=None, help="encoder spec (default: the offline default)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit", type=int, help="use only the first N originals")
    ap.add_argument("--min-cosine", type=float, help="candidate radius (default: DupesConfig's)")
    ap.add_argument("--min-harmony", type=float, help="chroma threshold (default: DupesConfig's)")
    ap.add_argument("--min-spectral", type=float, help="log-mel threshold (default: DupesConfig's)")
    ap.add_argument("--reuse", action="store_true", help="reuse the test set and library already in --work")
    args = ap.parse_args(argv)

    from tunelens.embed import load_encoder
    from tunelens.index import Library
    from tunelens.index.core.indexer import index_folder
    from tunelens.index.curation.dupes import DupesConfig, find_duplicates

    lib_dir = args.work / "library"
    truth_file = args.work / "truth.parquet"
    if args.reuse and truth_file.exists() and (lib_dir / "manifest.json").exists():
        truth = pl.read_parquet(truth_file)
        print(f"reusing the test set and library in {args.work}")
    else:
        t0 = time.time()
        truth = build(args.music, args.work, args.seed, args.limit)
        print(
            f"test set: {truth.filter(pl.col('transform') == 'original').height} originals + "
            f"{truth.filter(pl.col('transform') != 'original').height} transformed copies "
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
    defaults = DupesConfig()
    config = DupesConfig(min_cosine=args.min_cosine if args.min_cosine is not None else defaults.min_cosine,
                         min_harmony=args.min_harmony if args.min_harmony is not None else defaults.min_harmony,
                         min_spectral=args.min_spectral if args.min_spectral is not None else defaults.min_spectral)
    t0 = time.time()
    res = find_duplicates(lib, config)
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
    # hard negatives: different pieces, same instrument and tempo class
    info = {r["rel_path"]: r for r in truth.iter_rows(named=True)}
    hard = {
        p
        for p in itertools.combinations(sorted(info), 2)
        if info[p[0]]["original"] != info[p[1]]["original"]
        and info[p[0]]["instrument"] == info[p[1]]["instrument"]
        and info[p[0]]["tempo_class"] == info[p[1]]["tempo_class"]
    }
    print(
        f"hard-negative pairs (other piece, same instrument and tempo class): {len(hard)}, "
        f"wrongly joined: {len(hard & predicted)}"
    )
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
