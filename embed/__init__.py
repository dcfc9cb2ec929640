"""Audio decoding, the versioned windowing rule, and audio-text encoders behind one protocol."""
from embed.base import AudioTextEncoder, EncoderOptions, PipelineSpec
from embed.registry import available_encoders, load_encoder, register_encoder

__all__ = [
    "AudioTextEncoder", "EncoderOptions", "PipelineSpec", "available_encoders", "load_encoder", "register_encoder",
]
