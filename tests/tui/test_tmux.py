"""`python -m tui` in a real terminal (tmux): create a room, type a message, read it back.

Skips where tmux is missing. The UI runs as its own process on a fresh data dir, so this
also covers the first run (identity created, welcome shown) and a clean exit.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

TMUX = shutil.which("tmux")
ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(TMUX is None, reason="tmux is not installed")


def tmux(*args: str) -> str:
    assert TMUX is not None
    done = subprocess.run([TMUX, *args], capture_output=True, text=True, timeout=10, check=True)
    return done.stdout


def wait_for_screen(session: str, text: str, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    screen = ""
    while time.monotonic() < deadline:
        screen = tmux("capture-pane", "-p", "-t", session)
        if text in screen:
            return screen
        time.sleep(0.1)
    raise AssertionError(f"{text!r} never appeared; the screen was:\n{screen}")


def test_create_a_room_and_type_a_message_under_tmux(tmp_path: Path) -> None:
    assert TMUX is not None
    session = f"rumor-test-{uuid.uuid4().hex[:8]}"
    data_dir = tmp_path / "data"
    status_file = tmp_path / "status"
    command = (
        f"cd {ROOT} && PYTHONPATH={ROOT} {sys.executable} -m tui --data-dir {data_dir};"
        f" echo $? > {status_file}; sleep 5"
    )
    env = {**os.environ, "TERM": "xterm-256color"}
    subprocess.run(
        [TMUX, "new-session", "-d", "-s", session, "-x", "120", "-y", "40", command],
        check=True,
        env=env,
        timeout=10,
    )
    try:
        wait_for_screen(session, "You are ")  # the node is open
        tmux("send-keys", "-t", session, "-l", "/create garden")
        tmux("send-keys", "-t", session, "Enter")
        wait_for_screen(session, "#garden")
        tmux("send-keys", "-t", session, "-l", "the tomatoes are ripe")
        tmux("send-keys", "-t", session, "Enter")
        screen = wait_for_screen(session, "the tomatoes are ripe ○")
        assert "│ the tomatoes are ripe" in screen
        tmux("send-keys", "-t", session, "C-q")
        deadline = time.monotonic() + 30
        while not status_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert status_file.read_text().strip() == "0"
        assert (data_dir / "identity.pem").exists()
    finally:
        subprocess.run([TMUX, "kill-session", "-t", session], capture_output=True, timeout=10)
