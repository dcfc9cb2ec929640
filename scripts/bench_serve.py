"""Load test of `tunelens serve`: concurrent clients against a large library, then the same while commits land.

    python scripts/bench_serve.py --source demo/library [--tracks 10000] [--clients 32] [--seconds 60]

Builds the synthetic library `bench_app_search.py` builds (--tracks copies of a real library's tracks, vectors
jittered), starts `tunelens serve` on it in its own process, and runs --clients client threads for --seconds: each
request is a text search (4 in 5, from a pool of phrasings) or similar-by-id (1 in 5). Prints requests/s, p50/p99
per route, the error count, the server's RSS at start and end and the CPU the server and the clients used (both
run on this machine). Then, with --rate (default 250 requests/s: 200 searches/s), an open-loop run: requests arrive
at that rate whatever the server does, and each is timed from when it was due. A closed loop of 32 clients measures
throughput; its latency is 32 / throughput by Little's law, so the open-loop run is the latency a user sees at a
given load. With --commits it runs again while another
process indexes two new files into the library every 10 s, and checks after each commit returns that the server
already serves it (no stale read).
"""
from __future__ import annotations

import argparse
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

PHRASES = ["slow sad piano", "fast drums around 120 bpm", "Bach on the organ", "choir, no organ", "strings in a minor "
           "key", "up-tempo brass", "harpsichord, not piano", "quiet guitar under 3 minutes", "flute melody",
           "church organ", "instrumental music", "calm strings 60-80 bpm", "loud rock with a singer", "solo piano",
           "clarinet", "happy major key music", "dark ambient", "brass section, trumpets"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _load(base: str, ids: list[str], clients: int, seconds: float, rng_seed: int = 0,
          rate: float | None = None) -> dict:
    """`clients` threads sending requests for `seconds`: back to back (closed loop), or with `rate`, at that many
    requests/s in all (Poisson arrivals, open loop), each timed from when it was due so that waiting counts."""
    import queue

    import httpx

    lat: dict[str, list[float]] = {"search": [], "similar": []}
    errors: list[str] = []
    stop = time.time() + seconds
    due: queue.Queue = queue.Queue()

    def request(c, rng: random.Random) -> str:
        kind = "similar" if rng.random() < 0.2 else "search"
        try:
            if kind == "search":
                q = rng.choice(PHRASES)
                q = q if rng.random() < 0.5 else f"{q} {rng.randrange(10**6)}"  # half never seen before
                r = c.get("/v1/search", params={"q": q, "k": 10})
            else:
                r = c.get(f"/v1/tracks/{rng.choice(ids)}/similar", params={"k": 10})
            if r.status_code != 200:
                errors.append(f"{r.status_code} {r.text[:120]}")
        except httpx.HTTPError as e:
            errors.append(type(e).__name__)
        return kind

    def client(i: int) -> None:
        rng = random.Random(rng_seed * 1000 + i)
        with httpx.Client(base_url=base, timeout=30) as c:
            while True:
                if rate is None:
                    if time.time() >= stop:
                        return
                    t = time.perf_counter()
                else:
                    t = due.get()
                    if t is None:
                        return
                    time.sleep(max(0.0, t - time.perf_counter()))
                kind = request(c, rng)
                lat[kind].append(time.perf_counter() - t)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    if rate is not None:
        rng, t = random.Random(rng_seed), time.perf_counter()
        end = t + seconds
        while t < end:
            t += rng.expovariate(rate)
            due.put(t)
            time.sleep(max(0.0, t - time.perf_counter() - 0.05))  # keep the queue a little ahead of the clock
        for _ in threads:
            due.put(None)
    for t in threads:
        t.join()
    return {"lat": lat, "errors": errors, "seconds": seconds}


def _report(name: str, res: dict, rss: tuple[float, float]) -> None:
    for kind, xs in res["lat"].items():
        a = np.array(xs) * 1000
        if len(a):
            print(f"{name:<22} {kind:<8} {len(a) / res['seconds']:7.1f}/s   p50 {np.percentile(a, 50):7.1f} ms   "
                  f"p99 {np.percentile(a, 99):7.1f} ms")
    print(f"{name:<22} errors {len(res['errors'])}   server RSS {rss[0]:.0f} -> {rss[1]:.0f} MiB "
          f"({(rss[1] / rss[0] - 1) * 100:+.1f}%)")
    for e in res["errors"][:5]:
        print(f"   {e}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", type=Path, required=True, help="a real, measured library (e.g. the demo's)")
    ap.add_argument("--tracks", type=int, default=10000)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--commits", action="store_true", help="also run while a commit lands every 10 s")
    ap.add_argument("--workers", type=int, default=1, help="server processes (tunelens serve --workers)")
    ap.add_argument("--rate", type=float, default=250, help="then an open-loop run at this many requests/s in all "
                    "(4 in 5 searches): the latency a user sees at that load (0: skip)")
    args = ap.parse_args(argv)
    import bench_app_search as bas  # a sibling script, imported by name
    import httpx
    import psutil
    import soundfile as sf

    from tunelens.index import Library

    with tempfile.TemporaryDirectory() as tmp:
        lib_dir = Path(tmp) / "lib"
        bas.build(args.source, lib_dir, args.tracks)
        ids = Library.open(lib_dir).ok_tracks()["track_id"].to_list()
        port = _free_port()
        env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "HF_HUB_OFFLINE": "1"}
        server = subprocess.Popen([sys.executable, "-m", "tunelens.app.cli", "serve", "--library", str(lib_dir),
                                   "--port", str(port), "--workers", str(args.workers)], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.time() + 120
            while time.time() < deadline:
                try:
                    if httpx.get(f"{base}/v1/library", timeout=5).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.5)
            for q in PHRASES:  # warm-up: the model, the facet table
                httpx.get(f"{base}/v1/search", params={"q": q}, timeout=60)
            proc = psutil.Process(server.pid)

            def rss() -> float:  # the server and its worker processes
                return sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)]) / 2**20

            def cpu() -> tuple[float, float]:  # CPU seconds of the server (all processes) and of this client
                srv = sum(sum(p.cpu_times()[:2]) for p in [proc, *proc.children(recursive=True)])
                return srv, sum(psutil.Process().cpu_times()[:2])

            rss0, cpu0 = rss(), cpu()
            res = _load(base, ids, args.clients, args.seconds)
            _report(f"{args.clients} clients, {args.tracks:,}", res, (rss0, rss()))
            cpu1 = cpu()
            print(f"CPU over the run: server {(cpu1[0] - cpu0[0]) / args.seconds:.2f} cores, clients "
                  f"{(cpu1[1] - cpu0[1]) / args.seconds:.2f} cores (both on this machine)")
            if args.rate:
                rss0 = rss()
                res = _load(base, ids, args.clients, args.seconds, 2, rate=args.rate)
                _report(f"offered {args.rate:g} req/s", res, (rss0, rss()))
            if args.commits:
                stale, stop = [], threading.Event()

                def committer() -> None:

                    n = 0
                    while not stop.wait(10):
                        n += 1
                        music = Path(tmp) / f"new{n}"
                        music.mkdir()
                        for j in range(2):
                            t = np.arange(22050 * 8) / 22050
                            sf.write(music / f"t{j}.wav", 0.3 * np.sin(2 * np.pi * (200 + 50 * n + j) * t), 22050)
                        r = subprocess.run([sys.executable, "-m", "tunelens.app.cli", "index", str(music), "--library",
                                            str(lib_dir), "--processes", "0"], env=env, capture_output=True)
                        want = args.tracks + 2 * n
                        got = httpx.get(f"{base}/v1/library", timeout=30).json()["tracks"]
                        if r.returncode or got != want:
                            stale.append((n, r.returncode, got, want))

                t = threading.Thread(target=committer)
                t.start()
                rss0 = rss()
                res = _load(base, ids, args.clients, args.seconds, 1)
                stop.set()
                t.join()
                _report("with a commit / 10 s", res, (rss0, rss()))
                print(f"commits whose next request was stale or that failed: {len(stale)} {stale[:3]}")
        finally:
            server.terminate()
            server.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
