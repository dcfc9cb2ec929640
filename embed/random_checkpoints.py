"""Random-weight CLAP checkpoints (and the tokenizer trainer other random checkpoints share) built locally, for
tests, benchmarks and random-weights controls.

They go through exactly the loading code real checkpoints use (`save_pretrained` → `load_encoder`), with
no hub access: the tokenizer is a byte-level BPE trained here on a small vocabulary of music words.
"""

from __future__ import annotations

from pathlib import Path

_WORDS = (
    "piano guitar strings choir organ flute brass harpsichord drums violin cello trumpet voice singing "
    "slow fast calm energetic loud quiet soft bright dark warm jazz rock classical electronic ambient "
    "pop folk dance techno beat rhythm melody harmony chord major minor tempo song track music"
).split()

TINY_AUDIO = dict(spec_size=256, patch_size=4, patch_stride=(4, 4), patch_embeds_hidden_size=16, hidden_size=32,
                  depths=[1, 1], num_attention_heads=[1, 2], window_size=8, num_mel_bins=64, projection_dim=32)
TINY_TEXT = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                 max_position_embeddings=80, projection_dim=32)


def train_bpe(special_tokens: list[str], vocab_size: int = 400):
    """A byte-level BPE `tokenizers.Tokenizer` trained here on a small vocabulary of music words."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special_tokens,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([" ".join(_WORDS[i:] + _WORDS[:i]) for i in range(len(_WORDS))], trainer=trainer)
    return tok


def _train_tokenizer():
    from tokenizers import processors
    from transformers import RobertaTokenizerFast

    tok = train_bpe(["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    return RobertaTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                sep_token="</s>", cls_token="<s>", pad_token="<pad>", mask_token="<mask>",
                                model_max_length=64)


def make_random_clap(folder: str | Path, size: str = "tiny", seed: int = 0, window_seconds: float = 10.0) -> Path:
    """Write a random-weight `ClapModel` + processor to `folder`. `size` is "tiny" or "default"; a shorter
    `window_seconds` makes a cheaper model for pipeline tests (the audio tower stretches short inputs)."""
    import torch
    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel, ClapProcessor

    folder = Path(folder)
    tokenizer = _train_tokenizer()
    if size == "tiny":
        audio, text = dict(TINY_AUDIO), dict(TINY_TEXT)
    elif size == "default":
        audio, text = {}, {}
    else:
        raise ValueError(f"unknown random CLAP size {size!r}; use 'tiny' or 'default'")
    text["vocab_size"] = len(tokenizer)
    proj = audio.get("projection_dim", 512)
    config = ClapConfig(text_config=text, audio_config=audio, projection_dim=proj)
    torch.manual_seed(seed)
    model = ClapModel(config).eval()
    model.save_pretrained(folder)
    extractor = ClapFeatureExtractor(feature_size=config.audio_config.num_mel_bins, truncation="rand_trunc",
                                     max_length_s=window_seconds)
    ClapProcessor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(folder)
    return folder
