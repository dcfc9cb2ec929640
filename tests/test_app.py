"""The Streamlit app on a small real library (8 demo tracks rendered from scores, the default musicnn model,
captioned): every page through AppTest, bad input, the catalog-only audio gate, and one run in Chromium."""
from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "app" / "streamlit_app.py"
ARTIFACTS = ROOT / "tests" / "artifacts"


@pytest.fixture()
def app(demo_library, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("TUNELENS_LIBRARY", str(demo_library))
    at = AppTest.from_file(str(APP), default_timeout=180)
    at.run()
    assert not at.exception
    return at


def titles(at) -> list[str]:
    return [m.value for m in at.markdown if m.value.startswith("**") and ". " in m.value]


def paths(at) -> list[str]:
    """The library paths of the result cards, in rank order."""
    return [m.group(1) for c in at.caption for m in [re.search(r"`([^`]+)`$", c.value)] if m]


def search(at, query: str):
    at.text_input(key="q").input(query).run()
    assert not at.exception
    return at


def test_search_finds_the_expected_track_with_players(app):
    assert app.info and "description" in app.info[0].value  # empty query: a hint, not an error
    search(app, "choir singing")
    found = paths(app)
    assert any("choir" in t for t in found[:5]), found
    assert len(app.get("audio")) == len(found) >= 5
    assert any("Best match at" in c.value for c in app.caption)
    assert any("BPM" in c.value for c in app.caption)  # captions and descriptors light up when present


def test_filters_narrow_the_results(app):
    search(app, "classical music")
    everything = paths(app)
    app.selectbox(key="f_folder").set_value("piano").run()
    narrowed = paths(app)
    assert 0 < len(narrowed) < len(everything) and all("piano" in t for t in narrowed)
    app.selectbox(key="f_folder").set_value("(all)").run()
    app.slider(key="f_tempo").set_value((40, 41)).run()
    assert not titles(app) and any("No track matches" in w.value for w in app.warning)


def test_compositional_query_shows_chips_sets_filters_and_a_removed_chip_reruns(app):
    search(app, "piano over 100 bpm")
    chips = {b.label: b for b in app.button if b.key and b.key.startswith("chip_")}
    assert any("piano" in c for c in chips) and any("> 100 BPM" in c for c in chips), list(chips)
    assert app.slider(key="f_tempo").value == (100, 220)  # the hard facet set the sidebar filter
    tempi = [float(m.group(1)) for c in app.caption for m in [re.search(r"· (\d+) BPM ·", c.value)] if m]
    assert tempi and all(t > 100 for t in tempi), tempi  # every result obeys the facet
    assert any("> 100 BPM" in c.value and "✓" in c.value for c in app.caption)  # each hit says why
    before = len(paths(app))
    next(b for label, b in chips.items() if "> 100 BPM" in label).click().run()
    assert not app.exception
    assert app.text_input(key="q").value == "piano"
    assert not any("BPM" in b.label for b in app.button if b.key and b.key.startswith("chip_"))
    assert app.slider(key="f_tempo").value == (40, 220)  # the filter the chip had set is cleared
    assert len(paths(app)) > before


def test_more_like_this_and_exports(app):
    search(app, "flute melody")
    first = next(b for b in app.button if b.key and b.key.startswith("more_"))
    first.click().run()
    assert not app.exception and any("Tracks like" in s.value for s in app.subheader)
    assert len(titles(app)) >= 3
    assert len(app.get("download_button")) == 2  # M3U and CSV (their content: test_playlists in test_index)


def test_track_page_answers_questions(app, demo_library):
    from tunelens.index import Library

    tid = Library.open(demo_library).ok_tracks()["track_id"][0]
    app.radio(key="page").set_value("Track").run()
    app.text_input(key="track_ref").input(tid).run()
    assert not app.exception and app.title and app.get("image") and app.get("audio")
    assert app.get("vega_lite_chart")  # top tags chart
    app.chat_input(key="qa_input").set_value("what key is it in?").run()
    assert not app.exception
    said = [m.value for m in app.markdown]
    assert "what key is it in?" in said
    assert any(
        re.search(r"\b[A-G]\\?[#b]? (major|minor)\b", s) or "can't tell" in s  # shown escaped: F\# minor
        for s in said[said.index("what key is it in?") + 1 :]
    )
    app.chat_input(key="qa_input").set_value("who composed this?").run()
    assert any("can't tell" in m.value for m in app.markdown)


@pytest.mark.parametrize("ref", ["no-such-track-id", "/etc/passwd", "../../etc/passwd"])
def test_track_page_refuses_anything_outside_the_catalog(app, ref):
    app.radio(key="page").set_value("Track").run()
    app.text_input(key="track_ref").input(ref).run()
    assert not app.exception and app.error and "not a playable track of this library" in app.error[0].value
    assert not app.get("audio")


def test_audio_is_served_only_from_the_catalog(demo_library):
    from tunelens.app import resources as R
    from tunelens.index import Library

    lib = Library.open(demo_library)
    data, mime = R.audio_bytes(lib, lib.ok_tracks()["track_id"][0])
    assert len(data) > 1000 and mime.startswith("audio/")
    for bad in ("/etc/passwd", "not-an-id", str(demo_library / "catalog.parquet")):
        with pytest.raises(ValueError, match="not a track of this library"):
            R.audio_bytes(lib, bad)


def test_bad_queries_give_messages_not_exceptions(app):
    search(app, "   ")
    assert app.info and not app.get("audio")
    search(app, "piano " * 900)
    assert any("only its first 1,000" in w.value for w in app.warning) and titles(app)


def test_library_page(app, demo_library):
    app.radio(key="page").set_value("Library").run()
    assert not app.exception
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["Tracks"] == "8" and metrics["Failed files"] == "1" and metrics["Captioned"] == "8"
    assert any("broken.wav" in m.value for m in app.markdown)
    assert any("musicnn" in c.value for c in app.caption)
    app.selectbox(key="map_color").set_value("tag: piano").run()
    assert not app.exception
    assert any("tunelens dupes" in c.value for c in app.caption)  # not checked yet: the app points at the batch job
    from tunelens.index import Library
    from tunelens.index.curation.dupes import find_duplicates, save_duplicates

    lib = Library.open(demo_library)
    save_duplicates(lib, find_duplicates(lib))
    app.run()
    assert any("No recording is stored twice" in s.value for s in app.success)


@pytest.mark.slow
def test_search_page_in_headless_chromium(demo_library):
    from browser import Browser, chromium_binary, running_app

    binary = chromium_binary()
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: `make test` installs Debian's chromium")
        pytest.skip("Debian chromium is not installed (make chromium)")
    with running_app(demo_library) as port, Browser(binary) as b:
        ready = False
        for _ in range(3):  # a freshly started app can paint blank first: load again until it has content
            b.goto(f"http://127.0.0.1:{port}/?q=choir+singing")
            if b.wait_for("document.querySelectorAll('audio').length > 0", timeout=90):
                ready = True
                break
        time.sleep(2)  # let the sidebar finish its entrance before the picture
        ARTIFACTS.mkdir(exist_ok=True)
        shot = b.screenshot(ARTIFACTS / "search_page.png")
        assert ready, "no result with an audio player appeared"
        text = b.js("document.body.innerText")
        assert "Search your music" in text and "choir" in text and "Best match at" in text
        assert b.js("document.querySelectorAll('audio').length") >= 5
        assert shot.stat().st_size > 20000


def test_search_by_sound(app, demo_library, tmp_path):
    """The search page offers a clip upload and a recorder; a clip finds tracks like it, a bad one is a sentence."""
    from conftest import tone

    from tunelens.app.uploads import UploadError, similar_to_clip
    from tunelens.index import Library

    assert app.get("file_uploader") and app.get("audio_input")
    lib = Library.open(demo_library)
    music = Path(lib.ok_tracks()["path"][0])
    hits = similar_to_clip(lib, music.read_bytes(), music.name, k=3)
    assert len(hits) == 3 and hits[0].path == str(music)  # the track itself, found from its own bytes
    with pytest.raises(UploadError, match="not audio"):
        similar_to_clip(lib, b"hello", "notes.txt")
    import soundfile as sf

    sf.write(tmp_path / "t.wav", tone(3, 440), 22050)
    with pytest.raises(UploadError, match="lasts 3 s; at most 1 s"):
        similar_to_clip(lib, (tmp_path / "t.wav").read_bytes(), "t.wav", max_seconds=1.0)


def test_playlists_page_from_a_search_and_a_track(demo_library, tmp_path, monkeypatch):
    """"Make a playlist" on a search and "Radio from this track" on a track page open the Playlists page ready to
    make one; it plays, saves into the library and exports."""
    import shutil

    from streamlit.testing.v1 import AppTest

    import tunelens

    lib_dir = tmp_path / "lib"
    shutil.copytree(demo_library, lib_dir)  # this test saves a playlist into the library
    monkeypatch.setenv("TUNELENS_LIBRARY", str(lib_dir))
    at = AppTest.from_file(str(APP), default_timeout=180)
    at.run()
    search(at, "piano")
    next(b for b in at.button if b.label == "Make a playlist").click().run()
    assert not at.exception and at.session_state["page"] == "Playlists" and at.session_state["pl_text"] == "piano"
    at.number_input(key="pl_length").set_value(4).run()
    next(b for b in at.button if b.label == "Make playlist").click().run()
    assert not at.exception
    made = at.session_state["playlist"]
    assert made.kind == "query" and len(made.tracks) == 4 and len(at.get("audio")) == 4
    assert at.get("download_button")
    at.text_input(key="pl_name_False").input("piano evening").run()
    at.button(key="pl_save_False").click().run()
    assert not at.exception and [p.name for p in tunelens.list_playlists(lib_dir)] == ["piano evening"]
    assert any("saved as" in s.value for s in at.success)

    tid = tunelens.Library.open(lib_dir).ok_tracks()["track_id"][0]
    at.session_state["page"] = "Track"
    at.run()
    at.text_input(key="track_ref").input(tid).run()
    next(b for b in at.button if b.label == "Radio from this track").click().run()
    assert at.session_state["page"] == "Playlists" and at.session_state["pl_seed"] == tid
    next(b for b in at.button if b.label == "Make playlist").click().run()
    assert not at.exception and tid not in at.session_state["playlist"].track_ids
