"""`tunelens serve` on a real library (the 8 demo tracks): routes, problem details, auth, limits, id checks,
Range requests, uploads, the OpenAPI document, and live updates while `tunelens index` commits."""
from __future__ import annotations

import shutil
import threading

import numpy as np
import pytest
import soundfile as sf
from conftest import tone

pytest.importorskip("fastapi", reason="the serve extra")
from fastapi.testclient import TestClient  # noqa: E402

from tunelens.app.server import ServeConfig, ServeError, create_app, read_token  # noqa: E402

TOKEN = "s3cret-token-0123456789"


@pytest.fixture(scope="module")
def client(demo_library):
    return TestClient(create_app(demo_library))


@pytest.fixture(scope="module")
def some_id(demo_library):
    from tunelens.index import Library

    return Library.open(demo_library).ok_tracks()["track_id"][0]


def is_problem(r, status: int) -> dict:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["status"] == status and body["title"] and body["detail"].strip()
    assert "Traceback" not in r.text and "/etc" not in body["detail"] and "/tmp" not in body["detail"]
    return body


def test_openapi_document_validates(client):
    from openapi_spec_validator import validate

    doc = client.get("/openapi.json").json()
    validate(doc)
    assert {"/v1/search", "/v1/tracks/{track_id}", "/v1/tracks/{track_id}/similar", "/v1/similar",
            "/v1/tracks/{track_id}/audio", "/v1/tracks/{track_id}/ask", "/v1/library", "/v1/duplicates",
            "/v1/playlists", "/v1/playlists/radio", "/v1/playlists/{name}"} <= set(
        doc["paths"])
    assert client.get("/docs").status_code == 200


def test_search_track_similar_ask_library(client, some_id):
    r = client.get("/v1/search", params={"q": "slow piano", "k": 3})
    assert r.status_code == 200
    body = r.json()
    assert body["query"]["understood"] == "piano · slow (< 85 BPM)" and len(body["hits"]) == 3
    assert all(h["why"] for h in body["hits"])
    tid = body["hits"][0]["track_id"]
    t = client.get(f"/v1/tracks/{tid}").json()
    assert t["track_id"] == tid and t["tempo_bpm"] and t["caption"] and t["tags"] and "quality_flags" in t
    assert "path" not in t  # the server's own file paths stay private
    sim = client.get(f"/v1/tracks/{tid}/similar", params={"k": 3, "but": "slower"}).json()
    assert len(sim["hits"]) == 3 and tid not in {h["track_id"] for h in sim["hits"]}
    a = client.post(f"/v1/tracks/{tid}/ask", json={"question": "what key is it in?"}).json()
    assert a["answer"] and a["kind"] == "key"
    lib = client.get("/v1/library").json()
    assert lib["tracks"] == 8 and lib["measured"] == 8


def test_duplicates_route(demo_library, tmp_path):
    from tunelens.index import Library
    from tunelens.index.curation.dupes import find_duplicates, save_duplicates

    shutil.copytree(demo_library, tmp_path / "lib")
    (tmp_path / "lib" / "duplicates.parquet").unlink(missing_ok=True)
    c = TestClient(create_app(tmp_path / "lib"))
    assert "tunelens dupes" in is_problem(c.get("/v1/duplicates"), 404)["detail"]  # none saved: says what to run
    lib = Library.open(tmp_path / "lib")
    save_duplicates(lib, find_duplicates(lib))
    r = c.get("/v1/duplicates")  # the saved clusters are served on the next request
    assert r.status_code == 200 and r.json() == {"clusters": []}  # the 8 demo tracks are 8 recordings


def test_limits(client, some_id):
    is_problem(client.get("/v1/search", params={"q": "x" * 1001}), 422)
    is_problem(client.get("/v1/search", params={"q": "piano", "k": 501}), 422)
    is_problem(client.get("/v1/search", params={"q": "piano", "k": 0}), 422)
    is_problem(client.get("/v1/search", params={"q": "piano", "k": "many"}), 422)
    is_problem(client.get("/v1/search"), 422)
    is_problem(client.post(f"/v1/tracks/{some_id}/ask", json={"question": ""}), 422)
    is_problem(client.get(f"/v1/tracks/{some_id}/similar", params={"but": "y" * 1001}), 422)


@pytest.mark.parametrize("bad", ["../../etc/passwd", "..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd", "abc%00def",
                                 "0123456789abcdef%00", "ABCDEF0123456789", "0123456789abcdeg", "."])
def test_ids_are_checked_in_every_route(client, bad):
    for method, route in [("get", "/v1/tracks/{}"), ("get", "/v1/tracks/{}/audio"), ("get", "/v1/tracks/{}/similar"),
                          ("post", "/v1/tracks/{}/ask")]:
        kwargs = {"json": {"question": "what key?"}} if method == "post" else {}
        r = getattr(client, method)(route.format(bad), **kwargs)
        assert r.status_code in (404, 405, 422), (route, bad, r.status_code)
        assert b"root:" not in r.content and "Traceback" not in r.text


def test_range_requests(client, some_id):
    full = client.get(f"/v1/tracks/{some_id}/audio")
    assert full.status_code == 200 and full.headers["content-type"].startswith("audio/")
    data, size = full.content, len(full.content)
    r = client.get(f"/v1/tracks/{some_id}/audio", headers={"Range": "bytes=0-99"})
    assert r.status_code == 206 and r.content == data[:100] and r.headers["content-range"] == f"bytes 0-99/{size}"
    r = client.get(f"/v1/tracks/{some_id}/audio", headers={"Range": "bytes=1000-1999"})
    assert r.status_code == 206 and r.content == data[1000:2000]
    r = client.get(f"/v1/tracks/{some_id}/audio", headers={"Range": "bytes=-100"})
    assert r.status_code == 206 and r.content == data[-100:]
    r = client.get(f"/v1/tracks/{some_id}/audio", headers={"Range": f"bytes={size - 10}-"})
    assert r.status_code == 206 and r.content == data[-10:]
    for bad in ("bytes=abc", f"bytes={size}-", "bytes=5-2", "items=0-1", "bytes=-0"):
        is_problem(client.get(f"/v1/tracks/{some_id}/audio", headers={"Range": bad}), 416)


def test_uploads(client, tmp_path):
    junk = tmp_path / "notes.txt"
    junk.write_text("not audio at all")
    with open(junk, "rb") as f:
        body = is_problem(client.post("/v1/similar", files={"file": ("notes.txt", f)}), 422)
    assert "not audio" in body["detail"]
    long = tmp_path / "silence.flac"
    with sf.SoundFile(long, "w", 8000, 1, format="FLAC") as out:  # 2 hours of silence: a small file, long audio
        zeros = np.zeros(8000 * 60, np.float32)
        for _ in range(120):
            out.write(zeros)
    with open(long, "rb") as f:
        body = is_problem(client.post("/v1/similar", files={"file": ("silence.flac", f)}), 413)
    assert "120 min" in body["detail"]
    clip = tmp_path / "clip.wav"
    sf.write(clip, tone(12, 440), 22050)
    with open(clip, "rb") as f:
        r = client.post("/v1/similar", files={"file": ("clip.wav", f)}, params={"k": 3})
    assert r.status_code == 200 and len(r.json()["hits"]) == 3


def test_upload_size_limit(demo_library, tmp_path):
    small = TestClient(create_app(demo_library, ServeConfig(max_upload_bytes=1000)))
    clip = tmp_path / "clip.wav"
    sf.write(clip, tone(2, 440), 22050)
    with open(clip, "rb") as f:
        is_problem(small.post("/v1/similar", files={"file": ("clip.wav", f)}), 413)


def test_auth_and_refusals(demo_library, tmp_path):
    with pytest.raises(ServeError, match="needs a token"):
        create_app(demo_library, ServeConfig(host="0.0.0.0"))
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    token_file.chmod(0o644)
    with pytest.raises(ServeError, match="can be read by others"):
        read_token(token_file)
    token_file.chmod(0o600)
    token = read_token(token_file)
    c = TestClient(create_app(demo_library, ServeConfig(host="0.0.0.0", token=token)))
    is_problem(c.get("/v1/library"), 401)
    is_problem(c.get("/v1/library", headers={"Authorization": "Bearer wrong-token-0123456789"}), 401)
    is_problem(c.get("/v1/library", headers={"Authorization": TOKEN}), 401)
    assert c.get("/v1/library", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert "access-control-allow-origin" not in c.get("/v1/library", headers={
        "Origin": "https://evil.example", "Authorization": f"Bearer {TOKEN}"}).headers  # CORS off by default
    cors = TestClient(create_app(demo_library, ServeConfig(cors=("https://player.example",))))
    r = cors.get("/v1/library", headers={"Origin": "https://player.example"})
    assert r.headers["access-control-allow-origin"] == "https://player.example"


def test_live_updates_while_index_commits(demo_library, tmp_path):
    """16 clients search while `index` commits twice; after each commit returns, the next request sees it."""
    import tunelens
    from tunelens.embed import load_encoder

    lib_dir = tmp_path / "lib"
    shutil.copytree(demo_library, lib_dir)
    client = TestClient(create_app(lib_dir))
    assert client.get("/v1/library").json()["tracks"] == 8
    errors, stop = [], threading.Event()

    def searcher(i: int) -> None:
        while not stop.is_set():
            r = client.get("/v1/search", params={"q": ["slow piano", "choir", "fast drums", "organ"][i % 4], "k": 5})
            if r.status_code != 200 or not r.json()["hits"]:
                errors.append((r.status_code, r.text[:200]))

    threads = [threading.Thread(target=searcher, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    try:
        encoder = load_encoder("musicnn")
        for n in (1, 2):
            music = tmp_path / f"more{n}"
            music.mkdir()
            for j in range(2):
                sf.write(music / f"tone{j}.wav", tone(8 + j, 300 + 100 * n + 10 * j), 22050)
            tunelens.index_folder(lib_dir, music, encoder, tunelens.IndexConfig(processes=0))
            assert client.get("/v1/library").json()["tracks"] == 8 + 2 * n  # no stale read after the commit
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors[:3]


def test_playlist_folder_round_trip(demo_library, tmp_path):
    """`tunelens playlist-dir` writes .m3u8 files a player resolves from their own folder."""
    from typer.testing import CliRunner

    from tunelens.app.cli import app

    to = tmp_path / "Music" / "Playlists"
    r = CliRunner().invoke(app, ["playlist-dir", "slow piano", "Bach on the organ", "--library", str(demo_library),
                                 "--to", str(to), "-k", "4"])
    assert r.exit_code == 0, r.output
    files = sorted(to.glob("*.m3u8"))
    assert [f.name for f in files] == ["Bach on the organ.m3u8", "slow piano.m3u8"]
    for f in files:
        lines = f.read_text(encoding="utf-8").splitlines()
        assert lines[0] == "#EXTM3U" and lines[1].startswith("#PLAYLIST:")
        entries = [x for x in lines if x and not x.startswith("#")]
        assert 1 <= len(entries) <= 4
        for e in entries:
            assert not e.startswith("/") and (f.parent / e).resolve().is_file()  # relative, and it resolves


@pytest.mark.parametrize("bad", ["../../etc/passwd", "..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd", "abc%00def", ".."])
def test_playlist_names_and_seeds_are_checked(client, some_id, bad):
    r = client.get(f"/v1/playlists/{bad}")
    assert r.status_code in (404, 422) and r.headers["content-type"].startswith("application/problem+json")
    is_problem(client.post("/v1/playlists/radio", json={"seeds": [bad]}), 422)
    is_problem(client.post("/v1/playlists/path", json={"start": some_id, "end": bad}), 422)


def test_playlist_routes(demo_library, tmp_path, some_id):
    """Making is read-only; saving, refreshing and deleting need --allow-writes; exports point at the audio route."""
    shutil.copytree(demo_library, tmp_path / "lib")
    ro = TestClient(create_app(tmp_path / "lib"))
    r = ro.post("/v1/playlists/radio", json={"seeds": [some_id], "n": 4, "text": "calmer"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["kind"] == "radio" and len(body["tracks"]) == 4 and some_id not in {t["track_id"] for t in
                                                                                     body["tracks"]}
    assert "forbidden" in is_problem(ro.post("/v1/playlists/radio", json={"seeds": [some_id], "save": True}),
                                     403)["title"].lower()
    is_problem(ro.post("/v1/playlists/radio", json={"seeds": [some_id], "n": 501}), 422)
    is_problem(ro.post("/v1/playlists/query", json={"text": "x" * 1001}), 422)
    rw = TestClient(create_app(tmp_path / "lib", ServeConfig(allow_writes=True)))
    made = rw.post("/v1/playlists/query", json={"text": "piano", "n": 3, "save": True, "name": "piano"}).json()
    assert made["name"] == "piano" and len(made["tracks"]) == 3
    path_body = {"start": some_id, "end": made["tracks"][0]["track_id"], "n": 4, "rules": {"key_continuity": True}}
    p = rw.post("/v1/playlists/path", json=path_body)
    assert p.status_code == 200 and p.json()["tracks"][0]["track_id"] == some_id
    assert [x["name"] for x in ro.get("/v1/playlists").json()] == ["piano"]  # saved, seen by the read-only one
    m3u = ro.get("/v1/playlists/piano", params={"format": "m3u8"})
    assert m3u.status_code == 200 and m3u.headers["content-type"].startswith("audio/x-mpegurl")
    urls = [ln for ln in m3u.text.splitlines() if ln and not ln.startswith("#")]
    assert len(urls) == 3 and all(u.startswith("http://testserver/v1/tracks/") for u in urls)
    assert ro.get(urls[0].removeprefix("http://testserver")).status_code == 200  # each entry plays
    assert "<trackList>" in ro.get("/v1/playlists/piano", params={"format": "xspf"}).text
    is_problem(ro.get("/v1/playlists/piano", params={"format": "exe"}), 422)
    is_problem(ro.post("/v1/playlists/piano/refresh"), 403)
    assert rw.post("/v1/playlists/piano/refresh").json()["refreshed"]
    groups = ro.post("/v1/playlists/clusters", params={"k": 2}).json()
    assert len(groups) == 2 and all(g["name"] for g in groups)
    is_problem(rw.get("/v1/playlists/nothing"), 404)
    assert rw.delete("/v1/playlists/piano").status_code == 204
    is_problem(ro.get("/v1/playlists/piano"), 404)
