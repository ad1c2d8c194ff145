"""An interrupted `rumor swarm` (Ctrl-C, `timeout`'s SIGTERM, a hang-up, a kill of the
command alone) stops its nodes, removes its temporary dir and exits, leaving nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _wait_for(predicate: object, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize(
    ("signum", "whom"),
    [
        (signal.SIGTERM, "group"),  # timeout -s TERM
        (signal.SIGINT, "group"),  # Ctrl-C
        (signal.SIGHUP, "group"),  # the terminal went away
        (signal.SIGTERM, "command"),  # kill PID: the re-run child never gets it itself
    ],
)
def test_an_interrupted_run_leaves_no_temporary_dir(
    tmp_path: Path, signum: signal.Signals, whom: str
) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONHASHSEED"}  # it re-runs itself
    env.update(PYTHONPATH=str(ROOT), TMPDIR=str(scratch))
    log = (tmp_path / "out.txt").open("w")
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "node.swarm",
            "steady",
            "--nodes",
            "4",
            "--duration",
            "100000",
            "--out",
            str(tmp_path / "report"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=ROOT,
        start_new_session=True,
    )
    try:
        # The first progress line comes once every node started (in its temporary dir).
        started = _wait_for(lambda: "t=" in (tmp_path / "out.txt").read_text(), 120)
        assert started, (tmp_path / "out.txt").read_text()
        assert any(p.name.startswith("rumor-swarm-") for p in scratch.iterdir())
        if whom == "group":
            os.killpg(child.pid, signum)
        else:
            child.send_signal(signum)
        status = child.wait(timeout=60)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
        log.close()
    output = (tmp_path / "out.txt").read_text()
    assert status == 128 + signum, output
    assert "Traceback" not in output, output
    assert "interrupted" in output
    assert list(scratch.iterdir()) == []
    with pytest.raises(ProcessLookupError):  # the re-run child is gone too
        os.killpg(child.pid, 0)
    assert not (tmp_path / "report").exists()
