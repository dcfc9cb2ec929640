import numpy as np
import pytest

from tunelens.embed.windows import make_windows, pool_track, window_starts


def test_short_track_is_repeated_to_one_window():
    x = np.arange(3, dtype=np.float32)
    w, starts = make_windows(x, 8)
    assert starts == [0]
    assert w.tolist() == [[0, 1, 2, 0, 1, 2, 0, 1]]


def test_exact_multiple_gives_whole_windows_without_overlap():
    x = np.arange(30, dtype=np.float32)
    w, starts = make_windows(x, 10)
    assert starts == [0, 10, 20]
    assert np.array_equal(w.reshape(-1), x)


def test_long_track_gets_an_end_aligned_last_window():
    assert window_starts(25, 10) == [0, 10, 15]
    w, starts = make_windows(np.arange(25, dtype=np.float32), 10)
    assert w[-1].tolist() == list(range(15, 25))
    assert window_starts(10, 10) == [0]


def test_pooling_is_mean_of_raw_vectors_then_l2():
    raw = np.array([[3.0, 0.0], [0.0, 1.0]], np.float32)
    v = pool_track(raw)
    assert np.allclose(v, np.array([1.5, 0.5]) / np.linalg.norm([1.5, 0.5]))
    assert np.isclose(np.linalg.norm(v), 1.0)


def test_pooling_by_blocks_keeps_each_source_at_equal_weight():
    rng = np.random.default_rng(0)
    raw = rng.standard_normal((5, 8)).astype(np.float32)
    raw[:, 6:] *= 100.0  # a second source of much larger scale
    v = pool_track(raw, ((0, 6), (6, 8)))
    assert np.linalg.norm(v) == pytest.approx(1.0, abs=1e-6)
    assert np.linalg.norm(v[:6]) == pytest.approx(np.linalg.norm(v[6:]), abs=1e-6)
    # a query on the first source ranks tracks by that source alone, whatever the second does
    other = raw.copy()
    other[:, 6:] = rng.standard_normal((5, 2)) * 0.01
    w = pool_track(other, ((0, 6), (6, 8)))
    assert np.allclose(v[:6], w[:6], atol=1e-6)
