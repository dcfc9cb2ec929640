"""`tunelens serve`: the HTTP API players, scripts and other tools use (FastAPI; OpenAPI at /docs).

Every route calls the same library functions as the CLI and the app (`tunelens.search`, `similar`, `ask`,
`Library.summary`...); nothing here decides anything about music. What lives here is what only a server needs:
authentication, limits, id checks, problem-details errors (RFC 9457) and serving the state the last commit left.

Security: loopback by default; any other address refuses to start without a token (a file readable by its owner
only; bearer, compared in constant time); CORS off unless an origin is given; read-only (no route writes to the
library). Live updates: each request checks the library's commit stamp and serves the newest complete state (a
commit in flight is finished on open, as `Library.open` always does), never a half-written one.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import hmac
import ipaddress
import os
import re
import stat
import threading
from dataclasses import dataclass
from pathlib import Path

from fastapi import Depends, FastAPI, File, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from tunelens.app.schemas import AnswerOut, DuplicatesOut, LibraryOut, ProblemOut, SearchOut, TrackOut
from tunelens.app.uploads import MAX_UPLOAD_BYTES, MAX_UPLOAD_SECONDS, UploadError, similar_to_clip
from tunelens.embed.audio import AUDIO_MIME
from tunelens.index.core.atomic import file_stamp
from tunelens.index.core.library import Library, LibraryError
from tunelens.index.search.hybrid import MAX_QUERY_CHARS

TRACK_ID = re.compile(r"^[0-9a-f]{16}$")  # index.core.scan.track_id_for: 8 bytes of blake2b, hex


@dataclass(frozen=True)
class ServeConfig:
    """How `tunelens serve` runs; the defaults are its CLI defaults."""

    host: str = "127.0.0.1"
    port: int = 8600
    token: str | None = None  # required off loopback; read from --token-file
    cors: tuple[str, ...] = ()  # allowed browser origins; none: CORS off
    max_k: int = 500
    max_upload_bytes: int = MAX_UPLOAD_BYTES
    max_upload_seconds: float = MAX_UPLOAD_SECONDS  # of decoded audio
    timeout_s: float = 60.0  # per request
    device: str = "auto"
    workers: int = 1  # server processes, each with its own model (CPU: one per core serves the most)
    allow_writes: bool = False  # saving, refreshing and deleting playlists in the library


class ServeError(ValueError):
    """The server cannot start as asked; the message says why."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_token(path: str | Path) -> str:
    """The token in `path`, refused unless only its owner may read it (as ssh refuses a readable key)."""
    p = Path(path)
    try:
        mode = p.stat().st_mode
        token = p.read_text().strip()
    except OSError as e:
        raise ServeError(f"cannot read the token file {p}: {e.strerror or e}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ServeError(f"the token file {p} can be read by others; make it private: chmod 600 {p}")
    if len(token) < 16:
        raise ServeError(f"the token in {p} is shorter than 16 characters; use a long random one")
    return token


def check_config(config: ServeConfig) -> None:
    if not is_loopback(config.host) and not config.token:
        raise ServeError(f"serving on {config.host} (not this machine only) needs a token: --token-file FILE")


class LiveLibrary:
    """The library as the last complete commit left it, reopened when a commit lands (checked per request)."""

    STAMP_FILES = ("manifest.json", "catalog.parquet", "COMMIT.json", "measures.parquet", "captions.parquet",
                   "duplicates.parquet")

    def __init__(self, root: Path, device: str = "auto"):
        self.root, self.device = Path(root), device
        self._lock = threading.Lock()
        self._lib: Library | None = None
        self._stamp: tuple | None = None
        self._encoder = None

    def _stamp_now(self) -> tuple:
        return file_stamp(self.root, self.STAMP_FILES)

    def get(self) -> Library:
        stamp = self._stamp_now()
        lib = self._lib
        if lib is not None and stamp == self._stamp:
            return lib
        with self._lock:
            if self._lib is not None and self._stamp_now() == self._stamp:
                return self._lib
            for _ in range(5):  # a commit landing while this opens: open again
                before = self._stamp_now()
                lib = Library.open(self.root)
                lib.ok_tracks(), lib.windows_table(), lib.vector_index, lib.window_index  # read it all now
                if self._encoder is not None:
                    lib.use_encoder(self._encoder, self.device)
                if self._stamp_now() == before:
                    break
            self._encoder = lib.encoder(self.device)
            self._lib, self._stamp = lib, self._stamp_now()
            return lib


# the titles of the problems the API answers with (each with a sentence in "detail")
PROBLEMS = {400: "Bad request", 401: "Unauthorized", 403: "Forbidden", 404: "Not found", 413: "Too large",
            416: "Range not satisfiable", 422: "Invalid input", 500: "Internal error", 504: "Timeout"}


def problem(status: int, title: str, detail: str) -> JSONResponse:
    """An RFC 9457 problem details response: a sentence, never a traceback or a path outside the library."""
    return JSONResponse({"type": "about:blank", "title": title, "status": status, "detail": detail},
                        status_code=status, media_type="application/problem+json")


class AskBody(BaseModel):
    question: str


def create_app(library: str | Path, config: ServeConfig = ServeConfig()) -> FastAPI:
    """The FastAPI application serving `library` (what `tunelens serve` runs; tests call it directly)."""
    import tunelens
    from tunelens.embed.audio import AudioError

    check_config(config)
    live = LiveLibrary(Path(library), config.device)
    live.get()  # a library that cannot be opened fails now, not on the first request
    app = FastAPI(title="tunelens", version="1", summary="Search, explore and ask your music library.",
                  description=__doc__, responses={code: {"model": ProblemOut, "description": why} for code, why in
                                                  PROBLEMS.items()})
    if config.cors:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(config.cors), allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type", "Range"])

    def authorised(request: Request) -> None:
        if not config.token:
            return
        got = request.headers.get("authorization", "")
        scheme, _, value = got.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), config.token.encode()):
            raise HTTPException(401, "a valid bearer token is needed: Authorization: Bearer TOKEN")

    @app.exception_handler(HTTPException)
    async def _http(request: Request, e: HTTPException):
        return problem(e.status_code, PROBLEMS.get(e.status_code, "Error"), str(e.detail))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, e: RequestValidationError):
        first = e.errors()[0] if e.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()) if x not in ("query", "path", "body"))
        return problem(422, PROBLEMS[422], f"{where or 'the request'}: {first.get('msg', 'is not valid')}")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, e: Exception):
        return problem(500, PROBLEMS[500], f"the request failed ({type(e).__name__}); the server log has more")

    # Searches are short and CPU-bound: one thread runs them in turn (first come, first served), so that they do not
    # share one core and the GIL with each other and with the event loop (with a thread each, a search waited on
    # the others' turns: p50 76 ms for 5 ms of work at 250 requests/s). Slow work (uploads, questions, library
    # counts) runs in the default pool beside it, so it never holds searches up.
    quick = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="tunelens-search")

    async def run(fn, *args, fast: bool = False, **kwargs):
        """`fn` in a worker thread, under the per-request timeout; library errors become 4xx sentences."""
        loop = asyncio.get_running_loop()
        try:
            return await asyncio.wait_for(loop.run_in_executor(quick if fast else None,
                                                               functools.partial(fn, *args, **kwargs)),
                                          config.timeout_s)
        except TimeoutError:
            raise HTTPException(504, f"the request took longer than {config.timeout_s:g} s") from None
        except UploadError:
            raise
        except (LibraryError, AudioError) as e:
            missing = isinstance(e, LookupError) or "neither" in str(e)
            raise HTTPException(404 if missing else 422, _scrub(str(e))) from None
        except ValueError as e:
            raise HTTPException(422, _scrub(str(e))) from None

    def _scrub(text: str) -> str:
        """A message without paths outside the library (temp files of uploads, the server's own folders)."""
        return re.sub(r"/(?:tmp|var|private)[^\s:'\"]*", "the uploaded file", text)

    def track(track_id: str) -> dict:
        if not TRACK_ID.match(track_id):
            raise HTTPException(404, "not a track id: ids are 16 hexadecimal characters (see /v1/search)")
        lib = live.get()
        row = lib.track_row(track_id)
        if row is None:
            raise HTTPException(404, f"no indexed track {track_id} in this library")
        return lib.ok_tracks().row(row, named=True)

    def k_param(k: int) -> int:
        if not 1 <= k <= config.max_k:
            raise HTTPException(422, f"k must be between 1 and {config.max_k}")
        return k

    auth = [Depends(authorised)]

    @app.get("/v1/search", dependencies=auth, response_model=SearchOut,
             summary="Tracks (or moments) matching a description")
    async def search(q: str = Query(..., description='e.g. "slow sad piano", "Bach on the organ"'), k: int = 10,
                     moments: bool = False):
        if len(q) > MAX_QUERY_CHARS:
            raise HTTPException(422, f"the query is {len(q)} characters long; at most {MAX_QUERY_CHARS} are allowed")
        k = k_param(k)
        lib = live.get()
        res = await run(tunelens.search, lib, q, k, moments=moments, device=config.device, fast=True)
        return res.to_dict()

    @app.get("/v1/tracks/{track_id}", dependencies=auth, response_model=TrackOut,
             summary="One track: tags, caption, measurements, flags")
    async def get_track(track_id: str):
        row = track(track_id)
        return await run(_track_record, live.get(), row, fast=True)

    @app.get("/v1/tracks/{track_id}/similar", dependencies=auth, response_model=SearchOut,
             summary="Tracks that sound like this one")
    async def similar_to(track_id: str, k: int = 10, but: str | None = None):
        track(track_id)
        if but and len(but) > MAX_QUERY_CHARS:
            raise HTTPException(422, f"the steering phrase is longer than {MAX_QUERY_CHARS} characters")
        res = await run(tunelens.similar, live.get(), track_id, k_param(k), steer=but, device=config.device,
                        fast=True)
        return res.to_dict()

    @app.post("/v1/similar", dependencies=auth, response_model=SearchOut,
              summary="Tracks that sound like an uploaded clip")
    async def similar_upload(file: UploadFile = File(...), k: int = 10):
        k = k_param(k)
        data = bytearray()
        while chunk := await file.read(1 << 20):  # read no further than the limit
            data += chunk
            if len(data) > config.max_upload_bytes:
                raise HTTPException(413, f"the upload is larger than {config.max_upload_bytes // 2**20} MB")
        try:
            res = await run(similar_to_clip, live.get(), bytes(data), file.filename, k,
                            max_bytes=config.max_upload_bytes, max_seconds=config.max_upload_seconds)
        except UploadError as e:
            raise HTTPException(e.status, str(e)) from None
        return res.to_dict()

    @app.get("/v1/tracks/{track_id}/audio", dependencies=auth, summary="The track's audio file (Range supported)")
    async def audio(track_id: str, request: Request):
        row = track(track_id)
        path = Path(row["path"])
        try:
            size = path.stat().st_size
        except OSError:
            raise HTTPException(404, f"{row['rel_path']} cannot be read any more") from None
        mime = AUDIO_MIME.get(path.suffix.lower(), "application/octet-stream")
        span = _byte_range(request.headers.get("range"), size)
        if span is None:
            return Response(await asyncio.to_thread(path.read_bytes), media_type=mime,
                            headers={"Accept-Ranges": "bytes"})
        start, end = span
        data = await asyncio.to_thread(_read_span, path, start, end)
        return Response(data, status_code=206, media_type=mime, headers={
            "Accept-Ranges": "bytes", "Content-Range": f"bytes {start}-{end}/{size}"})

    @app.post("/v1/tracks/{track_id}/ask", dependencies=auth, response_model=AnswerOut,
              summary="Answer a question about a track")
    async def ask(track_id: str, body: AskBody):
        track(track_id)
        if not body.question.strip() or len(body.question) > MAX_QUERY_CHARS:
            raise HTTPException(422, f"ask a question of 1 to {MAX_QUERY_CHARS} characters")
        answer = await run(tunelens.ask, track_id, body.question, live.get())
        return answer.to_dict()

    @app.get("/v1/library", dependencies=auth, response_model=LibraryOut,
             summary="Counts, model, pipeline, index choice, failures")
    async def library_info():
        return await run(live.get().summary)

    @app.get("/v1/duplicates", dependencies=auth, response_model=DuplicatesOut,
             summary="Duplicate clusters found by `tunelens dupes`")
    async def duplicates():
        from tunelens.index.curation.dupes import cluster_records, load_duplicates

        saved = await run(load_duplicates, live.get())
        if saved is None:
            raise HTTPException(404, "no current duplicate clusters: run `tunelens dupes` on the library")
        return {"clusters": cluster_records(saved)}

    from tunelens.app.server_playlists import playlist_router

    app.include_router(playlist_router(live, config, run, auth, TRACK_ID))
    return app


def _track_record(lib: Library, row: dict) -> dict:
    """A track as `GET /v1/tracks/{id}` returns it: catalog fields, caption and measurements, quality flags,
    predicted tags, duplicate cluster."""
    import json

    from tunelens.index.core.tracks import tag_probs
    from tunelens.index.curation.dupes import load_duplicates
    from tunelens.index.search.hybrid import facet_table

    # the facet table (built once per library state) is in the order of ok_tracks, which track_row indexes
    rec = facet_table(lib).table.row(lib.track_row(row["track_id"]), named=True)
    out = {k: v for k, v in rec.items() if k not in ("path", "file_tags", "tags", "vec_row", "window_offset")}
    out["file_tags"] = json.loads(rec["file_tags"]) if rec.get("file_tags") else {}
    out["tags"] = tag_probs(rec.get("tags"))
    dupes = load_duplicates(lib)
    cluster = dupes.filter(dupes["track_id"] == row["track_id"]) if dupes is not None else None
    out["duplicate_cluster"] = int(cluster["cluster"][0]) if cluster is not None and len(cluster) else None
    return out


def _byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) byte of a single `bytes=` range, None for no range; 416 for one that cannot be served."""
    if not header:
        return None
    m = re.fullmatch(r"bytes=(\d*)-(\d*)", header.strip())
    if not m or (not m.group(1) and not m.group(2)):
        raise HTTPException(416, f"unsupported range {header[:40]!r}: use bytes=FIRST-LAST, bytes=FIRST- or "
                                 "bytes=-COUNT")
    if not m.group(1):  # suffix: the last N bytes
        n = int(m.group(2))
        if n == 0:
            raise HTTPException(416, "an empty suffix range")
        return max(0, size - n), size - 1
    start = int(m.group(1))
    end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
    if start >= size or end < start:
        raise HTTPException(416, f"the range starts past the end of the file ({size} bytes)")
    return start, end


def _read_span(path: Path, start: int, end: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(start)
        return f.read(end - start + 1)


SERVE_ENV = "TUNELENS_SERVE"  # how `serve` hands its settings to worker processes


def app_from_env() -> FastAPI:
    """The app of one worker process started by `serve` (uvicorn's factory)."""
    import json

    settings = json.loads(os.environ[SERVE_ENV])
    token = read_token(settings.pop("token_file")) if settings.get("token_file") else None
    settings.pop("token_file", None)
    library = settings.pop("library")
    return create_app(library, ServeConfig(**{**settings, "cors": tuple(settings["cors"]), "token": token}))


def serve(library: str | Path, config: ServeConfig = ServeConfig(), token_file: str | Path | None = None) -> None:
    """Run the server until interrupted (what `tunelens serve` does): one process, or `config.workers` processes
    sharing the port, each reading the token from `token_file` itself."""
    import json
    from dataclasses import asdict

    import uvicorn

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # threads of the text model must not spin-wait
    check_config(config)
    if config.workers <= 1:
        uvicorn.run(create_app(library, config), host=config.host, port=config.port, log_level="warning")
        return
    create_app(library, config)  # refuse a library or settings that cannot serve before starting workers
    settings = {k: v for k, v in asdict(config).items() if k != "token"}
    os.environ[SERVE_ENV] = json.dumps({**settings, "library": str(Path(library).resolve()),
                                        "token_file": str(token_file) if token_file else None})
    uvicorn.run("tunelens.app.server:app_from_env", factory=True, host=config.host, port=config.port,
                workers=config.workers, log_level="warning")
