"""The one protocol every captioner implements, and the registry that creates one by name, as `embed.registry`
does for encoders: `load_captioner("describe")` (the offline default) or `load_captioner("qwen2-audio:FOLDER")`.

A captioner turns a track's evidence (measured descriptors and predicted tags, `caption.evidence`) and, if it
listens, its audio into a caption, and answers questions about the track.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from tunelens.caption.evidence import Evidence

DEFAULT_CAPTIONER = "describe"


@dataclass
class Answer:
    text: str
    kind: str  # tempo | key | mode | loudness | duration | instrument | instruments | vocals | genre | mood |
    #            energy | danceability | start | end | unknown
    value: object = None  # machine-readable answer (BPM, "G major", True/False, [instruments], seconds)
    confidence: float | None = 0.0  # None: the backend gives no calibrated confidence (audio LMs)
    evidence: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """As `tunelens ask --json` prints it."""
        return {"answer": self.text, "kind": self.kind, "value": self.value, "confidence": self.confidence,
                "evidence": self.evidence}

    @property
    def known(self) -> bool:
        return self.kind != "unknown" and self.value is not None


@dataclass
class Caption:
    caption: str  # 1-3 sentences
    description: str  # the longer account, with the evidence behind each statement


@runtime_checkable
class Captioner(Protocol):
    name: str  # the registry spec that recreates this captioner, e.g. "qwen2-audio:/models/qwen2-audio"
    version: str  # changes whenever its captions would change (wording rules, prompt, weights)

    def caption(self, ev: Evidence, track_id: str = "", path: str | Path | None = None) -> Caption:
        """The caption of one track; `track_id` seeds varied phrasing; `path` is the audio, for captioners that
        listen."""
        ...

    def answer(self, question: str, ev: Evidence, path: str | Path | None = None) -> Answer:
        """An answer to a question about one track, with its evidence and (where calibrated) a confidence."""
        ...


_Factory = Callable[[str, object], Captioner]
_REGISTRY: dict[str, tuple[str, str, str]] = {}  # prefix → (module, factory, usage)


def register_captioner(prefix: str, module: str, factory_name: str, usage: str | None = None) -> None:
    """Register a backend lazily: its module is imported only when a spec with this prefix is loaded.
    The factory is called as `factory(argument, options)`."""
    _REGISTRY[prefix] = (module, factory_name, usage or prefix)


def available_captioners() -> list[str]:
    """Usage of every registered captioner, e.g. ["describe", "qwen2-audio:FOLDER|HUB_ID"]."""
    return [usage for _, _, usage in _REGISTRY.values()]


def load_captioner(spec: str | None = None, options: object = None) -> Captioner:
    """Create the captioner named by `spec` ("backend" or "backend:argument"); `options` go to the backend
    (`caption.audio_lm.AudioLMOptions` for an audio LM; `describe` takes none)."""
    spec = spec or DEFAULT_CAPTIONER
    prefix, _, arg = spec.partition(":")
    if prefix not in _REGISTRY:
        raise ValueError(f"unknown captioner {spec!r}; use one of {', '.join(available_captioners())}")
    module, factory, _ = _REGISTRY[prefix]
    return getattr(importlib.import_module(module), factory)(arg, options)


register_captioner("describe", "tunelens.caption.describe", "load_describe")
register_captioner("qwen2-audio", "tunelens.caption.audio_lm", "load_qwen2_audio", "qwen2-audio:FOLDER|HUB_ID")
