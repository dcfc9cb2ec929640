"""Fuzz the decoders the way a real music folder does: mutated FLAC, MP3, OGG, WAV and M4A files (byte flips,
truncations, header corruptions), each decoded alone in a child process with a time limit, then all indexed
together. Reports crashes (a decoder killing its process), hangs (past the limit), the slowest decode, and
whether every file ended indexed or recorded with a reason.

    python scripts/fuzz_audio.py [--count 500] [--seed 0] [--work /tmp/tunelens-fuzz] [--limit-s 20]

Exit status 1 when any file crashed, hung, or was neither indexed nor recorded with a reason.
"""
from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

FORMATS = ["flac", "mp3", "ogg", "wav", "m4a"]
MUTATIONS = ["flip", "truncate", "header"]


def _music(seconds: float = 6.0, sr: int = 22050) -> np.ndarray:
    """A few seconds of chords with a pulse: enough structure for every codec to spend bits on."""
    t = np.arange(int(seconds * sr)) / sr
    y = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6)) / 3
    y *= 0.4 * (0.6 + 0.4 * (np.sin(2 * np.pi * 2 * t) > 0))
    return np.stack([y, np.roll(y, 50)], axis=1).astype(np.float32)


def _write_av(path: Path, data: np.ndarray, sr: int, fmt: str, codec: str) -> None:
    import av

    with av.open(str(path), "w", format=fmt) as c:
        stream = c.add_stream(codec, rate=sr, layout="stereo")
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data.T), format="fltp", layout="stereo")
        frame.sample_rate = sr
        for packet in stream.encode(frame):  # (PyAV re-frames and converts for the codec)
            c.mux(packet)
        for packet in stream.encode(None):
            c.mux(packet)


def sources(folder: Path) -> dict[str, bytes]:
    """One valid file per format, as bytes."""
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    data, sr = _music(), 22050
    out = {}
    for fmt in FORMATS:
        path = folder / f"source.{fmt}"
        if fmt in ("flac", "wav", "ogg"):
            with sf.SoundFile(path, "w", sr, 2, format=fmt.upper()) as f:
                for start in range(0, len(data), sr):  # libsndfile's Vorbis encoder crashes on large single writes
                    f.write(data[start : start + sr])
        elif fmt == "mp3":
            _write_av(path, data, sr, "mp3", "libmp3lame")
        else:
            _write_av(path, data, sr, "ipod", "aac")
        out[fmt] = path.read_bytes()
    return out


def mutate(raw: bytes, kind: str, rng: random.Random) -> bytes:
    b = bytearray(raw)
    if kind == "flip":
        for _ in range(rng.choice([1, 4, 32, 256])):
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
        return bytes(b)
    if kind == "truncate":
        return bytes(b[: rng.randrange(1, len(b))])
    # header: the first bytes scrambled, zeroed, or a size field blown up
    n = min(len(b), rng.choice([4, 16, 64, 512]))
    how = rng.choice(["random", "zero", "size"])
    if how == "random":
        b[:n] = bytes(rng.randrange(256) for _ in range(n))
    elif how == "zero":
        b[:n] = bytes(n)
    else:
        for _ in range(4):
            i = rng.randrange(min(len(b) - 4, 64))
            b[i : i + 4] = rng.choice([b"\xff\xff\xff\xff", b"\x00\x00\x00\x80", b"\x7f\xff\xff\xff"])
    return bytes(b)


def make(work: Path, count: int, seed: int) -> list[Path]:
    """`count` mutated files under work/music, named for their format and mutation."""
    rng = random.Random(seed)
    src = sources(work / "sources")
    music = work / "music"
    if music.exists():
        shutil.rmtree(music)
    music.mkdir(parents=True)
    files = []
    for i in range(count):
        fmt, kind = FORMATS[i % len(FORMATS)], MUTATIONS[(i // len(FORMATS)) % len(MUTATIONS)]
        path = music / f"{i:04d}_{kind}.{fmt}"
        path.write_bytes(mutate(src[fmt], kind, rng))
        files.append(path)
    return files


_CHILD = """
import sys, time, json
from tunelens.embed.audio import read_audio, error_reason
t = time.perf_counter()
try:
    data, sr = read_audio(sys.argv[1])
    out = {"ok": True, "seconds": data.shape[0] / sr}
except Exception as e:
    out = {"ok": False, "reason": error_reason(e)}
out["decode_s"] = time.perf_counter() - t
print(json.dumps(out))
"""


def decode_alone(files: list[Path], limit_s: float) -> list[dict]:
    """Each file decoded by `read_audio` in its own process: a crash or a hang there is seen, not suffered."""
    rows = []
    for path in files:
        t = time.perf_counter()
        try:
            p = subprocess.run([sys.executable, "-c", _CHILD, str(path)], capture_output=True, text=True,
                               timeout=limit_s)
            if p.returncode != 0:
                rows.append({"file": path.name, "outcome": "crash", "detail": f"exit {p.returncode}: "
                             f"{p.stderr.strip().splitlines()[-1] if p.stderr.strip() else ''}"})
                continue
            out = json.loads(p.stdout.strip().splitlines()[-1])
            rows.append({"file": path.name, "outcome": "decoded" if out["ok"] else "refused",
                         "detail": out.get("reason", ""), "decode_s": out["decode_s"]})
        except subprocess.TimeoutExpired:
            rows.append({"file": path.name, "outcome": "hang", "detail": f"no answer in {limit_s:.0f} s",
                         "decode_s": time.perf_counter() - t})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=Path("/tmp/tunelens-fuzz"))
    ap.add_argument("--limit-s", type=float, default=20.0, help="a decode taking longer counts as a hang")
    args = ap.parse_args(argv)

    import tunelens

    files = make(args.work, args.count, args.seed)
    print(f"{len(files)} mutated files ({', '.join(FORMATS)} x {', '.join(MUTATIONS)}) in {args.work / 'music'}")
    rows = decode_alone(files, args.limit_s)
    outcome = {k: sum(r["outcome"] == k for r in rows) for k in ("decoded", "refused", "crash", "hang")}
    slowest = max((r for r in rows if "decode_s" in r), key=lambda r: r["decode_s"])
    print(f"decoded alone: {outcome}; slowest decode {slowest['decode_s']:.2f} s ({slowest['file']})")
    for r in rows:
        if r["outcome"] in ("crash", "hang"):
            print(f"  {r['outcome']}: {r['file']}: {r['detail']}")
    lib = args.work / "library"
    shutil.rmtree(lib, ignore_errors=True)
    t0 = time.time()
    report = tunelens.index_folder(lib, args.work / "music", None, tunelens.IndexConfig(measure=False))
    reasons = dict(report.failed)
    indexed = set(tunelens.Library.open(lib).ok_tracks()["rel_path"].to_list())
    unaccounted = [f.name for f in files if f.name not in indexed and not reasons.get(f.name)]
    print(f"indexed together in {time.time() - t0:.0f} s: {len(indexed)} indexed, {len(reasons)} recorded with a "
          f"reason, {len(unaccounted)} neither")
    counts: dict[str, int] = {}
    for why in reasons.values():
        key = why.split(" (")[0].split(":")[0]
        counts[key] = counts.get(key, 0) + 1
    for why, n in sorted(counts.items(), key=lambda kv: -kv[1]):
        print(f"  {n:4d}  {why}")
    bad = outcome["crash"] + outcome["hang"] + len(unaccounted)
    print(f"crashes {outcome['crash']}, hangs {outcome['hang']}, unaccounted {len(unaccounted)}; slowest decode "
          f"{slowest['decode_s']:.2f} s")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
