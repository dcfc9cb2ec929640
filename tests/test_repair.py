"""`tunelens repair`: each library file truncated, zeroed or deleted in turn, then repaired; the library ends as it
was (the same vectors, windows and catalog), keeping captions, and says what it did."""
from __future__ import annotations

import json
import shutil

import numpy as np
import polars as pl
import pytest
import soundfile as sf
from conftest import damage_file, tone
from typer.testing import CliRunner

import tunelens
from tunelens.app.cli import app

FILES = ["manifest.json", "catalog.parquet", "tracks.npy", "windows.npy", "windows.parquet", "tracks.faiss",
         "windows.faiss", "captions.parquet", "duplicates.parquet"]
SAME = ["track_id", "path", "rel_path", "size", "mtime_ns", "content_hash", "duration", "status", "title",
        "vec_row", "window_offset", "window_count", "audio_hash"]


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    """Six tones of different lengths and a copy of one, indexed, captioned, with saved duplicate clusters."""
    from tunelens.index.curation.dupes import duplicates

    base = tmp_path_factory.mktemp("repair")
    music = base / "music"
    music.mkdir()
    for i in range(6):
        sf.write(music / f"tone{i}.flac", tone(4 + 5 * i, 180 * (i + 1)), 22050)
    (music / "copy.wav").write_bytes((music / "tone2.flac").read_bytes())  # the same audio: a duplicate cluster
    tunelens.index_folder(base / "lib", music, "musicnn", tunelens.IndexConfig(processes=0))
    tunelens.caption_library(base / "lib", config=tunelens.CaptionConfig(workers=1))
    duplicates(base / "lib")
    return base


def _state(lib):
    from tunelens.index.core.captions import CaptionStore

    opened = tunelens.Library.open(lib)
    return {
        "catalog": opened.catalog.select(SAME).sort("path"),
        "tracks": np.array(opened.track_vectors()),
        "windows": np.array(opened.window_vectors()),
        "wtab": opened.windows_table(),
        "captions": CaptionStore(lib).read_all().select("track_id", "caption").sort("track_id"),
        "pipeline": opened.manifest.pipeline.to_dict(),
    }


@pytest.mark.parametrize("name", FILES)
@pytest.mark.parametrize("damage", ["truncate", "zero", "delete"])
def test_repair_brings_back_the_library(library, tmp_path, name, damage):
    lib = tmp_path / "lib"
    shutil.copytree(library / "lib", lib)
    before = _state(lib)
    damage_file(lib / name, damage)
    run = CliRunner().invoke
    r = run(app, ["info", "-l", str(lib)])
    # deleted, clusters never found and tracks never captioned look the same: nothing to say, `caption` redoes them
    harmless = name in ("duplicates.parquet", "captions.parquet") and damage == "delete"
    if harmless:
        assert r.exit_code == 0, r.output
    else:
        assert r.exit_code in (1, 2) and name in r.output and "repair" in r.output, r.output
    if name in FILES[:5]:  # a run that would add to the library refuses until repaired
        r = run(app, ["index", str(library / "music"), "-l", str(lib), "--processes", "0"])
        assert r.exit_code == 2 and "repair" in r.output, r.output
    args = ["repair", "-l", str(lib), "--processes", "0"]
    if name == "catalog.parquet":
        r = run(app, args)  # the catalog cannot be derived: repair says it needs the music folder
        assert r.exit_code == 2 and "--music" in r.output, r.output
        args += ["--music", str(library / "music")]
    r = run(app, args)
    assert r.exit_code == 0 and "Traceback" not in r.output, r.output
    assert ("nothing to repair" in r.output) == harmless, r.output
    r = run(app, ["info", "-l", str(lib)])
    assert r.exit_code == 0 and "damaged" not in r.output, r.output
    after = _state(lib)
    assert after["catalog"].equals(before["catalog"])
    assert np.allclose(after["tracks"], before["tracks"], atol=1e-5)
    assert np.allclose(after["windows"], before["windows"], atol=1e-5)
    assert after["wtab"].equals(before["wtab"]) and after["pipeline"] == before["pipeline"]
    if name == "captions.parquet":  # set aside, named; the next caption run redoes them
        assert damage == "delete" or (lib / "captions.parquet.damaged").exists()
        tunelens.caption_library(lib, config=tunelens.CaptionConfig(workers=1))
        after = _state(lib)
    assert after["captions"].equals(before["captions"])
    r = run(app, ["search", "a steady tone", "-l", str(lib), "-k", "3", "--json"])
    assert r.exit_code == 0 and len(json.loads(r.output)["hits"]) == 3


def test_repair_keeps_the_vectors_it_can_and_refuses_a_wrong_model(library, tmp_path):
    from tunelens.index.core.repair import repair_library, salvage_vectors

    lib = tmp_path / "lib"
    shutil.copytree(library / "lib", lib)
    full = np.load(lib / "tracks.npy")
    raw = (lib / "tracks.npy").read_bytes()
    (lib / "tracks.npy").write_bytes(raw[: len(raw) - 7])  # the last row cut short
    kept, lost = salvage_vectors(lib / "tracks.npy", len(full), full.shape[1])
    assert lost.tolist() == [False] * (len(full) - 1) + [True] and np.array_equal(kept[:-1], full[:-1])
    report = repair_library(lib, processes=0)
    assert report.reembedded == 1 and not report.dropped
    (lib / "manifest.json").unlink()
    with pytest.raises(tunelens.LibraryError, match="not made by"):  # the same shape of vectors, another model
        repair_library(lib, model="musicnn:random", processes=0)
    assert not (lib / "manifest.json").exists()  # nothing written on a refusal
    assert repair_library(lib, processes=0).actions[0] == "rebuilt manifest.json for model 'musicnn'"
    assert tunelens.Library.open(lib).summary()["damaged"] == []


def test_repair_sets_aside_a_damaged_caption_batch(library, tmp_path):
    lib = tmp_path / "lib"
    shutil.copytree(library / "lib", lib)
    (lib / "captions").mkdir(exist_ok=True)
    (lib / "captions" / "batch-0001.parquet").write_bytes(b"PAR1 not a table")
    r = CliRunner().invoke(app, ["caption", "-l", str(lib), "--workers", "1"])
    assert r.exit_code == 2 and "captions/batch-0001.parquet" in r.output and "repair" in r.output, r.output
    r = CliRunner().invoke(app, ["repair", "-l", str(lib), "--processes", "0"])
    assert r.exit_code == 0 and "batch-0001.parquet aside" in r.output, r.output
    assert (lib / "captions" / "batch-0001.parquet.damaged").exists()
    assert pl.read_parquet(lib / "captions.parquet").height == 7
