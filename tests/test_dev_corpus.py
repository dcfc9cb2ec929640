"""The development corpus script (issue: hear real music): what it renders is what its ground truth says."""
from __future__ import annotations

import json
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


def test_the_fm_soundfont_plays_in_tune_and_holds_its_notes(tmp_path):
    """tunelens's own FM soundfont: a valid SF2 that tinysoundfont plays; sustained voices loop without a gap at
    the pitch asked for (the samples' tuning corrections work), plucked ones die away, drums sound."""
    import tinysoundfont

    fm = load_script("fm_soundfont")
    path = tmp_path / "fm.sf2"
    fm.build(path, programs=[40, 71, 24], roots=[48, 60, 72])
    again = tmp_path / "again.sf2"
    fm.build(again, programs=[40, 71, 24], roots=[48, 60, 72])
    assert path.read_bytes() == again.read_bytes()
    synth = tinysoundfont.Synth(samplerate=fm.SR)
    sfid = synth.sfload(str(path))

    def play(channel: int, bank: int, program: int, key: int, seconds: float) -> np.ndarray:
        synth.sounds_off()
        synth.program_select(channel, sfid, bank, program, bank == 128)
        synth.noteon(channel, key, 100)
        audio = np.frombuffer(synth.generate(int(seconds * fm.SR)), dtype=np.float32).reshape(-1, 2).mean(axis=1)
        synth.noteoff(channel, key)
        return audio

    for program, key in ((40, 67), (71, 57)):  # violin G4, clarinet A3: held for 4 s, far past their samples' ends
        audio = play(0, 0, program, key, 4.0)
        rms = np.sqrt(np.mean(audio[: 4 * fm.SR].reshape(40, -1) ** 2, axis=1))
        assert rms[3:].min() > 0.5 * rms[3:].max(), program  # no gap or fade while the key is down
        tail = audio[fm.SR:]
        spectrum = np.abs(np.fft.rfft(tail * np.hanning(len(tail))))
        freqs = np.fft.rfftfreq(len(tail), 1 / fm.SR)
        f0 = 440 * 2 ** ((key - 69) / 12)
        near = (freqs > f0 * 0.9) & (freqs < f0 * 1.1)
        peak = freqs[near][np.argmax(spectrum[near])]
        assert abs(1200 * np.log2(peak / f0)) < 10, (program, peak, f0)
    pluck = play(0, 0, 24, 52, 4.0)
    assert np.abs(pluck[-fm.SR // 2:]).max() < 0.05 * np.abs(pluck).max()  # a guitar string dies away
    assert np.abs(play(9, 128, 0, 38, 0.5)).max() > 0.05  # the snare drum sounds


@pytest.mark.slow
def test_the_fm_soundfont_is_built_on_first_use_and_renders_a_corpus(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNELENS_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "dev"
    assert dev.main([str(out), "--soundfonts", "fm", "--clips", "2", "--seconds", "4", "--pieces", "4"]) == 0
    built = list((tmp_path / "cache" / "soundfonts").glob("tunelens-fm-*.sf2"))
    assert len(built) == 1
    recipe = json.loads((out / "recipe.json").read_text())
    assert recipe["soundfonts"]["fm"]["file"] == str(built[0]) and recipe["soundfonts"]["fm"]["permissive"]
    gt = pl.read_parquet(out / "ground_truth.parquet")
    assert len(gt) == 2 and gt["permissive"].all()
    for row in gt.iter_rows(named=True):
        audio, _ = sf.read(out / row["file"])
        assert np.sqrt(np.mean(audio**2)) > 1e-3, row["file"]
