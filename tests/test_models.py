"""`tunelens models` lists every encoder and captioner with its weights here, licence, commercial use and where to get
what is missing; `tunelens models verify SPEC` runs a test chord and two texts through a model."""
from __future__ import annotations

import json

from typer.testing import CliRunner

from tunelens.app.cli import app


def test_models_lists_every_backend_with_licence_and_weights():
    from tunelens.caption.base import available_captioners
    from tunelens.embed.registry import available_encoders

    r = CliRunner().invoke(app, ["models", "--json"])
    assert r.exit_code == 0, r.output
    rows = {m["spec"]: m for m in json.loads(r.output)}
    for prefix in available_encoders() + available_captioners():  # every registered backend is listed
        assert any(spec.split(":")[0] == prefix.split(":")[0] for spec in rows), prefix
    default = rows["musicnn"]
    assert default["commercial"] == "yes" and "ISC" in default["licence"] and "Apache-2.0" in default["licence"]
    assert len(default["present"]) == 4 and default["size_mb"] > 80 and default["get"] == ""  # shipped weights
    clap = rows["clap:FOLDER|HUB_ID"]
    assert clap["present"] or "huggingface-cli download" in clap["get"]  # missing weights say where to get them
    r = CliRunner().invoke(app, ["models"])
    assert r.exit_code == 0 and "commercial use: yes" in r.output and "qwen2-audio:FOLDER|HUB_ID" in r.output


def test_models_verify_runs_a_tone_through_a_checkpoint(tmp_path):
    from tunelens.embed.random_checkpoints import make_random_clap

    folder = make_random_clap(tmp_path / "clap", window_seconds=1.0)
    r = CliRunner().invoke(app, ["models", "verify", f"clap:{folder}", "--device", "cpu", "--json"])
    assert r.exit_code == 0, r.output
    v = json.loads(r.output)
    assert v["dim"] == v["text_dim"] > 0 and v["text_ok"] and v["device"] == "cpu" and v["dtype"] == "float32"
    assert v["window_seconds"] == 1.0 and v["x_realtime"] > 0
    r = CliRunner().invoke(app, ["models", "verify", f"clap:{tmp_path / 'nothing'}"])
    assert r.exit_code == 2 and "nothing" in r.output and "Traceback" not in r.output
