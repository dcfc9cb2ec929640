"""The captioners tunelens can run, beside the encoders (`embed.catalog`), for `tunelens models`."""
from __future__ import annotations

from tunelens.embed.catalog import ModelInfo, encoder_models, hub_cache

QWEN_HUB = "Qwen/Qwen2-Audio-7B-Instruct"


def captioner_models() -> list[ModelInfo]:
    cached = hub_cache()
    return [
        ModelInfo("describe", "captioner", "the default: captions from what `index` measured and the encoder's tags, "
                  "each statement only at its measured precision (no language model)",
                  "the default encoder's (musicnn ISC, MiniLM Apache-2.0)", "yes", [], [], 0.0, ""),
        ModelInfo("qwen2-audio:FOLDER|HUB_ID", "captioner", "an audio language model given the audio and the "
                  "measurements (Qwen2-Audio-7B-Instruct; a GPU is advised)", "Apache-2.0", "yes (Apache-2.0)",
                  [QWEN_HUB], [f"{QWEN_HUB} ({cached[QWEN_HUB]} MB in the hub cache)"] if QWEN_HUB in cached else [],
                  cached.get(QWEN_HUB, 0.0),
                  "" if QWEN_HUB in cached else f"where there is internet: `huggingface-cli download {QWEN_HUB} "
                  "--local-dir DIR`, copy DIR here, then --model qwen2-audio:DIR"),
    ]


def all_models() -> list[ModelInfo]:
    """Every encoder and captioner, as `tunelens models` lists them."""
    return encoder_models() + captioner_models()
