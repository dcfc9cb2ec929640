"""Curation on real rendered music: quality flags, duplicate clusters, caption agreement and dataset export."""
from __future__ import annotations

import io
import json
import random
import shutil
import tarfile
from pathlib import Path

import mutagen
import numpy as np
import polars as pl
import pytest
import soundfile as sf
from conftest import load_script
from scipy.signal import butter, sosfilt

SR = 44100


def noise(seconds: float, seed: int = 0) -> np.ndarray:
    """Broadband noise with a 1/f tilt: content up to Nyquist, like a full-band recording."""
    x = np.random.default_rng(seed).standard_normal(int(seconds * SR))
    spec = np.fft.rfft(x)
    freqs = np.fft.rfftfreq(len(x), 1 / SR)
    spec[1:] /= np.sqrt(freqs[1:] / 100.0)
    y = np.fft.irfft(spec, len(x))
    return (0.4 * y / np.abs(y).max()).astype(np.float32)


def broken_files(folder: Path) -> dict[str, str]:
    """Synthetic broken files (each from its own noise, so none is a copy of another) → the flag each must raise."""
    sf.write(folder / "digital_silence.flac", np.zeros((SR * 8, 2), np.float32), SR)
    sf.write(folder / "hard_clipped.flac", np.clip(noise(8, 10) * 8, -1, 1), SR)
    sf.write(folder / "lowpass_16k.flac", sosfilt(butter(40, 16000, fs=SR, output="sos"), noise(8, 11)), SR)
    x = noise(8, 12)
    sf.write(folder / "mono_as_stereo.flac", np.stack([x, x], axis=1), SR)
    sf.write(folder / "dc_offset.flac", noise(8, 13) * 0.5 + 0.05, SR)
    return {"digital_silence.flac": "silent", "hard_clipped.flac": "clipped", "lowpass_16k.flac": "lowpass",
            "mono_as_stereo.flac": "fake_stereo", "dc_offset.flac": "dc_offset"}


def test_quality_measures_flag_broken_audio(tmp_path):
    from tunelens.embed.audio import read_audio
    from tunelens.embed.quality import measure
    from tunelens.index.curation.quality import quality_flag_columns

    expected = broken_files(tmp_path)
    sf.write(tmp_path / "clean.flac", np.stack([noise(8, 1), noise(8, 2)], axis=1), SR)
    rows = []
    for path in sorted(tmp_path.iterdir()):
        data, sr = read_audio(path)
        rows.append({"rel_path": path.name, "sample_rate": sr, "channels": data.shape[1], "duration": len(data) / sr,
                     **measure(data, sr).as_row()})
    flags = dict(
        pl.DataFrame(rows).with_columns(quality_flag_columns()).select("rel_path", "quality_flags").iter_rows()
    )
    assert flags["clean.flac"] == []
    for name, flag in expected.items():
        assert flags[name] == [flag], (name, flags[name])
    lowpass = next(r for r in rows if r["rel_path"] == "lowpass_16k.flac")["lowpass_hz"]
    assert 15000 <= lowpass <= 17000


def test_audio_hash_matches_a_lossless_copy_only(tmp_path):
    from tunelens.embed.audio import read_audio
    from tunelens.embed.quality import audio_hash

    pcm = np.round(noise(3) * 32767).astype(np.int16)  # one recording's samples, stored two lossless ways
    sf.write(tmp_path / "a.flac", pcm, SR)
    sf.write(tmp_path / "a.wav", pcm, SR)
    sf.write(tmp_path / "quieter.wav", pcm // 2, SR)
    hashes = {p.name: audio_hash(*read_audio(p)) for p in tmp_path.iterdir()}
    assert hashes["a.flac"] == hashes["a.wav"] != hashes["quieter.wav"]


@pytest.fixture(scope="module")
def curated(tmp_path_factory, demo_music):
    """Demo tracks, transformed copies of two of them, and broken files, indexed with musicnn and captioned."""
    from tunelens.caption.batch import CaptionConfig, caption_library
    from tunelens.embed import load_encoder
    from tunelens.index import Library
    from tunelens.index.core.indexer import index_folder

    base = tmp_path_factory.mktemp("curation")
    music = base / "music"
    shutil.copytree(demo_music, music)
    for f in music.rglob("*"):  # untagged, so that each recording is its own split group (artists: a test below)
        if f.suffix in (".flac", ".ogg", ".mp3"):
            mutagen.File(f).delete()
    transform = load_script("eval_dupes").transform
    originals = sorted(str(p.relative_to(music)) for p in music.rglob("*") if p.suffix in (".flac", ".ogg", ".mp3"))
    a = next(p for p in originals if "organ" in p)  # a FLAC
    b = next(p for p in originals if "strings" in p)
    copies = music / "copies"
    copies.mkdir()
    rng = random.Random(0)
    groups = {a: [a], b: [b]}
    for src, kind in [(a, "wav_copy"), (a, "mp3_128k"), (a, "resample"), (b, "gain"), (b, "trim"), (b, "stereo"),
                      (a, "edit_start"), (b, "fade"), (b, "mp3_64k")]:
        path, _ = transform(kind, music / src, copies, rng)
        groups[src].append(str(path.relative_to(music)))

    broken = broken_files(music)
    index_folder(base / "lib", music, load_encoder("musicnn"))
    lib = Library.open(base / "lib")
    caption_library(lib, config=CaptionConfig(workers=1))
    return {
        "lib": base / "lib",
        "groups": [sorted(g) for g in groups.values()],
        "broken": broken,
        "exact": (a, groups[a][1]),
        "edit": groups[a][4],  # the edit_start copy
    }


def test_quality_flags_land_in_the_catalog_and_filter(curated):
    from tunelens.index import Library
    from tunelens.index.core.tracks import TrackFilter, track_table

    table = track_table(Library.open(curated["lib"]))
    flags = dict(table.select("rel_path", "quality_flags").iter_rows())
    for name, flag in curated["broken"].items():
        assert flag in flags[name], (name, flags[name])
    originals = [p for p in flags if p not in curated["broken"]]
    assert all(flags[p] in ([], ["fake_stereo"]) for p in originals)
    kept = TrackFilter(exclude_flags=["silent", "clipped", "lowpass"]).apply(table)["rel_path"].to_list()
    assert "digital_silence.flac" not in kept and "hard_clipped.flac" not in kept and "lowpass_16k.flac" not in kept
    assert "mono_as_stereo.flac" in kept
    with pytest.raises(ValueError, match="unknown quality flag"):
        TrackFilter(exclude_flags=["noisy"]).apply(table)


def test_dupes_cluster_each_recording_and_nothing_else(curated):
    from tunelens.index import Library
    from tunelens.index.curation.dupes import find_duplicates, load_duplicates, save_duplicates

    lib = Library.open(curated["lib"])
    result = find_duplicates(lib)
    got = sorted(sorted(g) for g in result.clusters.group_by("cluster").agg("rel_path")["rel_path"].to_list())
    assert got == sorted(curated["groups"])
    keepers = result.clusters.filter(pl.col("keeper"))
    assert len(keepers) == 2 and keepers["lossless"].all()
    a, wav = curated["exact"]
    assert result.clusters.filter(pl.col("rel_path") == wav)["matched_by"].item() == "exact"
    relation = dict(result.clusters.select("rel_path", "relation").iter_rows())
    assert relation[curated["edit"]].startswith("edit: ") and "shorter at the start" in relation[curated["edit"]]
    assert load_duplicates(lib) is None
    save_duplicates(lib, result)
    assert load_duplicates(lib).equals(result.clusters)
    # clusters an older version found (no level-contour check) are found again, not trusted
    import pyarrow.parquet as pq

    path = lib.root / "duplicates.parquet"
    table = pq.read_table(path)
    meta = json.loads(table.schema.metadata[b"tunelens"])
    del meta["rules"]
    pq.write_table(table.replace_schema_metadata({b"tunelens": json.dumps(meta).encode()}), path)
    assert load_duplicates(lib) is None


def test_the_same_score_played_again_is_not_a_duplicate(demo_music, tmp_path):
    """The same score rendered by another instrument, 20% faster, or with the level swelling over its phrases
    shares its harmony but is another recording; an edit of the original (cut at both ends) is found."""
    import pretty_midi

    from tunelens.embed import load_encoder
    from tunelens.embed.fingerprint import align, fingerprint
    from tunelens.index import Library
    from tunelens.index.core.indexer import IndexConfig, index_folder
    from tunelens.index.curation.dupes import DupesConfig, find_duplicates

    script = load_script("eval_dupes")
    soundfont = str(Path(pretty_midi.__file__).parent / "TimGM6mb.sf2")
    rows = pl.read_parquet(demo_music / "ground_truth.parquet").filter(~pl.col("source").str.starts_with("drums:"))
    row = rows.row(0, named=True)
    music = tmp_path / "music"
    music.mkdir()
    shutil.copy2(demo_music / row["file"], music / Path(row["file"]).name)
    rng = random.Random(1)
    edit, _ = script.transform("edit_both", demo_music / row["file"], music, rng)
    others = {kind: script.render_negative(kind, row, music, rng, soundfont)[0]
              for kind in ("other_instrument", "other_tempo", "other_dynamics")}
    original = fingerprint(music / Path(row["file"]).name)
    swell, cut = align(original, fingerprint(others["other_dynamics"])), align(original, fingerprint(edit))
    # the swelling render agrees in notes and timing; only its level contour tells it apart
    assert swell.harmony >= 0.93 and swell.spectral >= 0.8 and abs(swell.drift_s) <= 0.07
    assert swell.dynamics_db > 2 * DupesConfig().max_dynamics_db > 4 * cut.dynamics_db
    index_folder(tmp_path / "lib", music, load_encoder("musicnn"), IndexConfig(processes=0, measure=False))
    clusters = find_duplicates(Library.open(tmp_path / "lib")).clusters
    assert sorted(clusters["rel_path"].to_list()) == sorted([Path(row["file"]).name, edit.name])


def test_cli_dupes_and_quality_json(curated):
    from typer.testing import CliRunner

    from tunelens.app.cli import app

    runner = CliRunner()
    out = runner.invoke(app, ["dupes", "--library", str(curated["lib"]), "--json"])
    assert out.exit_code == 0, out.output
    clusters = json.loads(out.stdout)
    assert sorted(sorted(t["rel_path"] for t in c["tracks"]) for c in clusters) == sorted(curated["groups"])
    out = runner.invoke(app, ["quality", "--library", str(curated["lib"]), "--json"])
    assert out.exit_code == 0, out.output
    report = json.loads(out.stdout)
    assert {f["file"] for f in report["flagged"]} >= set(curated["broken"])
    assert report["unmeasured"] == 0


def test_agreement_is_cached_per_caption(curated):
    from tunelens.embed import load_encoder
    from tunelens.index import Library
    from tunelens.index.core.tracks import track_table
    from tunelens.index.curation.agreement import agreement_scores

    lib = Library.open(curated["lib"])
    calls = []

    class Counting:
        def __init__(self, enc):
            self._enc = enc

        def __getattr__(self, name):
            return getattr(self._enc, name)

        def embed_text(self, texts):
            calls.append(len(texts))
            return self._enc.embed_text(texts)

    enc = Counting(load_encoder("musicnn"))
    captions = track_table(lib).select("track_id", "caption")
    first = agreement_scores(lib, enc, captions)
    assert len(first) == captions["caption"].is_not_null().sum() and sum(calls) == len(first)
    assert first["agreement"].is_between(-1.0, 1.0).all()
    again = agreement_scores(lib, enc, captions)
    assert sum(calls) == len(first)  # nothing embedded twice
    assert dict(again.iter_rows()) == dict(first.iter_rows())
    # a track whose caption names what it is agrees more than one whose caption names something else
    choir = captions.join(lib.ok_tracks().select("track_id", "rel_path"), on="track_id").filter(
        pl.col("rel_path").str.contains("choir")
    )
    swapped = choir.with_columns(pl.lit("Fast techno with a heavy electronic beat.").alias("caption"))
    own = agreement_scores(
        lib, enc, choir.select("track_id", pl.lit("A choir of voices singing together.").alias("caption"))
    )
    other = agreement_scores(lib, enc, swapped.select("track_id", "caption"))
    assert own["agreement"].item() > other["agreement"].item()


def test_export_parquet_loads_with_datasets_and_keeps_clusters_together(curated, tmp_path):
    datasets = pytest.importorskip("datasets")
    from tunelens.embed import load_encoder
    from tunelens.index import Library
    from tunelens.index.core.tracks import track_table
    from tunelens.index.curation.agreement import agreement_scores
    from tunelens.index.curation.dupes import find_duplicates
    from tunelens.index.curation.export import ExportConfig, export_dataset

    lib = Library.open(curated["lib"])
    clusters = find_duplicates(lib).clusters
    scores = agreement_scores(lib, load_encoder("musicnn"), track_table(lib).select("track_id", "caption"))
    out = tmp_path / "all"
    report = export_dataset(lib, out, ExportConfig(split=(0.5, 0.25, 0.25), keep_duplicates=True), clusters, scores)
    ds = datasets.load_dataset("parquet", data_dir=str(out / "data"))
    assert set(ds) == {"train", "validation", "test"}
    assert isinstance(ds["train"].features["audio"], datasets.Audio)
    split_of = {r["file"]: name for name in ds for r in ds[name].remove_columns("audio")}
    exported = [[f for f in group if f in split_of] for group in curated["groups"]]  # a stereo copy is flagged
    for group in exported:
        assert len(group) >= 3 and len({split_of[f] for f in group}) == 1, group  # a recording never spans two splits
    assert not set(curated["broken"]) & set(split_of)  # flagged audio left out
    assert report.dropped["quality: silent"] == 1 and report.dropped["quality: clipped"] == 1
    row = ds["validation"].cast_column("audio", datasets.Audio(decode=False))[0]
    data, sr = sf.read(io.BytesIO(row["audio"]["bytes"]))
    assert sr > 0 and len(data) > sr and row["caption"] and row["agreement"] is not None
    # default: one keeper per cluster, and a user filter
    clean = export_dataset(
        lib, tmp_path / "clean", ExportConfig(filter="duration > 10 AND file NOT LIKE 'piano/%'"), clusters, scores
    )
    assert clean.dropped["duplicate of a kept track"] == sum(len(g) - 1 for g in exported)
    assert clean.dropped["--filter"] == 1
    assert sum(clean.splits.values()) == 7  # the demo tracks but the piano, one copy of each


def test_export_webdataset_jsonl_and_errors(curated, tmp_path):
    from tunelens.index import Library
    from tunelens.index.curation.export import ExportConfig, ExportError, export_dataset

    lib = Library.open(curated["lib"])
    report = export_dataset(lib, tmp_path / "wds", ExportConfig(format="webdataset", split=(1.0,)))
    (shard,) = report.files
    with tarfile.open(tmp_path / "wds" / shard) as tar:
        names = tar.getnames()
        first_json = json.loads(tar.extractfile(next(n for n in names if n.endswith(".json"))).read())
    keys = {n.rsplit(".", 1)[0] for n in names}
    assert len(keys) == report.splits["train"] and all(f"{k}.txt" in names and f"{k}.json" in names for k in keys)
    assert first_json["caption"] and isinstance(first_json["tags"], list)
    jl = export_dataset(lib, tmp_path / "jl", ExportConfig(format="jsonl", split=(0.5, 0.5)))
    lines = [json.loads(x) for name in jl.files for x in (tmp_path / "jl" / name).read_text().splitlines()]
    assert len(lines) == sum(jl.splits.values()) and all(Path(x["audio"]).exists() for x in lines)
    with pytest.raises(ExportError, match="not empty"):
        export_dataset(lib, tmp_path / "jl", ExportConfig(format="jsonl"))
    assert export_dataset(lib, tmp_path / "jl", ExportConfig(format="jsonl", overwrite=True)).splits
    with pytest.raises(ExportError, match="cannot be used"):
        export_dataset(lib, tmp_path / "bad", ExportConfig(filter="no_such_column > 1"))
    assert not (tmp_path / "bad").exists()


def test_splits_keep_artists_and_clusters_whole():
    from tunelens.index.curation.export import assign_splits, parse_split

    n = 200
    rows = pl.DataFrame(
        {
            "track_id": [f"t{i:03d}" for i in range(n)],
            "cluster": [i // 4 if i < 40 else None for i in range(n)],
            "artist_key": [f"artist{i % 13}" if i % 3 == 0 else None for i in range(n)],
        }
    )
    out = assign_splits(rows, parse_split("0.8,0.1,0.1"), seed=1)
    for key in ("cluster", "artist_key"):
        spans = out.drop_nulls(key).group_by(key).agg(pl.col("split").n_unique())["split"]
        assert spans.max() == 1
    counts = dict(out["split"].value_counts().iter_rows())
    assert abs(counts["train"] - 160) <= 20 and counts["validation"] > 0 and counts["test"] > 0
    assert out.equals(assign_splits(rows, (0.8, 0.1, 0.1), seed=1))  # deterministic
    with pytest.raises(ValueError):
        parse_split("0.5,0.6")
