"""The `rumor` command as a person runs it: through the installed console script."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from node.cli import main


def rumor(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the console script if installed, else the module, as a separate process."""
    exe = shutil.which("rumor")
    command = [exe, *args] if exe else [sys.executable, "-m", "node.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def test_demo_converges_and_keeps_its_histories(tmp_path: Path) -> None:
    done = rumor("demo", "--data-dir", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "converged: yes" in done.stdout
    before, after = done.stdout.split("after sync:")
    assert "weekend plans" in before
    assert "saturday: hike" in after and after.count("(edited)") == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alice", "bob"]
    assert (tmp_path / "alice" / "room.sqlite3").stat().st_size > 0


@pytest.mark.parametrize("args", [["bogus"], ["demo", "--nope"], ["demo", "--data-dir"]])
def test_bad_arguments_give_one_line_and_status_2(args: list[str]) -> None:
    done = rumor(*args)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith(("rumor: error: ", "rumor demo: error: "))
    assert "Traceback" not in done.stderr


def test_unusable_data_dir_gives_one_line_and_status_1(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    done = rumor("demo", "--data-dir", str(blocker))
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith("rumor: error: ")


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    assert "demo" in capsys.readouterr().out
