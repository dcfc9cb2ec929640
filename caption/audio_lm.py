"""Audio language models as captioners and QA backends, through transformers (Qwen2-Audio first).

For users with a GPU and weights. A whole track is cut into equal segments of at most 30 s (the model's
audio window); each segment is described with the measured descriptors and predicted tags in the prompt,
then the segment descriptions are summarised into the caption. Decoding is greedy, so a track always gets
the same caption from the same weights. The offline default stays `describe`: no LLM writes a caption
unless the user names one.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tunelens.caption import evidence as E
from tunelens.caption.base import Caption
from tunelens.caption.evidence import ANSWER_THRESHOLDS, Evidence
from tunelens.embed.base import EncoderOptions, resolve_device
from tunelens.embed.hf import check_tokenizer, load_pretrained, quiet_transformers, weights_fingerprint
from tunelens.index.core.display import clock

PROMPT_VERSION = 1
SYSTEM = ("You are a careful music analyst. Describe only what you hear. Measurements taken from the audio are "
          "given; never contradict them. If something cannot be heard, say so rather than guess.")


@dataclass(frozen=True)
class AudioLMOptions:
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:N"
    precision: str = "auto"  # "auto" (bf16 on GPU, fp32 on CPU) | "fp32" | "fp16" | "bf16"
    segment_seconds: float = 30.0
    batch_size: int = 4  # segments per model call
    max_new_tokens: int = 160
    qa_segments: int = 3  # audio segments (spread over the track) given with a question


def split_segments(n_samples: int, sr: int, max_seconds: float) -> list[tuple[int, int]]:
    """Equal segments of at most `max_seconds` covering the whole track (no short tail segment)."""
    n = max(1, math.ceil(n_samples / (max_seconds * sr)))
    bounds = np.linspace(0, n_samples, n + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]


def evidence_lines(ev: Evidence) -> list[str]:
    """The measurements and tags an audio LM is given as context, one fact per line."""
    d, th = ev.descriptors, ANSWER_THRESHOLDS
    lines = [f"duration: {clock(d.duration)}"]
    if d.tempo_bpm:
        lines.append(f"tempo: {d.tempo_bpm:.0f} BPM (confidence {d.tempo_confidence:.2f})")
    if d.key:
        lines.append(f"key: {d.key} (probability {d.key_confidence:.2f}; below 0.5 is uncertain)")
    if d.loudness_lufs is not None:
        lines.append(f"loudness: {d.loudness_lufs:.1f} LUFS integrated"
                     + (f", range {d.loudness_range_lu:.1f} LU" if d.loudness_range_lu is not None else ""))
    lines.append(f"brightness: {E.brightness_word(ev)} (spectral centroid {d.brightness_hz:.0f} Hz); "
                 f"{d.onset_rate:.1f} onsets per second")
    shape = E.energy_shape(ev)
    if shape:
        lines.append(f"energy: {shape['start']}, {shape['shape']}, {shape['end']}")
    top = sorted(ev.tags.items(), key=lambda kv: -kv[1])[:10]
    if top:
        lines.append("tagger probabilities: " + ", ".join(f"{t} {p:.2f}" for t, p in top))
    voc = E.vocals(ev, th)
    if voc is not None:
        lines.append(f"vocals: {'yes' if voc.value else 'no'} ({voc.strength})")
    return lines


class Qwen2AudioLM:
    """Qwen2-Audio (`Qwen2AudioForConditionalGeneration`), from a local folder or a hub id."""

    needs_audio = True

    def __init__(self, source: str, options: AudioLMOptions = AudioLMOptions()):
        import torch
        from transformers import AutoProcessor, Qwen2AudioForConditionalGeneration

        quiet_transformers()
        if not source:
            raise ValueError("an audio LM needs a checkpoint: qwen2-audio:FOLDER or qwen2-audio:HUB_ID "
                             "(e.g. qwen2-audio:Qwen/Qwen2-Audio-7B-Instruct)")
        precision = options.precision
        if precision == "auto":
            precision = "bf16" if torch.cuda.is_available() and options.device != "cpu" else "fp32"
        self.device, self.dtype = resolve_device(EncoderOptions(device=options.device, precision=precision))
        self.options = options
        what = "Qwen2-Audio model"
        self.processor = load_pretrained(AutoProcessor, source, what, "qwen2-audio")
        check_tokenizer(self.processor.tokenizer, source)
        self.processor.tokenizer.padding_side = "left"  # decoder-only generation pads on the left
        self.model = load_pretrained(Qwen2AudioForConditionalGeneration, source, what, "qwen2-audio",
                                     dtype=self.dtype).to(self.device).eval()
        self.sample_rate = int(self.processor.feature_extractor.sampling_rate)
        self.name = f"qwen2-audio:{source}"
        self.version = f"qwen2-audio-p{PROMPT_VERSION}-{weights_fingerprint(source)}"
        self._torch = torch

    # -- generation ------------------------------------------------------------------------------------
    def _chat(self, text: str, n_audio: int) -> str:
        content = [{"type": "audio", "audio": "segment"} for _ in range(n_audio)] + [{"type": "text", "text": text}]
        conv = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": content}]
        return self.processor.apply_chat_template(conv, add_generation_prompt=True, tokenize=False)

    def generate(self, prompts: list[str], audios: list[list[np.ndarray]] | None = None) -> list[str]:
        """Greedy answers to chat prompts, `batch_size` at a time; `audios[i]` are the clips of prompt i."""
        torch = self._torch
        out: list[str] = []
        step = self.options.batch_size
        for i in range(0, len(prompts), step):
            texts = [self._chat(p, len(audios[i + j]) if audios else 0) for j, p in enumerate(prompts[i:i + step])]
            kwargs = {}
            if audios:
                kwargs = dict(audio=[a for clips in audios[i:i + step] for a in clips], sampling_rate=self.sample_rate)
            inputs = self.processor(text=texts, return_tensors="pt", padding=True, **kwargs).to(self.device)
            if "input_features" in inputs:
                inputs["input_features"] = inputs["input_features"].to(self.dtype)
            with torch.inference_mode():
                ids = self.model.generate(**inputs, max_new_tokens=self.options.max_new_tokens, do_sample=False)
            out += [t.strip() for t in self.processor.batch_decode(ids[:, inputs["input_ids"].shape[1]:],
                                                                    skip_special_tokens=True)]
        return out

    def _audio(self, path: str | Path) -> np.ndarray:
        from tunelens.embed.audio import decode

        return decode(path, self.sample_rate).samples

    # -- captioning ------------------------------------------------------------------------------------
    def caption(self, ev: Evidence, track_id: str = "", path: str | Path | None = None) -> Caption:
        if path is None:
            raise ValueError(f"{self.name} captions from the audio, and no audio file was given")
        audio = self._audio(path)
        sr = self.sample_rate
        facts = "\n".join(evidence_lines(ev))
        spans = split_segments(len(audio), sr, self.options.segment_seconds)
        prompts = [f"Measurements of the whole track:\n{facts}\n\nThis clip is {clock(a / sr)}-{clock(b / sr)} "
                   f"of the track. Describe the music in this clip: instruments, voices, style, mood, and how it "
                   f"changes." for a, b in spans]
        parts = self.generate(prompts, [[audio[a:b]] for a, b in spans])
        description = "\n".join(
            f"{clock(a / sr)}-{clock(b / sr)}: {' '.join(t.split())}" for (a, b), t in zip(spans, parts)
        )
        summary_prompt = (
            f"Measurements of a music track:\n{facts}\n\nDescriptions of its consecutive parts:\n"
            f"{description}\n\nWrite a caption of one to three sentences for the whole track, stating "
            f"only what the measurements and descriptions support."
        )
        (caption,) = self.generate([summary_prompt])
        return Caption(caption=caption, description=description)

    # -- music QA --------------------------------------------------------------------------------------
    def answer(self, question: str, ev: Evidence, path: str | Path | None = None):
        from tunelens.caption.base import Answer

        audio = self._audio(path)
        sr = self.sample_rate
        spans = split_segments(len(audio), sr, self.options.segment_seconds)
        if len(spans) > self.options.qa_segments:
            picks = np.linspace(0, len(spans) - 1, self.options.qa_segments).round().astype(int)
            spans = [spans[i] for i in sorted(set(picks.tolist()))]
        facts = evidence_lines(ev)
        where = ", ".join(f"clip {i + 1} is {clock(a / sr)}-{clock(b / sr)}" for i, (a, b) in enumerate(spans))
        prompt = (
            "Measurements of the whole track:\n" + "\n".join(facts) + f"\n\nThe clips are from this track ({where})."
            f"\nQuestion: {question}\nAnswer briefly. If the audio and measurements cannot tell, say "
            f'"I can\'t tell that from the audio."'
        )
        (text,) = self.generate([prompt], [[audio[a:b] for a, b in spans]])
        return Answer(text, "audio-lm", text, None, [f"{self.name} on {len(spans)} clip(s)"] + facts)


def load_qwen2_audio(arg: str, options: AudioLMOptions | None = None) -> Qwen2AudioLM:
    return Qwen2AudioLM(arg, options or AudioLMOptions())
