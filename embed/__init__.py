"""Audio decoding, the versioned windowing rule, and audio-text encoders behind one protocol."""
from tunelens.embed.base import AudioTextEncoder, EncoderOptions, PipelineSpec
from tunelens.embed.registry import available_encoders, load_encoder, register_encoder

__all__ = [
    "AudioTextEncoder", "EncoderOptions", "PipelineSpec", "available_encoders", "load_encoder", "register_encoder",
]
