import importlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
SHARED = ROOT.parent / "shared"


def load_script(name: str):
    """A module of scripts/ (they are run as files, not installed), imported by name as the scripts import one
    another: pytest's `pythonpath` (pyproject.toml) makes their folder importable, as running one as a file does,
    so worker processes find them too."""
    return importlib.import_module(name)


def damage_file(path: Path, how: str) -> None:
    """Damage a library file as a failing disk or a careless hand does: "delete", "truncate" (half) or "zero"."""
    if how == "delete":
        path.unlink()
    else:
        size = path.stat().st_size
        path.write_bytes(path.read_bytes()[: size // 2] if how == "truncate" else b"\0" * size)


def tone(seconds: float, freq: float, sr: int = 22050, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    y = 0.3 * np.sin(2 * np.pi * freq * t) * (1 + 0.2 * np.sin(2 * np.pi * 2 * t))
    return np.repeat(y[:, None], channels, axis=1) if channels > 1 else y


@pytest.fixture(scope="session")
def tiny_clap(tmp_path_factory) -> Path:
    from tunelens.embed.random_checkpoints import make_random_clap

    return make_random_clap(tmp_path_factory.mktemp("tiny_clap"))


@pytest.fixture(scope="session")
def tiny_spec(tiny_clap) -> str:
    return f"clap:{tiny_clap}"


@pytest.fixture(scope="session")
def tiny_encoder(tiny_spec):
    from tunelens.embed import load_encoder

    return load_encoder(tiny_spec)


@pytest.fixture()
def music_dir(tmp_path) -> Path:
    d = tmp_path / "music"
    (d / "sub").mkdir(parents=True)
    for i, (secs, f) in enumerate([(4, 220), (12, 330), (25, 440), (7, 550)]):
        sf.write(d / f"t{i}.wav", tone(secs, f), 22050)
    sf.write(d / "sub" / "s.flac", tone(9, 660), 22050)
    return d


@pytest.fixture(scope="session")
def demo_music(tmp_path_factory) -> Path:
    """8 real demo tracks of 20 s rendered from scores (read-only: copy before adding files)."""
    pytest.importorskip(
        "music21", reason="the demo extra (music21, pretty-midi, tinysoundfont) renders the test corpus"
    )
    out = tmp_path_factory.mktemp("demo") / "music"
    assert load_script("make_demo_corpus").main([str(out), "--limit", "8", "--max-seconds", "20"]) == 0
    return out


@pytest.fixture(scope="session")
def demo_library(tmp_path_factory, demo_music) -> Path:
    """The 8 demo tracks and one broken file indexed (measured) with the default model, and captioned."""
    from tunelens.caption.batch import CaptionConfig, caption_library
    from tunelens.embed import load_encoder
    from tunelens.index import Library
    from tunelens.index.core.indexer import IndexConfig, index_folder

    base = tmp_path_factory.mktemp("app")
    shutil.copytree(demo_music, base / "music")
    (base / "music" / "broken.wav").write_bytes(b"RIFF\x00\x00not audio")
    index_folder(base / "lib", base / "music", load_encoder("musicnn"), IndexConfig())
    caption_library(Library.open(base / "lib"), config=CaptionConfig(workers=1))
    return base / "lib"
