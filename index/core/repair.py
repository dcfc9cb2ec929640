"""`tunelens repair`: bring a library with damaged files (truncated, zeroed, deleted) back to a usable state,
rebuilding what can be derived and embedding again only what is lost.

What each file is rebuilt from:

- `tracks.faiss`, `windows.faiss`: the vectors (always rebuilt by a repair's commit).
- `windows.parquet`: the catalog (each track's window count and duration fix its windows' times).
- `tracks.npy`, `windows.npy`: every complete, finite, unit-length row is kept; the tracks whose rows are lost
  are decoded and embedded again (the pipeline is deterministic, so they get the vectors they had).
- `manifest.json`: the model named with `--model` (the default model unless given); one kept track is embedded
  again and must match its stored vector, so a wrong model is refused rather than mixed in.
- `catalog.parquet`: cannot be derived from the vectors; with `--music` the folder is indexed again into the
  library (captions and measurements are kept: they are keyed by track id and content).
- `captions.parquet`, `measures.parquet` and their batches: what reads is kept; a damaged file is set aside
  as `NAME.damaged` (the next `tunelens caption` / `tunelens index` redoes the tracks it held).
- `duplicates.parquet`, `agreement.parquet`: derived caches, removed (found again when asked for).
- `playlists/*.json`: set aside as `.damaged` (a recipe cannot be derived).

The rewrite is one journaled commit (`Library.commit`), so a repair killed at any moment leaves either the
damaged library or the repaired one, and running it again finishes the job.
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from tunelens.embed.base import AudioTextEncoder, EncoderOptions, PipelineSpec
from tunelens.index.core.atomic import atomic_write_json
from tunelens.index.core.library import CORE_FILES, Library, LibraryError, StagedBatch, WriterLock, first_line
from tunelens.index.core.manifest import Manifest
from tunelens.index.core.schema import VECTOR_COLUMNS, WINDOW_SCHEMA

ProgressFn = Callable[[int, int], None]


@dataclass
class RepairReport:
    damaged: list[tuple[str, str]] = field(default_factory=list)  # (file, why) found before repairing
    actions: list[str] = field(default_factory=list)  # what was done, a sentence each
    reembedded: int = 0  # tracks embedded again because their vectors were lost
    dropped: list[tuple[str, str]] = field(default_factory=list)  # (rel_path, why) left for `tunelens index`
    seconds: float = 0.0

    @property
    def healthy(self) -> bool:
        return not self.damaged


def salvage_vectors(path: Path, rows: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """([rows, dim] float32, lost[rows]): the rows of a `.npy` vector file that are complete, finite and of unit
    length (every stored vector is L2-normalised), read straight from the bytes so that a truncated file still
    gives back the rows before the cut. Rows past the end, zeroed or garbled are lost."""
    out = np.zeros((rows, dim), np.float32)
    lost = np.ones(rows, bool)
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else (
                np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = read_header(f)
            offset = f.tell()
        size = path.stat().st_size
    except (OSError, ValueError, EOFError):
        return out, lost
    if fortran or np.dtype(dtype) != np.float32 or len(shape) != 2 or shape[1] != dim:
        return out, lost
    n = int(min(rows, shape[0], max(0, size - offset) // (dim * 4)))
    if n:
        data = np.fromfile(path, dtype=np.float32, count=n * dim, offset=offset).reshape(n, dim)
        with np.errstate(all="ignore"):
            norms = np.linalg.norm(data, axis=1)
        good = np.isfinite(norms) & (np.abs(norms - 1.0) < 1e-3)
        out[:n][good] = data[good]
        lost[:n] = ~good
    return out, lost


def window_table(ok: pl.DataFrame, pipeline: PipelineSpec) -> pl.DataFrame:
    """The windows table a commit writes, derived from the catalog's ok rows (in vector order): each track's
    windows follow the versioned windowing rule over its decoded length."""
    from tunelens.embed.windows import window_samples, window_starts, window_times

    sr, window_s = pipeline.sample_rate, pipeline.window_seconds
    window = window_samples(window_s, sr)
    ids, nums, starts, ends = [], [], [], []
    for tid, duration, count in ok.select("track_id", "duration", "window_count").iter_rows():
        first = window_starts(int(round(float(duration) * sr)), window)[:count]
        if len(first) != count:
            raise ValueError(f"track {tid}: {count} windows in the catalog, {len(first)} by the windowing rule")
        s, e = window_times(first, sr, window_s, float(duration))
        ids.extend([tid] * count)
        nums.extend(range(count))
        starts.append(s)
        ends.append(e)
    return pl.DataFrame(
        {"track_id": ids, "window": nums, "start_s": np.concatenate(starts) if starts else [],
         "end_s": np.concatenate(ends) if ends else []},
        schema=WINDOW_SCHEMA,
    )


def _set_aside(path: Path) -> Path:
    target = path.with_name(path.name + ".damaged")
    os.replace(path, target)
    return target


def _row_path(row: dict) -> Path:
    return Path(row["path"])


def _embed_again(lib: Library, rows: pl.DataFrame, encoder: AudioTextEncoder, processes: int | None,
                 progress: ProgressFn | None) -> tuple[StagedBatch, list[tuple[str, str]]]:
    """Embed the catalog `rows` again from their files, on the engine `tunelens index` would use; rows whose file
    changed or cannot be read are left out (returned with the reason)."""
    from tunelens.index.core.indexer import IndexConfig, embed_items

    usable, dropped = [], []
    for r in rows.iter_rows(named=True):
        try:
            st = os.stat(r["path"])
        except OSError:
            dropped.append((r["rel_path"], "the file is gone"))
            continue
        if (st.st_size, st.st_mtime_ns) != (r["size"], r["mtime_ns"]):
            dropped.append((r["rel_path"], "the file changed since it was indexed"))
            continue
        usable.append(r)
    kept, embeddings = [], []
    results = embed_items(usable, encoder, IndexConfig(processes=processes), path_of=_row_path, prepare_extra=None,
                          measure_quality=False) if usable else []
    for n, res in enumerate(results, 1):
        if res.embedding is None:
            dropped.append((res.item["rel_path"], res.error or "could not be embedded"))
        else:
            kept.append({k: v for k, v in res.item.items() if k not in VECTOR_COLUMNS})
            embeddings.append(res.embedding)
        if progress:
            progress(n, len(usable))
    return StagedBatch.of(kept, embeddings, lib.dim), dropped


def _check_model(lib: Library, tracks: np.ndarray, lost: np.ndarray, encoder: AudioTextEncoder) -> None:
    """Embed one kept track again and compare: a rebuilt manifest must name the model that made the vectors."""
    from tunelens.embed.pipeline import embed_file

    ok = lib.ok_tracks()
    for i in np.flatnonzero(~lost)[:3]:
        try:
            again = embed_file(ok["path"][int(i)], encoder).track_vector
        except Exception:  # noqa: BLE001 - unreadable now: try the next one
            continue
        cos = float(np.dot(again, tracks[i]))
        if cos < 0.999:
            raise LibraryError(
                f"the vectors in {lib.root} were not made by {encoder.name!r} (a track embedded again matches its "
                f"stored vector at cosine {cos:.3f}); run `tunelens repair --model MODEL` with the model that made "
                "them")
        return


def repair_library(library: str | Path, model: AudioTextEncoder | str | None = None, music: str | Path | None = None,
                   processes: int | None = None, progress: ProgressFn | None = None) -> RepairReport:
    """Repair the library at `library`, as `tunelens repair` does; see the module docstring for what is
    rebuilt from what. `model`: the model that made the library, needed only when manifest.json is lost (the
    default model when not given). `music`: the music folder, needed only when catalog.parquet is lost."""
    from tunelens.embed.registry import load_encoder

    t0 = time.time()
    root = Path(library)
    report = RepairReport()
    if not root.is_dir():
        raise LibraryError(f"{root} is not a folder")
    with WriterLock(root / ".lock") as lock:
        encoder = model if model is not None and not isinstance(model, str) else None
        manifest_rebuilt = False
        # 1. the manifest: without it nothing can be read. A rebuilt one is written by the commit below, after a
        # kept vector has been checked against its model.
        try:
            lib = Library.open(root)
        except LibraryError as e:
            if not str(e).startswith("manifest.json in"):  # not a library, or a newer format: not damage
                raise
            report.damaged.append(("manifest.json", str(e)))
            encoder = encoder or load_encoder(model, EncoderOptions(device="cpu"))
            lib = Library(root, Manifest(PipelineSpec.for_encoder(encoder)))
            manifest_rebuilt = True
            report.actions.append(f"rebuilt manifest.json for model {encoder.name!r}")
        encoder = encoder or lib.encoder("cpu")

        # 2. the catalog: derived from nothing else; the music folder is indexed again
        try:
            _ = lib.catalog
        except LibraryError as e:
            report.damaged.append(("catalog.parquet", str(e)))
            if music is None:
                raise LibraryError(
                    f"catalog.parquet in {root} is lost and cannot be derived from the vectors; run `tunelens "
                    f"repair --library {root} --music FOLDER` with the music folder, which is indexed again (captions "
                    "and measurements are kept)") from None
            for name in CORE_FILES:
                if (root / name).exists():
                    _set_aside(root / name)
            # the indexes went aside with the vectors: the manifest keeps only what was asked for
            lib.manifest.index = {k: v for k, v in lib.manifest.index.items() if k == "request"}
            atomic_write_json(root / "manifest.json", lib.manifest.to_dict())
            report.actions.append("set the catalog, vectors and indexes aside (*.damaged)")
        if not (root / "catalog.parquet").exists() and music is not None:
            from tunelens.index.core.indexer import IndexConfig, index_folder

            lock.__exit__(None, None, None)  # the indexer takes the lock itself
            try:
                rep = index_folder(root, music, encoder, IndexConfig(processes=processes))
            finally:
                lock.__enter__()
            report.reembedded += rep.indexed
            report.actions.append(f"indexed {music} again: {rep.indexed} tracks embedded, {len(rep.failed)} failed")
            lib = Library.open(root)

        # 3. vectors, windows table, FAISS indexes
        problems = dict(lib.health()) if (root / "catalog.parquet").exists() else {}
        core_damage = {n: why for n, why in problems.items() if n in CORE_FILES}
        if manifest_rebuilt or core_damage:
            report.damaged.extend((n, why) for n, why in core_damage.items())
            ok = lib.ok_tracks()
            n_windows = int(ok["window_count"].sum() or 0)
            tracks, lost_t = salvage_vectors(root / "tracks.npy", len(ok), lib.dim)
            windows, lost_w = salvage_vectors(root / "windows.npy", n_windows, lib.dim)
            lost = lost_t.copy()
            offsets, counts = ok["window_offset"].to_numpy(), ok["window_count"].to_numpy()
            for i, (off, cnt) in enumerate(zip(offsets, counts)):
                if lost_w[off : off + cnt].any():
                    lost[i] = True
            if manifest_rebuilt and (~lost).any():
                _check_model(lib, tracks, lost, encoder)
            try:
                wtab = window_table(ok, lib.manifest.pipeline)
            except ValueError as e:
                raise LibraryError(f"the windows of {root} cannot be derived from its catalog ({e})") from None
            redo = ok.filter(pl.Series(lost))
            dropped_paths: set[str] = set()
            batch_files = []
            if len(redo):
                batch, dropped = _embed_again(lib, redo, encoder, processes, progress)
                report.reembedded += len(batch.rows)
                report.dropped = dropped
                keep_rel = {rel for rel, _ in dropped}
                dropped_paths = set(redo.filter(pl.col("rel_path").is_in(list(keep_rel)))["path"].to_list())
                if batch.rows:
                    batch_files.append(lib.stage(batch))
                report.actions.append(
                    f"embedded {len(batch.rows)} tracks again whose vectors were lost"
                    + (f"; {len(dropped)} could not be and were dropped (`tunelens index` adds them back)"
                       if dropped else ""))
            kept = int((~lost).sum())
            if kept:
                report.actions.append(f"kept the vectors of {kept} tracks")
            # the commit reads the old vectors and windows through these caches: give it the salvaged ones
            lib.use_salvaged(tracks, windows, wtab)
            lib.commit(dropped_paths, batch_files)
            report.actions.append("rebuilt the windows table and both FAISS indexes, in one commit")

        # 4. caption and measure batches, caches, playlists, staging
        from tunelens.index.core.captions import CaptionStore, MeasureStore

        for store in (CaptionStore(root), MeasureStore(root)):
            for path in store.files():
                try:
                    pl.read_parquet(path).select(list(store.schema))
                except Exception as e:  # noqa: BLE001
                    report.damaged.append((str(path.relative_to(root)), first_line(e)))
                    _set_aside(path)
                    redo_with = "tunelens caption" if store.main.stem == "captions" else "tunelens index"
                    report.actions.append(f"set {path.relative_to(root)} aside as .damaged (`{redo_with}` redoes "
                                          "the tracks it held)")
        for name in ("duplicates.parquet", "agreement.parquet"):
            path = root / name
            if path.exists():
                try:
                    pl.read_parquet(path)
                except Exception as e:  # noqa: BLE001
                    report.damaged.append((name, first_line(e)))
                    path.unlink()
                    report.actions.append(f"removed {name} (derived; computed again when asked for)")
        for path in sorted((root / "playlists").glob("*.json")) if (root / "playlists").exists() else []:
            try:
                json.loads(path.read_text())
            except (ValueError, UnicodeDecodeError) as e:
                report.damaged.append((f"playlists/{path.name}", first_line(e)))
                _set_aside(path)
                report.actions.append(f"set playlists/{path.name} aside as .damaged")
        for path in lib.staged_batches():
            try:
                StagedBatch.load(path)
            except Exception as e:  # noqa: BLE001
                report.damaged.append((f"staging/{path.name}", first_line(e)))
                path.unlink()
                report.actions.append(f"removed staging/{path.name} (its files are embedded by the next index)")
    report.seconds = time.time() - t0
    return report

