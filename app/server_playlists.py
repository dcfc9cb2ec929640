"""The playlist routes of `tunelens serve` (`/v1/playlists`): make a radio, a path or a playlist from a description,
sort the library into groups, list, read, export, refresh and delete saved playlists. Making one only returns it;
saving, refreshing and deleting write to the library and need `--allow-writes`."""
from __future__ import annotations

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from tunelens.index.playlists.export import MEDIA_TYPES
from tunelens.index.playlists.make import PlaylistTrack
from tunelens.index.playlists.rules import PlaylistRules
from tunelens.index.search.hybrid import MAX_QUERY_CHARS

MAX_MINUTES = 600.0


class _Common(BaseModel):
    name: str | None = Field(None, max_length=200, description="save under this name (default from the recipe)")
    save: bool = Field(False, description="keep it in the library (needs --allow-writes)")
    rules: PlaylistRules = Field(default_factory=PlaylistRules, description="see `tunelens playlist radio --help`")


class RadioIn(_Common):
    seeds: list[str] = Field(..., min_length=1, max_length=20, description="track ids")
    text: str | None = Field(None, max_length=MAX_QUERY_CHARS, description='steer it: "calmer, no vocals"')
    n: int | None = Field(30, ge=1, le=500)
    minutes: float | None = Field(None, gt=0, le=MAX_MINUTES)


class PathIn(_Common):
    start: str = Field(..., description="track id")
    end: str = Field(..., description="track id")
    n: int = Field(12, ge=3, le=500)


class QueryIn(_Common):
    text: str = Field(..., min_length=1, max_length=MAX_QUERY_CHARS)
    n: int | None = Field(30, ge=1, le=500)
    minutes: float | None = Field(None, gt=0, le=MAX_MINUTES)


class PlaylistOut(BaseModel):
    name: str
    kind: str = Field(description="radio, path, query or cluster")
    recipe: dict = Field(description="what made it: seeds, text, ends, length, rules (what refresh re-runs)")
    notes: list[str]
    created: float
    refreshed: float | None
    duration: float = Field(description="seconds")
    tracks: list[PlaylistTrack]


class PlaylistSummaryOut(BaseModel):
    name: str
    kind: str
    tracks: int
    minutes: float
    recipe: dict


def playlist_router(live, config, run, auth, track_id_pattern) -> APIRouter:
    """The routes, on the server's library (`live`), settings, worker-thread runner and auth dependency."""
    import tunelens
    from tunelens.index.playlists import delete_playlist, render

    r = APIRouter(prefix="/v1/playlists", dependencies=auth, tags=["playlists"])

    def ids(*refs: str) -> None:
        for ref in refs:
            if not track_id_pattern.match(ref):
                raise HTTPException(422, "playlist seeds and ends are track ids: 16 hexadecimal characters")

    def writable() -> None:
        if not config.allow_writes:
            raise HTTPException(403, "this server is read-only: start it with --allow-writes to save playlists")

    def name_param(name: str) -> str:
        if not name.strip() or len(name) > 200 or "\x00" in name:
            raise HTTPException(422, "a playlist name is 1 to 200 characters")
        return name

    async def made(pl, body: _Common) -> dict:
        if body.save:
            writable()
            await run(tunelens.save_playlist, live.get(), pl)
        return pl.to_dict()

    @r.post("/radio", response_model=PlaylistOut, summary="Tracks like the seeds, optionally steered by text")
    async def radio(body: RadioIn):
        ids(*body.seeds)
        pl = await run(tunelens.radio, live.get(), body.seeds, body.text, body.n, body.minutes, body.rules,
                       body.name, device=config.device, fast=True)
        return await made(pl, body)

    @r.post("/path", response_model=PlaylistOut, summary="A smooth sequence from one track to another")
    async def path(body: PathIn):
        ids(body.start, body.end)
        pl = await run(tunelens.path_between, live.get(), body.start, body.end, body.n, body.rules, body.name,
                       device=config.device, fast=True)
        return await made(pl, body)

    @r.post("/query", response_model=PlaylistOut, summary="A description's tracks, ordered for listening")
    async def query(body: QueryIn):
        pl = await run(tunelens.query_playlist, live.get(), body.text, body.n, body.minutes, body.rules, body.name,
                       device=config.device, fast=True)
        return await made(pl, body)

    @r.post("/clusters", response_model=list[PlaylistOut], summary="The library in named groups")
    async def clusters(k: int | None = Query(None, ge=2, le=100, description="groups (default: automatic)"),
                       save: bool = False):
        if save:
            writable()
        groups = await run(tunelens.group_playlists, live.get(), k or "auto")
        if save:
            for g in groups:
                await run(tunelens.save_playlist, live.get(), g)
        return [g.to_dict() for g in groups]

    @r.get("", response_model=list[PlaylistSummaryOut], summary="Saved playlists")
    async def saved():
        pls = await run(tunelens.list_playlists, live.get())
        return [{"name": p.name, "kind": p.kind, "tracks": len(p.tracks), "minutes": round(p.duration / 60, 1),
                 "recipe": p.recipe} for p in pls]

    @r.get("/{name}", response_model=PlaylistOut, summary="A saved playlist (or, with format, its file)",
           responses={200: {"content": {m: {} for m in MEDIA_TYPES.values()}}})
    async def one(name: str, request: Request,
                  format: str | None = Query(None, description="m3u8, xspf, csv or json: the file; m3u8 and xspf "
                                                               "entries are this server's audio URLs")):
        pl = await run(tunelens.load_playlist, live.get(), name_param(name))
        if format is None:
            return pl.to_dict()
        if format not in MEDIA_TYPES:
            raise HTTPException(422, f"format is one of {', '.join(MEDIA_TYPES)}")
        text = render(pl, format) if format in ("csv", "json") else _remote(pl, format, str(request.base_url))
        return Response(text,
                        media_type=MEDIA_TYPES[format],
                        headers={"Content-Disposition": f'attachment; filename="playlist.{format}"'})

    @r.post("/{name}/refresh", response_model=PlaylistOut, summary="Re-run a saved playlist's recipe")
    async def refresh(name: str):
        writable()
        pl, _ = await run(tunelens.refresh_playlist, live.get(), name_param(name), device=config.device)
        return pl.to_dict()

    @r.delete("/{name}", status_code=204, summary="Delete a saved playlist")
    async def delete(name: str):
        writable()
        await run(delete_playlist, live.get(), name_param(name))
        return Response(status_code=204)

    return r


def _remote(pl, fmt: str, base_url: str) -> str:
    """M3U8 or XSPF whose entries are the server's own audio URLs (a client cannot open the server's paths)."""
    from dataclasses import replace

    from tunelens.index.playlists.export import to_m3u, to_xspf

    entries = [replace(t, path=f"{base_url.rstrip('/')}/v1/tracks/{t.track_id}/audio") for t in pl.tracks]
    return to_m3u(entries, None, pl.name) if fmt == "m3u8" else to_xspf(entries, pl.name)
