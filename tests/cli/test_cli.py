"""The `rumor` command as a person runs it: through the installed console script."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from node._invite import Invite
from node._lock import hold_lock
from node.app import _run as _headless
from node.app import cli
from node.app._args import DEBUG_ENV
from node.app._config import Config
from node.app._run import RunError, run_node
from node.app.cli import main

ROOT = Path(__file__).resolve().parents[2]


def rumor(*args: str) -> subprocess.CompletedProcess[str]:
    """Run this tree's `rumor` (the module, not whatever console script is installed) as
    a separate process."""
    return subprocess.run(
        [sys.executable, "-m", "node.app.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def test_demo_headless_converges_and_keeps_the_nodes_data_dirs(tmp_path: Path) -> None:
    done = rumor("demo", "--headless", "--data-dir", str(tmp_path))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[-1].startswith("converged: yes")
    assert lines[0].startswith("<ada> hi all!")  # the first line comes from a bot node
    assert "<you> hi ada! is this really peer to peer?" in lines
    assert any(line.startswith("<ada> ↳ hi! I'm ada") for line in lines)  # named: answered
    offline = lines.index("-- cy's node goes offline --")
    back = lines.index("-- cy's node comes back --")
    said_while_away = [line for line in lines[offline:back] if line.startswith("<")]
    assert said_while_away
    # What cy's node lacked when it came back: what was said while its node was closed
    # (the lines between the markers are what *our* node saw then, which under load can
    # be a little more or less, so only a count that makes sense is checked).
    caught_up = [
        int(match.group(1))
        for line in lines
        if (match := re.match(r"<cy> back! caught up on (\d+) messages", line))
    ]
    assert len(caught_up) == 1 and 1 <= caught_up[0] <= len(lines)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ada", "bob", "cy", "you"]


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


def test_no_command_prints_help(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without the UI in this build, `rumor` alone (no node running) shows the help.
    monkeypatch.setattr(cli, "_tui_hook", lambda name: None)
    assert main(["--data-dir", str(tmp_path)]) == 0
    assert "demo" in capsys.readouterr().out


# -- the command line's boundary: the node's errors in one line, bugs in one line -------


class _NodeThatFailsToJoin:
    """Stands in for `Node`: makes the room's file, then fails as the node does when a
    stored setting cannot be used (an invalid nick it must author)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, data_dir: Path, **options: object) -> AsyncIterator[_NodeThatFailsToJoin]:
        yield cls(data_dir)

    async def create_room(self, name: str, *, room_id: bytes, secret: bytes) -> None:
        await self.join(Invite(room_id, secret, name))

    async def join(self, invite: Invite) -> None:
        path = self.data_dir / "rooms" / f"{invite.room.hex()}.sqlite3"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"half made")
        path.with_name(path.name + "-wal").write_bytes(b"")
        raise ValueError("cannot author this op: bad_body: control character in text")


def test_a_node_error_in_create_is_one_line_and_leaves_no_room(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["init", "--data-dir", str(tmp_path), "--dht-port", "0"]) == 0
    capsys.readouterr()
    monkeypatch.setattr(cli, "Node", _NodeThatFailsToJoin)
    assert main(["create", "general", "--data-dir", str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    assert out == ""  # no invite for a room that was not made
    assert err == (
        f"rumor: error: cannot store the room in {tmp_path}: cannot author this op: "
        "bad_body: control character in text\n"
    )
    assert list((tmp_path / "rooms").iterdir()) == []


def test_a_node_error_in_join_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["init", "--data-dir", str(tmp_path), "--dht-port", "0"]) == 0
    capsys.readouterr()
    monkeypatch.setattr(cli, "Node", _NodeThatFailsToJoin)
    invite = Invite(b"r" * 32, b"s" * 32, "theirs", ("192.0.2.1:7340",))
    assert main(["join", invite.to_uri(), "--data-dir", str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert err.startswith(f"rumor: error: cannot store the room in {tmp_path}: cannot author")


async def test_run_reports_a_node_that_cannot_open_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Unopenable:
        @staticmethod
        @contextlib.asynccontextmanager
        async def open(data_dir: Path, **options: object) -> AsyncIterator[None]:
            raise ValueError("settings.json: Expecting value: line 1 column 10 (char 9)")
            yield

    monkeypatch.setattr(_headless, "Node", Unopenable)
    with hold_lock(tmp_path) as lock, pytest.raises(RunError) as caught:
        await run_node(tmp_path, Config(listen="127.0.0.1:0", dht_port=0), lock)
    assert str(caught.value) == (
        f"cannot start the node on {tmp_path}: settings.json: Expecting value: line 1 "
        "column 10 (char 9)"
    )


def test_a_bug_is_one_line_and_status_70_unless_debugging(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(args: object) -> int:
        raise RuntimeError("a bug\nover two lines")

    monkeypatch.setattr(cli, "_dispatch", broken)
    monkeypatch.delenv(DEBUG_ENV, raising=False)
    assert main(["demo"]) == 70
    _, err = capsys.readouterr()
    assert err.count("\n") == 1
    assert err.startswith("rumor: internal error: RuntimeError: a bug over two lines")
    assert "rumor --debug" in err

    assert main(["--debug", "demo"]) == 70
    _, err = capsys.readouterr()
    assert err.startswith("Traceback (most recent call last):")
    assert "in broken" in err
    assert err.endswith("\nrumor: internal error: RuntimeError: a bug over two lines\n")

    monkeypatch.setenv(DEBUG_ENV, "1")
    assert main(["demo"]) == 70
    assert "Traceback" in capsys.readouterr().err
