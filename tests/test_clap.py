import numpy as np
import pytest

from tunelens.embed import EncoderOptions, PipelineSpec, load_encoder
from tunelens.embed.base import AudioTextEncoder, ModelUnavailableError


def test_tiny_clap_round_trip_through_load_encoder(tiny_spec):
    enc = load_encoder(tiny_spec, EncoderOptions(device="cpu"))
    assert isinstance(enc, AudioTextEncoder)
    assert enc.sample_rate == 48000 and enc.window_seconds == 10.0 and enc.dim == 32
    rng = np.random.default_rng(0)
    windows = (0.1 * rng.standard_normal((3, 480000))).astype(np.float32)
    a = enc.embed_audio(windows)
    assert a.shape == (3, 32) and a.dtype == np.float32 and np.all(np.isfinite(a))
    assert np.array_equal(a, enc.embed_audio(windows)), "same input must give the same vectors"
    t = enc.embed_text(["slow piano", "fast drums", "slow piano"])
    assert t.shape == (3, 32)
    assert np.allclose(np.linalg.norm(t, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(t[0], t[2]) and not np.allclose(t[0], t[1])
    spec = PipelineSpec.for_encoder(enc)
    assert spec.model == tiny_spec and spec.window_seconds == 10.0


def test_missing_model_offline_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailableError, match="laion/no-such-clap-model.*HF_HUB_OFFLINE"):
        load_encoder("clap:laion/no-such-clap-model")


def test_unknown_backend_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown model"):
        load_encoder("nosuchbackend:x")
