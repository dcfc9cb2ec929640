"""The beets plugin against a real beets library made from the demo files: import, `beet tunelens-sync`, queries
on the synced fields, `beet tunelens DESCRIPTION`."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("beets", reason="the beets extra")


def beet(config_dir: Path, *args: str) -> str:
    beet_cmd = Path(sys.executable).with_name("beet")
    r = subprocess.run([str(beet_cmd), *args], env={**os.environ, "BEETSDIR": str(config_dir)},
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


def test_initial_key_spelling():
    from beetsplug.tunelens import initial_key

    assert [initial_key(k) for k in ("F# minor", "Bb major", "C major", None)] == ["F#m", "Bb", "C", None]


def test_beets_round_trip(demo_library, tmp_path):
    from tunelens.index import Library
    from tunelens.index.core.tracks import track_table

    lib = Library.open(demo_library)
    music = Path(lib.ok_tracks()["path"][0]).parents[1]  # the demo music folder the library indexed
    (tmp_path / "config.yaml").write_text(
        f"directory: {music}\nlibrary: {tmp_path / 'beets.db'}\nplugins: tunelens\n"
        "import:\n  copy: no\n  move: no\n  write: no\n  autotag: no\n  quiet: yes\n"
        f"tunelens:\n  library: {demo_library}\n  k: 3\n")
    beet(tmp_path, "import", "-A", "-s", "-q", str(music))  # as they are, each track on its own
    listed = beet(tmp_path, "ls", "-p").split()
    assert len(listed) == 8  # the broken file is not audio to beets either
    out = beet(tmp_path, "tunelens-sync")
    assert "8 items updated" in out
    table = {r["path"]: r for r in track_table(lib).iter_rows(named=True)}
    rows = beet(tmp_path, "ls", "-f", "$path|$bpm|$initial_key|$tunelens_id|$tunelens_caption").splitlines()
    for line in rows:
        path, bpm, key, tid, caption = line.split("|")
        t = table[path]
        assert tid == t["track_id"] and int(bpm) == round(t["tempo_bpm"]) and caption == t["caption"]
        tonic, mode = t["key"].split()
        assert key == tonic + ("m" if mode == "minor" else "")
    slow = beet(tmp_path, "ls", "-p", "bpm:1..84").split()
    assert slow and all(table[p]["tempo_bpm"] < 85 for p in slow)  # the synced fields answer beets queries
    found = beet(tmp_path, "tunelens", "slow", "piano").splitlines()
    assert found[0].startswith("understood as: piano · slow") and 1 <= len(found) - 1 <= 3
