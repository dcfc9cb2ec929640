"""kill -9 at a random moment of index, caption, dupes, export or repair, then a rerun: the library ends identical to
a clean run's (`scripts/kill_rounds.py`; the full 20 rounds are run for the notes, CI runs 3)."""
from __future__ import annotations

import pytest
from conftest import load_script


@pytest.mark.slow
def test_killed_commands_rerun_to_the_clean_result(demo_music, tmp_path, capsys):
    rounds = load_script("kill_rounds")
    code = rounds.main(["--rounds", "3", "--seed", "5", "--music", str(demo_music), "--tracks", "4",
                        "--work", str(tmp_path / "kill"), "--stages", "index,caption,export,repair",
                        "--kill-within", "0.5"])  # early enough to land even when the machine is busier than before
    out = capsys.readouterr().out
    assert code == 0 and "3 of 3 rounds identical to the clean run" in out, out
    assert out.count(" killed at ") >= 1, out  # at least one command really was killed mid-run
