"""`node.swarm.main` as `rumor swarm` calls it: --list, --help and no arguments answer at
once with a status (never SystemExit, never a run), whatever the working directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from node.swarm import SCENARIOS, main


@pytest.fixture(autouse=True)
def _elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # a run would write ./swarm-report here
    monkeypatch.delenv("PYTHONHASHSEED", raising=False)  # a run would re-run itself


def test_list_names_every_scenario(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--list"]) == 0
    out = capsys.readouterr().out
    assert [line.split()[0] for line in out.splitlines()] == list(SCENARIOS)
    assert list(tmp_path.iterdir()) == []


def test_help_returns_0_and_shows_the_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: rumor swarm") and "--real" in out and "late-joiner" in out
    assert list(tmp_path.iterdir()) == []


def test_no_arguments_show_usage_and_scenarios_and_run_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("usage: rumor swarm") and "steady" in captured.err
    assert list(tmp_path.iterdir()) == []


def test_bad_options_return_2_instead_of_raising(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["steady", "--nodes", "x"]) == 2
    assert main(["steady", "--bogus"]) == 2
    assert capsys.readouterr().err.count("\n") == 2
