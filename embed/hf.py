"""Loading transformers checkpoints offline first: a local folder, then the local cache, then (only when the
user named a hub id and the network is allowed) the hub. Shared by every transformers-based backend."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from tunelens.embed.base import ModelUnavailableError


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes", "on"}


def quiet_transformers() -> None:
    import transformers

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()


def load_pretrained(cls, source: str, what: str, spec_prefix: str, **kwargs):
    """`cls.from_pretrained(source)` with errors that say how to get the model (`what` names it in messages)."""
    if Path(source).expanduser().is_dir():
        return cls.from_pretrained(str(Path(source).expanduser()), local_files_only=True, **kwargs)
    try:
        return cls.from_pretrained(source, local_files_only=True, **kwargs)
    except (OSError, ValueError) as cached_error:
        if offline():
            raise ModelUnavailableError(
                f"the {what} {source!r} is not on this machine and HF_HUB_OFFLINE is set. Download it where a "
                f"network is available (`hf download {source}`), then copy the Hugging Face cache here or pass "
                f"the downloaded folder as --model {spec_prefix}:/path/to/folder"
            ) from cached_error
    try:
        return cls.from_pretrained(source, **kwargs)
    except Exception as e:
        raise ModelUnavailableError(
            f"could not load the {what} {source!r}: {str(e).splitlines()[0]}. Pass a local folder as "
            f"--model {spec_prefix}:/path/to/folder, or check the hub id and your network"
        ) from None


def check_tokenizer(tokenizer, source: str) -> None:
    """transformers can load a tokenizer silently empty when its files are missing; refuse it."""
    if len(tokenizer) == 0 or not tokenizer("music")["input_ids"]:
        raise ModelUnavailableError(f"the tokenizer of {source!r} loaded empty: its tokenizer files are missing")


def weights_fingerprint(source: str) -> str:
    """Short hash of the checkpoint's config and weight file sizes, so changed weights change the version."""
    folder = Path(source).expanduser()
    if not folder.is_dir():
        return "hub"
    h = hashlib.blake2b(digest_size=6)
    for f in sorted(folder.iterdir()):
        if f.is_file() and f.suffix in {".json", ".safetensors", ".bin", ".jinja"}:
            h.update(f.name.encode())
            h.update(f.read_bytes() if f.suffix in {".json", ".jinja"} else str(f.stat().st_size).encode())
    return h.hexdigest()
