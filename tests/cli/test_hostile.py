"""The `rumor` command against a hostile tester's reproductions (numbers are the tester's):
each test fails without its fix. Real processes of this tree's module."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from crdt import Identity
from node._datadir import DataDir
from node._lock import Holder, hold_lock
from node.app import _shell

from .test_headless import ROOT, free_port, init, running, wait_for


def rumor(*args: str | Path, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """This tree's `rumor` as a process, RUMOR_DATA_DIR unset, raw bytes in and out."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("RUMOR_DATA_DIR", None)
    return subprocess.run(
        [sys.executable, "-m", "node.app.cli", *map(str, args)],
        capture_output=True,
        timeout=90,
        check=False,
        input=stdin,
        cwd=ROOT,
        env=env,
    )


def out(done: subprocess.CompletedProcess[bytes]) -> str:
    assert done.returncode == 0, done.stderr
    return done.stdout.decode()


def error_line(done: subprocess.CompletedProcess[bytes]) -> str:
    """The one line a failed command says: no traceback, no internal error."""
    err = done.stderr.decode()
    assert done.returncode == 1, (done.returncode, err)
    assert err.count("\n") == 1 and err.startswith("rumor: error: "), err
    return err


def test_swarm_takes_its_own_options_after_the_command() -> None:
    listed = out(rumor("swarm", "--list"))
    assert listed.split()[0] == "steady"
    assert "usage: rumor swarm" in out(rumor("swarm", "--help"))
    assert out(rumor("--debug", "swarm", "--list")) == listed
    assert "swarm" in out(rumor("--help"))


def test_the_top_level_data_dir_is_the_commands_data_dir(tmp_path: Path) -> None:  # 3
    init(tmp_path / "a", "--listen", "127.0.0.1:0", "--dht-port", "0")
    out(rumor("--data-dir", tmp_path / "a", "create", "plans"))
    assert out(rumor("--data-dir", tmp_path / "a", "rooms")).startswith("plans\t")
    assert out(rumor("rooms", "--data-dir", tmp_path / "a")).startswith("plans\t")


def _ui_first_run(data_dir: Path) -> None:
    """What the UI's first run leaves: an identity, rooms/, its settings; no config.toml."""
    data_dir.mkdir()
    Identity.load_or_create(DataDir(data_dir).identity)
    (data_dir / "rooms").mkdir()
    (data_dir / "settings.json").write_text("{}\n")
    (data_dir / "tui.json").write_text("{}\n")


def test_shell_commands_take_a_data_dir_the_ui_made(tmp_path: Path) -> None:  # 4
    data_dir = tmp_path / "ui"
    _ui_first_run(data_dir)
    assert out(rumor("create", "plans", "--data-dir", data_dir)).startswith("rumor://invite/")
    assert len(out(rumor("send", "plans", "hi", "--data-dir", data_dir)).strip()) == 64
    assert out(rumor("history", "plans", "--data-dir", data_dir)).rstrip().endswith("> hi")
    assert out(rumor("rooms", "--data-dir", data_dir)).startswith("plans\t")
    assert out(rumor("invite", "plans", "--data-dir", data_dir)).startswith("rumor://invite/")
    # rumor run still wants rumor init's config; a dir without an identity is no data dir.
    assert "rumor init" in error_line(rumor("run", "--data-dir", data_dir))
    (tmp_path / "empty").mkdir()
    assert "not a rumor data dir" in error_line(rumor("rooms", "--data-dir", tmp_path / "empty"))


def test_bytes_that_are_not_utf8_are_one_line(tmp_path: Path) -> None:  # 7
    data_dir = tmp_path / "a"
    init(data_dir, "--listen", "127.0.0.1:0", "--dht-port", "0")
    out(rumor("create", "plans", "--data-dir", data_dir))
    done = rumor("send", "plans", "-", "--data-dir", data_dir, stdin=b"\xff\xfe\x00bad utf8")
    assert "not UTF-8" in error_line(done)
    # argv bytes that are not UTF-8 arrive as lone surrogates (os.fsdecode)
    assert "not UTF-8" in error_line(
        rumor("send", "plans", os.fsdecode(b"x\xff"), "--data-dir", data_dir)
    )
    assert "not UTF-8" in error_line(rumor("nick", os.fsdecode(b"\xfe"), "--data-dir", data_dir))


def test_a_damaged_control_file_is_one_line(tmp_path: Path) -> None:  # 7
    data_dir = tmp_path / "a"
    init(data_dir, "--listen", "127.0.0.1:0", "--dht-port", "0")
    with hold_lock(data_dir):  # this process stands for the running node
        for damage in ['{"pid": "x", "address": 5}', "[1]", '"x"', '{"address": "nowhere"}']:
            (data_dir / "control.json").write_text(damage)
            assert "control.json" in error_line(rumor("rooms", "--data-dir", data_dir)), damage


def test_a_closed_stdout_ends_quietly_as_sigpipe_would(tmp_path: Path) -> None:  # 12
    data_dir = tmp_path / "a"
    init(data_dir, "--listen", "127.0.0.1:0", "--dht-port", "0")
    read, write = os.pipe()
    os.close(read)  # the reader is gone before rumor writes a byte (`| head -0`)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "node.app.cli", "status", "--data-dir", str(data_dir)],
            stdout=write,
            stderr=subprocess.PIPE,
            timeout=90,
            check=False,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
    finally:
        os.close(write)
    assert (done.returncode, done.stderr) == (141, b"")


def test_text_from_the_network_is_printed_inert(tmp_path: Path) -> None:  # 11
    data_dir = tmp_path / "a"
    init(data_dir, "--listen", "127.0.0.1:0", "--dht-port", "0")
    out(rumor("create", "plans", "--data-dir", data_dir))
    nick, text = "\u202eeve\u2066", "pay \u202etxe.exe\u2069 now\u200f"  # as a peer could
    out(rumor("nick", nick, "--data-dir", data_dir))
    out(rumor("send", "plans", text, "--data-dir", data_dir))
    shown = out(rumor("history", "plans", "--data-dir", data_dir))
    assert shown.rstrip("\n").endswith("<\ufffdeve\ufffd> pay \ufffdtxe.exe\ufffd now\ufffd")
    raw = out(rumor("history", "plans", "--json", "--data-dir", data_dir))
    assert all(c not in raw for c in "\u202e\u2066\u2069\u200f")  # escaped, \u202e ...
    entry = json.loads(raw)
    assert (entry["nick"], entry["text"]) == (nick, text)  # ... and exact


def test_oversized_input_is_refused_in_plain_words_before_sending(tmp_path: Path) -> None:  # 14
    data_dir = tmp_path / "a"
    init(data_dir, "--listen", "127.0.0.1:0", "--dht-port", "0")
    out(rumor("create", "plans", "--data-dir", data_dir))
    most = _shell.MAX_MESSAGE_BYTES
    assert len(out(rumor("send", "plans", "-", "--data-dir", data_dir, stdin=b"x" * most))) == 65
    for size in (most + 1, 60_000, 200_000):
        done = rumor("send", "plans", "-", "--data-dir", data_dir, stdin=b"x" * size)
        assert f"a message is at most {most} bytes; this one is {size}\n" in error_line(done)
    done = rumor("nick", "n" * 5000, "--data-dir", data_dir)
    assert "a nick is at most 64 bytes; this one is 5000\n" in error_line(done)


def test_the_start_line_says_where_links_are_accepted_and_what_invites_name(
    tmp_path: Path,
) -> None:  # 13
    port = free_port()
    init(tmp_path / "a", "--listen", f"0.0.0.0:{port}", "--dht-port", "0")
    with running(tmp_path / "a") as node:
        started = node.log.splitlines()[0]
        assert f"links on 0.0.0.0:{port}, DHT on " in started, started
        assert started.endswith(f"; invites name 127.0.0.1:{port}"), started
        assert node.stop() == 0


def _in_parallel(*commands: Sequence[object]) -> list[subprocess.CompletedProcess[bytes]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    started = [
        subprocess.Popen(
            [sys.executable, "-m", "node.app.cli", *map(str, command)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=ROOT,
            env=env,
        )
        for command in commands
    ]
    done = []
    for process, command in zip(started, commands, strict=True):
        stdout, stderr = process.communicate(timeout=120)
        done.append(
            subprocess.CompletedProcess(
                [str(c) for c in command], process.returncode, stdout, stderr
            )
        )
    return done


def test_parallel_commands_wait_for_each_other(tmp_path: Path) -> None:  # 5
    data_dir = tmp_path / "a"
    init(data_dir, "--listen", "127.0.0.1:0", "--dht-port", "0")
    for done in _in_parallel(*[["create", f"r{i}", "--data-dir", data_dir] for i in range(3)]):
        out(done)
    assert sorted(
        line.split("\t")[0] for line in out(rumor("rooms", "--data-dir", data_dir)).splitlines()
    ) == ["r0", "r1", "r2"]
    sends = [["send", "r0", f"x {i}", "--data-dir", data_dir] for i in range(3)]
    for done in _in_parallel(*sends):
        out(done)
    history = out(rumor("history", "r0", "--data-dir", data_dir))
    assert sorted(line.rsplit(" ", 1)[1] for line in history.splitlines()) == list("012")


def test_a_control_file_left_by_a_killed_node_is_ignored(tmp_path: Path) -> None:  # 5
    data_dir = tmp_path / "a"
    init(data_dir, "--listen", "127.0.0.1:0", "--dht-port", "0")
    out(rumor("create", "plans", "--data-dir", data_dir))
    with running(data_dir) as node:
        wait_for(lambda: (data_dir / "control.json").exists(), "control.json")
        node.kill()  # SIGKILL: control.json stays behind
    assert (data_dir / "control.json").exists()
    sends = [["send", "plans", f"x {i}", "--data-dir", data_dir] for i in range(3)]
    for done in _in_parallel(*sends):
        out(done)
    assert len(out(rumor("history", "plans", "--data-dir", data_dir)).splitlines()) == 3


def test_the_lock_wait_counts_per_holder() -> None:  # 5
    now = [0.0]
    wait = _shell.LockWait(Path("d"), lambda: now[0])
    for pid in (10, 11, 12):  # commands taking their turns: each may take a while
        wait.check(Holder(pid, ""))
        now[0] += _shell.LOCK_WAIT - 1
        wait.check(Holder(pid, ""))
    now[0] += 1
    with pytest.raises(_shell.CommandError, match=r"busy: another rumor process \(pid 12\)"):
        wait.check(Holder(12, ""))
