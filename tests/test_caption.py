"""Descriptors on synthetic signals, the default captioner, QA and resumable batch captioning."""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import soundfile as sf

from tunelens.caption.batch import CaptionConfig, caption_library
from tunelens.caption.describe import DescribeCaptioner
from tunelens.caption.evidence import Evidence, Thresholds, caption_thresholds
from tunelens.caption.qa import CANT_TELL, answer
from tunelens.embed.descriptors import Descriptors, analyse, analyse_samples
from tunelens.index import Library
from tunelens.index.core.captions import CaptionStore
from tunelens.index.core.indexer import IndexConfig, index_folder

ROOT = Path(__file__).resolve().parents[1]
SR = 22050


def clicks(bpm: float, seconds: float = 30.0) -> np.ndarray:
    y = np.zeros(int(seconds * SR), np.float32)
    click = np.sin(2 * np.pi * 1000 * np.arange(int(0.03 * SR)) / SR) * np.hanning(int(0.03 * SR))
    for k, t in enumerate(np.arange(0, seconds - 0.05, 60.0 / bpm)):
        s = int(t * SR)
        y[s:s + len(click)] += (1.0 if k % 4 == 0 else 0.6) * click
    return y


def chords(tonic_midi: int, minor: bool, seconds_per_chord: float = 1.0, repeats: int = 6) -> np.ndarray:
    third = 3 if minor else 4
    progression = [(0, third, 7), (5, 5 + (3 if not minor else 3), 12), (7, 11, 14), (0, third, 7)]  # i/I iv/IV V i/I
    n = int(seconds_per_chord * SR)
    t = np.arange(n) / SR
    out = []
    for _ in range(repeats):
        for chord in progression:
            y = np.zeros(n)
            for step in chord:
                f = 440.0 * 2 ** ((tonic_midi + step - 69) / 12)
                for h, a in ((1, 1.0), (2, 0.4), (3, 0.2)):
                    y += a * np.sin(2 * np.pi * f * h * t)
            out.append(y * np.hanning(n))
    return (0.1 * np.concatenate(out)).astype(np.float32)


@pytest.mark.parametrize("bpm", [72.0, 100.0, 128.0])
def test_tempo_of_a_click_track(bpm):
    d = analyse_samples(clicks(bpm)[:, None], SR)
    assert d.tempo_bpm == pytest.approx(bpm, rel=0.04)
    assert d.tempo_confidence > 0.3


def chorale(bpm: float, seconds: float = 30.0) -> np.ndarray:
    """A chord on every beat, and over it a melody in eighth notes (the chord's third, then its fifth)."""
    def tone(midi: int, n: int, amp: float) -> np.ndarray:
        t = np.arange(n) / SR
        f = 440.0 * 2 ** ((midi - 69) / 12)
        return amp * np.exp(-3 * t) * sum(a * np.sin(2 * np.pi * f * h * t) for h, a in ((1, 1.0), (2, 0.4), (3, 0.2)))

    progression = [(48, 52, 55), (53, 57, 60), (55, 59, 62), (48, 52, 55), (57, 60, 64), (50, 53, 57), (55, 59, 62)]
    beat = 60.0 / bpm
    y = np.zeros(int(seconds * SR))
    for b, t in enumerate(np.arange(0, seconds - beat, beat)):
        chord, s, n = progression[b % len(progression)], int(t * SR), int(beat * SR)
        for m in chord:
            y[s:s + n] += tone(m, n, 0.3)
        for e in range(2):
            y[s + e * (n // 2):s + (e + 1) * (n // 2)] += tone(chord[1 + e] + 12, n // 2, 0.5)
    return (0.2 * y / np.abs(y).max()).astype(np.float32)


@pytest.mark.parametrize("bpm", [66.0, 72.0])
def test_tempo_follows_harmonic_rhythm(bpm):
    """The eighth notes make the strongest pulse; the chords changing on the beat decide for the beat."""
    from tunelens.embed.descriptors import pulse_and_pitch, tempo

    _, registers, onset_rate, harmony, _ = pulse_and_pitch(chorale(bpm))
    assert tempo(registers, onset_rate)[0] == pytest.approx(2 * bpm, rel=0.04)  # onsets alone: twice too fast
    assert tempo(registers, onset_rate, harmony)[0] == pytest.approx(bpm, rel=0.04)


@pytest.mark.parametrize("tonic,minor,name", [(62, False, "D major"), (69, True, "A minor"), (67, False, "G major")])
def test_key_of_a_cadence(tonic, minor, name):
    assert analyse_samples(chords(tonic, minor)[:, None], SR).key == name


def test_loudness_of_a_sine_matches_bs1770():
    t = np.arange(20 * 48000) / 48000
    y = (0.1 * np.sin(2 * np.pi * 997 * t)).astype(np.float32)
    d = analyse_samples(y[:, None], 48000)
    assert d.loudness_lufs == pytest.approx(-23.0, abs=0.5)  # 20·log10(0.1) − 3.01 dB for a mono sine
    assert d.loudness_range_lu is not None and d.loudness_range_lu < 0.5
    stereo = analyse_samples(np.stack([y, y], axis=1), 48000)
    assert stereo.loudness_lufs == pytest.approx(d.loudness_lufs + 3.0, abs=0.1)


def test_energy_shape_of_a_fade_out():
    y = clicks(100, 40) * np.linspace(1.0, 0.001, 40 * SR, dtype=np.float32)
    ev = Evidence(analyse_samples(y[:, None], SR), {})
    assert "fades out" in answer("how does it end?", ev).text


def test_brightness_is_librosas_spectral_centroid_to_the_bit():
    """`spectral_centroid` replaces librosa's for speed; a silent frame (no energy) stays as librosa leaves it."""
    import librosa

    from tunelens.embed.descriptors import ANALYSIS_SR, spectral_centroid

    stft = np.abs(np.random.default_rng(0).standard_normal((1025, 40))).astype(np.float32) ** 2
    stft[:, 7] = 0.0
    want = librosa.feature.spectral_centroid(S=stft, sr=ANALYSIS_SR, n_fft=2048)[0]
    assert np.array_equal(spectral_centroid(stft), want) and want[7] == 0.0


# The rules are tested at fixed thresholds; the shipped, calibrated ones are tested below.
LOOSE = Thresholds()
STRICT = caption_thresholds(Thresholds(instrument_clear=0.7, instrument_likely=0.7, key_clear=0.9, key_likely=0.9,
                                       tempo_confidence=0.6, tempo_min_confidence=0.6))


def ask(question: str, ev: Evidence):
    return answer(question, ev, LOOSE)


def evidence(**tags) -> Evidence:
    d = Descriptors(duration=185.0, tempo_bpm=126.0, tempo_confidence=0.8, key="E minor", key_confidence=0.95,
                    loudness_lufs=-11.0, loudness_range_lu=5.0, brightness_hz=2500.0, onset_rate=3.5,
                    energy_db=[-12, -6, -3, -2, -1, 0, -1, -2, -8, -20])
    return Evidence(d, tags)


def test_qa_answers_from_the_evidence():
    ev = evidence(piano=0.9, vocals=0.7, pop=0.6, happy=0.4, dance=0.6)
    assert ask("What's the tempo?", ev).value == 126.0
    assert ask("what key is it in?", ev).value == "E minor"
    a = ask("Is it in a major key?", ev)
    assert a.text.startswith("No") and a.value == "minor"
    assert ask("is there a piano?", ev).value is True
    assert ask("is there a guitar?", ev).value is False
    assert ask("is there singing?", ev).value is True
    assert ask("how long is it?", ev).value == 185.0
    assert ask("is it danceable?", ev).value is True
    assert "starts quietly" in ask("how does it start?", ev).text
    assert ask("what genre is this?", ev).value == ["pop", "dance"]


def test_qa_says_it_cannot_tell_rather_than_guess():
    ev = evidence(piano=0.9)
    for q in ("Who composed this?", "What year was it released?", "What are the lyrics about?",
              "What colour is the sky?"):
        a = ask(q, ev)
        assert a.text.startswith(CANT_TELL) and not a.known, q
    organ = ask("Is there an organ?", ev)
    assert organ.text.startswith(CANT_TELL) and organ.value is None
    assert ask("what instruments are playing?", Evidence(ev.descriptors, {})).text.startswith(CANT_TELL)
    with pytest.raises(ValueError):
        ask("  ", ev)
    with pytest.raises(ValueError):
        ask("x" * 5000, ev)


def test_qa_gives_weak_evidence_as_possible_with_a_low_confidence():
    weak = Evidence(Descriptors(60.0, 90.0, 0.05, "C major", 0.01, -20.0, 1.0, 1000.0, 1.0, [0] * 10),
                    {"drums": 0.23, "guitar": 0.06, "beat": 0.3})
    key = ask("what key is it in?", weak)
    assert key.value == "C major" and key.confidence == 0.3 and "possibly" in key.text
    tempo = ask("what is the tempo?", weak)
    assert tempo.value == 90.0 and tempo.confidence == 0.3 and "double or half" in tempo.text
    drums = ask("is there a drum?", weak)
    assert drums.value is True and drums.confidence == 0.3 and drums.text.startswith("Possibly")
    assert ask("what instruments are playing?", weak).value == ["drums"]
    assert ask("is there a guitar?", weak).value is False  # not the strongest instrument tag: no
    strings = evidence(strings=0.5, violin=0.45)
    assert ask("is there a violin?", strings).value is True
    assert ask("what instruments are playing?", strings).value == ["strings"]
    assert DescribeCaptioner(STRICT).caption(weak, "w").caption.count("drums") == 0  # captions never state "possible"


def test_captions_state_only_supported_facts_and_vary():
    cap = DescribeCaptioner(STRICT)
    strong = cap.caption(evidence(piano=0.9, classical=0.7), "a").caption
    assert "piano" in strong and "126 BPM" in strong and "E minor" in strong
    weak = cap.caption(
        Evidence(Descriptors(60.0, 90.0, 0.2, "C major", 0.01, -20.0, 1.0, 1000.0, 1.0, [0] * 10), {"piano": 0.3}), "b"
    ).caption
    assert "piano" not in weak and "BPM" not in weak and "C major" not in weak
    texts = {cap.caption(evidence(piano=0.9), str(i)).caption for i in range(12)}
    assert len(texts) >= 3


def test_shipped_calibration_states_recognised_instruments_and_orders_its_levels():
    from tunelens.caption.evidence import ANSWER_THRESHOLDS, CAPTION_THRESHOLDS

    def ordered(*levels: float) -> bool:  # a level no score reached is infinite: the others keep their order
        finite = [x for x in levels if x != float("inf")]
        return finite == sorted(finite, reverse=True)

    for th in (ANSWER_THRESHOLDS, CAPTION_THRESHOLDS):
        assert ordered(th.recogniser_clear, th.recogniser_likely, th.recogniser_possible)
        assert ordered(th.key_clear, th.key_likely, th.key_possible)
        assert th.recogniser_clear < 1.0  # the recogniser can be stated plainly
    assert CAPTION_THRESHOLDS.recogniser_likely >= ANSWER_THRESHOLDS.recogniser_likely  # captions are stricter
    assert CAPTION_THRESHOLDS.genre_likely == float("inf")  # nothing measured genre: captions never state it
    heard = {"instrument: clarinet": 0.999, "instrument: church organ": 1e-12, "vocals": 0.01}
    ev = Evidence(evidence().descriptors, heard)
    assert "clarinet" in DescribeCaptioner().caption(ev, "c").caption.lower()
    assert answer("Is there a clarinet?", ev).value is True
    assert answer("Is there an organ?", ev).text.startswith("No")
    assert answer("Is there a ukulele?", ev).text.startswith(CANT_TELL)
    no_recogniser = Evidence(ev.descriptors, {"piano": 0.9})
    assert answer("Is there a trombone?", no_recogniser).text.startswith(CANT_TELL)


def test_qa_grades_an_absence_by_how_surely_the_instrument_is_not_there():
    """ "No", "probably not" and "possibly not" each at its own calibrated level, with its confidence."""
    th = Thresholds(recogniser_absent=0.01, recogniser_absent_likely=0.1, recogniser_possible=0.3)
    d = evidence().descriptors
    said = {p: answer("Is there a clarinet?", Evidence(d, {"instrument: clarinet": p, "instrument: piano": 0.99}), th)
            for p in (0.001, 0.05, 0.2)}
    assert [a.value for a in said.values()] == [False, False, False]
    assert said[0.001].text == "No, I don't hear a clarinet." and said[0.001].confidence == 0.9
    assert said[0.05].text.startswith("Probably not") and said[0.05].confidence == 0.6
    assert said[0.2].text.startswith("Possibly not") and said[0.2].confidence == 0.3


def test_qa_hears_a_general_word_through_the_instruments_it_covers():
    """ "Is there brass?" is yes when a trumpet is heard, and no only when no brass instrument is heard either."""
    th = Thresholds(recogniser_absent=0.01, recogniser_absent_likely=0.1, recogniser_possible=0.3)
    d = evidence().descriptors
    trumpet = answer("Is there brass?", Evidence(d, {"instrument: trumpet": 0.99, "instrument: brass section": 0.001}),
                     th)
    assert trumpet.value is True and trumpet.text == "Yes, there is brass (I hear a trumpet)."
    guitar = answer("Is there a guitar?", Evidence(d, {"instrument: electric guitar": 0.6, "guitar": 0.0}), th)
    assert guitar.value is True and guitar.text.startswith("Probably yes, there is a guitar (I probably hear")
    cello = {"instrument: string ensemble": 0.001, "instrument: cello": 0.05, "instrument: piano": 0.99}
    assert answer("Are there strings?", Evidence(d, cello), th).text.startswith("Probably not")
    assert answer("Are there strings?", Evidence(d, {**cello, "instrument: cello": 0.001}), th).text.startswith("No")
    assert answer("Is there a cello?", Evidence(d, cello), th).text.startswith("Probably not")


def test_a_claim_of_absence_no_score_made_reliable_is_never_stated():
    """Calibration leaves a level out (None) when no score reached its precision. For claims that a score be *below*
    a threshold (instrumental, "I don't hear it") never means minus infinity: infinity would state them always."""
    from tunelens.caption.evidence import calibrated_thresholds, instrument_absent, vocals

    quiet = Evidence(evidence().descriptors, {"instrument: clarinet": 0.001, "choir": 0.001, "vocals": 0.001})
    assert vocals(quiet, calibrated_thresholds({"no_vocals": 0.05})).strength == "clear"
    unreliable = calibrated_thresholds({"no_vocals": None, "recogniser_absent": None, "instrument_absent": None,
                                        "recogniser_absent_likely": None, "instrument_absent_likely": None})
    assert vocals(quiet, unreliable).strength == "likely"  # instrumental, but never stated plainly
    assert not instrument_absent(quiet, "clarinet", unreliable)
    assert "instrumental" not in DescribeCaptioner(thresholds=caption_thresholds(unreliable)).caption(
        quiet, "q").caption.lower()


@pytest.fixture()
def small_library(tmp_path, tiny_encoder):
    music = tmp_path / "music"
    music.mkdir()
    for i, bpm in enumerate((70, 90, 110, 130, 150, 80)):
        sf.write(music / f"{i}.wav", clicks(bpm, 12), SR)
    (music / "broken.wav").write_bytes(b"RIFF\x00\x00")
    # not measured at index time, so that captioning measures (and can fail on) each file itself
    index_folder(tmp_path / "lib", music, tiny_encoder, IndexConfig(batch_files=4, processes=0, measure=False))
    return tmp_path / "lib"


def test_captions_reuse_what_index_measured(small_library, tiny_encoder):
    from tunelens.index.core.captions import MeasureStore

    report = index_folder(small_library, Path(Library.open(small_library).ok_tracks()["path"][0]).parent,
                          tiny_encoder, IndexConfig(processes=0))
    assert report.indexed == 0 and report.measures.measured == 6  # a later run measures what is missing
    lib = Library.open(small_library)
    for path in lib.ok_tracks()["path"]:  # captions come from the measurements, not from the audio again
        Path(path).write_bytes(b"not audio any more")
    assert caption_library(lib, config=CaptionConfig(workers=1)).captioned == 6
    caps = CaptionStore(lib.root).read("describe").sort("track_id")
    measured = MeasureStore(lib.root).read_all().sort("track_id")
    assert caps["tempo_bpm"].to_list() == measured["tempo_bpm"].to_list()
    assert caps["key"].to_list() == measured["key"].to_list()


def test_batch_captioning_records_failures_and_skips_done_work(small_library):
    lib = Library.open(small_library)
    report = caption_library(lib, config=CaptionConfig(workers=1, batch_tracks=2))
    assert report.captioned == 6 and report.failed == 0
    caps = CaptionStore(lib.root).read("describe")
    assert len(caps) == 6 and caps["caption"].str.len_chars().min() > 20
    assert set(caps["track_id"]) == set(lib.ok_tracks()["track_id"])
    # a batch killed between its write and its rename leaves a temp file; the next writer removes it
    stale = [lib.root / "captions" / "batch-00000000000000000001-abcdef.parquet.tmp",
             lib.root / "measures" / "batch-00000000000000000001-abcdef.parquet.tmp"]
    for tmp in stale:
        tmp.parent.mkdir(exist_ok=True)
        tmp.write_bytes(b"half a batch")
    again = caption_library(lib, config=CaptionConfig(workers=1))
    assert again.captioned == 0 and again.done_before == 6
    assert not any(tmp.exists() for tmp in stale)
    # A file that became unreadable after indexing is recorded against that file, and the batch goes on.
    Path(lib.ok_tracks()["path"][0]).write_bytes(b"not audio")
    redo = caption_library(lib, config=CaptionConfig(workers=1, overwrite=True))
    caps = CaptionStore(lib.root).read("describe")
    bad = caps.filter(pl.col("status") == "error")
    assert redo.failed == 1 and len(bad) == 1 and lib.ok_tracks()["path"][0] in bad["error"][0]


def test_kill_9_while_captioning_then_resume(small_library, tmp_path):
    cmd = [sys.executable, "-m", "tunelens.app.cli", "caption", "--library", str(small_library), "--workers", "1",
           "--batch-tracks", "1"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    batches = small_library / "captions"
    deadline = time.time() + 240
    while time.time() < deadline and len(list(batches.glob("batch-*.parquet"))) < 2:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    kept = len(list(batches.glob("batch-*.parquet")))
    assert 2 <= kept < 6 and not (small_library / "captions.parquet").exists(), "the kill must land mid-run"
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert f"{6 - kept} captioned now, {kept} done before" in out.stdout
    caps = CaptionStore(small_library).read("describe")
    assert len(caps) == 6 and (caps["status"] == "ok").all()
    assert not list(batches.glob("*.parquet"))  # compacted into captions.parquet
    ask = subprocess.run(
        [sys.executable, "-m", "tunelens.app.cli", "ask", caps["track_id"][0], "what is the tempo?", "--library",
         str(small_library)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ask.returncode == 0 and "BPM" in ask.stdout


def test_analyse_names_the_reason_for_bad_files(tmp_path):
    p = tmp_path / "empty.flac"
    p.write_bytes(b"")
    with pytest.raises(Exception, match="empty"):
        analyse(p)
