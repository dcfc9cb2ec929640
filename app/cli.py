"""`tunelens`: index a music folder, search it by text, find similar tracks, inspect a library."""
from __future__ import annotations

import json
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

app = typer.Typer(
    help="tunelens: text-to-music search over your own music folders, fully offline.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
)
console = Console()
err = Console(stderr=True, soft_wrap=True)

LibraryOpt = typer.Option(..., "--library", "-l", help="Library folder (created by `tunelens index`).")
ModelOpt = typer.Option(None, "--model", "-m", help="Encoder spec, e.g. musicnn (default) or clap:/path/or/hub-id.")
DeviceOpt = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N.")


@contextmanager
def _friendly_errors() -> Iterator[None]:
    """Known failures become one sentence on stderr and exit code 2, not a traceback."""
    from embed.base import ModelUnavailableError
    from index.library import LibraryError

    try:
        yield
    except (LibraryError, ModelUnavailableError, FileNotFoundError, ValueError) as e:
        err.print(f"[bold red]error:[/] {e}")
        raise typer.Exit(2)
    except KeyboardInterrupt:
        err.print("[yellow]interrupted; finished batches are kept, run the same command again to resume[/]")
        raise typer.Exit(130)


def _encoder(model: str | None, device: str = "auto", batch_size: int = 16):
    from embed import EncoderOptions, load_encoder

    return load_encoder(model, EncoderOptions(device=device, batch_size=batch_size))


def _library_encoder(library: Path, device: str = "auto"):
    """The library and the encoder its manifest names."""
    from index import Library

    lib = Library.open(library)
    return lib, _encoder(lib.manifest.pipeline.model, device)


@app.command()
def index(
    music_dir: Path = typer.Argument(..., help="Folder of music, scanned recursively."),
    library: Path = LibraryOpt,
    model: Optional[str] = ModelOpt,
    device: str = DeviceOpt,
    workers: int = typer.Option(2, help="Decoding threads."),
    batch_windows: int = typer.Option(16, help="Windows per model call."),
    retry_errors: bool = typer.Option(False, help="Try files that failed before again, even if unchanged."),
    batch_files: int = typer.Option(32, help="Files per saved batch: at most this much work is lost if killed."),
) -> None:
    """Index MUSIC_DIR into a library; re-running adds new files, drops deleted ones, skips unchanged ones."""
    from index.indexer import IndexConfig, index_folder
    from index.library import Library

    with _friendly_errors():
        if model is None and (library / "manifest.json").exists():
            model = Library.open(library).manifest.pipeline.model
        encoder = _encoder(model, device, batch_windows)
        config = IndexConfig(
            workers=workers, batch_windows=batch_windows, retry_errors=retry_errors, batch_files=batch_files,
        )
        started = time.time()
        with Progress(
            TextColumn("[bold]indexing"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(), TimeRemainingColumn(), console=err, transient=False,
        ) as bar:
            task = bar.add_task("index", total=None, rate="")

            def progress(done: int, total: int, audio_s: float) -> None:
                el = max(time.time() - started, 1e-6)
                bar.update(task, completed=done, total=total, rate=f"{done / el:.1f} files/s  {audio_s / el:.0f}x realtime")

            report = index_folder(library, music_dir, encoder, config, progress=progress)
    table = Table(title=f"tunelens index → {library}", show_header=False)
    for k, v in [
        ("files found", report.found), ("indexed", report.indexed), ("resumed from an earlier run", report.resumed),
        ("unchanged (skipped)", report.skipped), ("removed (deleted files)", report.removed),
        ("failed", len(report.failed)), ("tracks in library", report.library_tracks),
        ("speed", f"{report.indexed / max(report.seconds, 1e-9):.1f} files/s, "
                  f"{report.audio_seconds / max(report.seconds, 1e-9):.1f}x realtime"),
    ]:
        table.add_row(k, str(v))
    console.print(table)
    for rel, reason in report.failed[:50]:
        console.print(f"  [red]failed[/] {rel}: {reason}")
    if len(report.failed) > 50:
        console.print(f"  … and {len(report.failed) - 50} more (see `tunelens info`)")
    if report.library_tracks == 0:
        err.print(f"[bold red]error:[/] no file in {music_dir} could be indexed")
        raise typer.Exit(1)


def _print_hits(hits, as_json: bool, title: str) -> None:
    if as_json:
        print(json.dumps([h.to_dict() for h in hits], indent=1))
        return
    if not hits:
        console.print("no results")
        return
    table = Table(title=title)
    for col in ("#", "score", "track", "best moment", "id"):
        table.add_column(col)
    for h in hits:
        name = f"{h.artist} – {h.title}" if h.title and h.artist else (h.title or h.rel_path)
        moment = f"{int(h.best_start_s // 60)}:{h.best_start_s % 60:04.1f}"
        table.add_row(str(h.rank), f"{h.score:.3f}", name, moment, h.track_id)
    console.print(table)


@app.command()
def search(
    query: str = typer.Argument(..., help='What you want to hear, e.g. "slow solo piano".'),
    library: Path = LibraryOpt,
    k: int = typer.Option(10, "-k", help="Number of results."),
    as_json: bool = typer.Option(False, "--json", help="Print results as JSON."),
    device: str = DeviceOpt,
) -> None:
    """Find tracks that match a text description."""
    from index.search import search_text

    with _friendly_errors():
        lib, encoder = _library_encoder(library, device)
        hits = search_text(lib, encoder, query, k)
    _print_hits(hits, as_json, f"“{query}”")


@app.command()
def similar(
    track: str = typer.Argument(..., help="Track id, path of an indexed file, or any audio file."),
    library: Path = LibraryOpt,
    k: int = typer.Option(10, "-k", help="Number of results."),
    as_json: bool = typer.Option(False, "--json", help="Print results as JSON."),
    device: str = DeviceOpt,
) -> None:
    """Find tracks that sound like TRACK."""
    from index import Library
    from index.search import find_track, similar as find_similar

    with _friendly_errors():
        lib = Library.open(library)
        encoder = None if find_track(lib, track) is not None else _encoder(lib.manifest.pipeline.model, device)
        hits = find_similar(lib, track, k, encoder)
    _print_hits(hits, as_json, f"like {track}")


@app.command()
def info(library: Path = LibraryOpt, as_json: bool = typer.Option(False, "--json")) -> None:
    """Counts, model, pipeline version and failed files of a library."""
    import polars as pl

    from index import Library

    with _friendly_errors():
        lib = Library.open(library)
    cat = lib.catalog
    ok = cat.filter(pl.col("status") == "ok")
    failed = cat.filter(pl.col("status") == "error").sort("rel_path")
    summary = {
        "library": str(library), "tracks": len(ok), "failed": len(failed),
        "hours": round(float(ok["duration"].sum() or 0) / 3600, 3),
        "windows": int(ok["window_count"].sum() or 0), "pipeline": lib.manifest.pipeline.to_dict(),
        "precision": lib.manifest.precision, "index": lib.manifest.index,
        "errors": [{"path": r, "error": e} for r, e in failed.select("rel_path", "error").iter_rows()],
    }
    if as_json:
        print(json.dumps(summary, indent=1))
        return
    table = Table(title=f"tunelens library {library}", show_header=False)
    p = lib.manifest.pipeline
    for k, v in [
        ("tracks", summary["tracks"]), ("hours of audio", summary["hours"]), ("windows", summary["windows"]),
        ("failed files", summary["failed"]), ("model", p.model), ("encoder version", p.encoder_version),
        ("pipeline", f"v{p.pipeline_version}: {p.sample_rate} Hz, {p.window_seconds:g} s windows, "
                     f"{p.short_padding}-padded, {p.pooling}, dim {p.dim}"),
        ("index", json.dumps(lib.manifest.index)),
    ]:
        table.add_row(k, str(v))
    console.print(table)
    for rel, e in failed.select("rel_path", "error").iter_rows():
        console.print(f"  [red]failed[/] {rel}: {e}")


@app.command()
def tags(
    file: Path = typer.Argument(..., help="An audio file."),
    top: int = typer.Option(10, "--top", "-n", help="How many tags to show."),
    model: Optional[str] = typer.Option("musicnn", "--model", "-m", help="A tagging encoder (musicnn)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Print the top music tags of FILE with their probabilities (MagnaTagATune + Million Song Dataset tags)."""
    from embed.pipeline import embed_stream

    with _friendly_errors():
        encoder = _encoder(model)
        if not hasattr(encoder, "embed_audio_with_tags"):
            raise ValueError(f"the model {model!r} is not a tagger; use --model musicnn")
        (_, emb, _, reason), = list(embed_stream([file], encoder, workers=1))
        if emb is None:
            raise ValueError(f"cannot read {file}: {reason}")
    from embed.musicnn_encoder import tag_sources

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


CAPTIONER_HELP = ("Captioner: describe (the default, offline, from measurements and tags) or qwen2-audio:FOLDER|HUB_ID "
                  "(an audio language model; a GPU is advised).")


def _audio_lm_options(device: str):
    from caption.audio_lm import AudioLMOptions

    return AudioLMOptions(device=device)


@app.command()
def caption(
    library: Path = LibraryOpt,
    model: Optional[str] = typer.Option(None, "--model", "-m", help=CAPTIONER_HELP),
    device: str = typer.Option("auto", "--device", help="For an audio LM: auto, cpu, cuda or cuda:N."),
    workers: int = typer.Option(2, "--workers", help="Analysis processes."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Redo every caption of this captioner."),
    retry_errors: bool = typer.Option(False, "--retry-errors", help="Try tracks that failed before again."),
    batch_tracks: int = typer.Option(16, "--batch-tracks", help="Tracks per saved batch: at most this much work is lost if killed."),
) -> None:
    """Caption every track of LIBRARY: measured tempo, key, loudness, energy and predicted tags, in words.

    Resumable: a killed run keeps every finished batch; re-running captions only what is missing or changed."""
    from caption.batch import CaptionConfig, caption_library, load_captioner
    from index import Library
    from index.captions import CaptionStore

    with _friendly_errors():
        lib = Library.open(library)
        captioner = load_captioner(model, _audio_lm_options(device))
        with Progress(TextColumn("captioning"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      TimeRemainingColumn(), console=console) as bar:
            task = bar.add_task("caption", total=None)
            report = caption_library(lib, captioner, CaptionConfig(workers=workers, overwrite=overwrite, retry_errors=retry_errors, batch_tracks=batch_tracks),
                                     progress=lambda done, total, _s: bar.update(task, completed=done, total=total))
        caps = CaptionStore(lib.root).read(captioner.name)
        failed = caps.filter(caps["status"] == "error")
    console.print(f"{report.tracks} tracks: {report.captioned} captioned now, {report.done_before} done before, "
                  f"{report.failed} failed.", soft_wrap=True)
    for row in failed.head(20).iter_rows(named=True):
        console.print(f"  failed: {row['error']}", soft_wrap=True, markup=False)


@app.command()
def ask(
    track: str = typer.Argument(..., help="A track id, a path in the library, or any audio file."),
    question: str = typer.Argument(..., help='e.g. "what key is it in?" or "is there singing?"'),
    library: Optional[Path] = typer.Option(None, "--library", "-l", help="Library holding the track."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Answer with an audio LM (qwen2-audio:FOLDER|HUB_ID) "
                                        "given the audio and the measurements; default: the offline rules."),
    device: str = typer.Option("auto", "--device", help="For an audio LM: auto, cpu, cuda or cuda:N."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Answer a question about TRACK from its audio, with the evidence used and a confidence."""
    from caption.qa import answer, evidence_for, locate
    from index import Library

    with _friendly_errors():
        lib = Library.open(library) if library else None
        ev = evidence_for(track, lib)
        if model and model != "describe":
            from caption.batch import load_captioner

            a = load_captioner(model, _audio_lm_options(device)).answer(question, ev, locate(track, lib)[0])
        else:
            a = answer(question, ev)
    if as_json:
        print(json.dumps({"answer": a.text, "kind": a.kind, "value": a.value, "confidence": a.confidence,
                          "evidence": a.evidence}, indent=1, default=str))
        return
    console.print(a.text, soft_wrap=True, markup=False)
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
    import subprocess

    from index import Library

    with _friendly_errors():
        Library.open(library)
    script = Path(__file__).with_name("streamlit_app.py")
    console.print(f"tunelens app on http://{address}:{port} (Ctrl+C to stop)")
    env = {**os.environ, "TUNELENS_LIBRARY": str(library.resolve())}
    cmd = [sys.executable, "-m", "streamlit", "run", str(script), "--server.address", address, "--server.port", str(port),
           "--server.headless", "true", "--browser.gatherUsageStats", "false", "--client.toolbarMode", "viewer"]
    try:
        raise typer.Exit(subprocess.call(cmd, env=env))
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


def main() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    app()


if __name__ == "__main__":
    sys.exit(main())
