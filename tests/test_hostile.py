"""File tags and names written by anyone: markup, markdown links and images, script, control characters, a
right-to-left override and 10 kB strings show as plain text in the CLI, the app and playlist files."""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import soundfile as sf
from conftest import damage_file, tone

import tunelens
from tunelens.index.core.display import clean, code_literal, markdown_literal

HOSTILE = [
    {"title": "[/]", "artist": "[click]"},
    {"title": "![px](http://127.0.0.1:9/pixel.png)", "artist": "<script>alert(1)</script>"},
    {"title": "\x1b[31mred\x1b[0m", "artist": "evil\u202eexe.txt"},
    {"title": "A" * 10_000, "artist": "[x](javascript:alert(1))"},
    {"title": '<img src=x onerror="window.__pwned=1">', "artist": "[x](javascript:window.__pwned=2)"},
]


@pytest.fixture(scope="module")
def hostile_library(tmp_path_factory):
    import mutagen

    from tunelens.embed import load_encoder

    base = tmp_path_factory.mktemp("hostile")
    music = base / "music"
    music.mkdir()
    for i, tags in enumerate(HOSTILE):
        path = music / (["[bold]loud", "evil\u202ecalf", "`tick`", "plain", "<i>it<i> &amp;"][i] + ".flac")
        sf.write(path, tone(6, 220 * (i + 1)), 22050)
        f = mutagen.File(str(path), easy=True)
        for k, v in tags.items():
            f[k] = v
        f.save()
    (music / "[red]broken.wav").write_bytes(b"RIFF\x00\x00not audio")
    import os
    import shutil

    shutil.copy(music / "plain.flac", os.path.join(os.fsencode(music), b"latin1 caf\xe9.flac"))  # not UTF-8
    tunelens.index_folder(base / "lib", music, load_encoder("musicnn"), tunelens.IndexConfig(processes=0))
    return base / "lib"


def test_display_helpers():
    assert clean("a\x1b[31mb\u202ec\x00", None) == "a\ufffd[31mb\ufffdc\ufffd"
    assert clean("x" * 50, 10) == "x" * 9 + "…" and clean("a\nb", one_line=True) == "a b"
    assert markdown_literal("![p](http://h/x.png)") == "\\!\\[p\\]\\(http\\:\u2060//h/x\\.png\\)"
    assert markdown_literal("a@b.com www.x.org") == "a\u2060@b\\.com www\u2060\\.x\\.org"
    assert code_literal("a`b") == "``a`b``" and code_literal("plain") == "`plain`"


def test_cli_shows_tags_as_text(hostile_library):
    from typer.testing import CliRunner

    from tunelens.app.cli import app

    run = CliRunner().invoke
    r = run(app, ["search", "sine tone", "-l", str(hostile_library), "-k", "4"])
    assert r.exit_code == 0, r.output
    out = r.output
    assert "[/]" in out and "[click]" in out and "<script>" in out  # shown, not read as markup
    assert "\x1b" not in out and "\u202e" not in out and len(out) < 20_000
    r = run(app, ["search", "q" * 100_000, "-l", str(hostile_library)])
    assert r.exit_code == 0 and len(r.output) < 20_000  # a huge query is not echoed whole
    r = run(app, ["info", "-l", str(hostile_library)])
    assert r.exit_code == 0 and "[red]broken.wav" in r.output
    assert "latin1 caf\\xe9.flac: the file name is not valid UTF-8" in r.output  # recorded, the run went on
    r = run(app, ["similar", "[/]nothing", "-l", str(hostile_library)])
    assert r.exit_code == 2 and "[/]nothing" in r.output and "Traceback" not in r.output


def test_playlist_files_stay_well_formed(hostile_library, tmp_path):
    from tunelens.index.playlists import render

    pl = tunelens.query_playlist(hostile_library, "tone", n=4, rules=tunelens.PlaylistRules(max_per_artist=None))
    assert len(pl.tracks) == 4
    m3u = render(pl, "m3u8", tmp_path)
    lines = m3u.splitlines()
    assert len(lines) == 2 + 2 * 4 and all(ln.startswith("#EXTINF:") for ln in lines[2::2])
    assert not any("\x1b" in ln or "\u202e" in ln for ln in lines[2::2])  # titles cleaned; paths stay exact
    assert "evil\u202ecalf.flac" in m3u  # (a file's real name must resolve)
    doc = ET.fromstring(render(pl, "xspf", tmp_path))  # parses: no control character reached the XML
    titles = [e.text for e in doc.iter("{http://xspf.org/ns/0/}title")]
    assert "[/]" in titles and "\ufffd[31mred\ufffd[0m" in titles


def test_app_shows_tags_as_text(hostile_library, monkeypatch):
    """Search and track pages: no tag becomes a link, an image or markup, and no direction override gets through."""
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("TUNELENS_LIBRARY", str(hostile_library))
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app" / "streamlit_app.py"), default_timeout=180)
    at.run()
    at.text_input(key="q").input("sine tone").run()
    assert not at.exception

    def shown() -> list[str]:
        return [e.value for kind in ("markdown", "caption", "title", "subheader") for e in at.get(kind)] + [
            b.label for b in at.button]

    def check() -> None:
        texts = shown()
        assert any("\\[/\\]" in t for t in texts)  # the [/] title, escaped
        for t in texts:
            assert not re.search(r"(?<!\\)\]\(", t), t  # no markdown link or image: every "](" is escaped
            assert "\u202e" not in t and "\x1b" not in t and len(t) < 5_000

    check()
    tid = tunelens.Library.open(hostile_library).ok_tracks()["track_id"][1]
    at.session_state["page"] = "Track"
    at.run()
    at.text_input(key="track_ref").input(tid).run()
    assert not at.exception
    check()


@pytest.mark.slow
def test_no_tag_becomes_script_link_or_image_in_chromium(hostile_library):
    """The app in headless Chromium: every hostile tag shows as text; no script ran, and no link or image was made
    from a tag (the only images and links are the app's own)."""
    import time

    from browser import Browser, chromium_binary, running_app

    binary = chromium_binary()
    if binary is None:
        pytest.skip("Debian chromium is not installed (make chromium)")
    with running_app(hostile_library) as port:
        with Browser(binary) as b:
            ready = False
            for _ in range(3):
                b.goto(f"http://127.0.0.1:{port}/?q=sine+tone")
                if b.wait_for("document.querySelectorAll('audio').length >= 4", timeout=90):
                    ready = True
                    break
            assert ready, "no results appeared"
            time.sleep(2)
            text = b.js("document.body.innerText")
            assert "<script>alert(1)</script>" in text and '<img src=x onerror="window.__pwned=1">' in text
            assert "[x](javascript:alert(1))" in text and "\u202e" not in text
            assert b.js("window.__pwned === undefined")
            made = b.js("""[...document.querySelectorAll('a[href], img[src], script, iframe, object, embed, [onerror]')]
                .map(e => e.tagName + ' '
                     + (e.getAttribute('href') || e.getAttribute('src') || e.outerHTML.slice(0, 80)))
                .filter(d => /javascript:|pixel\\.png|127\\.0\\.0\\.1:9|onerror|__pwned|alert/.test(d))""")
            assert made == [], made
            requests = b.js("performance.getEntriesByType('resource').map(r => r.name).filter(n => n.includes(':9/'))")
            assert requests == [], requests  # the browser never asked the host named in a tag for anything


@pytest.mark.parametrize("name", ["catalog.parquet", "tracks.npy", "windows.npy", "windows.parquet",
                                  "tracks.faiss", "windows.faiss"])
@pytest.mark.parametrize("damage", ["truncate", "zero", "delete"])
def test_a_damaged_library_file_gets_a_sentence(hostile_library, tmp_path, monkeypatch, name, damage):
    from pathlib import Path

    """Each library file truncated, zeroed or deleted: `info` and `search` name the file and what to do, or (the
    FAISS indexes, derived from the vectors) search the vectors exactly; never a traceback."""
    import shutil

    from typer.testing import CliRunner

    from tunelens.app.cli import app

    lib = tmp_path / "lib"
    shutil.copytree(hostile_library, lib)
    damage_file(lib / name, damage)
    run = CliRunner().invoke
    for args in (["info", "-l", str(lib)], ["search", "sine tone", "-l", str(lib), "-k", "2"]):
        r = run(app, args)
        assert "Traceback" not in r.output and r.exception is None or isinstance(r.exception, SystemExit), r.output
        if name.endswith(".faiss"):
            continue
        assert r.exit_code == 2 and name in r.output and "damaged" in r.output, (args, r.output)
    if name in ("tracks.npy", "windows.parquet") and damage == "zero":  # the app says the same on its search page
        from streamlit.testing.v1 import AppTest

        monkeypatch.setenv("TUNELENS_LIBRARY", str(lib))
        at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app" / "streamlit_app.py"),
                               default_timeout=180)
        at.run()
        at.text_input(key="q").input("sine tone").run()
        shown = [e.value.replace("\\", "") for e in at.error]  # shown as Markdown-escaped text
        assert not at.exception and any(name in e and "damaged" in e for e in shown), shown
    if name.endswith(".faiss"):  # derived: search still answers, from the vectors
        r = run(app, ["search", "sine tone", "-l", str(lib), "-k", "2", "--json"])
        assert r.exit_code == 0 and len(__import__("json").loads(r.output)["hits"]) == 2


def test_a_search_of_a_library_being_built_says_why_it_is_empty(tmp_path):
    """While the very first `index` runs there is a manifest and staged batches but no track yet: a search says so."""
    from typer.testing import CliRunner

    from tunelens.app.cli import app
    from tunelens.embed.base import PipelineSpec
    from tunelens.index.core.library import StagedBatch

    lib = tunelens.Library.create_or_open(tmp_path / "lib", PipelineSpec.for_encoder(tunelens.load_encoder("musicnn")))
    r = CliRunner().invoke(app, ["search", "slow piano in D minor", "-l", str(lib.root)])
    assert r.exit_code == 0 and "holds no tracks yet" in r.output and "tunelens index" in r.output, r.output
    lib.stage(StagedBatch([], np.zeros((0, lib.dim), np.float32), np.zeros((0, lib.dim), np.float32),
                          np.zeros(0, np.int64), np.zeros(0), np.zeros(0)))
    r = CliRunner().invoke(app, ["search", "piano", "-l", str(lib.root), "--moments"])
    assert r.exit_code == 0 and "1 batch staged by an index run" in r.output, r.output


def test_writers_exclude_each_other_and_readers_see_whole_commits(hostile_library, tmp_path):
    """A second writer (index, caption, repair) while one holds the library stops with a clear sentence; readers
    opening the library during a run of commits always see one whole state (as many vectors as catalogued tracks)."""
    import shutil
    import threading

    from typer.testing import CliRunner

    from tunelens.app.cli import app

    lib = tmp_path / "lib"
    shutil.copytree(hostile_library, lib)
    music = tmp_path / "more"
    music.mkdir()
    run = CliRunner().invoke
    with tunelens.Library.open(lib).lock():  # as a running `tunelens index` holds it
        for args in (["index", str(music), "-l", str(lib)], ["caption", "-l", str(lib)], ["repair", "-l", str(lib)]):
            r = run(app, args)
            assert r.exit_code == 2 and "another tunelens process is writing" in r.output, (args, r.output)
    for i in range(6):
        sf.write(music / f"t{i}.flac", tone(4, 300 + 40 * i), 22050)
    seen, errors, stop = [], [], threading.Event()
    encoder = tunelens.load_encoder("musicnn")
    tunelens.search(lib, "a tone", k=3, encoder=encoder)  # the text model loaded before the run starts

    def reader() -> None:
        while not stop.is_set():
            try:
                opened = tunelens.Library.open(lib)
                ok = opened.ok_tracks()
                assert len(opened.track_vectors()) == len(ok) and len(opened.windows_table()) == int(
                    ok["window_count"].sum())
                hits = tunelens.search(opened, "a tone", k=3, encoder=encoder)
                seen.append((len(ok), len(hits)))
            except Exception as e:  # noqa: BLE001 - any failure of a reader is the finding
                errors.append(repr(e))

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        tunelens.index_folder(lib, music, encoder, tunelens.IndexConfig(processes=0, batch_files=1, commit_every=1,
                                                                       measure=False))
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors[:3]
    counts = {n for n, _ in seen}
    assert len(counts) >= 2 and counts <= set(range(5, 12)), counts  # several commits seen, each whole
