"""Scale: index choice under a memory budget, window index, worker processes, the Ray engine, memory on 20k files."""
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import ROOT, tone

from tunelens.index import Library
from tunelens.index.core.captions import MeasureStore
from tunelens.index.core.indexer import IndexConfig, index_folder
from tunelens.index.search import search_moments, search_text
from tunelens.index.vectors.choice import IndexChoice, build, exact_neighbours, parse_memory, recall_at
from tunelens.index.vectors.vector_index import VectorIndex


def clustered(n: int, dim: int = 32, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((40, dim)).astype(np.float32)
    x = centres[rng.integers(0, 40, n)] + 0.6 * rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_parse_memory():
    assert parse_memory("4GB") == 4 * 2**30
    assert parse_memory("512mb") == 512 * 2**20
    assert parse_memory("1.5G") == int(1.5 * 2**30)
    assert parse_memory("1000") == 1000
    with pytest.raises(ValueError, match="4GB"):
        parse_memory("lots")


def test_auto_choice_follows_size_and_budget_and_reaches_its_recall():
    both = clustered(12_200)
    x, queries = both[:12_000], both[12_000:]  # queries: fresh draws from the same clusters, not in the index
    truth = exact_neighbours(x, queries, 10)
    small = build(x[:900], IndexChoice(flat_max=1000))
    assert small.info["type"] == "flat" and small.info["recall"] == 1.0
    ivf = build(x, IndexChoice(flat_max=1000))
    assert ivf.info["type"] == "ivf" and ivf.info["nlist"] >= 64 and ivf.info["recall"] >= 0.95
    pq = build(x, IndexChoice(flat_max=1000, max_memory=12_000 * 32 * 4 // 2))  # vectors do not fit: PQ codes
    assert pq.info["type"] == "ivfpq" and pq.info["recall"] >= 0.95 and not pq.info["over_budget"]
    assert pq.info["memory_bytes"] < 12_000 * 32 * 4 // 2
    hnsw = build(x, IndexChoice(kind="hnsw"))
    assert hnsw.info["type"] == "hnsw" and hnsw.info["recall"] >= 0.95
    for b in (ivf, pq, hnsw):
        vi = VectorIndex(b.index, b.info, vectors=x, use_gpu=False)
        _, found = vi.search(queries, 10)
        # fresh queries (not library vectors) land near the build-time estimate
        assert recall_at(found, truth, np.full(len(queries), -1), 10) >= 0.9, b.info
        scores, rows = vi.search(queries[:5], 10)
        assert np.allclose(
            scores, np.einsum("qd,qkd->qk", queries[:5], x[rows]), atol=1e-3 if b.info["type"] != "ivfpq" else 1e-5
        )
        within = vi.neighbours_within(queries[:20], 0.8, 50)
        for q, (r, s) in zip(queries[:20], within):
            assert np.all(s >= 0.8) and np.allclose(s, x[r] @ q, atol=1e-3)


def test_library_keeps_its_index_choice_and_a_window_index(tmp_path, music_dir, tiny_encoder):
    lib_dir = tmp_path / "lib"
    index_folder(lib_dir, music_dir, tiny_encoder, IndexConfig(processes=0, index_kind="hnsw"))
    lib = Library.open(lib_dir)
    idx = lib.manifest.index
    assert idx["request"]["kind"] == "hnsw" and idx["tracks"]["type"] == "hnsw" and idx["windows"]["type"] == "hnsw"
    assert idx["windows"]["vectors"] == int(lib.ok_tracks()["window_count"].sum()) > idx["tracks"]["vectors"]
    assert (lib_dir / "windows.faiss").exists()
    # a re-run without a choice keeps the library's; asking for another rebuilds even with no file changed
    sf.write(music_dir / "new.wav", tone(5, 880), 22050)
    index_folder(lib_dir, music_dir, tiny_encoder, IndexConfig())
    assert Library.open(lib_dir).manifest.index["tracks"]["type"] == "hnsw"
    index_folder(lib_dir, music_dir, tiny_encoder, IndexConfig(processes=0, index_kind="flat"))
    lib = Library.open(lib_dir)
    assert lib.manifest.index["tracks"]["type"] == "flat" and lib.manifest.index["request"]["kind"] == "flat"
    # moments: the best window of each track, from the window index, agreeing with exact search over windows
    hits = search_moments(lib, tiny_encoder, "a tone", k=3)
    q = tiny_encoder.embed_text(["a tone"])[0]
    w = np.asarray(lib.window_vectors()) @ q
    best = int(np.argmax(w))
    wtab = lib.windows_table()
    assert hits[0].track_id == wtab["track_id"][best] and hits[0].best_start_s == wtab["start_s"][best]
    assert len({h.track_id for h in hits}) == len(hits) == 3
    assert search_text(lib, tiny_encoder, "a tone", k=3)


def test_cli_index_choice_and_moments(tmp_path, music_dir, tiny_spec):
    lib_dir = tmp_path / "lib"

    def run(*a):
        return subprocess.run([sys.executable, "-m", "tunelens.app.cli", *a], capture_output=True, text=True, cwd=ROOT)

    r = run("index", str(music_dir), "--library", str(lib_dir), "--model", tiny_spec, "--processes", "0", "--index",
            "ivfpq", "--max-memory", "1GB")
    assert r.returncode == 0, r.stderr
    assert "track index: flat" in r.stdout  # 5 tracks cannot train PQ codebooks: exact search, and it says why
    index = json.loads((lib_dir / "manifest.json").read_text())["index"]
    assert index["request"] == {"kind": "ivfpq", "max_memory": 2**30, "target_recall": 0.95}
    assert "too few to train" in index["tracks"]["why"]
    r = run("search", "a tone", "--library", str(lib_dir), "--moments", "--json", "-k", "2")
    assert r.returncode == 0, r.stderr
    assert len(json.loads(r.stdout)["hits"]) == 2
    r = run("index", str(music_dir), "--library", str(lib_dir), "--index", "kd-tree")
    assert r.returncode == 2 and "unknown index type 'kd-tree'" in r.stderr
    r = run("index", str(music_dir), "--library", str(lib_dir), "--max-memory", "lots")
    assert r.returncode == 2 and "memory size" in r.stderr


def _vectors(lib_dir: Path) -> dict[str, np.ndarray]:
    lib = Library.open(lib_dir)
    ok = lib.ok_tracks()
    win = lib.window_vectors()
    out = {}
    for r in ok.iter_rows(named=True):
        out[r["rel_path"]] = np.concatenate(
            [lib.track_vectors()[r["vec_row"]],
             np.ravel(win[r["window_offset"] : r["window_offset"] + r["window_count"]])]
        )
    return out


def _crash_on_boom(f) -> dict:
    """prepare_extra for the crash test: kills the worker process on one file, as a crashing decoder would."""
    from tunelens.index.core.indexer import _extra

    if f.path.name == "boom.wav":
        os._exit(3)
    return _extra(f)


def test_worker_processes_match_each_other_and_survive_a_dying_worker(tmp_path, music_dir, tiny_encoder, monkeypatch):
    index_folder(tmp_path / "one", music_dir, tiny_encoder, IndexConfig(processes=1))
    index_folder(tmp_path / "two", music_dir, tiny_encoder, IndexConfig(processes=2, batch_files=2))
    index_folder(tmp_path / "local", music_dir, tiny_encoder, IndexConfig(processes=0))
    one, two, local = _vectors(tmp_path / "one"), _vectors(tmp_path / "two"), _vectors(tmp_path / "local")
    assert one.keys() == two.keys() == local.keys() and len(one) == 5
    for k in one:
        assert np.array_equal(one[k], two[k])  # bit-identical, whatever the worker and chunk
        assert np.allclose(one[k], local[k], atol=1e-5)  # the in-process engine threads its model

    import tunelens.index.core.indexer as indexer

    sf.write(music_dir / "boom.wav", tone(3, 300), 22050)
    monkeypatch.setattr(indexer, "_extra", _crash_on_boom)
    r = index_folder(tmp_path / "crash", music_dir, tiny_encoder, IndexConfig(processes=2))
    assert [f for f, _ in r.failed] == ["boom.wav"] and "crashed" in r.failed[0][1]
    assert r.indexed == 5 and Library.open(tmp_path / "crash").catalog.height == 6


def _slow_first(path) -> str:
    """prepare_extra for the slow-file test: file 00 takes 12 s; every call is logged with its start and end."""
    start = time.time()
    if path.name == "00.wav":
        time.sleep(12)
    (path.parent / "log" / f"{path.stem}.json").write_text(json.dumps([start, time.time()]))
    return path.name


def test_a_slow_file_does_not_idle_the_other_workers(tmp_path, tiny_spec):
    from tunelens.embed import EncoderOptions
    from tunelens.embed.parallel import WorkerSpec, embed_processes

    (tmp_path / "log").mkdir()
    files = []
    for i in range(9):  # 8 more than the 2 x 2 chunks in flight: the old pool idled after 4; each takes ~0.85 s here
        files.append(tmp_path / f"{i:02d}.wav")
        sf.write(files[-1], tone(1, 300 + 10 * i), 22050)
    spec = WorkerSpec(tiny_spec, EncoderOptions(device="cpu"))
    out = list(embed_processes(files, spec, processes=2, chunk_files=1, prepare_extra=_slow_first))
    assert [r.extra for r in out] == [f.name for f in files]  # still in input order
    log = {p.stem: json.loads(p.read_text()) for p in (tmp_path / "log").glob("*.json")}
    slow_end = log.pop("00")[1]
    assert all(end < slow_end for _, end in log.values()), "the other worker waited for the slow file"


def test_ray_engine_gives_the_vectors_of_the_local_engine(tmp_path, music_dir, tiny_encoder):
    ray = pytest.importorskip("ray", reason="the ray extra")
    index_folder(tmp_path / "local", music_dir, tiny_encoder, IndexConfig(processes=2))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        t = time.time()
        r = index_folder(tmp_path / "ray", music_dir, tiny_encoder, IndexConfig(engine="ray"))
        print(f"ray engine: {r.indexed} files in {time.time() - t:.1f} s")
    finally:
        ray.shutdown()
    local, distributed = _vectors(tmp_path / "local"), _vectors(tmp_path / "ray")
    assert local.keys() == distributed.keys() and len(local) == 5
    for k in local:
        assert np.array_equal(local[k], distributed[k])
    a, b = Library.open(tmp_path / "local").catalog, Library.open(tmp_path / "ray").catalog
    cols = ["rel_path", "content_hash", "duration", "audio_hash", "window_count", "status"]
    assert a.select(cols).sort("rel_path").equals(b.select(cols).sort("rel_path"))
    assert r.measures.measured == 5  # the analysis pass ran on Ray too, and measured what the local one did
    m_local, m_ray = (MeasureStore(tmp_path / d).read_all().sort("track_id") for d in ("local", "ray"))
    assert m_local.select("tempo_bpm", "key", "loudness_lufs").equals(m_ray.select("tempo_bpm", "key", "loudness_lufs"))


@pytest.mark.slow
def test_memory_stays_flat_on_20k_short_files(tmp_path):
    from tunelens.embed.random_checkpoints import make_random_clap

    psutil = pytest.importorskip("psutil")
    tiny_spec = f"clap:{make_random_clap(tmp_path / 'clap', window_seconds=1.0)}"
    music = tmp_path / "music"
    rng = np.random.default_rng(0)
    for d in range(20):
        (music / f"d{d:02d}").mkdir(parents=True)
    clip = (0.1 * rng.standard_normal(8000)).astype(np.float32)
    for i in range(20_000):
        sf.write(music / f"d{i % 20:02d}" / f"{i:05d}.wav", np.roll(clip, i * 7), 16000, subtype="PCM_16")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tunelens.app.cli", "index", str(music), "--library", str(tmp_path / "lib"),
         "--model", tiny_spec, "--processes", "2", "--index", "auto", "--no-measure"],  # embedding's memory
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )
    peak = [0, 0]  # PSS (shared library pages split between the processes that map them), RSS

    def watch() -> None:
        p = psutil.Process(proc.pid)
        while proc.poll() is None:
            try:
                infos = [c.memory_full_info() for c in [p, *p.children(recursive=True)]]
            except psutil.Error:
                continue
            peak[0] = max(peak[0], sum(i.pss for i in infos))
            peak[1] = max(peak[1], sum(i.rss for i in infos))
            time.sleep(0.5)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    out, err = proc.communicate(timeout=2400)
    t.join()
    assert proc.returncode == 0, err[-2000:]
    lib = Library.open(tmp_path / "lib")
    assert int((lib.catalog["status"] == "ok").sum()) == 20_000
    print(f"peak memory of the indexing process tree: PSS {peak[0] / 2**20:.0f} MiB, RSS {peak[1] / 2**20:.0f} MiB")
    assert peak[0] < 2 * 2**30, f"peak PSS {peak[0] / 2**20:.0f} MiB"
    shutil.rmtree(music)
