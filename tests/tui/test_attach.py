"""`rumor attach`: the UI drives a `rumor run` process through its control API."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from datetime import UTC
from pathlib import Path

from node.client import RemoteClient
from tui import RumorApp

from ..cli.test_headless import ROOT, init, running, wait_for
from ._harness import run, screen_text, submit, until


def test_the_ui_attached_to_a_running_node_creates_a_room_and_chats(tmp_path: Path) -> None:
    data = tmp_path / "node"
    init(data, "--listen", "127.0.0.1:0", "--dht-port", "0")
    with running(data) as node:
        wait_for(lambda: (data / "control.json").exists(), "control.json")
        factory = functools.partial(RemoteClient.connect, data)
        app = RumorApp(factory, state_dir=tmp_path / "ui", tz=UTC)

        async def scenario() -> None:
            async with app.run_test(size=(120, 40)) as pilot:
                await until(pilot, lambda: app.ready, "the remote client")
                await submit(pilot, app, "/nick remote")
                await until(pilot, lambda: app.me.nick == "remote", "the nick")
                await submit(pilot, app, "/create attached")
                await until(pilot, lambda: app.current is not None, "the room")
                await pilot.press(*"typed through the control API")
                await pilot.press("enter")
                await until(
                    pilot,
                    lambda: "typed through the control API" in screen_text(app.timeline),
                    "the message on screen",
                )

        run(scenario)
        # The message is the running node's, stored there: its own shell command shows it.
        history = subprocess.run(
            [sys.executable, "-m", "node.app.cli", "history", "attached", "--json"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd=ROOT,
            env={"PYTHONPATH": str(ROOT), "RUMOR_DATA_DIR": str(data), "PATH": "/usr/bin:/bin"},
        )
        assert history.returncode == 0, history.stderr
        texts = [json.loads(line)["text"] for line in history.stdout.splitlines()]
        assert texts == ["typed through the control API"]
        assert node.stop() == 0
