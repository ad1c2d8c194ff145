"""`node.swarm.main`: the files it writes, the HTML report's plots, TOML scenarios, exit
status, and byte-identical reports across processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import pytest

from node.swarm import ScenarioError, load_scenario, main
from node.swarm._html import FIGURES

ROOT = Path(__file__).resolve().parents[2]

TOML = """
name = "tiny-partition"
description = "two sides for a while"
nodes = 4
duration = 60
settle = 200

[network]
latency = [0.01, 0.05]
loss = 0.01

[traffic]
rate = 1.5
size = "uniform"
min_size = 20
max_size = 200

[[fault]]
kind = "partition"
at = 10
heal = 40

[[fault]]
kind = "degrade"
at = 5
count = 2
latency = 0.05
loss = 0.1
"""


def swarm(*args: str, hash_seed: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONHASHSEED"}
    env["PYTHONPATH"] = str(ROOT)
    if hash_seed is not None:
        env["PYTHONHASHSEED"] = hash_seed
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, node.swarm as s; sys.exit(s.main(sys.argv[1:]))",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env,
        cwd=ROOT,
    )


class _Figures(HTMLParser):
    """Collects each <figure id=...> and how many SVG shapes it holds."""

    def __init__(self) -> None:
        super().__init__()
        self.figures: dict[str, int] = {}
        self.scripts = 0
        self.external: list[str] = []
        self._current: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "figure":
            self._current = (found.get("id") or "").removeprefix("fig-")
            self.figures[self._current] = 0
        elif tag in ("path", "rect", "line", "circle", "use") and self._current is not None:
            self.figures[self._current] += 1
        elif tag == "script":
            self.scripts += 1
        for key in ("src", "href"):
            value = found.get(key) or ""
            if value and not value.startswith(("#", "data:")):
                self.external.append(value)

    def handle_endtag(self, tag: str) -> None:
        if tag == "figure":
            self._current = None


def test_reports_are_the_same_bytes_across_processes_and_hash_seeds(tmp_path: Path) -> None:
    outs = []
    for n, hash_seed in enumerate(("1", "2")):
        out = tmp_path / f"run{n}"
        done = swarm(
            "steady",
            "--nodes",
            "4",
            "--duration",
            "20",
            "--seed",
            "5",
            "--out",
            str(out),
            hash_seed=hash_seed,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        outs.append((out / "report.json").read_bytes())
    assert outs[0] == outs[1]
    report = json.loads(outs[0])
    assert report["seed"] == 5 and report["passed"]
    text = outs[0].decode()
    assert str(tmp_path) not in text and tempfile.gettempdir() + "/" not in text


def test_html_report_holds_its_plots_and_stands_alone(tmp_path: Path) -> None:
    (tmp_path / "s.toml").write_text(TOML)
    done = swarm(str(tmp_path / "s.toml"), "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "t=" in done.stdout and "delivered" in done.stdout  # progress lines (not a TTY)
    page = (tmp_path / "out" / "report.html").read_text()
    parser = _Figures()
    parser.feed(page)
    assert set(FIGURES) <= set(parser.figures)
    for name in FIGURES:
        assert parser.figures[name] > 10, (name, parser.figures[name])
    assert parser.scripts == 0 and parser.external == []
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["scenario"]["name"] == "tiny-partition"
    assert [f["kind"] for f in report["scenario"]["faults"]] == ["partition", "degrade"]


def test_a_failing_run_exits_non_zero_with_seed_and_command(tmp_path: Path) -> None:
    # The partition heals when traffic ends, and the swarm gets a second to converge.
    path = tmp_path / "never.toml"
    path.write_text(
        'nodes = 4\nduration = 30\nsettle = 0.5\n[[fault]]\nkind = "partition"\nat = 5\nheal = 30\n'
    )
    done = swarm(str(path), "--seed", "9", "--out", str(tmp_path / "out"))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "seed 9" in done.stderr
    assert f"rumor swarm {path} --nodes 4 --seed 9 --duration 30" in done.stderr
    assert (tmp_path / "out" / "report.html").exists()


def test_bad_scenarios_give_one_line_and_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('nodes = 4\n[[fault]]\nkind = "meteor"\n')
    with pytest.raises(ScenarioError, match="kind must be one of"):
        load_scenario(bad)
    bad.write_text("nodes = 4\nspeed = 3\n")
    with pytest.raises(ScenarioError, match="unknown key in \\[scenario\\]: speed"):
        load_scenario(bad)
    assert main(["--list"]) == 0
    assert "late-joiner" in capsys.readouterr().out
    done = swarm("no-such-scenario", hash_seed="0")
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    good = tmp_path / "good.toml"
    good.write_text(TOML)
    scenario = load_scenario(good)
    assert scenario.nodes == 4 and scenario.traffic.size == "uniform"
    assert scenario.network.latency == (0.01, 0.05)
