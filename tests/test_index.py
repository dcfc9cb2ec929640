import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import polars as pl
import psutil
import pytest
import soundfile as sf
from conftest import ROOT, tone

from tunelens.embed import PipelineSpec
from tunelens.index import Library, LibraryError
from tunelens.index.core.indexer import IndexConfig, index_folder
from tunelens.index.search import search_text, similar

CFG = IndexConfig(batch_files=2, processes=0)


def vectors_by_path(lib: Library) -> dict[str, np.ndarray]:
    ok = lib.ok_tracks()
    vecs = lib.track_vectors()
    return {r: np.array(vecs[i]) for r, i in zip(ok["rel_path"], ok["vec_row"])}


def windows_by_path(lib: Library) -> dict[str, np.ndarray]:
    ok = lib.ok_tracks()
    w = lib.window_vectors()
    return {r: np.array(w[o:o + c]) for r, o, c in zip(ok["rel_path"], ok["window_offset"], ok["window_count"])}


def test_index_search_and_incremental_add_change_delete(tmp_path, music_dir, tiny_encoder):
    lib_dir = tmp_path / "lib"
    r = index_folder(lib_dir, music_dir, tiny_encoder, CFG)
    assert (r.indexed, r.skipped, r.removed, len(r.failed)) == (5, 0, 0, 0)
    lib = Library.open(lib_dir)
    cat = lib.catalog
    assert len(cat) == 5 and set(cat["status"]) == {"ok"}
    assert cat.filter(pl.col("rel_path") == "t2.wav")["window_count"][0] == 3  # 25 s → 0, 10, 15
    assert lib.vector_index.ntotal == 5 and lib.window_vectors().shape == (int(cat["window_count"].sum()), 32)
    before = vectors_by_path(lib)

    r = index_folder(lib_dir, music_dir, tiny_encoder, CFG)
    assert (r.indexed, r.skipped, r.removed) == (0, 5, 0)

    sf.write(music_dir / "new.wav", tone(5, 880), 22050)  # add
    sf.write(music_dir / "t1.wav", tone(12, 990), 22050)  # change
    os.utime(music_dir / "t1.wav", ns=(time.time_ns(), time.time_ns() + 10**9))
    (music_dir / "t3.wav").unlink()  # delete
    r = index_folder(lib_dir, music_dir, tiny_encoder, CFG)
    assert (r.indexed, r.skipped, r.removed) == (2, 3, 1)
    lib = Library.open(lib_dir)
    after = vectors_by_path(lib)
    assert set(after) == {"t0.wav", "t1.wav", "t2.wav", "new.wav", "sub/s.flac"}
    assert np.array_equal(after["t0.wav"], before["t0.wav"]) and np.array_equal(after["t2.wav"], before["t2.wav"])
    assert not np.allclose(after["t1.wav"], before["t1.wav"])
    assert lib.vector_index.ntotal == 5 and not list((lib_dir / "staging").glob("*"))
    assert lib.catalog["track_id"].n_unique() == 5

    hits = search_text(lib, tiny_encoder, "slow piano", k=3)
    assert len(hits) == 3 and hits[0].score >= hits[1].score >= hits[2].score
    assert all(0 <= h.best_start_s < h.duration for h in hits)
    sims = similar(lib, "t2.wav", k=10)
    assert len(sims) == 4 and "t2.wav" not in {h.rel_path for h in sims}
    outside = tmp_path / "outside.wav"
    sf.write(outside, tone(6, 330), 22050)
    assert len(similar(lib, str(outside), k=2, encoder=tiny_encoder)) == 2


def test_same_file_gives_bit_identical_vectors_in_two_libraries(tmp_path, music_dir, tiny_encoder):
    index_folder(tmp_path / "a", music_dir, tiny_encoder, CFG)
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(music_dir / "t2.wav", other / "t2.wav")  # alone, so batched with different neighbours
    sf.write(other / "x.wav", tone(3, 123), 22050)
    index_folder(tmp_path / "b", other, tiny_encoder, IndexConfig(batch_windows=4, processes=0))
    a, b = Library.open(tmp_path / "a"), Library.open(tmp_path / "b")
    assert np.array_equal(vectors_by_path(a)["t2.wav"], vectors_by_path(b)["t2.wav"])
    assert np.array_equal(windows_by_path(a)["t2.wav"], windows_by_path(b)["t2.wav"])


def test_bad_input_folder_is_recorded_not_fatal(tmp_path, tiny_encoder, tiny_spec):
    d = tmp_path / "bad"
    d.mkdir()
    sf.write(d / "good.wav", tone(3, 440), 22050)
    (d / "zero.mp3").write_bytes(b"")
    sf.write(d / "trunc.flac", tone(5, 440), 22050)
    data = (d / "trunc.flac").read_bytes()
    (d / "trunc.flac").write_bytes(data[: len(data) // 3])
    (d / "text.wav").write_text("this is not audio\n")
    sf.write(d / "one.wav", np.zeros(1), 22050)
    sf.write(d / "eight.wav", np.stack([tone(2, 200 + 50 * c) for c in range(8)], axis=1), 22050)
    sf.write(d / "hires.wav", tone(2, 440, sr=192000), 192000)
    os.symlink("loop.wav", d / "loop.wav")
    os.symlink(d, d / "dirloop")
    os.symlink(d / "missing.wav", d / "dangling.wav")
    sf.write(d / "locked.wav", tone(2, 440), 22050)
    os.chmod(d / "locked.wav", 0)
    lib_dir = tmp_path / "lib"
    out = subprocess.run(
        [sys.executable, "-m", "tunelens.app.cli", "index", str(d), "--library", str(lib_dir), "--model", tiny_spec],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr
    cat = Library.open(lib_dir).catalog
    status = dict(zip(cat["rel_path"], cat["status"]))
    errors = dict(zip(cat["rel_path"], cat["error"]))
    assert {k for k, v in status.items() if v == "ok"} >= {"good.wav", "eight.wav", "hires.wav"}
    assert "dirloop/good.wav" not in status
    expected = {
        "zero.mp3": "empty file", "trunc.flac": "not decodable", "text.wav": "not decodable",
        "one.wav": "too short", "loop.wav": "symlink loop", "dangling.wav": "broken symlink",
    }
    for name, reason in expected.items():
        assert status[name] == "error" and reason in errors[name], (name, errors[name])
    if os.geteuid() != 0:  # root reads mode-000 files, so the permission error only exists for other users
        assert status["locked.wav"] == "error" and "permission" in errors["locked.wav"]
    assert cat.filter(pl.col("rel_path") == "eight.wav")["channels"][0] == 8
    assert cat.filter(pl.col("rel_path") == "hires.wav")["sample_rate"][0] == 192000
    info = subprocess.run([sys.executable, "-m", "tunelens.app.cli", "info", "--library", str(lib_dir)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert info.returncode == 0
    for name in expected:
        assert name in info.stdout


def test_folder_with_nothing_indexable_exits_nonzero(tmp_path, tiny_spec):
    d = tmp_path / "junk"
    d.mkdir()
    (d / "a.wav").write_text("nope")
    out = subprocess.run(
        [sys.executable, "-m", "tunelens.app.cli", "index", str(d), "--library", str(tmp_path / "lib"), "--model",
         tiny_spec],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 1 and "could be indexed" in out.stderr


def test_kill_9_then_resume_matches_a_clean_run(tmp_path, tiny_spec, tiny_encoder):
    d = tmp_path / "many"
    d.mkdir()
    for i in range(40):
        sf.write(d / f"{i:02d}.wav", tone(15 + i % 3, 200 + 17 * i), 22050)
    lib_dir = tmp_path / "killed"
    cmd = [sys.executable, "-m", "tunelens.app.cli", "index", str(d), "--library", str(lib_dir), "--model", tiny_spec,
           "--batch-files", "3"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and len(list((lib_dir / "staging").glob("batch-*.npz"))) < 2:
        time.sleep(0.01)
    workers = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    staged = list((lib_dir / "staging").glob("batch-*.npz"))
    assert staged and not (lib_dir / "catalog.parquet").exists(), "the kill must land mid-run"
    assert workers, "the run uses worker processes"
    _, alive = psutil.wait_procs(workers, timeout=15)
    assert not alive, "worker processes outlived the killed run"
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    clean = tmp_path / "clean"
    index_folder(clean, d, tiny_encoder, IndexConfig(batch_files=5, processes=0))
    a, b = Library.open(lib_dir), Library.open(clean)
    assert len(a.catalog) == 40 and a.catalog["path"].n_unique() == 40
    va, vb = vectors_by_path(a), vectors_by_path(b)
    assert va.keys() == vb.keys()
    assert all(np.array_equal(va[k], vb[k]) for k in va)
    wa, wb = windows_by_path(a), windows_by_path(b)
    assert all(np.array_equal(wa[k], wb[k]) for k in wa)


def test_commit_interrupted_after_its_journal_is_finished_on_open(tmp_path, music_dir, tiny_encoder, monkeypatch):
    import tunelens.index.core.library as L

    lib_dir = tmp_path / "lib"
    index_folder(lib_dir, music_dir, tiny_encoder, CFG)
    sf.write(music_dir / "late.wav", tone(5, 777), 22050)

    def crash(root, plan):
        raise SystemExit("killed between journal and renames")

    monkeypatch.setattr(L, "_roll_forward", crash)
    with pytest.raises(SystemExit):
        index_folder(lib_dir, music_dir, tiny_encoder, CFG)
    monkeypatch.undo()
    assert (lib_dir / "COMMIT.json").exists()
    lib = Library.open(lib_dir)  # a reader rolls the commit forward (the journal is the next writer's to remove)
    assert "late.wav" in set(lib.catalog["rel_path"]) and lib.vector_index.ntotal == 6
    assert len(lib.track_vectors()) == 6 and not list(lib_dir.glob("*.tmp"))
    with lib.lock():
        pass
    assert not (lib_dir / "COMMIT.json").exists()


def test_opening_with_another_model_is_an_error(tmp_path, music_dir, tiny_encoder):
    lib_dir = tmp_path / "lib"
    index_folder(lib_dir, music_dir, tiny_encoder, CFG)
    other = PipelineSpec.for_encoder(tiny_encoder)
    other = PipelineSpec(**{**other.to_dict(), "model": "clap:some/other", "window_seconds": 5.0})
    with pytest.raises(LibraryError, match="cannot be mixed.*window_seconds"):
        Library.open(lib_dir, other)
    newer = PipelineSpec(**{**PipelineSpec.for_encoder(tiny_encoder).to_dict(), "encoder_version": "tiny-r99"})
    with pytest.raises(LibraryError, match="another version of .*cannot be mixed.*new library folder"):
        Library.open(lib_dir, newer)
    with pytest.raises(LibraryError, match="not a tunelens library"):
        Library.open(tmp_path / "nowhere")


def test_playlists_of_hits():
    from tunelens.index.search import Hit, to_csv, to_m3u

    hits = [Hit(1, 0.9, "a1", "/m/x/one.flac", "x/one.flac", "One", "Ann", 61.4, 10.0, 20.0),
            Hit(2, 0.5, "b2", "/m/two.mp3", "two.mp3", None, None, 30.0, 0.0, 10.0)]
    m3u = to_m3u(hits).splitlines()
    assert m3u == ["#EXTM3U", "#EXTINF:61,Ann - One", "/m/x/one.flac", "#EXTINF:30,two", "/m/two.mp3"]
    csv = to_csv(hits).splitlines()
    assert csv[0].startswith("rank,score,track_id,path") and len(csv) == 3 and "x/one.flac" in csv[1]
    assert to_csv([]).splitlines()[0].startswith("rank,")


def test_measuring_resumes_after_a_kill_and_redoes_only_changed_files(tmp_path, music_dir, tiny_encoder):
    from tunelens.index.core.captions import MeasureStore
    from tunelens.index.core.measures import current_measures, measure_library

    index_folder(tmp_path / "lib", music_dir, tiny_encoder, IndexConfig(processes=0, measure=False))
    lib = Library.open(tmp_path / "lib")

    def killed(done, total, audio_s):
        raise KeyboardInterrupt  # the process dies after its first batch is written

    with pytest.raises(KeyboardInterrupt), lib.lock():
        measure_library(lib, processes=1, batch_tracks=2, progress=killed)
    assert len(MeasureStore(lib.root).read_all()) == 2  # the finished batch is kept
    with lib.lock():
        report = measure_library(lib, processes=1, batch_tracks=2)
    assert report.done_before == 2 and report.measured == 3 and len(current_measures(lib)) == 5
    assert not list((lib.root / "measures").glob("batch-*"))  # compacted into measures.parquet
    sf.write(music_dir / "t1.wav", tone(6, 880), 22050)  # a changed file is embedded and measured again
    report = index_folder(tmp_path / "lib", music_dir, tiny_encoder, IndexConfig(processes=0))
    assert report.indexed == 1 and report.measures.measured == 1 and report.measures.done_before == 4
    lib = Library.open(tmp_path / "lib")
    row = current_measures(lib).join(lib.ok_tracks(), on="track_id").filter(pl.col("rel_path") == "t1.wav")
    assert abs(row["duration"][0] - 6.0) < 0.1
