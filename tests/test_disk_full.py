"""A full disk (a small tmpfs the test mounts) while staging a batch and while committing: the library stays as it
was, the error says what happened in one sentence, no temp file is left taking space, and the next run with space
resumes."""
from __future__ import annotations

import os
import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf
from conftest import tone
from typer.testing import CliRunner

import tunelens
from tunelens.app.cli import app


@pytest.fixture
def small_disk(tmp_path):
    mnt = tmp_path / "disk"
    mnt.mkdir()
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as e:
        pytest.skip(f"cannot mount a tmpfs here ({getattr(e, 'stderr', b'').decode().strip() or e}); needs root")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(disk, leave: int):
    """Take all but `leave` bytes of the disk's free space."""
    filler = disk / "filler"
    free = shutil.disk_usage(disk).free
    with open(filler, "wb") as f:
        os.posix_fallocate(f.fileno(), 0, max(0, free - leave))
    return filler


@pytest.mark.parametrize("leave", [0, 48 * 1024], ids=["while-staging", "while-committing"])
def test_a_full_disk_keeps_the_library_and_the_next_run_resumes(tmp_path, small_disk, leave):
    music = tmp_path / "music"
    music.mkdir()
    for i in range(2):
        sf.write(music / f"a{i}.flac", tone(6, 220 * (i + 1)), 22050)
    lib = small_disk / "lib"
    run = CliRunner().invoke
    r = run(app, ["index", str(music), "-l", str(lib), "--processes", "0", "--no-measure"])
    assert r.exit_code == 0, r.output
    before = np.load(lib / "tracks.npy").copy()
    catalog_before = tunelens.Library.open(lib).catalog["rel_path"].to_list()
    for i in range(2, 6):
        sf.write(music / f"a{i}.flac", tone(20, 110 * (i + 1)), 22050)
    filler = _fill(small_disk, leave)
    r = run(app, ["index", str(music), "-l", str(lib), "--processes", "0", "--no-measure", "--batch-files", "2"])
    assert r.exit_code == 2 and "full" in r.output and "run the same command again" in r.output, r.output
    assert "Traceback" not in r.output and r.output.count("\n") <= 3, r.output
    opened = tunelens.Library.open(lib)  # the library as it was
    assert opened.catalog["rel_path"].to_list() == catalog_before
    assert np.array_equal(np.asarray(opened.track_vectors()), before) and opened.health() == []
    assert not list(lib.rglob("*.tmp")) and not (lib / "COMMIT.json").exists()
    staged = len(opened.staged_batches())
    assert (staged == 0) if leave == 0 else (staged >= 1), staged  # work finished before the disk filled is kept
    filler.unlink()
    r = run(app, ["index", str(music), "-l", str(lib), "--processes", "0", "--no-measure"])
    assert r.exit_code == 0, r.output
    assert ("resumed" in r.output) and len(tunelens.Library.open(lib).ok_tracks()) == 6
