"""The audio-LM backend (Qwen2-Audio) end to end on a tiny random checkpoint built here, through the real
loading code: segmenting, prompting with the measurements, summarising, batch captioning and QA."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import tone

from tunelens.caption.audio_lm import evidence_lines, split_segments
from tunelens.caption.base import load_captioner
from tunelens.caption.batch import CaptionConfig, caption_library
from tunelens.caption.evidence import Evidence
from tunelens.embed.base import ModelUnavailableError
from tunelens.embed.descriptors import analyse
from tunelens.index import Library
from tunelens.index.core.captions import CaptionStore
from tunelens.index.core.indexer import IndexConfig, index_folder

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def tiny_qwen(tmp_path_factory) -> Path:
    from tunelens.caption.random_audio_lm import make_random_qwen2_audio

    return make_random_qwen2_audio(tmp_path_factory.mktemp("tiny_qwen2_audio"))


@pytest.fixture(scope="session")
def qwen(tiny_qwen):
    return load_captioner(f"qwen2-audio:{tiny_qwen}")


def test_segments_cover_the_whole_track_in_at_most_30_s():
    sr = 16000
    for seconds in (0.5, 29.9, 30.0, 45.0, 61.0, 600.0):
        n = int(seconds * sr)
        spans = split_segments(n, sr, 30.0)
        assert spans[0][0] == 0 and spans[-1][1] == n
        assert all(a == prev_b for (a, _), (_, prev_b) in zip(spans[1:], spans[:-1]))
        assert all(0 < b - a <= 30 * sr for a, b in spans)
        assert len(spans) == max(1, int(np.ceil(seconds / 30)))


def test_caption_round_trip_segments_and_summarises(qwen, tmp_path):
    path = tmp_path / "a.wav"
    sf.write(path, tone(45, 440), 22050)
    ev = Evidence(analyse(path), {"piano": 0.9, "classical": 0.7})
    prompts: list[tuple[str, int]] = []
    generate = qwen.generate

    def spy(texts, audios=None):
        prompts.extend((t, len(audios[i]) if audios else 0) for i, t in enumerate(texts))
        return generate(texts, audios)

    qwen.generate = spy
    try:
        cap = qwen.caption(ev, "t", path)
    finally:
        qwen.generate = generate
    assert [n for _, n in prompts] == [1, 1, 0]  # two 22.5 s clips with audio, then a text-only summary
    assert all("tempo:" in t and "piano 0.90" in t for t, _ in prompts)
    lines = cap.description.splitlines()
    assert [ln[:11] for ln in lines] == ["0:00-0:22: ", "0:22-0:45: "]
    assert all(ln in prompts[2][0] for ln in lines)
    assert isinstance(cap.caption, str) and qwen.caption(ev, "t", path) == cap  # greedy: same audio, same caption


def test_batch_captioning_and_qa_with_the_audio_lm(tiny_qwen, tiny_encoder, tmp_path):
    music = tmp_path / "music"
    music.mkdir()
    for i, f in enumerate((220, 330, 495)):
        sf.write(music / f"{i}.wav", tone(8 + 4 * i, f), 22050)
    index_folder(tmp_path / "lib", music, tiny_encoder, IndexConfig())
    lib = Library.open(tmp_path / "lib")
    spec = f"qwen2-audio:{tiny_qwen}"
    report = caption_library(lib, load_captioner(spec), CaptionConfig(workers=1, batch_tracks=2))
    assert report.captioned == 3 and report.failed == 0
    caps = CaptionStore(lib.root).read(spec)
    assert len(caps) == 3 and (caps["status"] == "ok").all()
    assert caps["captioner_version"][0].startswith("qwen2-audio-p1-") and caps["tempo_bpm"].is_not_null().all()
    again = caption_library(lib, load_captioner(spec), CaptionConfig(workers=1))
    assert again.done_before == 3 and again.captioned == 0
    out = subprocess.run([sys.executable, "-m", "tunelens.app.cli", "ask", caps["track_id"][0], "is there a piano?",
                          "--library", str(lib.root), "--model", spec, "--json"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    a = json.loads(out.stdout)
    assert a["kind"] == "audio-lm" and a["confidence"] is None
    assert any(e.startswith("tempo:") for e in a["evidence"])


def test_evidence_lines_state_the_measurements():
    from tunelens.embed.descriptors import Descriptors

    d = Descriptors(duration=125.0, tempo_bpm=96.4, tempo_confidence=0.8, key="G major", key_confidence=0.3,
                    loudness_lufs=-14.0, loudness_range_lu=6.5, brightness_hz=1800.0, onset_rate=3.0,
                    energy_db=[-20, -12, -6, -3, 0, 0, -2, -4, -10, -25])
    lines = evidence_lines(Evidence(d, {"guitar": 0.8, "male vocalists": 0.1}))
    text = "\n".join(lines)
    assert "duration: 2:05" in text and "96 BPM" in text and "G major" in text and "-14.0 LUFS" in text
    assert "guitar 0.80" in text


def test_missing_audio_lm_offline_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailableError, match="Qwen/no-such-model.*HF_HUB_OFFLINE"):
        load_captioner("qwen2-audio:Qwen/no-such-model")
