"""The shell commands as scripts use them: against a running `rumor run` (through its
control API) and against a stopped data dir (opened by the command), as real processes.
Every wait polls a condition until a deadline."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from .test_headless import DEADLINE, ROOT, init, one_line_error, rumor, running, wait_for


def rumor_in(
    data_dir: Path, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """`rumor` with the data dir given by RUMOR_DATA_DIR, as a script would."""
    return subprocess.run(
        [sys.executable, "-m", "node.app.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        input=stdin,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "RUMOR_DATA_DIR": str(data_dir)},
    )


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stderr
    return done.stdout


def _exercise(data_dir: Path, *, running_node: bool) -> None:
    """Every shell command once, on one data dir; the same whether a node runs or not."""
    assert ok(rumor_in(data_dir, "create", "plans")).startswith("rumor://invite/")
    if running_node:  # handed over through the inbox: picked up within a second
        wait_for(lambda: "plans" in ok(rumor_in(data_dir, "rooms")), "the room")
    rooms = ok(rumor_in(data_dir, "rooms")).splitlines()
    assert len(rooms) == 1
    name, prefix, members, _linked, sync = rooms[0].split("\t")
    assert (name, members, sync) == ("plans", "1 members", "synced")
    ok(rumor_in(data_dir, "nick", "alice"))
    first = ok(rumor_in(data_dir, "send", "plans", "hello from the shell")).strip()
    assert len(first) == 64
    ok(rumor_in(data_dir, "send", prefix[:4], "-", stdin="from stdin\nsecond line\n"))
    history = ok(rumor_in(data_dir, "history", "plans", "--limit", "5")).splitlines()
    assert [line.split(" ", 2)[2] for line in history] == [
        "<alice> hello from the shell",
        "<alice> from stdin ⏎ second line",
    ]
    entries = [
        json.loads(line)
        for line in ok(rumor_in(data_dir, "history", "plans", "--json")).splitlines()
    ]
    assert [e["text"] for e in entries] == ["hello from the shell", "from stdin\nsecond line"]
    assert entries[0]["id"] == first and entries[0]["nick"] == "alice"
    assert len(ok(rumor_in(data_dir, "history", prefix, "--limit", "1")).splitlines()) == 1
    invite = ok(rumor_in(data_dir, "invite", "plans")).strip()
    assert invite.startswith("rumor://invite/")
    status = rumor_in(data_dir, "status", "--json")
    report = json.loads(status.stdout)
    assert report["running"] is running_node
    assert [room["name"] for room in report["rooms"]] == ["plans"]
    assert status.returncode == (0 if running_node else 3)
    text = rumor_in(data_dir, "status")
    assert "room " + prefix in text.stdout and text.returncode == status.returncode
    # Misuse: one line each, non-zero.
    assert "no room 'nope'" in one_line_error(rumor_in(data_dir, "send", "nope", "x"))
    assert "empty" in one_line_error(rumor_in(data_dir, "send", "plans", "   "))
    assert "blank" in one_line_error(rumor_in(data_dir, "nick", " "))
    assert "blank" in one_line_error(rumor_in(data_dir, "create", "\t"))
    assert "blank" in one_line_error(rumor_in(data_dir, "history", " "))
    assert one_line_error(rumor_in(data_dir, "history", "plans", "--limit", "0"))
    ok(rumor_in(data_dir, "leave", "plans"))
    assert ok(rumor_in(data_dir, "rooms")) == ""


def test_shell_commands_on_a_stopped_data_dir(tmp_path: Path) -> None:
    init(tmp_path / "a", "--listen", "127.0.0.1:0", "--dht-port", "0")
    _exercise(tmp_path / "a", running_node=False)


def test_shell_commands_through_a_running_node(tmp_path: Path) -> None:
    data_dir = tmp_path / "a"
    init(data_dir, "--listen", "127.0.0.1:0", "--dht-port", "0")
    token = data_dir / "control.token"
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
    with running(data_dir) as node:
        wait_for(lambda: (data_dir / "control.json").exists(), "control.json")
        _exercise(data_dir, running_node=True)
        assert "control API on 127.0.0.1:" in node.log
        # The commands went through the node: it held the lock all along, and logged
        # the room it left.
        assert node.process.poll() is None
        assert node.stop() == 0
    assert not (data_dir / "control.json").exists()


def test_two_nodes_chat_through_send_and_tail(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for data_dir in (a, b):
        init(data_dir, "--listen", "127.0.0.1:0", "--dht-port", "0")
    with running(a), running(b):
        invite = ok(rumor_in(a, "create", "chat")).strip()
        wait_for(lambda: "chat" in ok(rumor_in(a, "rooms")), "a's room")
        ok(rumor_in(a, "nick", "alice"))
        ok(rumor_in(b, "join", invite))
        wait_for(lambda: "chat" in ok(rumor_in(b, "rooms")), "b's room")
        out, err = tmp_path / "tail.out", tmp_path / "tail.err"
        with out.open("w") as sink, err.open("w") as errors:
            tail = subprocess.Popen(
                [sys.executable, "-m", "node.app.cli", "tail", "chat", "--json"],
                stdout=sink,
                stderr=errors,  # a file, not a pipe nobody reads while it runs
                text=True,
                # A shell's background job ignores SIGINT, and so would the tail it starts
                # (Python keeps an inherited SIG_IGN): this test sends it Ctrl+C.
                preexec_fn=_default_sigint,
                cwd=ROOT,
                # Faulthandler: if it does not stop, SIGABRT shows where it is stuck.
                env={
                    **os.environ,
                    "PYTHONPATH": str(ROOT),
                    "RUMOR_DATA_DIR": str(b),
                    "PYTHONFAULTHANDLER": "1",
                },
            )
            try:
                ok(rumor_in(a, "send", "chat", "one"))
                wait_for(lambda: '"one"' in out.read_text(), "the first message at b")
                ok(rumor_in(a, "send", "chat", "two"))
                ok(rumor_in(b, "send", "chat", "three, from b"))
                wait_for(lambda: out.read_text().count("\n") >= 3, "three lines at b")
            finally:
                tail.send_signal(signal.SIGINT)
                try:
                    tail.wait(timeout=DEADLINE)
                except subprocess.TimeoutExpired:
                    tail.send_signal(signal.SIGABRT)
                    tail.wait()
                    stuck = err.read_text()
                    raise AssertionError(f"tail did not stop on SIGINT:\n{stuck}") from None
        lines = [json.loads(line) for line in out.read_text().splitlines()]
        assert [line["text"] for line in lines] == ["one", "two", "three, from b"]
        assert lines[0]["nick"] == "alice"
        assert "Traceback" not in err.read_text()
        a_history = ok(rumor_in(a, "history", "chat", "--json"))
        wait_for(lambda: "three, from b" in ok(rumor_in(a, "history", "chat")), "b's line at a")
        assert '"one"' in a_history


def test_run_logs_plain_lines_off_a_terminal_and_json_on_request(tmp_path: Path) -> None:
    init(tmp_path / "a", "--listen", "127.0.0.1:0", "--dht-port", "0")
    with running(tmp_path / "a") as node:
        first = node.log.splitlines()[0]
        assert first.startswith("INFO rumor: started: peer ")  # no timestamp of its own
    with running(tmp_path / "a", "--log-format", "json") as node:
        # Logged once the control API serves, which is after "started".
        wait_for(lambda: "control API on" in node.log, "the control API's line")
        entries = [json.loads(line) for line in node.log.splitlines()]
        assert entries[0]["level"] == "info" and entries[0]["message"].startswith("started")
        assert any(e["message"].startswith("control API on ") for e in entries)


def test_control_options_are_checked(tmp_path: Path) -> None:
    init(tmp_path / "a", "--listen", "127.0.0.1:0", "--dht-port", "0")
    done = rumor("run", "--data-dir", tmp_path / "a", "--control", "0.0.0.0:0")
    assert "--control-allow-remote" in one_line_error(done)
    done = rumor("run", "--data-dir", tmp_path / "a", "--control", "nonsense")
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    socket_path = tmp_path / "ctl.sock"
    with running(tmp_path / "a", "--control", f"unix:{socket_path}") as node:
        wait_for(lambda: (tmp_path / "a" / "control.json").exists(), "control.json")
        assert stat.S_IMODE(socket_path.stat().st_mode) == 0o600
        assert ok(rumor_in(tmp_path / "a", "rooms")) == ""
        assert node.stop() == 0
    assert not socket_path.exists()


def test_attach_without_a_node_or_a_ui_is_one_line(tmp_path: Path) -> None:
    init(tmp_path / "a", "--listen", "127.0.0.1:0", "--dht-port", "0")
    assert "no node is running" in one_line_error(rumor_in(tmp_path / "a", "attach"))
    try:
        import tui

        has_ui = hasattr(tui, "run_remote")
    except ImportError:
        has_ui = False
    with running(tmp_path / "a"):
        wait_for(lambda: (tmp_path / "a" / "control.json").exists(), "control.json")
        if not has_ui:  # (with the UI, attach opens it: tests/tui/test_attach.py)
            assert "tui.run_remote" in one_line_error(rumor_in(tmp_path / "a", "attach"))
        bad = rumor_in(
            tmp_path / "a",
            "attach",
            "127.0.0.1:1",
            "--token-file",
            str(tmp_path / "a" / "control.token"),
        )
        assert "cannot connect" in one_line_error(bad) or "tui.run_remote" in bad.stderr


@pytest.mark.parametrize("command", [["rooms"], ["status"], ["send", "x", "y"], ["tail", "x"]])
def test_shell_commands_on_an_uninitialised_dir_are_one_line(
    tmp_path: Path, command: list[str]
) -> None:
    assert "not a rumor data dir" in one_line_error(rumor_in(tmp_path / "none", *command))


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
