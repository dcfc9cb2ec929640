"""Decoding any audio file to mono float32 at a target rate: soundfile first, PyAV for what libsndfile lacks."""
from __future__ import annotations

import json
import os
import stat
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

AUDIO_EXTENSIONS = frozenset(
    {".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".aif", ".aiff", ".wma"}
)
MIN_SECONDS = 0.1
# the content type of each extension, for serving a file to a browser or player (the app, `tunelens serve`)
AUDIO_MIME = {".mp3": "audio/mpeg", ".ogg": "audio/ogg", ".oga": "audio/ogg", ".opus": "audio/ogg",
              ".flac": "audio/flac", ".wav": "audio/wav", ".m4a": "audio/mp4", ".aac": "audio/aac",
              ".aif": "audio/aiff", ".aiff": "audio/aiff"}


class AudioError(Exception):
    """A file that cannot be used, with a one-line reason."""


@dataclass
class DecodedAudio:
    samples: np.ndarray  # mono float32 at `sample_rate`
    sample_rate: int
    source_rate: int
    channels: int

    @property
    def duration(self) -> float:
        return len(self.samples) / self.sample_rate


def check_file(path: Path) -> None:
    """Raise AudioError with a one-line reason when `path` is not a readable, non-empty regular file."""
    try:
        st = os.stat(path)
    except OSError as e:
        if e.errno == 40:  # ELOOP
            raise AudioError("symlink loop") from None
        if not os.path.lexists(path):
            raise AudioError("file vanished") from None
        if os.path.islink(path):
            raise AudioError("broken symlink") from None
        raise AudioError(f"cannot stat file: {e.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise AudioError("not a regular file")
    if st.st_size == 0:
        raise AudioError("empty file (0 bytes)")
    if not os.access(path, os.R_OK):
        raise AudioError("permission denied")


def _read_soundfile(path: Path) -> tuple[np.ndarray, int]:
    import soundfile as sf

    data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    return data, int(sr)


def _read_pyav(path: Path) -> tuple[np.ndarray, int]:
    import av

    with av.open(str(path), metadata_errors="ignore") as container:
        if not container.streams.audio:
            raise AudioError("no audio stream")
        stream = container.streams.audio[0]
        sr = stream.codec_context.sample_rate or stream.rate
        chunks = []
        deadline = time.monotonic() + DECODE_LIMIT_S
        for frame in container.decode(stream):
            if time.monotonic() > deadline:  # a damaged stream that decodes forever
                raise AudioError(f"decoding took longer than {DECODE_LIMIT_S:g} s")
            arr = frame.to_ndarray()
            if arr.dtype.kind == "i":
                arr = arr.astype(np.float32) / np.iinfo(arr.dtype).max
            if frame.format.is_planar:
                arr = arr.T  # [samples, channels]
            else:
                arr = arr.reshape(-1, len(frame.layout.channels))
            chunks.append(arr.astype(np.float32, copy=False))
    if not chunks:
        raise AudioError("no audio frames decoded")
    return np.concatenate(chunks), int(sr)


# one file's decode; a worker past it is stopped and the file recorded (see `watched`); the environment may lower
# it (tests, or a folder known to hold damaged streams)
DECODE_LIMIT_S = float(os.environ.get("TUNELENS_DECODE_LIMIT_S", "60"))


class _Watch:
    """Deadlines of the decodes running in this process. Armed only in worker processes (`arm_watch`): past a
    deadline the whole worker exits, because a decoder stuck inside C cannot be interrupted any other way; the
    parent then records that file alone (embed.parallel)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running: dict[int, tuple[float, str]] = {}  # thread id → (deadline, path)
        self.report_dir: Path | None = None

    def arm(self, report_dir: Path) -> None:
        self.report_dir = report_dir
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while True:
            time.sleep(min(0.5, DECODE_LIMIT_S / 4))
            now = time.monotonic()
            with self.lock:
                late = [p for deadline, p in self.running.values() if now > deadline]
            if late and self.report_dir is not None:
                (self.report_dir / f"{os.getpid()}.json").write_text(json.dumps({"path": late[0]}))
                os._exit(DECODE_TIMEOUT_EXIT)


DECODE_TIMEOUT_EXIT = 75
_watch = _Watch()


def arm_watch(report_dir: Path) -> None:
    """Stop this process when a decode runs past DECODE_LIMIT_S, leaving `report_dir/PID.json` naming the file."""
    _watch.arm(report_dir)


def timed_out_files(report_dir: Path) -> set[str]:
    """The files whose decode stopped a worker (read back by the parent)."""
    return {json.loads(p.read_text())["path"] for p in report_dir.glob("*.json")}


@contextmanager
def watched(path: str | Path, limit_s: float = DECODE_LIMIT_S) -> Iterator[None]:
    """Run a decode of `path` under this process's watch (a no-op where no watch is armed)."""
    if _watch.report_dir is None:
        yield
        return
    key = threading.get_ident()
    with _watch.lock:
        _watch.running[key] = (time.monotonic() + limit_s, str(path))
    try:
        yield
    finally:
        with _watch.lock:
            _watch.running.pop(key, None)


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """[samples, channels] float32 and the file's sample rate, or AudioError with a one-line reason."""
    path = Path(path)
    check_file(path)
    try:
        data, sr = _read_soundfile(path)
    except Exception as sf_error:  # libsndfile lacks the format (m4a) or the file is broken
        try:
            data, sr = _read_pyav(path)
        except AudioError:
            raise
        except Exception as av_error:
            first = str(sf_error).splitlines()[0] if str(sf_error) else type(sf_error).__name__
            raise AudioError(f"not decodable audio ({first}; ffmpeg: {str(av_error).splitlines()[0][:120]})") from None
    if data.size == 0:
        raise AudioError("no audio samples")
    if data.shape[0] / sr < MIN_SECONDS:
        raise AudioError(f"too short ({data.shape[0]} samples; at least {MIN_SECONDS} s needed)")
    if not np.all(np.isfinite(data)):
        data = np.nan_to_num(data, nan=0.0, posinf=0.0, neginf=0.0)
    return data, sr


def to_mono_resampled(data: np.ndarray, sr: int, target_sr: int) -> np.ndarray:
    import soxr

    mono = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    if sr != target_sr:
        mono = soxr.resample(mono, sr, target_sr, quality="HQ")
    return np.ascontiguousarray(mono, dtype=np.float32)


def decoded(data: np.ndarray, sr: int, target_sr: int) -> DecodedAudio:
    """[samples, channels] audio read at `sr` as mono at `target_sr`, remembering where it came from."""
    return DecodedAudio(to_mono_resampled(data, sr, target_sr), target_sr, sr, int(data.shape[1]))


def decode(path: str | Path, target_sr: int) -> DecodedAudio:
    """Decode, mix to mono, resample with soxr. Deterministic: the same file gives the same samples."""
    return decoded(*read_audio(path), target_sr)


def error_reason(e: Exception) -> str:
    """One line saying why a file failed: AudioError's own reason, or the type and first line of anything else."""
    if isinstance(e, AudioError):
        return str(e)
    if isinstance(e, MemoryError):
        return "file too large to decode in memory"
    return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'unexpected error'}"


def is_audio_path(path: str | Path) -> bool:
    return Path(path).suffix.lower() in AUDIO_EXTENSIONS
