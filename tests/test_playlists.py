"""Playlists on a real library (the 8 demo tracks plus an identical copy of one, another recording of one title by
the same artist on another album, and a silent file): the rules, radio, path, query, groups, saving, refreshing,
exports read back, and the CLI."""
from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import tunelens
from tunelens.index.playlists import PlaylistRules, violations
from tunelens.index.playlists.rules import _norm, key_index, keys_compatible, tempos_compatible, track_facts


def _tag(path: Path, **tags: str) -> None:
    import mutagen

    f = mutagen.File(str(path), easy=True)
    for k, v in tags.items():
        f[k] = v
    f.save()


@pytest.fixture(scope="module")
def pl_library(tmp_path_factory, demo_music) -> Path:
    from tunelens.embed import load_encoder
    from tunelens.index.core.indexer import IndexConfig, index_folder

    base = tmp_path_factory.mktemp("playlists")
    music = base / "music"
    shutil.copytree(demo_music, music)
    first = sorted(p for p in music.rglob("*") if p.suffix in (".flac", ".ogg", ".mp3", ".wav"))[0]
    (music / "copies").mkdir()
    shutil.copy(first, music / "copies" / f"copy{first.suffix}")  # the same recording, elsewhere
    import mutagen

    tags = mutagen.File(str(first), easy=True)
    audio, sr = sf.read(first, dtype="float32")
    (music / "other").mkdir()
    sf.write(music / "other" / "retake.flac", 0.6 * audio[::-1], sr)  # another recording of the same title
    _tag(music / "other" / "retake.flac", title=tags["title"][0], artist=tags["artist"][0], album="Another Album")
    sf.write(music / "other" / "silent.wav", np.zeros(sr * 20, np.float32), sr)  # quality-flagged: silent
    index_folder(base / "lib", music, load_encoder("musicnn"), IndexConfig())
    return base / "lib"


def _rows(lib, pl) -> list[int]:
    f = track_facts(lib)
    return [f.row_of[t] for t in pl.track_ids]


def _by_path(lib, part: str) -> str:
    f = track_facts(lib)
    return next(t for t, r in zip(f.ids, f.rel_paths) if part in r)


def test_rule_helpers():
    c, g, d, am, em = (key_index(k) for k in ("C major", "G major", "D major", "A minor", "E minor"))
    assert keys_compatible(c, g) and keys_compatible(c, am) and keys_compatible(am, em)
    assert not keys_compatible(c, d) and not keys_compatible(c, em) and keys_compatible(-1, d)
    assert tempos_compatible(120, 124, 0.08) and tempos_compatible(120, 61, 0.08)  # half time
    assert not tempos_compatible(120, 135, 0.08) and tempos_compatible(float("nan"), 90, 0.08)
    assert _norm("Hey Jude (Remastered 2015)") == _norm("hey jude") == _norm("Hey Jude - Live at Wembley")
    assert _norm("The Beatles") == _norm("beatles")
    r = PlaylistRules()
    assert r.cap(0, 10) == 2 and r.cap(0, 30) == 6 and r.cap(0, 10, share=0.65) == 7 and r.cap(3, 30) == 3
    assert r.cap(None, 30) is None
    assert PlaylistRules.from_dict({**r.to_dict(), "unknown": 1}) == r


def test_radio_keeps_the_rules(pl_library):
    lib = tunelens.Library.open(pl_library)
    f = track_facts(lib)
    seed = _by_path(lib, sorted(r for r in f.rel_paths if not r.startswith(("copies", "other")))[0])
    copy, retake, silent = (_by_path(lib, p) for p in ("copies/", "retake", "silent"))
    pl = tunelens.radio(lib, [seed], n=20, rules=PlaylistRules(max_per_artist=None, max_per_album=None))
    ids = set(pl.track_ids)
    assert seed not in ids and copy not in ids and silent not in ids  # the seed, its duplicate, the silent file
    assert retake not in ids  # the same title by the same artist, from another album
    assert len(ids) == len(f.ids) - 4 and "only" in " ".join(pl.notes)  # everything else, and it says so
    assert violations(_rows(lib, pl), f, PlaylistRules(max_per_artist=None, max_per_album=None),
                      [f.row_of[seed]], 20) == []
    loose = tunelens.radio(lib, [seed], n=20, rules=PlaylistRules(skip_seeds=False, one_per_duplicate=False,
                                                                   no_repeat_title=False, skip_flagged=False,
                                                                   max_per_artist=None, max_per_album=None))
    assert {copy, retake, silent} <= set(loose.track_ids)  # the rules, not chance, kept them out
    capped = tunelens.radio(lib, [seed], n=6, rules=PlaylistRules(max_per_artist=1))
    artists = [t.artist for t in capped.tracks if t.artist]
    assert all(artists.count(a) == 1 for a in artists)
    steered = tunelens.radio(lib, [seed], text="faster, no drums", n=4)
    assert len(steered.tracks) == 4 and steered.recipe["text"] == "faster, no drums"


def test_path_query_and_continuity(pl_library):
    lib = tunelens.Library.open(pl_library)
    f = track_facts(lib)
    a, b = f.ids[0], f.ids[5]
    p = tunelens.path_between(lib, a, b, n=5)
    assert p.track_ids[0] == a and p.track_ids[-1] == b and len(p.tracks) == 5
    assert violations(_rows(lib, p), f, PlaylistRules(skip_seeds=False), [], 5) == []
    with pytest.raises(ValueError, match="same track"):
        tunelens.path_between(lib, a, a, n=5)
    q = tunelens.query_playlist(lib, "slow piano", minutes=1.5)
    assert q.duration >= 90 or q.notes
    assert q.recipe == {"kind": "query", "n": None, "minutes": 1.5, "rules": PlaylistRules().to_dict(),
                        "text": "slow piano"}
    mixing = PlaylistRules(key_continuity=True, tempo_continuity=0.08, max_per_artist=None, max_per_album=None)
    m = tunelens.query_playlist(lib, "music", n=8, rules=mixing)
    assert m.tracks and violations(_rows(lib, m), f, mixing, [], 8) == []


def test_groups_are_named_and_cover_the_library(pl_library):
    lib = tunelens.Library.open(pl_library)
    groups = tunelens.group_playlists(lib, 3)
    assert len(groups) == 3 and all(g.name and g.kind == "cluster" for g in groups)
    placed = [t for g in groups for t in g.track_ids]
    # all but the silent file, the copy and the retake of a title (the rules of a group, as of any playlist)
    assert len(placed) == len(set(placed)) == len(track_facts(lib).ids) - 3
    assert tunelens.group_playlists(lib, "auto")


def test_save_refresh_and_exports(pl_library, tmp_path):
    from tunelens.embed import load_encoder
    from tunelens.index.playlists import load_playlist, render

    lib_dir = tmp_path / "lib"
    shutil.copytree(pl_library, lib_dir)
    lib = tunelens.Library.open(lib_dir)
    pl = tunelens.query_playlist(lib, "piano", n=4, name="evening piano")
    path = tunelens.save_playlist(lib, pl)
    assert json.loads(path.read_text())["recipe"]["text"] == "piano"
    assert [p.name for p in tunelens.list_playlists(lib)] == ["evening piano"]
    # the library changes: two new files are indexed; the playlist keeps what still fits
    more = tmp_path / "more"
    more.mkdir()
    for j in range(2):
        sf.write(more / f"tone{j}.wav", 0.3 * np.sin(2 * np.pi * (330 + 50 * j) * np.arange(22050 * 8) / 22050),
                 22050)
    tunelens.index_folder(lib_dir, more, load_encoder("musicnn"), tunelens.IndexConfig(processes=0))
    stored = json.loads(path.read_text())
    stored["tracks"][0]["track_id"] = "00000000deadbeef"  # a track no longer in the library
    path.write_text(json.dumps(stored))
    new, change = tunelens.refresh_playlist(lib_dir, "evening piano")
    assert "00000000deadbeef" in change["removed"] and len(new.tracks) == 4
    assert set(change["kept"]) == set(pl.track_ids[1:]) and len(change["added"]) == 1
    assert load_playlist(lib_dir, "evening piano").refreshed is not None
    # exports, read back: every entry resolves to the track's file
    out = tmp_path / "music-root" / "Playlists"
    out.mkdir(parents=True)
    m3u = render(new, "m3u8", out)
    entries = [ln for ln in m3u.splitlines() if ln and not ln.startswith("#")]
    assert [str((out / e).resolve()) for e in entries] == [str(Path(t.path).resolve()) for t in new.tracks]
    xspf = ET.fromstring(render(new, "xspf", out))
    ns = {"x": "http://xspf.org/ns/0/"}
    from urllib.parse import unquote

    locs = [unquote(e.text) for e in xspf.findall(".//x:location", ns)]
    assert [str((out / loc).resolve()) for loc in locs] == [str(Path(t.path).resolve()) for t in new.tracks]
    assert render(new, "csv").splitlines()[0].startswith("track_id,path,rel_path")
    assert json.loads(render(new, "json"))["name"] == "evening piano"
    with pytest.raises(ValueError, match="format"):
        render(new, "wpl")
    with pytest.raises(tunelens.LibraryError, match="no playlist"):
        load_playlist(lib_dir, "nothing")


def test_cli_playlist_verbs(pl_library, tmp_path):
    from typer.testing import CliRunner

    from tunelens.app.cli import app

    lib_dir = tmp_path / "lib"
    shutil.copytree(pl_library, lib_dir)
    run = CliRunner().invoke
    seed = track_facts(tunelens.Library.open(lib_dir)).ids[0]
    r = run(app, ["playlist", "radio", seed, "-l", str(lib_dir), "-n", "3", "--name", "mix", "--to",
                  str(tmp_path / "mix.xspf")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "mix.xspf").exists() and "saved as “mix”" in r.output
    r = run(app, ["playlist", "query", "choir", "-l", str(lib_dir), "--minutes", "1", "--json", "--no-save"])
    assert r.exit_code == 0 and json.loads(r.output)["recipe"]["minutes"] == 1
    r = run(app, ["playlist", "path", seed, track_facts(tunelens.Library.open(lib_dir)).ids[3], "-l", str(lib_dir),
                  "-n", "4", "--key-continuity", "--json", "--no-save"])
    assert r.exit_code == 0 and len(json.loads(r.output)["tracks"]) <= 4
    r = run(app, ["playlist", "clusters", "-l", str(lib_dir), "-k", "2", "--to", str(tmp_path / "groups")])
    assert r.exit_code == 0 and len(list((tmp_path / "groups").glob("*.m3u8"))) == 2
    r = run(app, ["playlist", "list", "-l", str(lib_dir), "--json"])
    assert {"mix"} <= {p["name"] for p in json.loads(r.output)} and len(json.loads(r.output)) == 3
    r = run(app, ["playlist", "refresh", "mix", "-l", str(lib_dir)])
    assert r.exit_code == 0 and "kept 3" in r.output
    r = run(app, ["playlist", "show", "nothing", "-l", str(lib_dir)])
    assert r.exit_code == 2 and "no playlist" in r.output and "Traceback" not in r.output
    r = run(app, ["playlist", "radio", "not-a-track", "-l", str(lib_dir)])
    assert r.exit_code == 2 and "neither a track id" in r.output
    r = run(app, ["playlist", "delete", "mix", "-l", str(lib_dir)])
    assert r.exit_code == 0 and "mix" not in {p.name for p in tunelens.list_playlists(lib_dir)}
