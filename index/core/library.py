"""A library folder of plain files (clip-retrieval's npy + parquet + index layout):

    manifest.json     model and pipeline that made the vectors (a mismatch is an error)
    catalog.parquet   one row per file: path, hash, duration, file tags, status, error, vector rows
    tracks.npy        [tracks, dim] L2-normalised track vectors; row = catalog.vec_row
    windows.npy       [windows, dim] L2-normalised 10 s window vectors ("find the moment")
    windows.parquet   track_id, window, start_s, end_s for each row of windows.npy
    tracks.faiss      FAISS index over tracks.npy (flat, IVF, IVF-PQ or HNSW: see manifest.json "index")
    windows.faiss     FAISS index over windows.npy, chosen the same way
    staging/          finished batches of a run not yet committed (a killed run resumes from them)

A commit writes every new file as `NAME.ID.tmp` (ID: this commit's own), then a `COMMIT.json` journal naming the
renames, then renames. Opening a library rolls an interrupted commit forward, then opens every core file at once
and checks that no commit renamed anything meanwhile (else it opens them again), and reads through those open
files: a reader never sees files from two different commits, however long it keeps the library open. Only the
writer (the lock holder) removes the journal, and a commit's temp names are its own, so a reader rolling an old
journal forward can never move a newer commit's half-written file into place.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import polars as pl

from tunelens.embed.base import AudioTextEncoder, EncoderOptions, PipelineSpec
from tunelens.index.core.atomic import (
    FULL,
    DiskFullError,
    atomic_write_json,
    file_stamp,
    is_disk_full,
    tmp_path,
    write_tmp,
)
from tunelens.index.core.errors import LibraryError, damage_sentence, first_line
from tunelens.index.core.manifest import FORMAT_VERSION, Manifest
from tunelens.index.core.scan import track_id_for
from tunelens.index.core.schema import CATALOG_SCHEMA, VECTOR_COLUMNS, WINDOW_SCHEMA
from tunelens.index.vectors.choice import IndexChoice, build
from tunelens.index.vectors.vector_index import VectorIndex, gpu_count

T = TypeVar("T")

TABLES = ("catalog.parquet", "tracks.npy", "windows.npy", "windows.parquet")  # nothing can be read without them
CORE_FILES = (*TABLES, "tracks.faiss", "windows.faiss")  # what one commit writes, beside manifest.json


def _manifest_sentence(root: Path, state: str) -> str:
    return (f"manifest.json in {root} is {state}, so this library cannot be used. Run `tunelens repair --library "
            f"{root} --model MODEL` with the model that made it (the vectors are checked against it)")


@dataclass
class StagedBatch:
    """Finished work of one batch: catalog rows (errors included) and vectors of the rows that succeeded."""

    rows: list[dict]
    track_vecs: np.ndarray  # [ok rows, dim], in the order of ok rows
    window_vecs: np.ndarray  # [windows of ok rows, dim]
    window_counts: np.ndarray  # [ok rows]
    window_starts: np.ndarray  # [windows] seconds
    window_ends: np.ndarray  # [windows] seconds

    def save(self, path: Path) -> None:
        def write(p: Path) -> None:
            with open(p, "wb") as f:
                np.savez(
                    f, rows=np.array([json.dumps(self.rows)]), track_vecs=self.track_vecs, window_vecs=self.window_vecs,
                    window_counts=self.window_counts, window_starts=self.window_starts, window_ends=self.window_ends,
                )
        os.replace(write_tmp(path, write), path)

    @classmethod
    def of(cls, rows: list[dict], embeddings: list, dim: int) -> StagedBatch:
        """The batch of catalog `rows` with the `TrackEmbedding`s of the rows that succeeded, in order."""
        return cls(
            rows,
            np.stack([e.track_vector for e in embeddings]) if embeddings else np.zeros((0, dim), np.float32),
            np.concatenate([e.window_vectors for e in embeddings]) if embeddings else np.zeros((0, dim), np.float32),
            np.array([len(e.window_vectors) for e in embeddings], np.int64),
            np.concatenate([e.window_starts for e in embeddings]) if embeddings else np.zeros(0),
            np.concatenate([e.window_ends for e in embeddings]) if embeddings else np.zeros(0),
        )

    @classmethod
    def load(cls, path: Path) -> StagedBatch:
        with _NPY_HEADER_LOCK, np.load(path) as z:
            return cls(json.loads(str(z["rows"][0])), z["track_vecs"], z["window_vecs"], z["window_counts"],
                       z["window_starts"], z["window_ends"])


class Library:
    """Read and update one library folder. Use `Library.open` or `Library.create_or_open`."""

    def __init__(self, root: Path, manifest: Manifest):
        self.root = root
        self.manifest = manifest
        self._catalog: pl.DataFrame | None = None
        self._index: VectorIndex | None = None
        self._window_index: VectorIndex | None = None
        self._windows_table: pl.DataFrame | None = None
        self._vector_maps: dict[str, np.ndarray] = {}
        self._encoders: dict[str, AudioTextEncoder] = {}
        self._derived: dict[str, tuple[tuple, object]] = {}
        self.index_problems: dict[str, str] = {}  # FAISS files that could not be read (searched exactly instead)
        self._files: dict[str, object] = {}  # core files held open since `open` (one consistent state)

    # -- opening -------------------------------------------------------------------------------------------
    @classmethod
    def open(cls, root: str | Path, pipeline: PipelineSpec | None = None) -> Library:
        root = Path(root)
        if not (root / "manifest.json").exists():
            if any((root / name).exists() for name in TABLES):
                raise LibraryError(_manifest_sentence(root, "missing"))
            raise LibraryError(f"{root} is not a tunelens library (no manifest.json); create one with `tunelens index`")
        files: dict[str, object] = {}
        for _ in range(200):
            _finish_commit(root)
            before = _stamp(root / "manifest.json")
            files = _open_core(root)
            if not _commit_pending(root) and _stamp(root / "manifest.json") == before:
                break
            for f in files.values():
                f.close()  # a commit renamed files meanwhile: open its state instead
            files = {}
            time.sleep(0.01)
        try:
            manifest = Manifest.load(root / "manifest.json")
        except (ValueError, KeyError, TypeError, AttributeError, OSError) as e:
            raise LibraryError(_manifest_sentence(root, f"damaged ({first_line(e)})")) from None
        if manifest.format_version > FORMAT_VERSION:
            raise LibraryError(f"{root} was written by a newer tunelens (library format {manifest.format_version}, "
                               f"this one reads up to {FORMAT_VERSION}); upgrade tunelens to use it")
        if manifest.format_version < FORMAT_VERSION:
            for f in files.values():
                f.close()
            files = {}
            manifest = _upgrade(root)
        lib = cls(root, manifest)
        lib._files = files
        if pipeline is not None:
            lib.check_pipeline(pipeline)
        return lib

    @classmethod
    def coerce(cls, library: str | Path | Library) -> Library:
        """`library` itself, or the library at that folder opened."""
        return library if isinstance(library, Library) else cls.open(library)

    @classmethod
    def create_or_open(cls, root: str | Path, pipeline: PipelineSpec, precision: str = "fp32") -> Library:
        root = Path(root)
        if (root / "manifest.json").exists():
            return cls.open(root, pipeline)
        if root.exists() and any(p for p in root.iterdir() if not p.name.startswith(".")):
            raise LibraryError(f"{root} exists and is not an empty folder or a tunelens library")
        root.mkdir(parents=True, exist_ok=True)
        manifest = Manifest(pipeline=pipeline, precision=precision)
        atomic_write_json(root / "manifest.json", manifest.to_dict())
        return cls(root, manifest)

    def check_pipeline(self, pipeline: PipelineSpec) -> None:
        diffs = self.manifest.pipeline.differences(pipeline)
        if diffs and self.manifest.pipeline.model == pipeline.model:
            raise LibraryError(
                f"{self.root} was built with another version of {pipeline.model!r} ({'; '.join(diffs)}), and its "
                f"vectors cannot be mixed with this version's. Index into a new library folder, or remove this one "
                f"to rebuild it"
            )
        if diffs:
            raise LibraryError(
                f"{self.root} was built with model {self.manifest.pipeline.model!r}, and vectors from "
                f"{pipeline.model!r} cannot be mixed with it ({'; '.join(diffs)}). Use --model "
                f"{self.manifest.pipeline.model} with this library, or index into a new library folder"
            )

    # -- reading -------------------------------------------------------------------------------------------
    def _at(self, name: str) -> Path:
        """Where to read a core file: the file held open since `open` (so every read sees one commit), else its
        path."""
        f = self._files.get(name)
        return Path(f"/proc/self/fd/{f.fileno()}") if f is not None and not f.closed else self.root / name

    def damaged(self, name: str, reason: object) -> LibraryError:
        """The error for a library file that cannot be read: which file, why, and what to do."""
        return LibraryError(damage_sentence(self.root, name, reason))

    @property
    def catalog(self) -> pl.DataFrame:
        if self._catalog is None:
            path = self._at("catalog.parquet")
            if not path.exists() and self._at("tracks.npy").exists():
                raise self.damaged("catalog.parquet", "missing, while tracks.npy holds vectors")
            if path.exists():
                try:
                    cat = pl.read_parquet(path)
                except Exception as e:  # noqa: BLE001 - any reader error means the same: the file is damaged
                    raise self.damaged("catalog.parquet", e) from None
                missing = [pl.lit(None, dtype).alias(c) for c, dtype in CATALOG_SCHEMA.items() if c not in cat.columns]
                self._catalog = cat.with_columns(missing).select(list(CATALOG_SCHEMA)) if missing else cat
            else:
                self._catalog = pl.DataFrame(schema=CATALOG_SCHEMA)
        return self._catalog

    def encoder(self, device: str = "auto") -> AudioTextEncoder:
        """The model that made this library's vectors (as its manifest names it), loaded once per device."""
        if device not in self._encoders:
            from tunelens.embed.registry import load_encoder

            self._encoders[device] = load_encoder(self.manifest.pipeline.model, EncoderOptions(device=device))
        return self._encoders[device]

    def use_encoder(self, encoder: AudioTextEncoder, device: str = "auto") -> None:
        """Serve `encoder` (already loaded, e.g. kept by a server across reopenings) as this library's model."""
        self._encoders[device] = encoder

    def derived(self, name: str, files: tuple[str, ...], build: Callable[[], T]) -> T:
        """A table derived from this library's files (the search's facet table, the playlists' track facts), kept
        on the library and built again only when one of `files` or the manifest changed since it was built."""
        stamp = (file_stamp(self.root, files), self.manifest.updated)
        cached = self._derived.get(name)
        if cached is None or cached[0] != stamp:
            cached = (stamp, build())
            self._derived[name] = cached
        return cached[1]  # type: ignore[return-value]

    def use_salvaged(self, tracks: np.ndarray, windows: np.ndarray, windows_table: pl.DataFrame) -> None:
        """Make the next `commit` read these vectors and windows table (what `repair` salvaged) instead of the
        files on disk, and build both FAISS indexes anew."""
        self._vector_maps = {"tracks.npy": tracks, "windows.npy": windows}
        self._windows_table = windows_table
        self._index = self._window_index = None

    @property
    def dim(self) -> int:
        return self.manifest.pipeline.dim

    def track_vectors(self) -> np.ndarray:
        return self._vectors("tracks.npy")

    def window_vectors(self) -> np.ndarray:
        return self._vectors("windows.npy")

    def _vectors(self, name: str) -> np.ndarray:
        """The memory map of `name`, opened once per state of the library: a search then reads pages already
        mapped instead of mapping (and faulting in) the whole file again. A commit replaces the file, so a map
        opened before it keeps reading the state it was opened with until the caches are dropped."""
        if name not in self._vector_maps:
            try:
                v = _load_vectors(self._at(name), self.dim)
            except (ValueError, OSError, EOFError) as e:  # truncated, zeroed, not a .npy
                raise self.damaged(name, e) from None
            ok = self.ok_tracks()
            need = (int(ok["vec_row"].max()) + 1 if len(ok) else 0) if name == "tracks.npy" else int(
                ok["window_count"].sum() or 0)
            if v.ndim != 2 or v.shape[1] != self.dim or len(v) < need:
                raise self.damaged(name, f"{v.shape} vectors where the catalog needs ({need}, {self.dim})")
            self._vector_maps[name] = v
        return self._vector_maps[name]

    def windows_table(self) -> pl.DataFrame:
        if self._windows_table is None:
            path = self._at("windows.parquet")
            try:
                self._windows_table = pl.read_parquet(path) if path.exists() else pl.DataFrame(schema=WINDOW_SCHEMA)
            except Exception as e:  # noqa: BLE001
                raise self.damaged("windows.parquet", e) from None
            if len(self._windows_table) < len(self.window_vectors()):
                self._windows_table = None
                raise self.damaged("windows.parquet", "fewer rows than windows.npy")
        return self._windows_table

    @property
    def vector_index(self) -> VectorIndex:
        """The track index, with the search settings tuned when it was built."""
        if self._index is None:
            self._index = self._load_index("tracks", self.track_vectors())
        return self._index

    @property
    def window_index(self) -> VectorIndex:
        """The index over every 10 s window ("find the moment" across the whole library)."""
        if self._window_index is None:
            self._window_index = self._load_index("windows", self.window_vectors())
        return self._window_index

    def _load_index(self, name: str, vectors: np.ndarray) -> VectorIndex:
        path = self._at(f"{name}.faiss")
        if not path.exists():
            if self.manifest.index.get(name):  # the manifest says it was written
                self.index_problems[f"{name}.faiss"] = "missing"
            if len(vectors):  # a library from before window indexes: search its vectors exactly
                return VectorIndex.build(np.asarray(vectors))
            return VectorIndex.build(np.zeros((0, self.dim), np.float32))
        info = self.manifest.index.get(name)
        try:
            return VectorIndex.load(path, info if isinstance(info, dict) else {}, vectors)
        except Exception as e:  # noqa: BLE001 - derived from the vectors: search them exactly instead
            self.index_problems[f"{name}.faiss"] = first_line(e)
            return VectorIndex.build(np.asarray(vectors))

    def index_choice(self) -> IndexChoice:
        """The index the library was asked to keep (stored in the manifest; `tunelens index --index` changes it)."""
        req = self.manifest.index.get("request") or {}
        return IndexChoice(**{k: req[k] for k in ("kind", "max_memory", "target_recall") if k in req})

    def failed(self) -> pl.DataFrame:
        """Files that could not be indexed: rel_path, path, error."""
        return self.catalog.filter(pl.col("status") == "error").select("rel_path", "path", "error").sort("rel_path")

    def health(self) -> list[tuple[str, str]]:
        """Every damaged file of the library as (file, one sentence saying why and what to run); empty when all
        read. Reads each file once (the FAISS indexes included), so it costs what opening them for a search
        costs."""
        from tunelens.index.core.captions import CaptionStore, MeasureStore

        problems: list[tuple[str, str]] = []
        reads = (lambda: self.catalog, self.track_vectors, self.window_vectors, self.windows_table)
        for name, read in zip(TABLES, reads):
            try:
                read()
            except LibraryError as e:
                return [(name, str(e))]  # the rest cannot be checked against a damaged core file
        for name, read in (("tracks.faiss", lambda: self.vector_index), ("windows.faiss", lambda: self.window_index)):
            read()
            if name in self.index_problems:
                problems.append((name, damage_sentence(self.root, name, self.index_problems[name],
                                                       "so searches fall back to exact (slower) search")))
        for store in (CaptionStore(self.root), MeasureStore(self.root)):
            try:
                store.read_all()
            except LibraryError as e:
                problems.append((store.main.name, str(e)))
        for name in ("duplicates.parquet", "agreement.parquet"):
            if (self.root / name).exists():
                try:
                    pl.read_parquet_schema(self.root / name)
                except Exception as e:  # noqa: BLE001
                    problems.append((name, damage_sentence(self.root, name, e, "so it will be computed again")))
        return problems

    def check_writable(self) -> None:
        """Raise the first damaged core file (catalog, vectors, windows table, FAISS indexes): a run that adds to
        the library must not build on it (`tunelens repair` first)."""
        for name, sentence in self.health():
            if name in self.index_problems:  # searchable, exactly; but a commit must not build on it
                raise LibraryError(damage_sentence(self.root, name, self.index_problems[name],
                                                   "so this library cannot be added to"))
            if name in TABLES:
                raise LibraryError(sentence)

    def summary(self) -> dict:
        """Counts, model, pipeline, index choice, failed files and damaged files, as `tunelens info --json`
        prints them (a damaged catalog, vector file or windows table raises: nothing else can be counted)."""
        from tunelens.embed.descriptors import DESCRIPTORS_VERSION
        from tunelens.index.core.captions import MeasureStore

        problems = self.health()
        if problems and problems[0][0] in TABLES:
            raise LibraryError(problems[0][1])
        ok = self.catalog.filter(pl.col("status") == "ok")
        failed = self.failed()
        try:
            m = MeasureStore(self.root).read_all().join(ok.select("track_id", "content_hash"),
                                                        on=["track_id", "content_hash"])
            measured = int(((m["measure_version"] == DESCRIPTORS_VERSION) & (m["status"] == "ok")).sum())
        except LibraryError:  # named in "damaged"
            measured = 0
        return {
            "library": str(self.root), "tracks": len(ok), "failed": len(failed), "measured": measured,
            "hours": round(float(ok["duration"].sum() or 0) / 3600, 3),
            "windows": int(ok["window_count"].sum() or 0), "pipeline": self.manifest.pipeline.to_dict(),
            "precision": self.manifest.precision, "index": self.manifest.index,
            "errors": [{"path": r, "error": e} for r, e in failed.select("rel_path", "error").iter_rows()],
            "damaged": [{"file": f, "problem": why} for f, why in problems],
        }

    def ok_tracks(self) -> pl.DataFrame:
        """Indexed tracks in the order of their vectors (computed once per state of the catalog)."""
        catalog = self.catalog
        if getattr(self, "_ok", (None,))[0] is not catalog:
            self._ok = (catalog, catalog.filter(pl.col("status") == "ok").sort("vec_row"))
        return self._ok[1]

    def why_empty(self) -> str:
        """Why a library holds no track, in a sentence: being built, every file failed, or never indexed."""
        staged = len(self.staged_batches())
        failed = int((self.catalog["status"] == "error").sum())
        if staged:
            return (f"no track is committed to {self.root} yet: {staged} batch{'es' if staged > 1 else ''} staged by "
                    "an index run (still "
                    "running, or interrupted: run `tunelens index` again to finish it); they become searchable at "
                    "its first commit")
        if failed:
            return f"no file in {self.root} could be indexed ({failed} failed; `tunelens info` lists why)"
        return f"{self.root} holds no tracks yet; add music with `tunelens index MUSIC_DIR --library {self.root}`"

    def track_row(self, track_id: str) -> int | None:
        """The row of an indexed track in `ok_tracks()` (and in the track vectors), None if it is not one; from a
        map built once per state of the catalog (a server looks tracks up on every request)."""
        ok = self.ok_tracks()
        if getattr(self, "_rows", (None,))[0] is not ok:
            self._rows = (ok, {t: i for i, t in enumerate(ok["track_id"].to_list())})
        return self._rows[1].get(track_id)

    # -- writing -------------------------------------------------------------------------------------------
    def lock(self) -> WriterLock:
        return WriterLock(self.root / ".lock")

    @property
    def staging_dir(self) -> Path:
        return self.root / "staging"

    def staged_batches(self) -> list[Path]:
        return sorted(self.staging_dir.glob("batch-*.npz")) if self.staging_dir.exists() else []

    def stage(self, batch: StagedBatch) -> Path:
        self.staging_dir.mkdir(exist_ok=True)
        path = self.staging_dir / f"batch-{time.time_ns():020d}-{uuid.uuid4().hex[:6]}.npz"
        batch.save(path)
        return path

    def commit(self, removed_paths: set[str], batch_files: list[Path], choice: IndexChoice | None = None,
               moved: dict[str, tuple[str, str]] | None = None) -> None:
        """Merge staged batches into the library, drop `removed_paths`, give moved files (old path → new path and
        relative path) their new place with their vectors, rebuild the indexes (as `choice` asks, or as the
        manifest asked before), and swap all files in at once."""
        choice = choice or self.index_choice()
        batches = [StagedBatch.load(p) for p in batch_files]
        old = self.catalog
        staged_rows = [r for b in batches for r in b.rows]
        replaced = removed_paths | {r["path"] for r in staged_rows}
        keep = old.filter(~pl.col("path").is_in(list(replaced)))
        if moved:
            keep = keep.with_columns(
                pl.col("path")
                .replace_strict({o: n[1] for o, n in moved.items()}, default=pl.col("rel_path"))
                .alias("rel_path"),
                pl.col("path")
                .replace_strict({o: n[0] for o, n in moved.items()}, default=pl.col("path"))
                .alias("path"),
            )
        # later batches win when one path was staged twice (a file changed during a resumed run)
        latest: dict[str, tuple[int, int]] = {}
        for bi, b in enumerate(batches):
            for ri, r in enumerate(b.rows):
                latest[r["path"]] = (bi, ri)
        new_rows, sources = [], {}
        for bi, b in enumerate(batches):
            ok_i = 0
            w_off = np.concatenate([[0], np.cumsum(b.window_counts)]).astype(np.int64)
            for ri, r in enumerate(b.rows):
                if r["status"] == "ok":
                    if latest[r["path"]] == (bi, ri):
                        sources[r["path"]] = ("staged", bi, ok_i, int(w_off[ok_i]), int(b.window_counts[ok_i]))
                    ok_i += 1
                if latest[r["path"]] == (bi, ri):
                    new_rows.append(r)
        for r in keep.filter(pl.col("status") == "ok").select("path", *VECTOR_COLUMNS).iter_rows():
            sources[r[0]] = ("old", 0, r[1], r[2], r[3])
        staged_df = pl.DataFrame(new_rows, schema={k: v for k, v in CATALOG_SCHEMA.items() if k not in VECTOR_COLUMNS})
        merged = pl.concat([keep.drop(*VECTOR_COLUMNS), staged_df], how="vertical").sort("path")

        old_tracks, old_windows, old_wtab = self.track_vectors(), self.window_vectors(), self.windows_table()
        tag = uuid.uuid4().hex[:12]  # this commit's temp files are its own (see the module docstring)
        try:
            ok_paths = merged.filter(pl.col("status") == "ok")["path"].to_list()
            id_of = dict(zip(merged["path"].to_list(), merged["track_id"].to_list()))
            # Vectors stream straight into the new files (memory-mapped), never whole in memory: window vectors of
            # millions of tracks run to tens of GB.
            tracks = _new_vectors(self.root / "tracks.npy", len(ok_paths), self.dim, tag)
            windows = _new_vectors(self.root / "windows.npy", sum(sources[p][4] for p in ok_paths), self.dim, tag)
            wtab_parts, vec_row, w_offset, w_count = [], {}, {}, {}
            total_w = 0
            for i, path in enumerate(ok_paths):
                kind, bi, row, woff, wcnt = sources[path]
                if kind == "old":
                    tracks[i] = old_tracks[row]
                    windows[total_w : total_w + wcnt] = old_windows[woff : woff + wcnt]
                    starts = old_wtab["start_s"][woff : woff + wcnt].to_numpy()
                    ends = old_wtab["end_s"][woff : woff + wcnt].to_numpy()
                else:
                    b = batches[bi]
                    tracks[i] = b.track_vecs[row]
                    windows[total_w : total_w + wcnt] = b.window_vecs[woff : woff + wcnt]
                    starts, ends = b.window_starts[woff : woff + wcnt], b.window_ends[woff : woff + wcnt]
                wtab_parts.append((id_of[path], starts, ends))
                vec_row[path], w_offset[path], w_count[path] = i, total_w, wcnt
                total_w += wcnt
            wtab = pl.DataFrame(
                {
                    "track_id": [tid for tid, s, _ in wtab_parts for _ in range(len(s))],
                    "window": [j for _, s, _ in wtab_parts for j in range(len(s))],
                    "start_s": np.concatenate([s for _, s, _ in wtab_parts]) if wtab_parts else [],
                    "end_s": np.concatenate([e for _, _, e in wtab_parts]) if wtab_parts else [],
                },
                schema=WINDOW_SCHEMA,
            )
            paths = merged["path"].to_list()
            merged = merged.with_columns(
                pl.Series("vec_row", [vec_row.get(p, -1) for p in paths], pl.Int64),
                pl.Series("window_offset", [w_offset.get(p, -1) for p in paths], pl.Int64),
                pl.Series("window_count", [w_count.get(p, 0) for p in paths], pl.Int64),
            ).select(list(CATALOG_SCHEMA))
            manifest = self.manifest
            manifest.updated = time.time()
            gpu = gpu_count() > 0
            built = {"tracks": build(tracks, choice, gpu), "windows": build(windows, choice, gpu)}
            manifest.index = {"request": choice.request(), **{name: b.info for name, b in built.items()}}
            writes = {
                "tracks.npy": lambda p: tracks.flush(),  # written in place above
                "windows.npy": lambda p: windows.flush(),
                "windows.parquet": lambda p: wtab.write_parquet(p),
                "tracks.faiss": lambda p: VectorIndex(built["tracks"].index, use_gpu=False).save(p),
                "windows.faiss": lambda p: VectorIndex(built["windows"].index, use_gpu=False).save(p),
                "catalog.parquet": lambda p: merged.write_parquet(p),
                "manifest.json": lambda p: p.write_text(json.dumps(manifest.to_dict(), indent=1, sort_keys=True)),
            }
            for name, writer in writes.items():
                write_tmp(self.root / name, writer, tag)
            plan = {"id": tag, "renames": [[tmp_path(self.root / n, tag).name, n] for n in writes],
                    "remove": [str(p.relative_to(self.root)) for p in batch_files]}
            atomic_write_json(self.root / "COMMIT.json", plan)
        except Exception as e:  # nothing renamed yet: drop the temp files (a full disk needs the space back)
            for name in (*CORE_FILES, "manifest.json"):
                tmp_path(self.root / name, tag).unlink(missing_ok=True)
            if not isinstance(e, DiskFullError) and is_disk_full(e, self.root):
                raise DiskFullError(self.root / "catalog.parquet", "the library's new files") from None
            raise
        _roll_forward(self.root, plan)
        (self.root / "COMMIT.json").unlink(missing_ok=True)  # the writer's to remove (module docstring)
        for f in self._files.values():
            f.close()
        self._files = {}
        self._catalog, self._index, self._window_index, self._windows_table = None, None, None, None
        self._vector_maps = {}


def _new_vectors(path: Path, n: int, dim: int, tag: str = "") -> np.memmap:
    """The `.tmp` file that will replace `path`, as a writable [n, dim] float32 .npy memory map. Its blocks are
    allocated first: writing through a map into a sparse file on a full disk kills the process (SIGBUS), while
    allocating up front fails cleanly (ENOSPC)."""
    tmp = tmp_path(path, tag)
    vectors = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, dim))
    with open(tmp, "r+b") as f:
        size = os.fstat(f.fileno()).st_size
        if size:
            try:
                os.posix_fallocate(f.fileno(), 0, size)
            except OSError as e:
                if e.errno in FULL:
                    raise DiskFullError(path) from None
                if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL):  # a filesystem without fallocate: go on
                    raise
    return vectors


# numpy parses a .npy header with ast.literal_eval, and CPython 3.11 before 3.11.9 raises "SystemError: AST
# constructor recursion depth mismatch" when two threads parse at once (server requests, app sessions, readers
# during a commit all open libraries in threads): one header at a time.
_NPY_HEADER_LOCK = threading.Lock()


def _load_vectors(path: Path, dim: int) -> np.ndarray:
    if not path.exists():
        return np.zeros((0, dim), np.float32)
    with _NPY_HEADER_LOCK:
        return np.load(path, mmap_mode="r")


def _stamp(path: Path) -> tuple | None:
    try:
        s = os.stat(path)
        return s.st_ino, s.st_mtime_ns, s.st_size
    except FileNotFoundError:
        return None


def _open_core(root: Path) -> dict[str, object]:
    """The core files open for reading (Linux: read later through /proc/self/fd, one state whatever commits)."""
    if not os.path.isdir("/proc/self/fd"):
        return {}
    files = {}
    for name in CORE_FILES:
        try:
            files[name] = open(root / name, "rb")  # noqa: SIM115 - held for the library's lifetime
        except FileNotFoundError:
            pass
    return files


def _journal(root: Path) -> dict | None:
    try:
        return json.loads((root / "COMMIT.json").read_text())
    except FileNotFoundError:
        return None


def _renames(plan: dict) -> list[tuple[str, str]]:
    """(temp name, final name) pairs of a journal (an older journal lists final names, renamed from NAME.tmp)."""
    return [(r[0], r[1]) if isinstance(r, list) else (r + ".tmp", r) for r in plan["renames"]]


def _commit_pending(root: Path) -> bool:
    """A journaled commit whose renames are not all done."""
    plan = _journal(root)
    return plan is not None and any((root / tmp).exists() for tmp, _ in _renames(plan))


def _roll_forward(root: Path, plan: dict) -> None:
    """Do a journal's renames and removals (idempotent: what is done already is skipped)."""
    for tmp, name in _renames(plan):
        try:
            os.replace(root / tmp, root / name)
        except FileNotFoundError:  # already renamed, by the writer or another reader
            pass
    for rel in plan["remove"]:
        (root / rel).unlink(missing_ok=True)


def _finish_commit(root: Path, owner: bool = False) -> None:
    """Roll an interrupted commit forward. Any reader may; only the lock holder (`owner`) removes the journal, so
    that a reader can never remove a newer commit's journal."""
    plan = _journal(root)
    if plan is not None:
        _roll_forward(root, plan)
        if owner:
            (root / "COMMIT.json").unlink(missing_ok=True)


def _drop_stale_temps(root: Path) -> None:
    """Temp files of a commit killed before its journal, and of a batch of captions or measurements killed before
    its rename (`captions.BatchStore`: `FOLDER/batch-*.parquet.tmp`); only a lock holder may remove them, since
    every writer of them holds the lock."""
    for pattern in ("*.tmp", "staging/*.tmp", "*/batch-*.tmp"):
        for tmp in root.glob(pattern):
            tmp.unlink(missing_ok=True)


def _upgrade(root: Path) -> Manifest:
    """Bring a library written by an earlier tunelens up to FORMAT_VERSION, in one journaled commit, without
    embedding anything again.

    Format 2: track ids hash the path relative to the music folder, not the absolute path, so that moving the
    folder keeps them. Every file naming a track id (catalog, windows, captions, agreement, duplicates) is
    rewritten with the new ids; two files with one relative path (two music folders) keep the older id for all
    but the first."""
    try:
        with WriterLock(root / ".lock"):
            return _rewrite_ids(root)
    except PermissionError:
        raise LibraryError(f"{root} was written by an earlier tunelens and needs a one-time upgrade of its files, "
                           f"which needs write access to the folder") from None


def _rewrite_ids(root: Path) -> Manifest:
    """`_upgrade`'s work, under the library's lock."""
    manifest = Manifest.load(root / "manifest.json")  # another process may have upgraded it meanwhile
    if manifest.format_version >= FORMAT_VERSION:
        return manifest
    writes: dict[str, object] = {}
    catalog_path = root / "catalog.parquet"
    mapping: dict[str, str] = {}
    if catalog_path.exists():
        catalog = pl.read_parquet(catalog_path).sort("path")
        taken: set[str] = set()
        for old, rel in catalog.select("track_id", "rel_path").iter_rows():
            new = track_id_for(rel)
            mapping[old] = old if new in taken else new
            taken.add(mapping[old])
        writes["catalog.parquet"] = _with_ids(catalog, mapping)
    for name in ("windows.parquet", "agreement.parquet", "duplicates.parquet"):
        if (root / name).exists():
            writes[name] = _with_ids(pl.read_parquet(root / name), mapping)
    caption_batches = sorted((root / "captions").glob("batch-*.parquet")) if (root / "captions").exists() else []
    caption_files = ([root / "captions.parquet"] if (root / "captions.parquet").exists() else []) + caption_batches
    if caption_files:
        writes["captions.parquet"] = _with_ids(
            pl.concat([pl.read_parquet(p) for p in caption_files], how="diagonal_relaxed"), mapping
        )
    manifest.format_version = FORMAT_VERSION  # `updated` is kept: saved duplicate clusters stay valid
    writes["manifest.json"] = json.dumps(manifest.to_dict(), indent=1, sort_keys=True)

    def writer(name: str, value: object):
        if isinstance(value, str):
            return lambda p: p.write_text(value)
        if name == "duplicates.parquet":  # keep the stamp of the library state the clusters were found in
            import pyarrow.parquet as pq

            meta = pq.read_schema(root / name).metadata
            return lambda p: pq.write_table(value.to_arrow().replace_schema_metadata(meta), p)
        return lambda p: value.write_parquet(p)

    for name, value in writes.items():
        write_tmp(root / name, writer(name, value))
    atomic_write_json(root / "COMMIT.json",
                      {"renames": list(writes), "remove": [str(p.relative_to(root)) for p in caption_batches]})
    _finish_commit(root, owner=True)
    return manifest


def _with_ids(df: pl.DataFrame, mapping: dict[str, str]) -> pl.DataFrame:
    return df.with_columns(pl.col("track_id").replace_strict(mapping, default=pl.col("track_id")))


class WriterLock:
    """An exclusive lock on a library so that two writers never interleave."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self) -> WriterLock:
        self._f = open(self.path, "w")
        try:
            fcntl.flock(self._f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._f.close()
            raise LibraryError(
                f"another tunelens process is writing to {self.path.parent}; wait for it to finish"
            ) from None
        _finish_commit(self.path.parent, owner=True)
        _drop_stale_temps(self.path.parent)
        return self

    def __exit__(self, *exc) -> None:
        if not self._f.closed:  # (released early by its holder)
            fcntl.flock(self._f, fcntl.LOCK_UN)
            self._f.close()
