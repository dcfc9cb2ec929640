"""The training scripts' building blocks: augmentation and the key model are deterministic and do their job."""
from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import load_script

script = load_script  # imported once: Python keeps the module


def test_augmentation_is_deterministic_and_changes_the_sound():
    augment = script("train_instruments").augment
    sr = 16000
    t = np.arange(2 * sr) / sr
    y = (0.3 * np.sin(2 * np.pi * 440 * t) * (1 + 0.5 * np.sin(2 * np.pi * 2 * t))).astype(np.float32)
    a, b, c = augment(y, sr, 7), augment(y, sr, 7), augment(y, sr, 8)
    assert a.shape == y.shape and a.dtype == np.float32 and np.isfinite(a).all()
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    assert np.abs(a).max() <= 1.01  # driven hot, it saturates rather than clips past full scale
    # noise stays well below the music: the tone still dominates the spectrum
    spectrum = np.abs(np.fft.rfft(a))
    assert abs(np.argmax(spectrum) * sr / len(a) - 440) < 2


def test_key_model_learns_keys_and_is_deterministic():
    """Chroma of 24 keys (scale degrees weighted like a key profile, with noise) → the fitted network finds the key
    of new noisy chroma, and two fits on the same data give the same weights."""
    from tunelens.embed.descriptors import key

    td = script("train_descriptors")
    rng = np.random.default_rng(0)
    major = np.array([5, 0, 3, 0, 4, 3, 0, 5, 0, 3, 0, 2], float)
    minor = np.array([5, 0, 3, 4, 0, 3, 0, 5, 3, 0, 2, 1], float)

    def sample(tonic: int, mode: str) -> np.ndarray:
        profile = np.roll(major if mode == "major" else minor, tonic)
        return np.stack([profile + rng.normal(0, 1.0, 12) + 2 for _ in range(3)])

    keys = [(t, m) for t in range(12) for m in ("major", "minor")] * 6
    chromas = np.stack([sample(t, m) for t, m in keys])
    model = td.fit_key_model(chromas, keys)
    again = td.fit_key_model(chromas, keys)
    for name in model:
        np.testing.assert_array_equal(model[name], again[name])
    names = ["C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"]
    test = [(t, m) for t in range(12) for m in ("major", "minor")]
    right = [key(sample(t, m), model)[0] == f"{names[t]} {m}" for t, m in test]
    assert np.mean(right) >= 0.9


def test_calibration_holds_its_precision_on_every_left_out_soundfont():
    """A threshold must reach its precision on each calibration soundfont on its own: a big soundfont the recogniser
    hears well must not carry a small one it hears badly (pooled, the small one's errors would be averaged away)."""
    cal = script("calibrate_evidence")
    sure = np.linspace(0, 1, 1000, endpoint=False)
    fold_a = [("tempo", float(s), True) for s in sure]  # right at every score
    fold_b = [("tempo", float(s), bool(s >= 0.8)) for s in sure[::10]]  # right only above 0.8
    pooled = cal.fit_levels([fold_a + fold_b], {"clear": 0.95})["tempo_confidence"]
    each = cal.fit_levels([fold_a, fold_b], {"clear": 0.95})["tempo_confidence"]
    assert pooled < 0.6  # pooled, fold B's errors between 0.6 and 0.8 pass under the average
    assert 0.77 <= each <= 0.8  # fold B alone allows one error in 20 below 0.8, no more
    never = [("tempo", float(s), bool(s < 0.5)) for s in sure[::10]]  # the surest statements are wrong
    assert cal.fit_levels([fold_a, never], {"clear": 0.95})["tempo_confidence"] is None
    # a claim of absence is surer the lower its score: the strictest threshold is the lowest
    absent_a = [("absent (recogniser)", float(s), True) for s in sure]
    absent_b = [("absent (recogniser)", float(s), bool(s < 0.2)) for s in sure[::10]]
    t = cal.fit_levels([absent_a, absent_b], {"clear": 0.95})["recogniser_absent"]
    assert 0.2 <= t <= 0.24  # weighted as if present half the time, 4 wrong among fold B's 20 right ones pass


def test_absence_is_calibrated_as_if_the_instrument_asked_about_were_there_half_the_time():
    """An instrument is absent from most clips, so "no, I don't hear it" looks safe at nearly any score at the
    corpus's rate; weighted so that presence and absence count alike, the threshold falls to where "no" is sure."""
    cal = script("calibrate_evidence")
    rng = np.random.default_rng(0)
    present = rng.random(3000) < 0.03  # one class in 33
    scores = np.where(present, rng.uniform(0.05, 0.5, 3000), rng.uniform(0.0, 0.5, 3000))
    right = ~present  # "absent" is right where the instrument is not there
    natural = cal.threshold(scores, right, 0.95, lower=True)
    weighted = cal.threshold(scores, right, 0.95, lower=True, w=cal.weights("absent (recogniser)", right))
    assert natural > 0.45  # at the corpus's rate, "no" passes almost everywhere
    assert weighted < 0.1  # as a question's answer, only far below where present instruments score
    assert np.average(right[scores < weighted]) == 1.0


@pytest.mark.slow
def test_training_runs_end_to_end_on_a_rendered_slice(tmp_path):
    """Render a few clips, train a recogniser on them and their augmented copies, fit the descriptors: the scripts
    run from nothing, cache what they computed and write weights the encoder loads."""
    pytest.importorskip("music21", reason="the demo extra renders the corpus")
    from tunelens.embed.musicnn_encoder import InstrumentHead

    corpus = tmp_path / "timgm6mb"
    assert script("make_dev_corpus").main([str(corpus), "--soundfonts", "timgm6mb", "--clips", "8", "--seconds", "4",
                                           "--pieces", "4"]) == 0
    out = tmp_path / "weights"
    out.mkdir()
    args = [str(corpus), "--train", "timgm6mb", "--allow-copyleft", "--epochs", "3", "--augment", "1",
            "--processes", "1", "--out", str(out)]
    assert script("train_instruments").main(args) == 0
    cached = sorted(p.name for p in corpus.glob("musicnn-features-*.npz"))
    assert len(cached) == 2 and any(n.endswith(f"-{script('train_instruments').AUGMENT_VERSION}-1.npz") for n in cached)
    from safetensors.numpy import load_file

    head = InstrumentHead(load_file(str(out / "instruments.safetensors")))
    assert head.weight.shape[0] == 256 and head.hidden is not None
    provenance = json.loads((out / "instruments.json").read_text())
    assert provenance["features_runtime"] in ("onnxruntime", "torch") and len(provenance["feature_hash"]) == 16
    td = script("train_descriptors")
    assert td.main([str(corpus), "--train", "timgm6mb", "--processes", "1"]) == 0
    assert (corpus / f"analysis-{td.MEASURE_VERSION}.npz").exists()
    table = td.load([corpus], None)
    meas = td.measurements(table, 1)  # from the cache now
    registers, rate, harmony, chroma = meas[0]
    assert registers.shape[0] == 4 and chroma.shape == (3, 12) and harmony.ndim == 1 and rate >= 0


def test_the_answers_of_absence_are_reported_at_both_rates():
    """calibrate_evidence's table of what "Is there a X?" gets for every instrument word: each answer of absence with
    its precision at the corpus's rate and weighted as if the instrument asked about were there half the time."""
    from tunelens.caption.evidence import Evidence, Thresholds, instrument_sources
    from tunelens.embed.descriptors import Descriptors

    cal = script("calibrate_evidence")
    th = Thresholds(recogniser_absent=0.01, recogniser_absent_likely=0.1, recogniser_possible=0.3,
                    instrument_absent=0.01, instrument_absent_likely=0.1, instrument_possible=0.3)
    d = Descriptors(10.0, 120.0, 0.5, "C major", 0.5, -20.0, 1.0, 1000.0, 1.0, [0] * 10)
    clips = [(0.2, ["piano"]),  # no clarinet, weak evidence of one: "possibly not", right
             (0.05, ["piano", "clarinet"]),  # a clarinet heard a little: "probably not", wrong
             (0.2, ["piano", "clarinet"])]  # a clarinet heard a little more: "possibly not", wrong
    evs = [Evidence(d, {"instrument: piano": 0.99, "instrument: clarinet": p}) for p, _ in clips]
    table = {r["answer"]: r for r in cal.absence_answers(evs, [{"instruments": names} for _, names in clips],
                                                          th).to_dicts()}
    pairs = 3 * len(instrument_sources())
    present = 3 + 2  # three pianos (answered "yes") and two clarinets
    assert table["probably not"]["n"] == 1 and table["probably not"]["precision"] == 0.0
    assert table["possibly not"]["n"] == 2 and table["possibly not"]["precision"] == 0.5
    # weighted, the one wrong "possibly not" weighs as much as all the right absences over the present instruments
    right, wrong = 0.5 / (pairs - present), 0.5 / present
    assert table["possibly not"]["precision, asked half the time"] == pytest.approx(right / (right + wrong))
    assert table["no"]["n"] == pairs - present - 1 and table["no"]["precision, asked half the time"] == 1.0


def test_general_words_are_reported_per_word_and_together():
    """calibrate_evidence's table of "Is there brass?"-style questions: yes where the word is true and where not."""
    from tunelens.caption.evidence import WORD_MEMBERS, Evidence, Thresholds
    from tunelens.embed.descriptors import Descriptors

    cal = script("calibrate_evidence")
    th = Thresholds(recogniser_absent=0.01, recogniser_absent_likely=0.1, recogniser_possible=0.3)
    d = Descriptors(10.0, 120.0, 0.5, "C major", 0.5, -20.0, 1.0, 1000.0, 1.0, [0] * 10)
    evs = [Evidence(d, {"instrument: trumpet": 0.99}), Evidence(d, {"instrument: piano": 0.99})]
    gts = [{"instruments": ["trumpet"]}, {"instruments": ["piano"]}]
    rows = {r["word"]: r for r in cal.general_word_answers(evs, gts, th).to_dicts()}
    assert set(rows) == {*WORD_MEMBERS, "all of them"}
    brass = rows["brass"]
    assert brass["clips with it"] == 1 and brass["yes where it is"] == 1.0 and brass["yes where it is not"] == 0.0
    assert brass["yes: right"] == 1.0
    assert rows["piano"]["yes where it is"] == 1.0 and rows["all of them"]["clips with it"] == 2
