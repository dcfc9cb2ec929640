"""Random-weight Qwen2-Audio checkpoints built locally, for tests and GPU memory/speed checks.

They are saved with `save_pretrained` and loaded back through the same code as a real checkpoint
(`load_captioner("qwen2-audio:FOLDER")`), with no hub access. Their text is gibberish by construction.
"""
from __future__ import annotations

from pathlib import Path

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>"]
TINY_AUDIO = dict(d_model=32, encoder_layers=1, encoder_attention_heads=2, encoder_ffn_dim=64)
TINY_TEXT = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                 num_key_value_heads=1, max_position_embeddings=4096)
# Qwen2-Audio-7B's shapes (its text tower is Qwen-7B); the vocabulary stays this small tokenizer's.
DEFAULT_TEXT = dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                    num_key_value_heads=32, max_position_embeddings=8192)


def make_random_qwen2_audio(folder: str | Path, size: str = "tiny", seed: int = 0, dtype: str = "float32") -> Path:
    """Write a random-weight `Qwen2AudioForConditionalGeneration` + processor. `size`: "tiny" or "default"."""
    import torch
    from transformers import (
        PreTrainedTokenizerFast,
        Qwen2AudioConfig,
        Qwen2AudioForConditionalGeneration,
        Qwen2AudioProcessor,
        WhisperFeatureExtractor,
    )

    from tunelens.embed.random_checkpoints import train_bpe

    if size not in ("tiny", "default"):
        raise ValueError(f"unknown random Qwen2-Audio size {size!r}; use 'tiny' or 'default'")
    folder = Path(folder)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=train_bpe(SPECIAL), eos_token="<|im_end|>",
                                        pad_token="<|endoftext|>", padding_side="left")
    tokenizer.add_special_tokens({"additional_special_tokens": SPECIAL[1:]})
    audio = dict(TINY_AUDIO) if size == "tiny" else {}
    text = dict(TINY_TEXT if size == "tiny" else DEFAULT_TEXT, model_type="qwen2", vocab_size=len(tokenizer))
    config = Qwen2AudioConfig(audio_config=audio, text_config=text,
                              audio_token_index=tokenizer.convert_tokens_to_ids("<|AUDIO|>"))
    torch.manual_seed(seed)
    with torch.device("cpu"):
        model = Qwen2AudioForConditionalGeneration(config).to(getattr(torch, dtype)).eval()
    model.generation_config.eos_token_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(folder)
    extractor = WhisperFeatureExtractor(feature_size=config.audio_config.num_mel_bins, sampling_rate=16000)
    Qwen2AudioProcessor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(folder)
    return folder
