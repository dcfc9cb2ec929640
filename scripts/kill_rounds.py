"""Randomized kill -9 rounds: each round runs the pipeline (index, caption, dupes, export, repair) on a fresh
library, kills one command with SIGKILL (its worker processes too) at a random moment, runs that command and the
ones after it again, and compares the library and the export with a clean run's: the same catalog (less
timestamps), bit-identical vectors and windows, the same measurements, captions, duplicate clusters and exported
rows, and no temp file or staged batch left behind. In a repair round a vector file is damaged first, so the
repair has work to be killed in.

    python scripts/kill_rounds.py [--rounds 20] [--seed 0] [--music demo/music] [--tracks 10] [--work DIR]

Exit status 1 when any round ends different from the clean run.
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

STAGES = ["index", "caption", "dupes", "export", "repair"]


def _command(stage: str, music: Path, lib: Path, export: Path) -> list[str]:
    cli = [sys.executable, "-m", "tunelens.app.cli"]
    return {
        "index": cli + ["index", str(music), "-l", str(lib)],
        "caption": cli + ["caption", "-l", str(lib), "--batch-tracks", "2"],
        "dupes": cli + ["dupes", "-l", str(lib)],
        "export": cli + ["export", "-l", str(lib), "--to", str(export), "--overwrite", "--uncaptioned"],
        "repair": cli + ["repair", "-l", str(lib)],
    }[stage]


def run(stage: str, music: Path, lib: Path, export: Path) -> float:
    t = time.time()
    p = subprocess.run(_command(stage, music, lib, export), capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{stage} failed (exit {p.returncode}): {p.stderr.strip()[-1500:]}")
    return time.time() - t


def kill_during(stage: str, music: Path, lib: Path, export: Path, after_s: float) -> bool:
    """Start `stage`, SIGKILL its process group after `after_s`; True when it was still running then."""
    p = subprocess.Popen(_command(stage, music, lib, export), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    try:
        p.wait(timeout=after_s)
        return False
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        time.sleep(1.5)  # workers notice their parent is gone within a second (embed.parallel._exit_with)
        return True


def damage(lib: Path, rng: random.Random) -> str:
    name = rng.choice(["tracks.npy", "windows.npy", "windows.parquet", "tracks.faiss"])
    f = lib / name
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    return name


def state(lib: Path, export: Path) -> dict:
    """What a clean run and a killed-and-rerun one must agree on."""
    import tunelens
    from tunelens.index.core.captions import CaptionStore, MeasureStore

    opened = tunelens.Library.open(lib)
    cat = opened.catalog.drop("indexed_at").sort("path")
    caps = CaptionStore(lib).read_all().drop("captioned_at").sort("track_id", "captioner")
    meas = MeasureStore(lib).read_all().drop("measured_at").sort("track_id")
    dupes = pl.read_parquet(lib / "duplicates.parquet").sort("rel_path") if (lib / "duplicates.parquet").exists() \
        else None
    exported = pl.concat([pl.read_parquet(p).drop("audio", strict=False) for p in sorted(export.rglob("*.parquet"))]
                         ).sort("track_id") if export.exists() else None
    leftovers = sorted(str(p.relative_to(lib)) for p in lib.rglob("*") if p.name.endswith(".tmp")
                       or p.name == "COMMIT.json" or (p.parent.name == "staging" and p.is_file())
                       or (p.parent.name in ("captions", "measures") and p.is_file()))
    leftovers += sorted(str(p) for p in export.parent.iterdir() if p.name.startswith(export.name) and p != export)
    return {"catalog": cat, "tracks": np.load(lib / "tracks.npy"), "windows": np.load(lib / "windows.npy"),
            "wtab": pl.read_parquet(lib / "windows.parquet"), "captions": caps, "measures": meas, "dupes": dupes,
            "export": exported, "leftovers": leftovers, "health": opened.health()}


def differences(a: dict, b: dict) -> list[str]:
    out = []
    for key in a:
        x, y = a[key], b[key]
        if isinstance(x, np.ndarray):
            same = x.shape == y.shape and np.array_equal(x, y)
        elif isinstance(x, pl.DataFrame):
            same = isinstance(y, pl.DataFrame) and x.equals(y)
        else:
            same = x == y
        if not same:
            out.append(key if key not in ("leftovers", "health") else f"{key}: {y}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--music", type=Path, default=Path("demo/music"))
    ap.add_argument("--tracks", type=int, default=10, help="the N shortest files of --music, plus a copy of one")
    ap.add_argument("--work", type=Path, default=Path("/tmp/tunelens-kill"))
    ap.add_argument("--stages", default=",".join(STAGES), help="the commands a kill may hit")
    ap.add_argument("--kill-within", type=float, default=None,
                    help="kill within this fraction of the clean run's time of the command (default: up to 1.2x, "
                         "3x for repair, so some rounds finish before the kill)")
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    shutil.rmtree(args.work, ignore_errors=True)
    music = args.work / "music"
    music.mkdir(parents=True)
    import soundfile as sf

    files = sorted((p for p in args.music.rglob("*") if p.suffix in (".flac", ".ogg", ".mp3", ".wav")),
                   key=lambda p: (sf.info(p).duration, p.name))[: args.tracks]
    for p in files:
        shutil.copy2(p, music / p.name)
    shutil.copy2(files[0], music / f"copy of {files[0].name}")

    clean_lib, clean_export = args.work / "clean" / "lib", args.work / "clean" / "export"
    took = {s: run(s, music, clean_lib, clean_export) for s in STAGES}
    print("clean run: " + ", ".join(f"{s} {t:.1f} s" for s, t in took.items()))
    reference = state(clean_lib, clean_export)
    failures = 0
    for r in range(args.rounds):
        stage = rng.choice(args.stages.split(","))
        lib, export = args.work / f"round{r}" / "lib", args.work / f"round{r}" / "export"
        within = args.kill_within or (1.2 if stage != "repair" else 3.0)
        at = rng.uniform(0.05, max(0.5, took[stage] * within))
        for s in STAGES[: STAGES.index(stage)]:
            run(s, music, lib, export)
        damaged = damage(lib, rng) if stage == "repair" else None
        killed = kill_during(stage, music, lib, export, at)
        for s in STAGES[STAGES.index(stage):]:
            run(s, music, lib, export)
        diff = differences(reference, state(lib, export))
        failures += bool(diff)
        print(f"round {r + 1:2d}: {stage:7s} {'killed' if killed else 'finished before'} at {at:5.1f} s"
              + (f" (after damaging {damaged})" if damaged else "")
              + (f" -> DIFFERENT: {', '.join(diff)}" if diff else " -> identical to the clean run"), flush=True)
        shutil.rmtree(args.work / f"round{r}", ignore_errors=True)
    print(f"{args.rounds - failures} of {args.rounds} rounds identical to the clean run")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
