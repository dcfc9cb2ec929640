"""The package as a user installs it: one import name, a public API that behaves like the CLI, the README's Python
example, and libraries written by an earlier tunelens (track ids from absolute paths) opening unchanged."""
from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import polars as pl
import pytest
from conftest import ROOT

import tunelens
from tunelens.index import Library
from tunelens.index.core.captions import CaptionStore
from tunelens.index.core.indexer import IndexConfig, index_folder
from tunelens.index.core.manifest import Manifest
from tunelens.index.core.scan import track_id_for
from tunelens.index.search import search_text, similar

SOURCE_DIRS = ("embed", "index", "caption", "app", "scripts", "tests")
OLD_TOP_LEVEL = {"embed", "index", "caption", "app"}


def _python_files() -> list:
    return [ROOT / "__init__.py"] + [p for d in SOURCE_DIRS for p in sorted((ROOT / d).rglob("*.py"))]


def test_every_import_goes_through_tunelens_and_nothing_patches_the_import_path():
    import_path = "sys." + "path"  # spelled apart, so that grep finds it nowhere in the tree
    for path in _python_files():
        text = path.read_text()
        assert import_path not in text, f"{path} manipulates {import_path}"
        for node in ast.walk(ast.parse(text)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else [])
            for name in names:
                assert name.split(".")[0] not in OLD_TOP_LEVEL, f"{path}:{node.lineno} imports {name}, not tunelens.…"


def test_import_tunelens_is_cheap_and_offers_the_documented_api():
    out = subprocess.run([sys.executable, "-c", "import sys, tunelens; print(sorted(m for m in ('torch', 'faiss', "
                          "'transformers') if m in sys.modules)); print(tunelens.__all__)"],
                         capture_output=True, text=True, cwd="/", check=True).stdout.splitlines()
    assert out[0] == "[]"
    api = sorted(ast.literal_eval(out[1]))
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Python API"):]
    section = section[:section.index("\n## ", 4)]
    for name in api:  # each public name is documented in the README's Python API section
        assert f"`{name}" in section or f"tunelens.{name}" in section, f"{name} is not in README's Python API section"
        assert getattr(tunelens, name) is not None
    with pytest.raises(AttributeError):
        tunelens.no_such_name  # noqa: B018


def test_cli_and_python_share_defaults():
    """`IndexConfig()` is what `tunelens index` runs with: one worker per core on a CPU with several cores."""
    config = IndexConfig()
    assert config.processes is None
    cpu = type("Enc", (), {"device": "cpu"})()
    gpu = type("Enc", (), {"device": "cuda:0"})()
    cores = os.cpu_count() or 1
    assert config.processes_for(cpu) == (cores if cores > 1 else 0)
    assert config.processes_for(gpu) == 0
    assert IndexConfig(processes=0).processes_for(cpu) == 0


@pytest.mark.slow
def test_the_wheel_holds_only_the_tunelens_package_and_its_weights(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path), str(ROOT)], check=True, capture_output=True, cwd=tmp_path, timeout=600)
    (wheel,) = tmp_path.glob("tunelens-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"tunelens", "beetsplug", next(t for t in tops if t.endswith(".dist-info"))}, tops
    # the beets plugin joins beets' namespace package: one module, no __init__.py that would hide beets' own
    assert [n for n in names if n.startswith("beetsplug/")] == ["beetsplug/tunelens.py"]
    for needed in ("tunelens/__init__.py", "tunelens/app/cli.py", "tunelens/index/core/library.py",
                   "tunelens/index/vectors/faiss_module.py", "tunelens/embed/weights/musicnn_MTT.safetensors",
                   "tunelens/embed/weights/musicnn_MSD.safetensors", "tunelens/embed/weights/musicnn_tags.json",
                   "tunelens/embed/weights/musicnn_MTT.onnx", "tunelens/embed/weights/musicnn_MSD.onnx",
                   "tunelens/embed/weights/instruments.safetensors", "tunelens/embed/weights/instruments.json",
                   "tunelens/embed/weights/descriptors.json", "tunelens/embed/weights/key_model.safetensors",
                   "tunelens/caption/weights/calibration.json"):
        assert needed in names, needed
    assert not [n for n in names if re.match(r"tunelens/(tests|scripts|demo)/|tunelens/[^/]+\.(md|toml)$", n)]
    entry = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "tunelens = tunelens.app.cli:main" in entry


def _readme_example() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Python API"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.slow
def test_readme_python_example_runs(tmp_path, demo_music, monkeypatch):
    shutil.copytree(demo_music, tmp_path / "Music")
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(_readme_example(), "README.md", "exec"), scope)
    assert scope["report"].indexed == 8 and scope["hits"] and scope["like"]
    assert scope["answer"].text and (tmp_path / "dataset" / "export.json").exists()
    # the Python calls gave what the CLI gives on the same library
    cli = subprocess.run([sys.executable, "-m", "tunelens.app.cli", "search", "slow solo piano", "--library",
                          "tunelens-library", "-k", "3", "--json"], capture_output=True, text=True, check=True)
    assert [h["track_id"] for h in json.loads(cli.stdout)["hits"]] == [h.track_id for h in scope["hits"]]


def _make_old_format(lib_dir) -> dict[str, str]:
    """Rewrite a library as tunelens wrote it before format 2: track ids hash the absolute path. Returns new → old."""
    cat = pl.read_parquet(lib_dir / "catalog.parquet")
    old_of = {t: track_id_for(p) for t, p in cat.select("track_id", "path").iter_rows()}
    for name in ("catalog.parquet", "windows.parquet", "captions.parquet", "agreement.parquet"):
        if (lib_dir / name).exists():
            df = pl.read_parquet(lib_dir / name)
            df.with_columns(pl.col("track_id").replace_strict(old_of)).write_parquet(lib_dir / name)
    manifest = json.loads((lib_dir / "manifest.json").read_text())
    manifest["format_version"] = 1
    (lib_dir / "manifest.json").write_text(json.dumps(manifest))
    return old_of


def test_a_library_from_before_track_ids_moved_opens_with_the_same_results(tmp_path, music_dir, tiny_encoder):
    from tunelens.caption.batch import CaptionConfig, caption_library

    lib_dir = tmp_path / "lib"
    index_folder(lib_dir, music_dir, tiny_encoder, IndexConfig(processes=0))
    caption_library(lib_dir, config=CaptionConfig(workers=1))
    old_of = _make_old_format(lib_dir)
    new_of = {o: n for n, o in old_of.items()}
    before_vectors = np.load(lib_dir / "tracks.npy")
    # what the old library answers, in its own ids
    old = Library(lib_dir, Manifest.load(lib_dir / "manifest.json"))  # read as it is, not upgraded
    old_hits = [(h.track_id, round(h.score, 6)) for h in search_text(old, tiny_encoder, "a tone", k=5)]
    assert all(t in new_of for t, _ in old_hits)

    lib = Library.open(lib_dir)  # upgrades in place
    assert lib.manifest.format_version == 2
    assert sorted(lib.catalog["track_id"]) == sorted(track_id_for(r) for r in lib.catalog["rel_path"])
    assert np.array_equal(np.load(lib_dir / "tracks.npy"), before_vectors)  # nothing embedded again
    assert [(h.track_id, round(h.score, 6)) for h in search_text(lib, tiny_encoder, "a tone", k=5)] == \
        [(new_of[t], s) for t, s in old_hits]
    assert set(pl.read_parquet(lib_dir / "windows.parquet")["track_id"]) == set(lib.catalog["track_id"])
    caps = CaptionStore(lib_dir).read()
    assert len(caps) == 5 and set(caps["track_id"]) == set(lib.catalog["track_id"])
    again = index_folder(lib_dir, music_dir, tiny_encoder, IndexConfig(processes=0))
    assert (again.indexed, again.skipped) == (0, 5)
    assert Library.open(lib_dir).manifest.format_version == 2


def test_moving_the_music_folder_keeps_ids_and_vectors(tmp_path, music_dir, tiny_encoder):
    lib_dir = tmp_path / "lib"
    index_folder(lib_dir, music_dir, tiny_encoder, IndexConfig(processes=0))
    before = Library.open(lib_dir).ok_tracks().select("track_id", "rel_path", "vec_row")
    vectors = {t: np.array(Library.open(lib_dir).track_vectors()[r]) for t, _, r in before.iter_rows()}
    moved = tmp_path / "elsewhere" / "music"
    moved.parent.mkdir()
    shutil.move(music_dir, moved)
    r = index_folder(lib_dir, moved, tiny_encoder, IndexConfig(processes=0))
    assert (r.indexed, r.moved, r.removed) == (0, 5, 0)
    lib = Library.open(lib_dir)
    after = lib.ok_tracks()
    assert sorted(after.select("track_id", "rel_path").rows()) == sorted(before.select("track_id", "rel_path").rows())
    assert all(p.startswith(str(moved)) for p in after["path"])
    for t, row in after.select("track_id", "vec_row").iter_rows():
        assert np.array_equal(np.array(lib.track_vectors()[row]), vectors[t])
    assert similar(lib, "t2.wav", k=2)  # paths resolve at the new place
    # a second folder with the same layout gets its own ids
    copy = tmp_path / "copy"
    shutil.copytree(moved, copy)
    r = index_folder(lib_dir, copy, tiny_encoder, IndexConfig(processes=0))
    assert r.indexed == 5
    ids = Library.open(lib_dir).catalog["track_id"]
    assert ids.n_unique() == len(ids) == 10


def _package_imports() -> tuple[dict[str, set[str]], list[str]]:
    """{module: the tunelens modules it imports, at the top or inside a function} over the installed package's
    source, and every import of a private name (`_x`) from another module."""
    dirs = {"embed", "index", "caption", "app"}
    modules = {"tunelens": ROOT / "__init__.py"}
    for d in sorted(dirs):
        for path in sorted((ROOT / d).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(["tunelens", *parts])] = path
    edges: dict[str, set[str]] = {}
    private = []
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                if not target.startswith("tunelens"):
                    continue
                for alias in node.names:
                    full = f"{target}.{alias.name}"
                    edges.setdefault(name, set()).add(full if full in modules else target)
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        private.append(f"{name} imports {alias.name} from {target}")
            elif isinstance(node, ast.Import):
                edges.setdefault(name, set()).update(a.name for a in node.names if a.name.startswith("tunelens"))
    return edges, private


def test_no_import_cycles_and_no_private_names_across_modules():
    """Modules import one way (a package's __init__ may gather its own modules' names), lazy imports included,
    and no module takes another's private name."""
    edges, private = _package_imports()
    assert private == []

    def reaches(start: str) -> set[str]:
        seen, stack = set(), [start]
        while stack:
            for nxt in edges.get(stack.pop(), ()):
                if nxt not in seen and not (nxt != start and start.startswith(nxt + ".")):
                    seen.add(nxt)
                    stack.append(nxt)
        return seen

    cycles = sorted({" <-> ".join(sorted((a, b))) for a in edges for b in edges[a]
                     if b != a and not a.startswith(b + ".") and a in reaches(b)})
    assert cycles == []
