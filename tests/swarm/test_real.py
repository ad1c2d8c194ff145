"""A real swarm: five `rumor run` processes on loopback form one room and converge, and
every process is gone afterwards."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from node.swarm import SCENARIOS
from node.swarm._real import run_real


def test_five_real_processes_converge(tmp_path: Path) -> None:
    report = run_real(SCENARIOS["steady"].sized(5, 5.0), seed=1)
    assert report["mode"] == "real"
    assert report["passed"], report["checks"]
    assert report["convergence"]["distinct_digests"] == 1
    assert len(report["convergence"]["digests"]) == 5
    assert all(n["link_count"] >= 1 for n in report["nodes"].values())
    assert report["ops"]["received"] > 0  # from the nodes' own metrics
    json.dumps(report)  # plain data
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True)
    assert "rumor-swarm-real-" not in ps.stdout  # every process stopped, its dir removed
