"""Backends registered by name; `load_encoder("clap:laion/larger_clap_music")` creates one."""
from __future__ import annotations

from collections.abc import Callable

from tunelens.embed.base import AudioTextEncoder, EncoderOptions

_Factory = Callable[[str, EncoderOptions], AudioTextEncoder]
_REGISTRY: dict[str, tuple[str, _Factory]] = {}

DEFAULT_MODEL = "musicnn"


def register_encoder(prefix: str, module: str, factory_name: str) -> None:
    """Register a backend lazily: its module is imported only when a spec with this prefix is loaded."""
    _REGISTRY[prefix] = (module, factory_name)


def available_encoders() -> list[str]:
    return sorted(_REGISTRY)


def load_encoder(spec: str | None = None, options: EncoderOptions | None = None) -> AudioTextEncoder:
    """Create the encoder named by `spec` ("backend" or "backend:argument")."""
    import importlib

    spec = spec or DEFAULT_MODEL
    prefix, _, arg = spec.partition(":")
    if prefix not in _REGISTRY:
        raise ValueError(
            f"unknown model {spec!r}: the backend {prefix!r} is not one of {', '.join(available_encoders())}"
        )
    module, factory = _REGISTRY[prefix]
    return getattr(importlib.import_module(module), factory)(arg, options or EncoderOptions())


register_encoder("clap", "tunelens.embed.clap", "load_clap")
register_encoder("musicnn", "tunelens.embed.musicnn_encoder", "load_musicnn")
