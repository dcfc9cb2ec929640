"""`tunelens`: the command line over the public API (`import tunelens`). Each verb parses its options into the
API's config, calls one API function and prints what it returns; nothing here decides anything a Python caller
would not get the same way."""
from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

import tunelens
from tunelens.index.core.display import clean, clock
from tunelens.index.curation.dupes import DupesConfig

_DUPES = DupesConfig()  # the dupes command's defaults

app = typer.Typer(help="tunelens: text-to-music search over your own music folders, fully offline.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
console = Console()
err = Console(stderr=True, soft_wrap=True)

LibraryOpt = typer.Option(..., "--library", "-l", help="Library folder (created by `tunelens index`).")
ModelOpt = typer.Option(None, "--model", "-m", help="Encoder spec: musicnn (default), clap:FOLDER or clap:HUB_ID (a "
                        "transformers ClapModel), or clap:FILE.pt (an original laion_clap checkpoint, converted once).")
DeviceOpt = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N.")
JsonOpt = typer.Option(False, "--json", help="Print the result as JSON.")


@contextmanager
def _friendly_errors() -> Iterator[None]:
    """Known failures become one sentence on stderr and exit code 2, not a traceback."""
    from tunelens.embed.audio import AudioError
    from tunelens.embed.base import ModelUnavailableError
    from tunelens.embed.ray_engine import EngineUnavailableError

    try:
        yield
    except (tunelens.LibraryError, ModelUnavailableError, EngineUnavailableError, AudioError, FileNotFoundError,
            ValueError, ImportError) as e:
        err.print(Text("error: ", style="bold red") + _t(e, 2000))  # a message may quote a file name or tag
        raise typer.Exit(2) from None
    except OSError as e:
        from tunelens.index.core.atomic import FULL, DiskFullError

        if e.errno not in FULL:
            raise
        why = str(e) if isinstance(e, DiskFullError) else (
            f"the disk is full ({e.strerror}{': ' + str(e.filename) if e.filename else ''}). Nothing finished was "
            "lost; free some space and run the same command again to resume")
        err.print(Text("error: ", style="bold red") + _t(why, 2000))
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        err.print("[yellow]interrupted; finished batches are kept, run the same command again to resume[/]")
        raise typer.Exit(130) from None


@contextmanager
def _bars() -> Iterator[Callable[[str, int, int], None]]:
    """A progress callback `(phase, done, total)` drawing one bar per phase on stderr."""
    tasks: dict[str, object] = {}
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), console=err) as bar:
        def update(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(phase, total=None)
            bar.update(tasks[phase], completed=done, total=total)

        yield update


def _t(text: object, limit: int | None = 200) -> Text:
    """Text from tags, paths or the user, shown as itself: never read as markup, without control or
    direction-changing characters, cut to `limit` characters."""
    return Text(clean(text, limit))


def _table(title: str, rows: list[tuple[str, object]]) -> None:
    table = Table(title=_t(title), show_header=False)
    for k, v in rows:
        table.add_row(k, _t(v, None))
    console.print(table)


@app.command()
def index(
    music_dir: Path = typer.Argument(..., help="Folder of music, scanned recursively."),
    library: Path = LibraryOpt,
    model: str | None = ModelOpt,
    device: str = DeviceOpt,
    workers: int = typer.Option(2, help="Decoding threads."),
    batch_windows: int = typer.Option(16, help="Windows per model call."),
    retry_errors: bool = typer.Option(False, help="Try files that failed before again, even if unchanged."),
    batch_files: int = typer.Option(32, help="Files per saved batch: at most this much work is lost if killed."),
    processes: int | None = typer.Option(None, help="Worker processes, each decoding and embedding whole files (CPU). "
                                         "Default: one per core when the model runs on the CPU, none on a GPU. 0 runs "
                                         "everything in this process."),
    engine: str = typer.Option("local", help="local, or ray to run on a Ray cluster (pip install 'tunelens[ray]')."),
    address: str | None = typer.Option(None, help="Ray cluster address (auto = the cluster this machine is in); "
                                       "without it a local Ray is started."),
    index_type: str | None = typer.Option(None, "--index", help="FAISS index: auto, flat, ivf, ivfpq or hnsw. "
                                          "Default: what the library used before (auto)."),
    max_memory: str | None = typer.Option(None, help="Memory the index may take, e.g. 4GB (auto picks under it)."),
    measure: bool = typer.Option(True, "--measure/--no-measure", help="Measure tempo, key, loudness and energy of "
                                 "every track after embedding, for searches like \"slow piano in D minor\"."),
) -> None:
    """Index MUSIC_DIR into a library; re-running adds new files, drops deleted ones, skips unchanged ones and
    measures what has no measurement yet."""
    from tunelens.index.vectors import info_summary

    config = tunelens.IndexConfig(workers=workers, batch_windows=batch_windows, retry_errors=retry_errors,
                                  batch_files=batch_files, processes=processes, engine=engine, ray_address=address,
                                  device=device, index_kind=index_type, max_memory=max_memory, measure=measure)
    with _friendly_errors():
        started = time.time()
        with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TimeRemainingColumn(), console=err,
                      transient=False) as bar:
            task = bar.add_task("indexing", total=None, rate="")
            measuring: dict[str, object] = {}

            def progress(done: int, total: int, audio_s: float) -> None:
                el = max(time.time() - started, 1e-6)
                rate = f"{done / el:.1f} files/s  {audio_s / el:.0f}x realtime"
                bar.update(task, completed=done, total=total, rate=rate)

            def measure_progress(done: int, total: int, audio_s: float) -> None:
                if "task" not in measuring:
                    measuring["task"], measuring["t0"] = bar.add_task("measuring", total=total, rate=""), time.time()
                el = max(time.time() - measuring["t0"], 1e-6)
                bar.update(measuring["task"], completed=done, total=total,
                           rate=f"{done / el:.1f} files/s  {audio_s / el:.0f}x realtime")

            report = tunelens.index_folder(library, music_dir, model, config, progress=progress,
                                           measure_progress=measure_progress)
    seconds = max(report.seconds, 1e-9)
    _table(f"tunelens index → {library}", [
        ("files found", report.found), ("indexed", report.indexed), ("resumed from an earlier run", report.resumed),
        ("unchanged (skipped)", report.skipped), ("moved (relinked)", report.moved),
        ("removed (deleted files)", report.removed), ("failed", len(report.failed)),
        ("tracks in library", report.library_tracks),
        *([("measured (tempo, key, loudness)", f"{report.measures.measured} now, {report.measures.done_before} "
            f"before, {report.measures.failed} failed")] if report.measures else []),
        ("speed", f"{report.indexed / seconds:.1f} files/s, {report.audio_seconds / seconds:.1f}x realtime"),
    ])
    if report.library_tracks:
        console.print(f"track index: {info_summary(report.index.get('tracks', {}))}; "
                      f"window index: {info_summary(report.index.get('windows', {}))}")
    for rel, reason in report.failed[:50]:
        console.print(_t(f"  failed {rel}: {reason}", 2000), soft_wrap=True)
    for error in (report.measures.errors if report.measures else [])[:20]:
        console.print(_t(f"  could not measure {error}", 2000), soft_wrap=True)
    if len(report.failed) > 50:
        console.print(f"  … and {len(report.failed) - 50} more (see `tunelens info`)")
    if report.library_tracks == 0:
        err.print(f"[bold red]error:[/] no file in {music_dir} could be indexed")
        raise typer.Exit(1)


def _print_hits(hits, as_json: bool, title: str) -> None:
    """A table of hits, under what the query was understood as, with why each is there."""
    if as_json:
        print(json.dumps(hits.to_dict() if hasattr(hits, "to_dict") else [h.to_dict() for h in hits], indent=1))
        return
    query = getattr(hits, "query", None)
    if query is not None:
        console.print(Text(clean(f"understood as: {query.understood()}", 2000), style="bold"), soft_wrap=True)
    for note in getattr(hits, "notes", []):
        console.print(Text(clean(f"note: {note}", 2000), style="dim"), soft_wrap=True)
    if not hits:
        reason = getattr(hits, "empty_reason", None)
        console.print(_t(f"no results: {reason}" if reason else "no results", 2000), soft_wrap=True)
        return
    table = Table(title=_t(title, 120))
    for col in ("#", "score", "track", "best moment", "why", "id"):
        table.add_column(col)
    for h in hits:
        name = f"{h.artist} – {h.title}" if h.title and h.artist else (h.title or h.rel_path)
        moment = f"{int(h.best_start_s // 60)}:{h.best_start_s % 60:04.1f}"
        table.add_row(str(h.rank), f"{h.score:.3f}", _t(name), moment, _t("\n".join(h.why), 2000), h.track_id)
    console.print(table)


@app.command()
def search(
    query: str = typer.Argument(..., help='What you want to hear, e.g. "slow solo piano".'),
    library: Path = LibraryOpt,
    k: int = typer.Option(10, "-k", help="Number of results."),
    as_json: bool = JsonOpt,
    device: str = DeviceOpt,
    moments: bool = typer.Option(False, "--moments", help="Search every 10 s window of the library, not whole tracks: "
                                 "the best moments, at most one per track."),
) -> None:
    """Find tracks (or moments in tracks) that match a text description: instruments, moods and styles go to the
    model; tempo ("slow", "120 bpm"), key ("in D minor", "minor key"), loudness ("quiet"), duration ("under 3
    minutes"), vocals ("instrumental") to what `tunelens index` measured; artist, album, genre, year ("80s") and
    folder to the files' tags; "no drums" leaves drums out. It prints what it understood and why each hit is there."""
    with _friendly_errors():
        hits = tunelens.search(library, query, k, moments=moments, device=device)
    _print_hits(hits, as_json, f"“{query}”")


@app.command()
def similar(track: str = typer.Argument(..., help="Track id, path of an indexed file, or any audio file."),
            library: Path = LibraryOpt, k: int = typer.Option(10, "-k", help="Number of results."),
            as_json: bool = JsonOpt, device: str = DeviceOpt,
            steer: str | None = typer.Option(None, "--but", help='Steer away from TRACK, e.g. "slower", '
                                             '"without vocals", "with piano", "in a minor key" (tempo relative '
                                             'to TRACK).')) -> None:
    """Find tracks that sound like TRACK (and, with --but, differ from it as asked)."""
    with _friendly_errors():
        hits = tunelens.similar(library, track, k, device=device, steer=steer)
    _print_hits(hits, as_json, f"like {track}")


@app.command(name="playlist-dir")
def playlist_dir(
    queries: list[str] = typer.Argument(..., help='One playlist per description, e.g. "slow piano" "Bach organ".'),
    library: Path = LibraryOpt,
    to: Path = typer.Option(..., "--to", help="Folder to write the .m3u8 files to, e.g. MUSIC/Playlists (the "
                            "folder Navidrome, Jellyfin, MPD or Plex scans)."),
    k: int = typer.Option(50, "-k", help="Tracks per playlist."),
) -> None:
    """Write one .m3u8 playlist per description into a folder, with paths relative to it, for players that
    import playlists from the music folder."""
    with _friendly_errors():
        written = tunelens.write_playlists(library, queries, to, k)
    for path in written:
        console.print(_t(f"wrote {path}", 2000), soft_wrap=True)


playlist_app = typer.Typer(help="Playlists: radio from seeds, a path between two tracks, a description ordered for "
                           "listening, the library in named groups. Each is saved in the library with its recipe "
                           "(`playlist refresh NAME` re-runs it) and can be written as .m3u8, .xspf, .csv or .json.",
                           no_args_is_help=True)
app.add_typer(playlist_app, name="playlist")
LengthOpt = typer.Option(None, "-n", help="Tracks (default 30).")
MinutesOpt = typer.Option(None, "--minutes", help="Length in minutes instead of -n.")
NameOpt = typer.Option(None, "--name", help="Name to save it under (default from its seeds or text).")
ToOpt = typer.Option(None, "--to", help="Also write it to this file: .m3u8, .xspf, .csv or .json.")
RootOpt = typer.Option(None, "--music-root", help="Write .m3u8/.xspf paths relative to this folder (the music "
                       "folder a server resolves playlists against); default: relative to the file's folder.")
SaveOpt = typer.Option(True, "--save/--no-save", help="Keep it in the library (for `playlist refresh`).")
ArtistOpt = typer.Option(0, "--max-per-artist", help="At most this many tracks by one artist (0: a fifth of the "
                         "playlist, at least 2; -1: no limit).")
AlbumOpt = typer.Option(0, "--max-per-album", help="At most this many from one album (0: automatic; -1: no limit).")
FlaggedOpt = typer.Option(False, "--allow-flagged", help="Let quality-flagged tracks in.")
DupOpt = typer.Option(False, "--allow-duplicates", help="Let several copies of one recording (and repeated titles) "
                      "in.")
KeyOpt = typer.Option(False, "--key-continuity", help="Each key the same as, a fifth from, or the relative of the "
                      "one before (for mixing).")
TempoOpt = typer.Option(None, "--tempo-continuity", help="Each tempo within this many percent of the one before "
                        "(half and double time allowed), e.g. 8.")


def _rules(max_per_artist: int, max_per_album: int, allow_flagged: bool, allow_duplicates: bool,
           key_continuity: bool, tempo_continuity: float | None):
    from tunelens.index.playlists import PlaylistRules

    return PlaylistRules(one_per_duplicate=not allow_duplicates, no_repeat_title=not allow_duplicates,
                         max_per_artist=None if max_per_artist < 0 else max_per_artist,
                         max_per_album=None if max_per_album < 0 else max_per_album, skip_flagged=not allow_flagged,
                         key_continuity=key_continuity,
                         tempo_continuity=tempo_continuity / 100 if tempo_continuity else None)


def _write_playlist(pl, to: Path, music_root: Path | None) -> None:
    from tunelens.index.core.atomic import atomic_write
    from tunelens.index.playlists import FORMATS, render

    suffix = to.suffix.lower().lstrip(".")
    fmt = {"m3u": "m3u8"}.get(suffix, suffix)  # .m3u files are written as UTF-8 M3U too
    if fmt not in FORMATS:
        raise ValueError(f"{to}: write playlists as {', '.join('.' + f for f in FORMATS)}")
    to.parent.mkdir(parents=True, exist_ok=True)
    text = render(pl, fmt, music_root if music_root is not None else to.parent)
    atomic_write(to, lambda p: p.write_text(text, encoding="utf-8"))
    console.print(_t(f"wrote {to}", 2000), soft_wrap=True)


def _show_playlist(pl, as_json: bool) -> None:
    if as_json:
        print(json.dumps(pl.to_dict(), indent=1, ensure_ascii=False))
        return
    for note in pl.notes:
        console.print(Text(clean(f"note: {note}", 2000), style="dim"), soft_wrap=True)
    table = Table(title=_t(f"{clean(pl.name, 120)} ({len(pl.tracks)} tracks, {pl.duration / 60:.0f} min)"))
    for col in ("#", "track", "length", "tempo", "key", "id"):
        table.add_column(col)
    for i, t in enumerate(pl.tracks, 1):
        name = f"{t.artist} – {t.title}" if t.title and t.artist else (t.title or t.rel_path)
        table.add_row(str(i), _t(name), clock(t.duration),
                      f"{t.tempo_bpm:.0f}" if t.tempo_bpm else "", t.key or "", t.track_id)
    console.print(table)


def _deliver(library: Path, pl, save: bool, to: Path | None, music_root: Path | None, as_json: bool) -> None:
    if save:
        path = tunelens.save_playlist(library, pl)
        if not as_json:
            console.print(Text(clean(f"saved as “{pl.name}” ({path.name}); `tunelens playlist refresh` re-runs it"),
                               style="dim"), soft_wrap=True)
    if to is not None:
        _write_playlist(pl, to, music_root)
    _show_playlist(pl, as_json)


@playlist_app.command("radio")
def playlist_radio(
    seeds: list[str] = typer.Argument(..., help="Track ids, paths of indexed files, or any audio files."),
    library: Path = LibraryOpt, text: str | None = typer.Option(None, "--text", help='Steer it: "calmer, no vocals".'),
    n: int | None = LengthOpt, minutes: float | None = MinutesOpt, name: str | None = NameOpt, to: Path | None = ToOpt,
    music_root: Path | None = RootOpt, save: bool = SaveOpt, max_per_artist: int = ArtistOpt,
    max_per_album: int = AlbumOpt, allow_flagged: bool = FlaggedOpt, allow_duplicates: bool = DupOpt,
    key_continuity: bool = KeyOpt, tempo_continuity: float | None = TempoOpt, as_json: bool = JsonOpt,
    device: str = DeviceOpt,
) -> None:
    """More like these: tracks like the seeds (never the seeds or their duplicates), optionally steered by text,
    in listening order."""
    with _friendly_errors():
        rules = _rules(max_per_artist, max_per_album, allow_flagged, allow_duplicates, key_continuity,
                       tempo_continuity)
        pl = tunelens.radio(library, seeds, text, n if n or minutes else 30, minutes, rules, name, device=device)
        _deliver(library, pl, save, to, music_root, as_json)


@playlist_app.command("path")
def playlist_path(
    start: str = typer.Argument(..., help="Track id or path to start from."),
    end: str = typer.Argument(..., help="Track id or path to arrive at."),
    library: Path = LibraryOpt, n: int = typer.Option(12, "-n", help="Tracks, both ends included."),
    name: str | None = NameOpt, to: Path | None = ToOpt, music_root: Path | None = RootOpt, save: bool = SaveOpt,
    max_per_artist: int = ArtistOpt, max_per_album: int = AlbumOpt, allow_flagged: bool = FlaggedOpt,
    allow_duplicates: bool = DupOpt, key_continuity: bool = KeyOpt, tempo_continuity: float | None = TempoOpt,
    as_json: bool = JsonOpt, device: str = DeviceOpt,
) -> None:
    """Take me from START to END: each step a little further along the way (in sound, and in tempo where
    measured), not a jump halfway."""
    with _friendly_errors():
        rules = _rules(max_per_artist, max_per_album, allow_flagged, allow_duplicates, key_continuity,
                       tempo_continuity)
        pl = tunelens.path_between(library, start, end, n, rules, name, device=device)
        _deliver(library, pl, save, to, music_root, as_json)


@playlist_app.command("query")
def playlist_query(
    text: str = typer.Argument(..., help='A description, read like a search: "rainy day jazz", "slow piano, no '
                               'vocals".'),
    library: Path = LibraryOpt, n: int | None = LengthOpt, minutes: float | None = MinutesOpt,
    name: str | None = NameOpt, to: Path | None = ToOpt, music_root: Path | None = RootOpt, save: bool = SaveOpt,
    max_per_artist: int = ArtistOpt, max_per_album: int = AlbumOpt, allow_flagged: bool = FlaggedOpt,
    allow_duplicates: bool = DupOpt, key_continuity: bool = KeyOpt, tempo_continuity: float | None = TempoOpt,
    as_json: bool = JsonOpt, device: str = DeviceOpt,
) -> None:
    """The tracks that best match a description, ordered for listening (small steps from one to the next), not
    by score."""
    with _friendly_errors():
        rules = _rules(max_per_artist, max_per_album, allow_flagged, allow_duplicates, key_continuity,
                       tempo_continuity)
        pl = tunelens.query_playlist(library, text, n if n or minutes else 30, minutes, rules, name, device=device)
        _deliver(library, pl, save, to, music_root, as_json)


@playlist_app.command("clusters")
def playlist_clusters(
    library: Path = LibraryOpt,
    k: str = typer.Option("auto", "-k", help="Number of groups, or auto (the best silhouette, 2 to 24)."),
    to: Path | None = typer.Option(None, "--to", help="Also write each group into this folder as .m3u8."),
    music_root: Path | None = RootOpt, save: bool = SaveOpt, as_json: bool = JsonOpt,
) -> None:
    """Sort the library into groups of tracks that sound alike, each named from its top tags and what its tracks
    measure ("choir, classical · slow, minor"), each a playlist."""
    with _friendly_errors():
        if k != "auto" and not k.isdigit():
            raise ValueError(f"-k takes a number of groups or auto, not {k!r}")
        groups = tunelens.group_playlists(library, k if k == "auto" else int(k))
        for g in groups:
            if save:
                tunelens.save_playlist(library, g)
            if to is not None:
                file_name = re.sub(r"[^\w\- ,]+", "", g.name.replace(" · ", " - ")).strip() or "group"
                _write_playlist(g, to / f"{file_name}.m3u8", music_root)
    if as_json:
        print(json.dumps([g.to_dict() for g in groups], indent=1, ensure_ascii=False))
        return
    table = Table(title=f"{len(groups)} groups")
    for col in ("group", "tracks", "minutes", "first tracks"):
        table.add_column(col)
    for g in groups:
        table.add_row(_t(g.name), str(len(g.tracks)), f"{g.duration / 60:.0f}",
                      _t("\n".join(clean(t.title or t.rel_path, 100, one_line=True) for t in g.tracks[:3])))
    console.print(table)


@playlist_app.command("refresh")
def playlist_refresh(
    name: str = typer.Argument(..., help="A saved playlist (see `tunelens playlist list`)."),
    library: Path = LibraryOpt, to: Path | None = ToOpt, music_root: Path | None = RootOpt, as_json: bool = JsonOpt,
    device: str = DeviceOpt,
) -> None:
    """Re-run a saved playlist's recipe on the library as it is now, keeping what still fits first."""
    with _friendly_errors():
        pl, change = tunelens.refresh_playlist(library, name, device=device)
        if to is not None:
            _write_playlist(pl, to, music_root)
    if not as_json:
        console.print(f"kept {len(change['kept'])}, added {len(change['added'])}, removed {len(change['removed'])}")
    _show_playlist(pl, as_json)


@playlist_app.command("list")
def playlist_list(library: Path = LibraryOpt, as_json: bool = JsonOpt) -> None:
    """The playlists saved in the library."""
    with _friendly_errors():
        pls = tunelens.list_playlists(library)
    if as_json:
        print(json.dumps([{"name": p.name, "kind": p.kind, "tracks": len(p.tracks), "minutes": round(p.duration / 60,
                          1), "recipe": p.recipe} for p in pls], indent=1, ensure_ascii=False))
        return
    table = Table(title=f"{len(pls)} playlists")
    for col in ("name", "kind", "tracks", "minutes", "recipe"):
        table.add_column(col)
    for p in pls:
        what = p.recipe.get("text") or " → ".join(filter(None, (p.recipe.get("start"), p.recipe.get("end")))) or \
            ", ".join(p.recipe.get("seeds") or []) or p.recipe.get("label", "")
        table.add_row(_t(p.name), p.kind, str(len(p.tracks)), f"{p.duration / 60:.0f}", _t(what))
    console.print(table)


@playlist_app.command("show")
def playlist_show(name: str = typer.Argument(..., help="A saved playlist."), library: Path = LibraryOpt,
                  to: Path | None = ToOpt, music_root: Path | None = RootOpt, as_json: bool = JsonOpt) -> None:
    """Print a saved playlist (and with --to, write it as .m3u8, .xspf, .csv or .json)."""
    with _friendly_errors():
        pl = tunelens.load_playlist(library, name)
        if to is not None:
            _write_playlist(pl, to, music_root)
    _show_playlist(pl, as_json)


@playlist_app.command("delete")
def playlist_delete(name: str = typer.Argument(..., help="A saved playlist."), library: Path = LibraryOpt) -> None:
    """Remove a saved playlist from the library."""
    from tunelens.index.playlists import delete_playlist

    with _friendly_errors():
        delete_playlist(library, name)
    console.print(_t(f"deleted “{name}”"))


@app.command()
def info(library: Path = LibraryOpt, as_json: bool = JsonOpt) -> None:
    """Counts, model, pipeline version and failed files of a library."""
    from tunelens.index.vectors import info_summary

    with _friendly_errors():
        summary = tunelens.Library.open(library).summary()
    if as_json:
        print(json.dumps(summary, indent=1))
        return
    p, idx = summary["pipeline"], summary["index"]
    _table(f"tunelens library {library}", [
        ("tracks", summary["tracks"]), ("hours of audio", summary["hours"]), ("windows", summary["windows"]),
        ("failed files", summary["failed"]),
        ("measured (tempo, key, loudness)", f"{summary['measured']} of {summary['tracks']}"
         + ("" if summary["measured"] == summary["tracks"] else " (run `tunelens index` to measure the rest)")),
        ("model", p["model"]), ("encoder version", p["encoder_version"]),
        ("pipeline", f"v{p['pipeline_version']}: {p['sample_rate']} Hz, {p['window_seconds']:g} s windows, "
                     f"{p['short_padding']}-padded, {p['pooling']}, dim {p['dim']}"),
        ("track index", info_summary(idx.get("tracks") or {})),
        ("window index", info_summary(idx.get("windows") or {})),
    ])
    for e in summary["errors"]:
        console.print(_t(f"  failed {e['path']}: {e['error']}", 2000), soft_wrap=True)
    for d in summary["damaged"]:
        err.print(Text("damaged: ", style="bold red") + _t(d["problem"], 2000), soft_wrap=True)
    if summary["damaged"]:
        raise typer.Exit(1)


@app.command()
def repair(
    library: Path = LibraryOpt,
    model: str | None = typer.Option(None, "--model", "-m", help="The model that made the library; needed only when "
                                     "manifest.json is lost (default: the default model). One kept track is embedded "
                                     "again to check it."),
    music: Path | None = typer.Option(None, "--music", help="The music folder; needed only when catalog.parquet is "
                                      "lost (it is indexed again)."),
    processes: int | None = typer.Option(None, help="Worker processes for tracks embedded again (default: one per "
                                         "core)."),
) -> None:
    """Repair a library whose files are damaged (truncated, zeroed, deleted): rebuild the FAISS indexes from the
    vectors and the windows table from the catalog, keep every readable vector and embed again only the tracks
    whose vectors are lost, keeping captions, tags and quality columns. Damaged caption or measurement batches are
    set aside (`.damaged`) for `tunelens caption` / `tunelens index` to redo; damaged caches are removed. One
    journaled commit: a killed repair can be run again."""
    from tunelens.index.core.repair import repair_library

    with _friendly_errors(), _bars() as progress:
        report = repair_library(library, model, music, processes,
                                progress=lambda d, t: progress("embedding lost tracks again", d, t))
    if report.healthy:
        console.print(_t(f"{library}: every file reads; nothing to repair."))
        return
    for name, why in report.damaged:
        console.print(_t(f"damaged {name}: {why}", 400), soft_wrap=True)
    for action in report.actions:
        console.print(_t(f"  {action}", 2000), soft_wrap=True)
    for rel, why in report.dropped:
        console.print(_t(f"  dropped {rel}: {why}", 2000), soft_wrap=True)
    console.print(_t(f"repaired {library} in {report.seconds:.1f} s"))


models_app = typer.Typer(help="The encoders and captioners tunelens can run: weights here, licence, where to get "
                         "missing ones, commercial use; `models verify SPEC` checks one.", invoke_without_command=True,
                         no_args_is_help=False)
app.add_typer(models_app, name="models")


@models_app.callback()
def models(ctx: typer.Context, as_json: bool = JsonOpt) -> None:
    """List every encoder (--model of index, search...) and captioner (--model of caption, ask): what it is, which
    weights this machine holds and their size, the licence, whether it may be used commercially, and where to get
    what is missing."""
    if ctx.invoked_subcommand is not None:
        return
    from tunelens.caption.catalog import all_models

    rows = all_models()
    if as_json:
        print(json.dumps([m.to_dict() for m in rows], indent=1))
        return
    for m in rows:  # a block per model: a table of long cells is unreadable in a terminal
        here = ", ".join(m.present) if m.present else ("none needed" if not m.weights else "missing")
        console.print(Text(m.spec, style="bold") + _t(f"  ({m.role}) {m.what}", 600), soft_wrap=True)
        console.print(_t(f"  weights here: {here}", 800), soft_wrap=True)
        console.print(_t(f"  licence: {m.licence}; commercial use: {m.commercial}", 400), soft_wrap=True)
        if m.get:
            console.print(_t(f"  to get it: {m.get}", 400), soft_wrap=True)


@models_app.command("verify")
def models_verify(spec: str = typer.Argument(..., help="A model spec: musicnn, clap:FOLDER, clap:HUB_ID, "
                                                   "clap:FILE.pt, or a bare CLAP folder or .pt file."),
                  device: str = DeviceOpt, as_json: bool = JsonOpt) -> None:
    """Load SPEC, embed 60 s of a test chord and two texts, and print the vector size, device, dtype, window and
    speed (x realtime): a checkpoint that loads but gives broken vectors or an empty tokenizer fails here."""
    from tunelens.embed.catalog import verify_encoder

    with _friendly_errors():
        v = verify_encoder(spec, device)
    if as_json:
        print(json.dumps(v.to_dict(), indent=1))
        return
    _table(f"tunelens models verify {spec}", [
        ("model", v.spec), ("vector size", v.dim), ("device", v.device), ("dtype", v.dtype),
        ("window", f"{v.window_seconds:g} s at {v.sample_rate} Hz"), ("speed", f"{v.x_realtime:g}x realtime"),
        ("text side", f"dim {v.text_dim}, {'ok' if v.text_ok else 'BROKEN: texts give equal or non-unit vectors'}"),
    ])
    if not v.text_ok:
        raise typer.Exit(1)


@app.command()
def tags(file: Path = typer.Argument(..., help="An audio file."),
         top: int = typer.Option(10, "--top", "-n", help="How many tags to show."),
         model: str | None = typer.Option("musicnn", "--model", "-m", help="A tagging encoder (musicnn)."),
         as_json: bool = JsonOpt) -> None:
    """Print the top music tags of FILE with their probabilities (MagnaTagATune + Million Song Dataset tags)."""
    from tunelens.embed.musicnn_encoder import tag_sources

    with _friendly_errors():
        encoder = tunelens.load_encoder(model)
        if not hasattr(encoder, "embed_audio_with_tags"):
            raise ValueError(f"the model {model!r} is not a tagger; use --model musicnn")
        emb = tunelens.embed_file(file, encoder)
    names, sources = encoder.tag_names, tag_sources()
    order = [int(i) for i in emb.tag_probs.argsort()[::-1][:top]]
    if as_json:
        print(json.dumps([{"tag": names[i], "probability": round(float(emb.tag_probs[i]), 4), "source": sources[i]}
                          for i in order], indent=1))
        return
    table = Table(title=f"{file.name}  ({emb.duration:.1f} s)")
    for col in ("tag", "probability", "", "tagger"):
        table.add_column(col)
    for i in order:
        p = float(emb.tag_probs[i])
        table.add_row(names[i], f"{p:.2f}", "█" * int(round(p * 20)), sources[i])
    console.print(table)


@app.command()
def dupes(
    library: Path = LibraryOpt,
    as_json: bool = typer.Option(False, "--json", help="Print clusters as JSON."),
    min_cosine: float = typer.Option(_DUPES.min_cosine, help="Candidate pairs: track vectors at least this similar."),
    max_trim: float = typer.Option(_DUPES.edits.max_trim_s, help="Edits: a copy may lack up to this many seconds "
                                   "(or 20%) at the start or end."),
    min_harmony: float = typer.Option(_DUPES.min_harmony, help="Confirmation: chroma fingerprint agreement."),
    min_spectral: float = typer.Option(_DUPES.min_spectral, help="Confirmation: log-mel fingerprint agreement."),
    max_dynamics: float = typer.Option(_DUPES.max_dynamics_db, help="Confirmation: how far (dB) the two level "
                                       "contours may part; the same score played with other dynamics parts by more."),
    refresh: bool = typer.Option(False, "--refresh", help="Search again even when saved clusters are current."),
) -> None:
    """Find the same recording stored more than once (exact, re-encoded, gain-changed, resampled, down-mixed,
    faded, or an edit with up to 30 s cut at the start or end), in clusters with a suggested keeper: lossless over
    lossy, the complete version over an edit, higher bitrate. Each copy says how it differs from the keeper
    ("edit: 12 s shorter at the start"). Clusters are saved and reused until the library changes (or other
    thresholds are given)."""
    from tunelens.embed.fingerprint import EditRules
    from tunelens.index.curation.dupes import cluster_records

    config = DupesConfig(min_cosine=min_cosine, min_harmony=min_harmony, min_spectral=min_spectral,
                         max_dynamics_db=max_dynamics, edits=EditRules(max_trim_s=max_trim))
    with _friendly_errors(), _bars() as progress:
        result = tunelens.duplicates(library, None if config == _DUPES and not refresh else config,
                                     progress=lambda d, t: progress("fingerprinting candidates", d, t))
    groups = cluster_records(result.clusters)
    if as_json:
        print(json.dumps(groups, indent=1))
        return
    spare = sum(not t["keeper"] for g in groups for t in g["tracks"])
    checked = ("saved; run with --refresh to search again" if result.candidates is None
               else f"{result.candidates} candidate pairs checked")
    console.print(Text(f"{len(groups)} duplicate clusters, {spare} spare copies ({checked})."), soft_wrap=True)
    for g in groups:
        console.print(f"cluster {g['cluster']}:", markup=False)
        for t in g["tracks"]:
            mark = "keep" if t["keeper"] else "    "
            how = "" if t["keeper"] else f"{t['relation']}; "
            console.print(_t(f"  {mark} {t['rel_path']}  ({how}{t['matched_by']}, match {t['match']:.3f}, "
                             f"{t['bitrate_kbps']:.0f} kbps)", 2000), soft_wrap=True)
    for rel, why in result.unreadable:
        err.print(_t(f"could not fingerprint {rel}: {why}", 2000), soft_wrap=True)


@app.command()
def quality(library: Path = LibraryOpt,
            as_json: bool = typer.Option(False, "--json", help="Print the flagged tracks as JSON.")) -> None:
    """List tracks with audio problems: digital silence, clipping, a lossy low-pass in a lossless file,
    too short or long, DC offset, mono stored as stereo."""
    from tunelens.index.core.tracks import track_table
    from tunelens.index.curation.quality import quality_report

    with _friendly_errors():
        report = quality_report(track_table(tunelens.Library.open(library)))
    if as_json:
        print(json.dumps(report, indent=1))
        return
    counts = ", ".join(f"{f} {n}" for f, n in report["counts"].items())
    console.print(f"{len(report['flagged'])} of {report['tracks']} tracks flagged ({counts}).", soft_wrap=True)
    if report["unmeasured"]:
        console.print(f"{report['unmeasured']} tracks were indexed before quality was measured; run "
                      f"`tunelens index` again to measure them.")
    for r in report["flagged"]:
        console.print(_t(f"  {r['file']}: {', '.join(r['flags'])}", 2000), soft_wrap=True)


@app.command()
def agreement(
    library: Path = LibraryOpt,
    device: str = DeviceOpt,
    lowest: int = typer.Option(10, "--lowest", help="Show this many captions that agree least with their audio."),
    as_json: bool = typer.Option(False, "--json", help="Print every track's score as JSON."),
) -> None:
    """Score how well each caption matches its audio under the library's encoder (cosine of the caption's text
    vector and the track's audio vector); low scores point at noisy captions."""
    from tunelens.index.core.tracks import track_table
    from tunelens.index.curation.agreement import agreement_scores

    with _friendly_errors(), _bars() as progress:
        lib = tunelens.Library.open(library)
        scores = agreement_scores(lib, lib.encoder(device), progress=lambda d, t: progress("scoring captions", d, t))
    if as_json:
        print(json.dumps(dict(scores.sort("track_id").iter_rows()), indent=1))
        return
    if not len(scores):
        console.print("No captioned tracks; run `tunelens caption` first.")
        return
    q = scores["agreement"].quantile
    console.print(
        f"{len(scores)} captions: agreement median {q(0.5):.3f}, 10th percentile {q(0.1):.3f}, 90th {q(0.9):.3f}.",
        soft_wrap=True,
    )
    worst = (
        scores.sort("agreement")
        .head(lowest)
        .join(track_table(lib).select("track_id", "rel_path", "caption"), on="track_id")
    )
    for r in worst.sort("agreement").iter_rows(named=True):
        console.print(_t(f"  {r['agreement']:.3f}  {r['rel_path']}: {r['caption']}", 2000), soft_wrap=True)


@app.command()
def export(
    library: Path = LibraryOpt,
    to: Path = typer.Option(..., "--to", help="Folder to write the dataset to (new, or an earlier export with "
                            "--overwrite)."),
    format: str = typer.Option("parquet", "--format", help="parquet (Hugging Face datasets layout), webdataset or "
                               "jsonl."),
    filter: str | None = typer.Option(None, "--filter", help="SQL condition over the export columns, e.g. "
                                      '"agreement > 0.2 AND duration BETWEEN 30 AND 600 AND tempo_bpm > 100".'),
    split: str = typer.Option("0.8,0.1,0.1", "--split", help="Shares of train,validation,test (1 to 3 parts)."),
    audio: str = typer.Option("bytes", "--audio", help="parquet only: embed the audio file's bytes, or its path."),
    uncaptioned: bool = typer.Option(False, "--uncaptioned", help="Also export tracks without a caption."),
    keep_flagged: bool = typer.Option(False, "--keep-flagged", help="Also export tracks with quality flags."),
    keep_duplicates: bool = typer.Option(False, "--keep-duplicates", help="Export every copy, not one keeper per "
                                         "cluster (a cluster still stays in one split)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the split draw."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier export in --to."),
) -> None:
    """Export a clean captioned dataset: captions, tags, descriptors and audio, split without leakage
    (duplicates and artists never span two splits)."""
    from tunelens.index.curation.export import parse_split

    with _friendly_errors(), _bars() as progress:
        config = tunelens.ExportConfig(format=format, split=parse_split(split), filter=filter, audio=audio,
                                       require_caption=not uncaptioned, keep_flagged=keep_flagged,
                                       keep_duplicates=keep_duplicates, seed=seed, overwrite=overwrite)
        report = tunelens.export_dataset(library, to, config, progress=progress)
    splits = ", ".join(f"{k} {v}" for k, v in report.splits.items())
    console.print(f"Exported {sum(report.splits.values())} tracks to {to} as {format} ({splits}; {report.groups} "
                  f"groups) in {report.seconds:.1f} s.", soft_wrap=True, markup=False)
    if report.dropped:
        dropped = ", ".join(f"{v} {k}" for k, v in report.dropped.items())
        console.print(f"Left out: {dropped}.", soft_wrap=True, markup=False)


CAPTIONER_HELP = ("Captioner: describe (the default, offline, from measurements and tags) or qwen2-audio:FOLDER|HUB_ID "
                  "(an audio language model; a GPU is advised).")


def _audio_lm_options(device: str):
    from tunelens.caption.audio_lm import AudioLMOptions

    return AudioLMOptions(device=device)


@app.command()
def caption(
    library: Path = LibraryOpt,
    model: str | None = typer.Option(None, "--model", "-m", help=CAPTIONER_HELP),
    device: str = typer.Option("auto", "--device", help="For an audio LM: auto, cpu, cuda or cuda:N."),
    workers: int = typer.Option(2, "--workers", help="Analysis processes."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Redo every caption of this captioner."),
    retry_errors: bool = typer.Option(False, "--retry-errors", help="Try tracks that failed before again."),
    batch_tracks: int = typer.Option(16, "--batch-tracks", help="Tracks per saved batch: at most this much work is "
                                     "lost if killed."),
) -> None:
    """Caption every track of LIBRARY: measured tempo, key, loudness, energy and predicted tags, in words.

    Resumable: a killed run keeps every finished batch; re-running captions only what is missing or changed."""
    config = tunelens.CaptionConfig(workers=workers, overwrite=overwrite, retry_errors=retry_errors,
                                    batch_tracks=batch_tracks)
    with _friendly_errors(), _bars() as progress:
        captioner = tunelens.load_captioner(model, _audio_lm_options(device))
        report = tunelens.caption_library(library, captioner, config,
                                          progress=lambda d, t, _s: progress("captioning", d, t))
    console.print(f"{report.tracks} tracks: {report.captioned} captioned now, {report.done_before} done before, "
                  f"{report.failed} failed.", soft_wrap=True)
    for error in report.errors[:20]:
        console.print(f"  failed: {error}", soft_wrap=True, markup=False)


@app.command()
def ask(
    track: str = typer.Argument(..., help="A track id, a path in the library, or any audio file."),
    question: str = typer.Argument(..., help='e.g. "what key is it in?" or "is there singing?"'),
    library: Path | None = typer.Option(None, "--library", "-l", help="Library holding the track."),
    model: str | None = typer.Option(None, "--model", "-m", help="Answer with an audio LM (qwen2-audio:FOLDER|HUB_ID) "
                                     "given the audio and the measurements; default: the offline rules."),
    device: str = typer.Option("auto", "--device", help="For an audio LM: auto, cpu, cuda or cuda:N."),
    as_json: bool = JsonOpt,
) -> None:
    """Answer a question about TRACK from its audio, with the evidence used and a confidence."""
    with _friendly_errors():
        a = tunelens.ask(track, question, library, model, _audio_lm_options(device))
    if as_json:
        print(json.dumps(a.to_dict(), indent=1, default=str))
        return
    console.print(_t(a.text, 2000), soft_wrap=True)
    if a.evidence:
        conf = f" · confidence {a.confidence:.1f}" if a.confidence is not None else ""
        console.print(Text(f"evidence: {'; '.join(a.evidence)}{conf}", style="dim"), soft_wrap=True)


@app.command(name="app")
def app_(
    library: Path = LibraryOpt,
    port: int = typer.Option(8501, "--port", help="Port to serve on."),
    address: str = typer.Option("127.0.0.1", "--address", help="Address to bind; 127.0.0.1 keeps it on this machine."),
) -> None:
    """Start the browser app on LIBRARY: search, listen, explore tracks, ask questions, see the collection."""
    with _friendly_errors():
        tunelens.Library.open(library)
    script = Path(__file__).with_name("streamlit_app.py")
    console.print(f"tunelens app on http://{address}:{port} (Ctrl+C to stop)")
    env = {**os.environ, "TUNELENS_LIBRARY": str(library.resolve())}
    cmd = [sys.executable, "-m", "streamlit", "run", str(script), "--server.address", address, "--server.port",
           str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false", "--client.toolbarMode",
           "viewer"]
    sys.stdout.flush()
    os.execve(sys.executable, cmd, env)  # become the server, so that stopping this process stops it


@app.command()
def serve(
    library: Path = LibraryOpt,
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind; any other than loopback needs a token."),
    port: int = typer.Option(8600, "--port", help="Port to serve on."),
    token_file: Path | None = typer.Option(None, "--token-file", help="A file (readable by its owner only) holding "
                                           "the bearer token clients must send."),
    cors: list[str] = typer.Option([], "--cors", help="A browser origin allowed to call the API (repeatable); "
                                   "none: CORS off."),
    device: str = DeviceOpt,
    workers: int = typer.Option(1, "--workers", help="Server processes, each with its own copy of the model "
                                "(about 0.7 GB each); one per core serves the most requests."),
    allow_writes: bool = typer.Option(False, "--allow-writes", help="Let clients save, refresh and delete "
                                      "playlists in the library (otherwise the server only reads it)."),
) -> None:
    """Serve LIBRARY over HTTP: search, similar (by id or uploaded clip), tracks, audio with Range, questions,
    library info, duplicates and playlists, under /v1 (OpenAPI docs at /docs). Read-only unless --allow-writes
    (saved playlists); the newest commit of `tunelens index` is served without a restart."""
    # Concurrent requests are the parallelism: each one's torch, BLAS and polars work runs on one thread, set before
    # those libraries load (inherited by --workers processes), so that requests do not oversubscribe the cores.
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "POLARS_MAX_THREADS"):
        os.environ.setdefault(name, "1")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from tunelens.app.server import ServeConfig, ServeError, read_token
    from tunelens.app.server import serve as run_server

    with _friendly_errors():
        try:
            token = read_token(token_file) if token_file else None
            config = ServeConfig(host=host, port=port, token=token, cors=tuple(cors), device=device, workers=workers,
                                 allow_writes=allow_writes)
            console.print(f"tunelens API on http://{host}:{port}/v1 (docs at /docs; Ctrl+C to stop)")
            run_server(library, config, token_file)
        except ServeError as e:
            raise ValueError(str(e)) from None


def main() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    app()


if __name__ == "__main__":
    sys.exit(main())
