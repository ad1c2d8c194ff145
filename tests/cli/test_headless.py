"""The headless node as an operator runs it: `rumor init/create/join/run` as real processes
on loopback. Every wait polls a condition until a deadline."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from crdt import format_peer_id
from node import Node, NodeStatus, RoomStatus, parse_invite
from node._lock import hold_lock
from node.app._config import Config, ConfigError, load_config, write_config
from node.app._run import INBOX_POLL, Watcher
from node.app.cli import main

ROOT = Path(__file__).resolve().parents[2]
DEADLINE = 20.0  # seconds any one condition may take to come true
POLL = 0.05


def rumor(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "node.app.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def free_port(kind: socket.SocketKind = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(condition: Callable[[], object], what: str, deadline: float = DEADLINE) -> None:
    end = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(POLL)


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    """The stderr of a failed command, checked to be one line and no traceback."""
    assert done.returncode != 0, done.stdout
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("rumor"), done.stderr
    assert "Traceback" not in done.stderr
    return done.stderr


class Running:
    """A `rumor run` process; its log (stderr) goes to a file we can poll."""

    def __init__(self, data_dir: Path, *args: str) -> None:
        self.log_path = data_dir.parent / f"{data_dir.name}.log"
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "node.app.cli", "run", "--data-dir", str(data_dir), *args],
            stdout=subprocess.DEVNULL,
            stderr=self._log,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )

    @property
    def log(self) -> str:
        return self.log_path.read_text()

    def wait_started(self) -> None:
        wait_for(lambda: "started: peer" in self.log or self.process.poll() is not None, "start")
        assert self.process.poll() is None, self.log

    def stop(self, signum: int = signal.SIGTERM) -> int:
        self.process.send_signal(signum)
        try:
            return self.process.wait(timeout=DEADLINE)
        finally:
            self._log.close()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._log.close()


@contextlib.contextmanager
def running(data_dir: Path, *args: str) -> Iterator[Running]:
    node = Running(data_dir, *args)
    try:
        node.wait_started()
        yield node
    finally:
        node.kill()  # a no-op after a clean stop; a failed test leaves no process behind


def init(data_dir: Path, *args: str) -> None:
    """Initialise in-process: fast, and `rumor init` itself is tested as a process."""
    assert main(["init", "--data-dir", str(data_dir), *args]) == 0


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=2) as response:
        return str(response.read().decode())


def metric(text: str, name: str, room: str | None = None) -> float | None:
    label = "" if room is None else re.escape(f'{{room="{room[:16]}"}}')
    found = re.search(rf"^{name}{label} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else None


# -- init, create, join ----------------------------------------------------------------


def test_init_create_join_round_trip(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    done = rumor("init", "--data-dir", a, "--listen", "127.0.0.1:7391", "--dht-port", "0")
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(r"[a-z2-7]{52}\n", done.stdout)
    config = tomllib.loads((a / "config.toml").read_text())
    assert config["listen"] == "127.0.0.1:7391" and config["dht_port"] == 0
    assert (a / "identity.pem").stat().st_mode & 0o077 == 0

    again = rumor("init", "--data-dir", a)
    assert "already initialised" in one_line_error(again)
    assert tomllib.loads((a / "config.toml").read_text()) == config  # untouched

    created = rumor("create", "general", "--data-dir", a)
    assert created.returncode == 0, created.stderr
    invite = parse_invite(created.stdout)
    assert invite.name == "general"
    assert invite.peers == ("127.0.0.1:7391",)  # the configured address: no node runs
    assert [p.name for p in (a / "rooms").glob("*.sqlite3")] == [f"{invite.room.hex()}.sqlite3"]

    init(b)
    for _ in range(2):  # joining twice is harmless
        joined = rumor("join", created.stdout.strip(), "--data-dir", b)
        assert joined.returncode == 0, joined.stderr
        assert invite.room.hex()[:8] in joined.stdout
    assert [p.name for p in (b / "rooms").glob("*.sqlite3")] == [f"{invite.room.hex()}.sqlite3"]


# -- running nodes ---------------------------------------------------------------------


async def test_two_nodes_sync_and_stop_cleanly_losing_nothing(tmp_path: Path) -> None:
    """A's messages are written with the Node library on A's data dir before A runs;
    B joins A's invite; both run; B ends up holding them, and keeps them after SIGTERM."""
    a, b = tmp_path / "a", tmp_path / "b"
    a_dht = free_port(socket.SOCK_DGRAM)
    init(a, "--listen", f"127.0.0.1:{free_port()}", "--dht-port", str(a_dht))
    init(b, "--listen", "127.0.0.1:0", "--dht-port", "0", "--bootstrap", f"127.0.0.1:{a_dht}")
    invite_text = rumor("create", "general", "--data-dir", a).stdout.strip()
    invite = parse_invite(invite_text)
    sent = [f"message {i}" for i in range(5)]
    async with Node.open(a, dht_port=None, verify_workers=0) as author:
        room = author.room(invite.room)
        for text in sent:
            await room.send(text)
    assert rumor("join", invite_text, "--data-dir", b).returncode == 0

    metrics = f"127.0.0.1:{free_port()}"
    with running(a) as node_a, running(b, "--metrics", metrics) as node_b:
        url = f"http://{metrics}/metrics"
        # A: JOIN and five messages; B: its JOIN.
        wait_for(lambda: metric(scrape(url), "rumor_room_ops", invite.room.hex()) == 7, "sync")
        text = scrape(url)
        for name in (
            "rumor_links",
            "rumor_dht_contacts",
            "rumor_rooms",
            "rumor_room_peers",
            "rumor_room_ops",
            "rumor_room_sync_lag_ops",
            "rumor_room_held_ops",
            "rumor_room_ops_received_total",
            "rumor_room_ops_sent_total",
            "rumor_room_ops_duplicate_total",
            "rumor_room_ops_rejected_total",
            "rumor_room_penalties_total",
            "rumor_room_refusals_total",
            "rumor_rooms_failed",
            "rumor_dht_events_total",
        ):
            assert re.search(rf"^# TYPE {name} (gauge|counter)$", text, re.MULTILINE), name
        assert metric(text, "rumor_links") == 1
        assert metric(text, "rumor_rooms") == 1
        assert metric(text, "rumor_room_sync_lag_ops", invite.room.hex()) == 0
        received = metric(text, "rumor_room_ops_received_total", invite.room.hex())
        assert received is not None and received >= 6
        wait_for(lambda: (metric(scrape(url), "rumor_dht_contacts") or 0) >= 1, "DHT contact")
        assert metric(text, "rumor_rooms_failed") == 0
        # B bootstrapped from A: it sent DHT RPCs, and A's answers came in.
        dht_line = r'^rumor_dht_events_total\{event="datagrams in"\} (\S+)$'
        served = re.search(dht_line, scrape(url), re.MULTILINE)
        assert served is not None and float(served.group(1)) >= 1
        with pytest.raises(urllib.error.HTTPError, match="404"):
            scrape(f"http://{metrics}/elsewhere")
        wait_for(lambda: "link up: peer" in node_a.log and "link up: peer" in node_b.log, "logs")
        wait_for(lambda: "caught up: 7 ops (6 more received)" in node_b.log, "B's catch-up line")
        assert "DHT reachable" in node_b.log

        assert node_a.stop(signal.SIGINT) == 0, node_a.log
        wait_for(lambda: "link down: peer" in node_b.log, "B to see the link go")
        assert node_b.stop(signal.SIGTERM) == 0, node_b.log
    assert node_a.log.rstrip().endswith("stopped") and "shutting down (SIGINT)" in node_a.log
    assert "shutting down (SIGTERM)" in node_b.log and "Traceback" not in node_b.log

    async with Node.open(b, dht_port=None, verify_workers=0) as reopened:
        room = reopened.room(invite.room)
        assert [m.text for m in room.timeline()] == sent
        assert len(room.members()) == 2


async def test_sigterm_mid_sync_keeps_what_was_stored_and_a_restart_finishes(
    tmp_path: Path,
) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    init(a, "--listen", f"127.0.0.1:{free_port()}", "--dht-port", "0")
    init(b, "--listen", "127.0.0.1:0", "--dht-port", "0")
    invite_text = rumor("create", "big", "--data-dir", a).stdout.strip()
    invite = parse_invite(invite_text)
    async with Node.open(a, dht_port=None, verify_workers=0) as author:
        room = author.room(invite.room)
        for i in range(1000):
            await room.send(f"message {i}")
    assert rumor("join", invite_text, "--data-dir", b).returncode == 0
    total = 1002  # A's JOIN and messages, B's JOIN

    metrics = f"127.0.0.1:{free_port()}"
    url = f"http://{metrics}/metrics"
    with running(a):
        with running(b, "--metrics", metrics) as node_b:
            wait_for(
                lambda: (metric(scrape(url), "rumor_room_ops", invite.room.hex()) or 0) > 1,
                "the first ops",
            )
            stored = metric(scrape(url), "rumor_room_ops", invite.room.hex())
            first_stop = node_b.stop()
        assert first_stop == 0, node_b.log
        async with Node.open(b, dht_port=None, verify_workers=0) as reopened:
            [status] = reopened.status().rooms
            assert stored is not None and stored <= status.ops <= total
        with running(b, "--metrics", metrics) as node_b:
            wait_for(
                lambda: metric(scrape(url), "rumor_room_ops", invite.room.hex()) == total,
                "the rest after a restart",
            )
            assert node_b.stop() == 0, node_b.log


def test_an_invite_queued_while_no_node_ran_is_joined_at_start(tmp_path: Path) -> None:
    """`rumor create` while another process briefly held the data dir queues the room;
    the next `rumor run` joins it as it starts."""
    init(tmp_path, "--listen", "127.0.0.1:0", "--dht-port", "0")
    with hold_lock(tmp_path):
        created = rumor("create", "queued", "--data-dir", tmp_path)
    assert created.returncode == 0 and "handed to the node running" in created.stderr
    assert not list((tmp_path / "rooms").glob("*.sqlite3"))
    invite = parse_invite(created.stdout)
    with running(tmp_path) as node:
        wait_for(lambda: f"room joined: {invite.room.hex()[:8]} 'queued'" in node.log, "join")
        assert node.stop() == 0
    assert not list((tmp_path / "inbox").glob("*.invite"))


def test_default_data_dir_is_the_platforms(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "XDG_DATA_HOME": str(tmp_path)}
    command = [sys.executable, "-m", "node.app.cli", "init", "--dht-port", "0"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "rumor" / "config.toml").is_file()
    assert (tmp_path / "rumor" / "identity.pem").is_file()


async def test_running_node_picks_up_new_rooms_and_refuses_a_second_run(tmp_path: Path) -> None:
    a = tmp_path / "a"
    init(a, "--listen", "127.0.0.1:0", "--dht-port", "0")
    with running(a) as node:
        address = re.search(r"links on (\S+),", node.log)
        assert address is not None

        second = rumor("run", "--data-dir", a)
        assert f"in use by another rumor process (pid {node.process.pid})" in one_line_error(second)

        created = rumor("create", "later", "--data-dir", a)
        assert created.returncode == 0, created.stderr
        assert "handed to the node running" in created.stderr
        invite = parse_invite(created.stdout)
        assert invite.peers == (address.group(1),)  # the running node's real address
        wait_for(lambda: f"room joined: {invite.room.hex()[:8]} 'later'" in node.log, "pickup")
        wait_for(lambda: not list((a / "inbox").glob("*.invite")), "inbox emptied")

        # A join goes the same way; an unusable invite in the inbox is dropped with a warning.
        (a / "inbox" / "0-damaged.invite").write_text("rumor://invite/damaged\n")
        other = tmp_path / "other"
        init(other, "--listen", "127.0.0.1:0", "--dht-port", "0")
        elsewhere = parse_invite(rumor("create", "elsewhere", "--data-dir", other).stdout)
        joined = rumor("join", elsewhere.to_uri(), "--data-dir", a)
        assert joined.returncode == 0 and "handed to the node running" in joined.stderr
        wait_for(lambda: f"room joined: {elsewhere.room.hex()[:8]}" in node.log, "join pickup")
        assert "0-damaged.invite: unusable invite" in node.log
        wait_for(lambda: not list((a / "inbox").glob("*.invite")), "inbox emptied")
        assert node.process.poll() is None
        assert node.stop(signal.SIGHUP) == 0, node.log  # a closed terminal stops it cleanly
    assert "shutting down (SIGHUP)" in node.log
    assert sorted(p.name for p in (a / "rooms").glob("*.sqlite3")) == sorted(
        f"{room.hex()}.sqlite3" for room in (invite.room, elsewhere.room)
    )
    # The room made through the inbox is ours from its first op; in the room joined
    # through it, A has not said it joined, since no member has told it what it holds.
    async with Node.open(a, dht_port=None, verify_workers=0) as reopened:
        assert reopened.room(invite.room).members() == [reopened.peer_id]
        assert reopened.room(elsewhere.room).members() == []


def test_bad_inbox_entries_are_set_aside_once_and_the_node_keeps_serving(
    tmp_path: Path,
) -> None:
    """An invite whose room file is damaged, a directory, a non-UTF-8 file and a damaged
    invite: each is logged once and kept as *.failed; the node serves on, joins a good
    invite after them, and starts again without retrying them."""
    a = tmp_path / "a"
    init(a, "--listen", "127.0.0.1:0", "--dht-port", "0")
    damaged = parse_invite(rumor("create", "damaged", "--data-dir", a).stdout)
    room_file = a / "rooms" / f"{damaged.room.hex()}.sqlite3"
    room_file.write_bytes(b"not a database " * 1000)
    inbox = a / "inbox"
    inbox.mkdir()
    (inbox / "1-room.invite").write_text(damaged.to_uri() + "\n")
    (inbox / "2-dir.invite").mkdir()
    (inbox / "3-bytes.invite").write_bytes(b"\xff\xfe")
    (inbox / "4-junk.invite").write_text("rumor://invite/damaged\n")
    (inbox / "4-junk.invite.failed").write_text("set aside before\n")

    with running(a) as node:
        wait_for(lambda: node.log.count("WARNING rumor: inbox ") >= 4, "the warnings")
        time.sleep(3 * INBOX_POLL)  # the next looks at the inbox: no retries, no more lines
        warnings = [line for line in node.log.splitlines() if "rumor: inbox " in line]
        assert len(warnings) == 4, warnings
        assert "1-room.invite: cannot join its room (" in warnings[0]
        assert "is not a rumor store" in warnings[0]
        assert "kept as 1-room.invite.failed" in warnings[0]
        assert "2-dir.invite: cannot read it" in warnings[1]
        assert "3-bytes.invite: unusable invite (not UTF-8" in warnings[2]
        assert "4-junk.invite: unusable invite" in warnings[3]
        assert "kept as 4-junk.invite.1.failed" in warnings[3]  # the older one stays
        assert "Traceback" not in node.log

        later = parse_invite(rumor("create", "later", "--data-dir", a).stdout)
        wait_for(lambda: f"room joined: {later.room.hex()[:8]} 'later'" in node.log, "pickup")
        assert node.stop() == 0, node.log
    assert sorted(p.name for p in inbox.iterdir()) == [
        "1-room.invite.failed",
        "2-dir.invite.failed",
        "3-bytes.invite.failed",
        "4-junk.invite.1.failed",
        "4-junk.invite.failed",
    ]
    assert (inbox / "1-room.invite.failed").read_text() == damaged.to_uri() + "\n"
    assert (inbox / "4-junk.invite.failed").read_text() == "set aside before\n"
    assert room_file.read_bytes() == b"not a database " * 1000  # left as it was

    with running(a) as node:
        time.sleep(2 * INBOX_POLL)
        assert "rumor: inbox" not in node.log
        assert node.stop() == 0, node.log


def test_an_ipv6_dht_address_is_logged_in_brackets(tmp_path: Path) -> None:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    init(tmp_path, "--listen", "[::1]:0", "--dht-port", "0")
    with running(tmp_path) as node:
        assert re.search(r"links on \[::1\]:\d+, DHT on \[::1\]:\d+,", node.log), node.log
        assert node.stop() == 0


@pytest.mark.parametrize("settings", ['{"nick": ', "[1, 2]", '{"nick": "x\\u001b]0;pwn\\u0007"}'])
def test_a_damaged_settings_file_never_gives_a_traceback(tmp_path: Path, settings: str) -> None:
    """Whether the node shrugs it off or refuses it, a damaged or unusable settings.json
    gives no traceback, and `create` never leaves a room behind without its invite."""
    init(tmp_path, "--listen", "127.0.0.1:0", "--dht-port", "0")
    (tmp_path / "settings.json").write_text(settings)
    created = rumor("create", "general", "--data-dir", tmp_path)
    rooms = [p.name for p in (tmp_path / "rooms").glob("*.sqlite3")]
    if created.returncode == 0:
        assert rooms == [f"{parse_invite(created.stdout).room.hex()}.sqlite3"]
    else:
        one_line_error(created)
        assert created.stdout == "" and rooms == []
    node = Running(tmp_path)
    try:
        wait_for(lambda: "started: peer" in node.log or node.process.poll() is not None, "start")
        if node.process.poll() is None:
            assert node.stop() == 0, node.log
        else:
            assert node.log.count("\n") == 1 and node.log.startswith("rumor: "), node.log
    finally:
        node.kill()
    assert "Traceback" not in node.log


# -- bad input -------------------------------------------------------------------------

BAD_CONFIGS = {
    "not TOML": "listen = \n",
    "unknown key": 'listne = "127.0.0.1:1"\n',
    "wrong type": 'dht_port = "7340"\n',
    "bad address": 'listen = "nowhere"\n',
    "bad bootstrap": 'bootstrap = ["127.0.0.1"]\n',
    "port out of range": "dht_port = 70000\n",
    "superscript port": 'listen = "127.0.0.1:\u00b2"\n',  # str.isdigit() says yes; int() no
    "Arabic-Indic port": 'listen = "127.0.0.1:\u0661\u0662\u0663\u0664"\n',  # not 1234
    "listen on a name": 'listen = "localhost:17004"\n',  # the node binds IP literals only
    "bootstrap bad name": 'bootstrap = ["..:17101"]\n',
    "bootstrap long label": f'bootstrap = ["{"a" * 64}.example:1"]\n',
    "bootstrap path": 'bootstrap = ["ws://127.0.0.1:17101/x:1"]\n',
}


@pytest.mark.parametrize("problem", BAD_CONFIGS)
def test_bad_config_gives_one_line(tmp_path: Path, problem: str) -> None:
    init(tmp_path)
    (tmp_path / "config.toml").write_text(BAD_CONFIGS[problem])
    assert "config file" in one_line_error(rumor("run", "--data-dir", tmp_path))


def test_unreadable_config_and_uninitialised_dir_give_one_line(tmp_path: Path) -> None:
    assert "not a rumor data dir" in one_line_error(rumor("create", "x", "--data-dir", tmp_path))
    init(tmp_path)
    (tmp_path / "config.toml").unlink()
    (tmp_path / "config.toml").mkdir()  # unreadable as a file, whoever we run as
    assert "cannot read config file" in one_line_error(rumor("run", "--data-dir", tmp_path))


def test_address_in_use_gives_one_line(tmp_path: Path) -> None:
    init(tmp_path, "--listen", "127.0.0.1:0", "--dht-port", "0")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        for option, complaint in (("--listen", "cannot start the node"), ("--metrics", "metrics")):
            done = rumor("run", "--data-dir", tmp_path, option, address)
            assert complaint in one_line_error(done) and "in use" in done.stderr
    assert not (tmp_path / "lock").read_text()  # nobody holds it now


@pytest.mark.parametrize(
    "args",
    [
        ["run", "--listen", "nope"],
        ["run", "--dht-port", "http"],
        ["run", "--bootstrap"],
        ["create"],
        ["join"],
        ["init", "--metrics", "127.0.0.1:99999"],
        ["run", "--listen", "127.0.0.1:\u00b2"],
        ["run", "--dht-port", "\u0661\u0662\u0663\u0664"],
        ["init", "--bootstrap", "..:1"],
    ],
)
def test_bad_arguments_give_one_line_and_status_2(tmp_path: Path, args: list[str]) -> None:
    done = rumor(*args, "--data-dir", tmp_path)
    assert done.returncode == 2
    one_line_error(done)


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--listen", "127.0.0.1:\u00b2"], "argument --listen: the port must be a number"),
        (["--listen", "localhost:17004"], "the host must be an IP address"),
        (["--listen", "[::1:0"], "brackets"),
        (["--dht-port", "\u00b2"], "argument --dht-port: not a port number"),
        (["--bootstrap", "a..b:1"], "argument --bootstrap: not an IP address or a valid host"),
        (["--bootstrap", "seed.example:0"], "port out of range"),
        (["--advertise", "ws://192.0.2.1:80/"], "no scheme or path"),
    ],
)
def test_bad_addresses_on_the_command_line_say_what_is_wrong(
    tmp_path: Path, args: list[str], complaint: str
) -> None:
    done = rumor("init", "--data-dir", tmp_path, *args)
    assert done.returncode == 2
    assert complaint in one_line_error(done)
    assert "invalid" not in done.stderr  # argparse's words when the type function failed
    assert not tmp_path.exists() or not (tmp_path / "config.toml").exists()


@pytest.mark.parametrize(
    ("invite", "complaint"),
    [
        ("hello", "starts with rumor://invite/"),
        ("rumor://invite/abc", "damaged"),
        ("rumor://invite/" + "a" * 40, "damaged"),
    ],
)
def test_bad_invite_gives_one_line(tmp_path: Path, invite: str, complaint: str) -> None:
    init(tmp_path)
    done = rumor("join", invite, "--data-dir", tmp_path)
    assert done.returncode == 1
    assert complaint in one_line_error(done)
    assert not list((tmp_path / "rooms").glob("*.sqlite3"))


def test_bad_room_name_gives_one_line(tmp_path: Path) -> None:
    init(tmp_path)
    assert "room name" in one_line_error(rumor("create", "x" * 100, "--data-dir", tmp_path))


# -- the pieces, in-process ------------------------------------------------------------


def test_config_round_trips_and_options_override(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    config = Config(listen="[::1]:9", bootstrap=("10.0.0.1:7340", "h:1"), metrics="0.0.0.0:9")
    write_config(path, config)
    assert load_config(path) == config
    assert config.override(listen="1.2.3.4:5", bootstrap=None).listen == "1.2.3.4:5"
    assert config.override(bootstrap=["h:2"]).bootstrap == ("h:2",)
    assert Config(listen="0.0.0.0:7340").invite_address == "127.0.0.1:7340"
    assert Config(listen="127.0.0.1:0").invite_address is None
    with pytest.raises(ConfigError, match="brackets"):
        Config(listen="::1:9")


def test_config_addresses_are_read_strictly() -> None:
    # Names are fine where the node looks them up (bootstrap) or a server binds them.
    config = Config(bootstrap=("localhost:17101", "seed.example.org.:7340"), metrics="localhost:0")
    assert config.bootstrap == ("localhost:17101", "seed.example.org.:7340")
    assert Config(listen="[::]:0").dht_host == "::"
    for listen, complaint in [
        ("localhost:17004", "listen: the host must be an IP address"),
        ("127.0.0.1:\u00b2", "listen: the port must be a number"),
        ("127.0.0.1:\u0661\u0662\u0663\u0664", "listen: the port must be a number"),
        ("127.0.0.1:65536", "listen: port out of range"),
        ("[localhost]:1", "listen: not an IPv6 address"),
        ("", "listen: expected host:port"),
    ]:
        with pytest.raises(ConfigError, match=complaint):
            Config(listen=listen)
    for bootstrap, complaint in [
        ("-seed.example:1", "not an IP address or a valid host name"),
        (f"{'a' * 64}.example:1", "not an IP address or a valid host name"),
        ("seed.example:0", "port out of range"),
        ("seed.example", "expected host:port"),
    ]:
        with pytest.raises(ConfigError, match=f"bootstrap: {complaint}"):
            Config(bootstrap=(bootstrap,))


def _status(
    links: tuple[bytes, ...], contacts: int, ops: int, received: int, held: int = 0
) -> NodeStatus:
    room = RoomStatus(b"r" * 32, "general", links, ops, held, 0, 2, 0, received, 0)
    return NodeStatus(b"p" * 32, "127.0.0.1:1", links, contacts, 0, (room,))


def test_watcher_logs_links_dht_and_catch_up_at_most_every_10_s() -> None:
    peer, short = b"\x01" * 32, format_peer_id(b"\x01" * 32)[:8]
    watcher = Watcher()
    assert watcher.update(_status((), 0, 1, 0), 0.0) == []  # our own ops: nothing to say
    assert watcher.update(_status((peer,), 3, 1, 0), 1.0) == [
        f"link up: peer {short}",
        "DHT reachable: 3 contacts",
    ]
    assert watcher.update(_status((peer,), 3, 9, 8, held=2), 2.0) == []  # still syncing
    assert watcher.update(_status((peer,), 3, 9, 8), 3.0) == [
        "room 72727272 caught up: 9 ops (8 more received) from 2 authors, 1 peers"
    ]
    assert watcher.update(_status((peer,), 3, 10, 9), 4.0) == []  # not again so soon
    [line] = watcher.update(_status((peer,), 3, 10, 9), 13.0)
    assert "caught up: 10 ops (1 more received)" in line
    assert watcher.update(_status((), 0, 10, 9), 14.0) == [
        f"link down: peer {short}",
        "DHT unreachable: no contacts left",
    ]
