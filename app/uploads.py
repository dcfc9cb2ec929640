"""Audio clips people upload to find tracks like them (`POST /v1/similar` and the app's "search by sound"): checked
before any model sees them, embedded from a private temporary file, never kept."""
from __future__ import annotations

import re
import tempfile
from pathlib import Path

MAX_UPLOAD_BYTES = 50 * 2**20
MAX_UPLOAD_SECONDS = 600.0  # of decoded audio: a small file of long silence is refused too


class UploadError(ValueError):
    """A clip that cannot be used; `status` is the HTTP status that says so (413 too large, 422 not audio)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def check_audio(path: Path, max_seconds: float = MAX_UPLOAD_SECONDS) -> None:
    """Raise `UploadError` unless `path` is audio of at most `max_seconds` (the header's length is checked before
    anything is decoded)."""
    import soundfile as sf

    from tunelens.embed.audio import AudioError, decode

    try:
        info = sf.info(str(path))
        if info.samplerate and info.frames / info.samplerate > max_seconds:
            raise UploadError(413, f"the uploaded audio lasts {_span(info.frames / info.samplerate)}; at most "
                                   f"{_span(max_seconds)} are allowed")
    except sf.LibsndfileError:
        pass  # not a format libsndfile reads: the decoder below says
    try:
        seconds = len(decode(path, 8000).samples) / 8000
    except AudioError as e:
        reason = str(e).split(" (")[0]  # the decoders' own words name the temporary file
        raise UploadError(422, f"the upload is not audio tunelens can read ({reason}): send a WAV, FLAC, MP3, OGG "
                               "or M4A clip") from None
    if seconds > max_seconds:
        raise UploadError(413, f"the uploaded audio lasts {_span(seconds)}; at most {_span(max_seconds)} are allowed")


def _span(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 60 else f"{seconds:.0f} s"


def clip_suffix(filename: str | None) -> str:
    """The upload's extension, if it is a plain one (decoders go by it); nothing of its name is used otherwise."""
    suffix = Path(filename or "").suffix.lower()
    return suffix if re.fullmatch(r"\.[a-z0-9]{1,5}", suffix) else ""


def similar_to_clip(library, data: bytes, filename: str | None, k: int = 10, allowed: set[str] | None = None,
                    max_bytes: int = MAX_UPLOAD_BYTES, max_seconds: float = MAX_UPLOAD_SECONDS):
    """Tracks like an uploaded clip (its bytes), as `tunelens similar FILE` finds them."""
    from tunelens.index.search import similar

    if len(data) > max_bytes:
        raise UploadError(413, f"the upload is larger than {max_bytes // 2**20} MB")
    with tempfile.TemporaryDirectory(prefix="tunelens-upload-") as tmp:
        path = Path(tmp) / f"clip{clip_suffix(filename)}"
        path.write_bytes(data)
        check_audio(path, max_seconds)
        return similar(library, str(path), k, allowed=allowed)
