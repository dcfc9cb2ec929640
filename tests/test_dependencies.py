"""What a fresh machine installs is what was tested: .venv is exactly requirements/tunelens.lock, the lock satisfies
pyproject.toml's ranges, the packaging metadata is current, and no tunelens code reaches librosa's tuning estimate
(the numba route that segfaulted under numba 0.68.1, issue 37)."""
from __future__ import annotations

import os
import re
import tomllib

import numpy as np
import pytest
from check_lock import DEFAULT_LOCK, LOCK_PYTHON, differences, installed, locked, normalise
from conftest import ROOT
from packaging.requirements import Requirement

MAKEFILE_EXTRAS = ("cpu", "ray", "serve", "beets", "demo", "test")


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


@pytest.mark.skipif(os.environ.get("TUNELENS_LATEST") == "1", reason="the canary runs the newest releases on purpose")
def test_the_environment_is_exactly_the_lock():
    assert differences(locked(DEFAULT_LOCK), installed()) == []


def test_the_lock_satisfies_pyproject_ranges_for_every_extra_the_makefile_installs():
    pins = locked(DEFAULT_LOCK)
    project = _pyproject()["project"]
    wanted = list(project["dependencies"])
    for extra in MAKEFILE_EXTRAS:
        wanted += project["optional-dependencies"][extra]
    env = {"python_version": f"{LOCK_PYTHON[0]}.{LOCK_PYTHON[1]}", "sys_platform": "linux",
           "platform_system": "Linux", "extra": ""}
    unmet = []
    for line in wanted:
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate(env):
            continue
        version = pins.get(normalise(req.name))
        if version is None or not req.specifier.contains(version, prereleases=True):
            unmet.append(f"{req} (locked: {version})")
    assert unmet == [], "pyproject.toml changed without `make lock`: " + "; ".join(unmet)


def test_every_pin_carries_a_hash_and_torch_is_the_cpu_build():
    text = DEFAULT_LOCK.read_text()
    blocks = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 2)[2])
    for block in blocks:
        if block.strip() and not block.startswith("#"):
            assert "--hash=sha256:" in block, block.splitlines()[0]
    pins = locked(DEFAULT_LOCK)
    assert pins["torch"].endswith("+cpu")
    assert "pyaudio" not in pins  # tinysoundfont's playback dependency stays out
    laion = locked(ROOT / "requirements" / "laion.lock")
    assert laion["numpy"].startswith("1.") and laion["laion-clap"] == "1.1.7"


def test_packaging_metadata_is_current():
    project = _pyproject()["project"]
    assert isinstance(project["license"], str), "project.license must be an SPDX string (setuptools >= 77)"
    assert project["requires-python"] == f">={LOCK_PYTHON[0]}.{LOCK_PYTHON[1]}"
    assert f"Programming Language :: Python :: {LOCK_PYTHON[0]}.{LOCK_PYTHON[1]}" in project["classifiers"]


def test_no_code_path_estimates_tuning(monkeypatch):
    """Fingerprints and key chroma pass their tuning, so librosa never runs its numba tuning estimate."""
    import librosa
    import librosa.core.constantq as constantq
    import librosa.feature.spectral as spectral

    from tunelens.embed.descriptors import ANALYSIS_SR, analyse_samples
    from tunelens.embed.fingerprint import fingerprint_samples

    def refuse(*args, **kwargs):
        raise AssertionError("librosa.estimate_tuning was called")

    for module in (librosa, librosa.core.pitch, constantq, spectral):
        monkeypatch.setattr(module, "estimate_tuning", refuse)
    t = np.arange(ANALYSIS_SR * 6) / ANALYSIS_SR
    y = (0.3 * np.sin(2 * np.pi * 440 * t) * (1 + np.sign(np.sin(2 * np.pi * 2 * t)))).astype(np.float32)
    assert fingerprint_samples(y[:, None], ANALYSIS_SR).chroma.shape[1] == 12
    assert analyse_samples(y[:, None], ANALYSIS_SR).key is not None
