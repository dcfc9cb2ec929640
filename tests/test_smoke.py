"""Every CLI verb once, each in its own process, on a small real library: a native crash (a segfault in a compiled
dependency, an abort) fails the one test that names the verb, with faulthandler's traceback, while the others still
report. The library: 8 demo tracks rendered from scores, indexed with the default model."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from browser import free_port

TIMEOUT_S = 300


def _command() -> list[str]:
    script = Path(sys.executable).parent / "tunelens"
    return [str(script)] if script.exists() else [sys.executable, "-m", "tunelens.app.cli"]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONFAULTHANDLER": "1", "HF_HUB_OFFLINE": "1", "NO_COLOR": "1", "COLUMNS": "160"}


def _verdict(verb: str, returncode: int, output: str) -> str | None:
    """Why a run of `tunelens VERB` failed, in a sentence with its output's end, or None when it exited 0."""
    if returncode == 0:
        return None
    if returncode < 0:
        how = f"died of {signal.Signals(-returncode).name}"
    elif returncode in (128 + signal.SIGSEGV, 128 + signal.SIGABRT, 128 + signal.SIGBUS):
        how = f"died of {signal.Signals(returncode - 128).name}"
    else:
        how = f"exited {returncode}"
    return f"`tunelens {verb}` {how}:\n{output[-4000:]}"


def tunelens(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*_command(), *args], cwd=cwd, env=_env(), capture_output=True, text=True,
                          timeout=TIMEOUT_S)


def check(verb: str, proc: subprocess.CompletedProcess) -> str:
    """stdout of a run that exited 0; otherwise fails the test naming the verb and how it died."""
    why = _verdict(verb, proc.returncode, proc.stdout + proc.stderr)
    if why:
        pytest.fail(why, pytrace=False)
    return proc.stdout


@pytest.fixture(scope="module")
def smoke(tmp_path_factory, demo_music) -> dict:
    """The demo tracks indexed and captioned by the CLI; each step's verdict kept for its own test."""
    base = tmp_path_factory.mktemp("smoke")
    music, lib = base / "music", base / "lib"
    shutil.copytree(demo_music, music)
    steps = {}
    for verb, args in (("index", ["index", str(music), "--library", str(lib), "--processes", "1"]),
                       ("caption", ["caption", "--library", str(lib)])):
        proc = tunelens(*args, cwd=base)
        steps[verb] = _verdict(verb, proc.returncode, proc.stdout + proc.stderr)
    files = sorted(p for p in music.rglob("*") if p.suffix in {".flac", ".mp3", ".ogg", ".wav", ".m4a"})
    return {"base": base, "music": music, "lib": lib, "file": files[0], "steps": steps}


@pytest.mark.parametrize("verb", ["index", "caption"])
def test_building_verbs(smoke, verb):
    if smoke["steps"][verb]:
        pytest.fail(smoke["steps"][verb], pytrace=False)


def _needs_library(smoke) -> None:
    if smoke["steps"]["index"]:
        pytest.fail("`tunelens index` failed (see test_building_verbs[index]); this verb needs its library",
                    pytrace=False)


READING_VERBS = {
    "info": lambda s: ["info", "--library", s["lib"]],
    "search": lambda s: ["search", "solo piano", "--library", s["lib"], "-k", "3", "--json"],
    "search --moments": lambda s: ["search", "choir singing", "--library", s["lib"], "-k", "3", "--moments"],
    "similar": lambda s: ["similar", s["file"], "--library", s["lib"], "-k", "3"],
    "tags": lambda s: ["tags", s["file"]],
    "ask": lambda s: ["ask", s["file"], "what key is it in?", "--library", s["lib"]],
    "dupes": lambda s: ["dupes", "--library", s["lib"], "--json"],
    "quality": lambda s: ["quality", "--library", s["lib"], "--json"],
    "agreement": lambda s: ["agreement", "--library", s["lib"]],
    "export": lambda s: ["export", "--library", s["lib"], "--to", s["base"] / "export", "--format", "jsonl"],
    "playlist radio": lambda s: ["playlist", "radio", s["file"], "--library", s["lib"], "-n", "3", "--to",
                                 s["base"] / "radio.m3u8"],
    "models": lambda s: ["models", "--json"],
}


@pytest.mark.parametrize("verb", list(READING_VERBS))
def test_verb(smoke, verb):
    _needs_library(smoke)
    out = check(verb, tunelens(*map(str, READING_VERBS[verb](smoke)), cwd=smoke["base"]))
    if verb == "search":
        assert len(json.loads(out)["hits"]) == 3
    elif verb == "dupes":
        json.loads(out)
    elif verb == "playlist radio":
        assert (smoke["base"] / "radio.m3u8").read_text().count("\n#EXTINF") == 3
    elif verb == "export":
        assert any((smoke["base"] / "export").rglob("*.jsonl"))
    else:
        assert out.strip(), f"`tunelens {verb}` printed nothing"


def test_repair(smoke, tmp_path):
    _needs_library(smoke)
    lib = tmp_path / "lib"
    shutil.copytree(smoke["lib"], lib)
    faiss_files = sorted(lib.glob("*.faiss"))
    assert faiss_files, "the library has no FAISS file to damage"
    faiss_files[0].unlink()
    check("repair", tunelens("repair", "--library", str(lib), cwd=tmp_path))
    assert faiss_files[0].exists()
    check("info", tunelens("info", "--library", str(lib), cwd=tmp_path))


def _serve_until_answered(verb: str, args: list[str], url_path: str, cwd: Path) -> None:
    """Starts a serving verb, waits for its port, asks one page, checks it is still alive, and stops it with
    Ctrl-C; fails naming the verb if it dies on the way."""
    port = free_port()
    log = cwd / f"{verb}.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([*_command(), *args, "--port", str(port)], cwd=cwd, env=_env(), stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.3)
        if proc.poll() is None:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{url_path}", timeout=60) as response:
                assert response.status == 200
            time.sleep(0.5)
        if proc.poll() is not None:
            pytest.fail(_verdict(verb, proc.returncode, log.read_text()) or f"`tunelens {verb}` stopped by itself",
                        pytrace=False)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_serve_starts_answers_and_stops(smoke):
    _needs_library(smoke)
    _serve_until_answered("serve", ["serve", "--library", str(smoke["lib"])], "/v1/search?q=piano&k=2",
                          smoke["base"])


def test_app_starts_answers_and_stops(smoke):
    _needs_library(smoke)
    _serve_until_answered("app", ["app", "--library", str(smoke["lib"])], "/", smoke["base"])


def test_a_native_crash_is_reported_with_the_verb():
    """What a segfault in a child looks like to these tests: a failure naming the verb and the signal."""
    proc = subprocess.run([sys.executable, "-X", "faulthandler", "-c", "import os; os.abort()"],
                          capture_output=True, text=True, timeout=60)
    why = _verdict("dupes", proc.returncode, proc.stderr)
    assert why is not None and why.startswith("`tunelens dupes` died of SIGABRT")
    assert "Fatal Python error" in why
