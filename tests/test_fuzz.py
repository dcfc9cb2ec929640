"""Fuzzed audio (byte flips, truncations, header corruptions of valid FLAC, MP3, OGG, WAV and M4A files) indexes
with no crash and no hang, every file indexed or recorded with a reason; a decode past the time limit stops only
its own file. `scripts/fuzz_audio.py` runs the full 500."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf
from conftest import load_script, tone

import tunelens

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_a_hundred_fuzzed_files_index_each_with_a_reason(tmp_path):
    fuzz = load_script("fuzz_audio")
    files = fuzz.make(tmp_path, 100, seed=7)
    report = tunelens.index_folder(tmp_path / "lib", tmp_path / "music", "musicnn",
                                   tunelens.IndexConfig(measure=False, processes=2))
    reasons = dict(report.failed)
    indexed = set(tunelens.Library.open(tmp_path / "lib").ok_tracks()["rel_path"].to_list())
    assert {f.name for f in files} == indexed | set(reasons)  # every file: indexed, or failed with a reason
    assert indexed and reasons and all(reasons.values())
    wrong = [r for r in reasons.values() if "exist" in r or "vanished" in r or "crashed" in r]
    assert not wrong, wrong  # a damaged file is never reported as missing


def test_a_decode_past_the_limit_stops_only_its_file(tmp_path):
    import av
    import numpy as np

    music = tmp_path / "music"
    music.mkdir()
    sf.write(music / "short.flac", tone(4, 440), 22050)
    data = np.tile(tone(10, 330)[:, None], (1, 2)).astype(np.float32)
    with av.open(str(music / "long.mp3"), "w", format="mp3") as c:  # 20 minutes: seconds to decode
        stream = c.add_stream("libmp3lame", rate=22050, layout="stereo")
        for _ in range(120):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data.T), format="fltp", layout="stereo")
            frame.sample_rate = 22050
            for packet in stream.encode(frame):
                c.mux(packet)
        for packet in stream.encode(None):
            c.mux(packet)
    code = (f"import tunelens, json; r = tunelens.index_folder({str(tmp_path / 'lib')!r}, {str(music)!r}, 'musicnn', "
            "tunelens.IndexConfig(measure=False, processes=1)); print(json.dumps(r.failed))")
    env = {**os.environ, "TUNELENS_DECODE_LIMIT_S": "0.3"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    failed = dict(__import__("json").loads(out.stdout.strip().splitlines()[-1]))
    assert list(failed) == ["long.mp3"] and "longer than 0.3 s" in failed["long.mp3"], failed
    assert tunelens.Library.open(tmp_path / "lib").ok_tracks()["rel_path"].to_list() == ["short.flac"]
