"""The development corpus script (issue: hear real music): what it renders is what its ground truth says."""
from __future__ import annotations

import random

import numpy as np
import polars as pl
import pytest
import soundfile as sf
from conftest import load_script

pytest.importorskip("music21", reason="the demo extra (music21, pretty-midi, tinysoundfont) renders the corpus")
dev = load_script("make_dev_corpus")


def test_the_vocabulary_covers_what_people_name():
    names = set(dev.INSTRUMENTS)
    assert len(names) >= 30
    for needed in ("church organ", "trumpet", "trombone", "french horn", "tuba", "saxophone", "clarinet", "oboe",
                   "bassoon", "double bass", "banjo", "accordion", "marimba", "vibraphone", "electric guitar",
                   "distorted guitar", "electric bass", "timpani", "harp", "synth lead", "synth pad", "choir",
                   "drum kit", "piano", "violin", "cello", "flute"):
        assert needed in names, needed
    for members in dev.ENSEMBLES.values():
        assert set(members) <= names


def test_the_reserved_soundfont_family_is_refused(tmp_path, monkeypatch):
    reserved = tmp_path / "Fluid_GM.sf2"
    reserved.write_bytes(b"RIFF")
    monkeypatch.setitem(dev.SOUNDFONTS, "csound", dev.Soundfont("csound", (str(reserved),), "MIT", True))
    with pytest.raises(ValueError, match="reserved"):
        dev.soundfont_path("csound")


def test_parts_sit_in_their_instruments_range():
    sources = dev.score_sources(3)[:3]
    for name in ("tuba", "flute", "double bass", "glockenspiel"):
        inst = dev.INSTRUMENTS[name]
        clip = dev.Clip(0, "timgm6mb", sources[0], "solo", None, [(name, inst.programs[0])], 100.0, 5, "normal",
                        "flat", "dry", "flac", labels=[name])
        events, facts = dev.events_for(clip, 10.0, random.Random(0))
        assert inst.low - 6 <= np.median([e[2] for e in events]) <= inst.high + 6, name
        assert facts["key"].split()[1] in ("major", "minor")


def test_a_small_corpus_renders_as_labelled_and_resumes(tmp_path):
    out = tmp_path / "dev"
    args = [str(out), "--soundfonts", "timgm6mb", "--clips", "5", "--seconds", "5", "--pieces", "4"]
    assert dev.main(args) == 0
    gt = pl.read_parquet(out / "ground_truth.parquet")
    assert len(gt) == 5 and set(gt["soundfont"]) == {"timgm6mb"} and not gt["permissive"].any()
    for row in gt.iter_rows(named=True):
        audio, sr = sf.read(out / row["file"])
        assert sr == dev.SR and 5.0 <= len(audio) / sr <= 7.0
        assert np.sqrt(np.mean(audio**2)) > 1e-3, row["file"]  # something plays
        assert row["file"].split("/")[1] == row["kind"] and row["n_instruments"] == len(row["instruments"])
        assert "+".join(n.replace(" ", "-") for n in row["instruments"]) in row["file"]
        assert row["tempo_bpm"] == pytest.approx(dev.beat_bpm(row["quarter_bpm"], row["meter"]), abs=0.01)
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.*") if p.suffix != ".parquet" and p.suffix != ".json"}
    assert dev.main(args) == 0  # a second run keeps what is there and writes the same ground truth
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert pl.read_parquet(out / "ground_truth.parquet").equals(gt)
