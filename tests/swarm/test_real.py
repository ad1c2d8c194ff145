"""A real swarm: five `rumor run` processes on loopback form one room, get traffic through
each node's control API (`RemoteClient`) and converge, and every process is gone
afterwards; what a real run does not measure is reported as not measured (null), never 0."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from node.swarm import SCENARIOS
from node.swarm._cli import finish
from node.swarm._real import run_real


def test_five_real_processes_converge(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = run_real(SCENARIOS["steady"].sized(5, 5.0), seed=1)
    assert report["mode"] == "real"
    assert report["passed"], report["checks"]
    assert report["convergence"]["distinct_digests"] == 1
    assert len(report["convergence"]["digests"]) == 5
    assert all(n["link_count"] >= 1 for n in report["nodes"].values())
    assert report["ops"]["received"] > 0  # from the nodes' own metrics
    # Traffic went in through the nodes' clients, and every node holds every message.
    delivery = report["delivery"]
    assert delivery["messages"] > 0
    assert delivery["due"] == delivery["messages"] * 5 and delivery["held"] == delivery["due"]
    assert delivery["rate"] == 1.0
    timing = report["time"]
    assert 0 < timing["traffic_start"] < timing["traffic_end"] <= timing["converged_at"]
    # Not measured in a real run: null, not a zero that reads as a result.
    assert report["latency_ms"] is None and report["receptions_per_op"] is None
    assert report["dht_network"] is None
    assert all(n["bytes"] is None for n in report["nodes"].values())
    json.dumps(report)  # plain data
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True)
    assert "rumor-swarm-real-" not in ps.stdout  # every process stopped, its dir removed
    assert finish(report, tmp_path / "out", "rumor swarm steady --real") == 0
    out = capsys.readouterr().out
    assert "latency not measured" in out and "receptions per op not measured" in out
    assert "0 ms" not in out
    page = (tmp_path / "out" / "report.html").read_text()
    assert "not measured" in page
