"""Real mode: N `rumor run` processes on loopback, started, watched and stopped here.

Each node gets its own data dir under one temporary dir (`rumor init --listen
127.0.0.1:0 --dht-port 0`, the first node being every other's DHT bootstrap), runs as a
child process with its log in a file, and is always stopped (SIGTERM, then SIGKILL after
a grace) and its dir removed, whatever happens. The room is made with `rumor create` on
the first node and `rumor join` on the others, through the data dirs' inboxes, as an
operator would.

Traffic and measurement go through `connect(data_dir)`, the one function that reaches
a running node: it yields a `node.client.ChatClient`, or None while no control API
exists. With a client, messages are sent at the scenario's rate and room views are read
through it; without one, the swarm's traffic is the members' own JOIN and NICK ops, and
each node's room file is read read-only (SQLite `mode=ro`) and replayed into a
`crdt.Replica` to take its digest. Counters come from each node's Prometheus metrics.

A real run is not reproducible bit for bit: real time, real sockets, the OS scheduler.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import trio

from crdt import Replica

from .._invite import parse_invite
from ..client import ChatClient, ClientError, RemoteClient
from ._measure import Recorder, room_digest_remote
from ._report import FORMAT, scenario_dict
from ._scenario import Progress, Scenario
from ._traffic import message_text

__all__ = ["connect", "run_real"]

START_TIMEOUT: Final = 30.0  # seconds a process may take to log that it started
STOP_GRACE: Final = 10.0  # seconds between SIGTERM and SIGKILL
POLL: Final = 0.25
ROOT: Final = Path(__file__).resolve().parents[2]
_STARTED = re.compile(r"started: peer (\S+), links on (\S+), DHT on (\S+)")
_METRICS = re.compile(r"metrics on http://(\S+)/metrics")


@asynccontextmanager
async def connect(data_dir: Path) -> AsyncIterator[ChatClient | None]:
    """A `ChatClient` for the `rumor run` on `data_dir`, or None when there is no way in.

    The control API's `RemoteClient`, on the token and address the data dir holds."""
    async with contextlib.AsyncExitStack() as stack:
        client: ChatClient | None
        try:
            client = await stack.enter_async_context(RemoteClient.connect(data_dir))
        except (OSError, ClientError):
            client = None  # no control API (turned off): rooms go through the inbox
        yield client


@dataclass
class _Process:
    name: str
    data_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    peer: str = ""
    address: str = ""
    dht: str = ""
    metrics: str = ""
    client: ChatClient | None = None
    counters: dict[str, float] = field(default_factory=dict)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    @property
    def up(self) -> bool:
        return self.process is not None and self.process.poll() is None


def _env() -> dict[str, str]:
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{path}" if path else str(ROOT)}


def _rumor(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "node.app.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=_env(),
    )
    if done.returncode != 0:
        raise RuntimeError(f"rumor {args[0]} failed: {done.stderr.strip()}")
    return done.stdout.strip()


async def _start(node: _Process, bootstrap: str | None) -> None:
    init = ["init", "--data-dir", str(node.data_dir), "--listen", "127.0.0.1:0", "--dht-port", "0"]
    init += ["--metrics", "127.0.0.1:0"]
    if bootstrap:
        init += ["--bootstrap", bootstrap]
    await trio.to_thread.run_sync(_rumor, *init)
    node.process = _spawn(node)
    with trio.fail_after(START_TIMEOUT):
        while not (found := _STARTED.search(node.log())):
            if not node.up:
                raise RuntimeError(f"{node.name} exited: {node.log()[-500:]}")
            await trio.sleep(POLL)
    node.peer, node.address, node.dht = found.groups()
    node.address = node.address.rstrip(",")
    node.dht = node.dht.rstrip(",")
    metrics = _METRICS.search(node.log())
    node.metrics = metrics.group(1) if metrics else ""


def _spawn(node: _Process) -> subprocess.Popen[bytes]:
    """Start `rumor run` on the node's data dir, its log (stderr) into a file. Popen only
    forks: it does not wait, and the caller polls the log."""
    with node.log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "node.app.cli", "run", "--data-dir", str(node.data_dir)],
            stdout=subprocess.DEVNULL,
            stderr=log,
            env=_env(),
        )


def _stop(nodes: list[_Process]) -> None:
    """SIGTERM to all, a grace, then SIGKILL: no process outlives the run."""
    for node in nodes:
        if node.up and node.process is not None:
            node.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE
    for node in nodes:
        if node.process is None:
            continue
        try:
            node.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            node.process.kill()
            node.process.wait()


def _file_digest(data_dir: Path) -> tuple[str, int, int]:
    """(digest, messages, members) of the one room in a data dir, read read-only."""
    rooms = sorted((data_dir / "rooms").glob("*.sqlite3"))
    if not rooms:
        return "", 0, 0
    room_id = bytes.fromhex(rooms[0].stem)
    db = sqlite3.connect(f"file:{rooms[0]}?mode=ro", uri=True, timeout=5)
    try:
        rows = [bytes(row[0]) for row in db.execute("SELECT data FROM ops ORDER BY n")]
    except sqlite3.Error:
        return "", 0, 0
    finally:
        db.close()
    replica = Replica(room_id)
    for data in rows:
        replica.apply(data)
    digest = hashlib.blake2b(replica.render(), digest_size=12).hexdigest()
    return digest, replica.message_count, len(replica.members())


def _scrape(node: _Process) -> None:
    if not node.metrics or not node.up:
        return
    try:
        with urllib.request.urlopen(f"http://{node.metrics}/metrics", timeout=5) as answer:
            text = answer.read().decode()
    except OSError:
        return
    totals: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("rumor_") and " " in line:
            name, _, value = line.rpartition(" ")
            key = name.split("{")[0].removesuffix("_total")  # counters end in _total
            with contextlib.suppress(ValueError):
                totals[key] = totals.get(key, 0.0) + float(value)
    node.counters = totals


def run_real(scenario: Scenario, seed: int, *, progress: Progress | None = None) -> dict[str, Any]:
    """Run `scenario`'s swarm as real processes (its faults are not applied: they need the
    simulator); the report, shaped as a simulated one."""
    base = Path(tempfile.mkdtemp(prefix="rumor-swarm-real-"))
    nodes = [
        _Process(f"n{i:03d}", base / f"n{i:03d}", base / f"n{i:03d}.log")
        for i in range(scenario.nodes)
    ]
    try:
        return trio.run(_play, scenario, seed, nodes, progress)
    finally:
        _stop(nodes)
        shutil.rmtree(base, ignore_errors=True)


async def _play(
    scenario: Scenario, seed: int, nodes: list[_Process], progress: Progress | None
) -> dict[str, Any]:
    started = time.monotonic()
    await _start(nodes[0], None)
    for node in nodes[1:]:
        await _start(node, nodes[0].dht)
    invite = await trio.to_thread.run_sync(
        _rumor, "create", "swarm", "--data-dir", str(nodes[0].data_dir)
    )
    for node in nodes[1:]:
        await trio.to_thread.run_sync(_rumor, "join", invite, "--data-dir", str(node.data_dir))
    recorder = Recorder()
    recorder.note(time.monotonic() - started, "room created and joined")
    async with contextlib.AsyncExitStack() as stack:
        for node in nodes:
            node.client = await stack.enter_async_context(connect(node.data_dir))
        room_id = parse_invite(invite).room
        window: tuple[float, float] | None = None
        if all(n.client is not None for n in nodes):
            await _joined(nodes, room_id)
            traffic_start = time.monotonic() - started
            await _traffic(scenario, seed, nodes, room_id, recorder, started)
            window = (traffic_start, time.monotonic() - started)
        converged_at = await _settle(scenario, nodes, room_id, started, recorder, progress)
        digests = {n.name: (await _digest(n, room_id))[0] for n in nodes}
        held = await _held(nodes, room_id, list(recorder.sent)) if window else None
    for node in nodes:
        _scrape(node)
    return _report(scenario, seed, nodes, digests, converged_at, recorder, window, held)


async def _joined(nodes: list[_Process], room_id: bytes) -> None:
    """Wait until every node has the room: `rumor join` hands the invite to a running
    node through its inbox, and returns before the node has read it."""
    with trio.fail_after(START_TIMEOUT):
        for node in nodes:
            assert node.client is not None
            while True:
                if room_id in {info.id for info in await node.client.rooms()}:
                    break
                await trio.sleep(POLL)


async def _held(nodes: list[_Process], room_id: bytes, ops: list[bytes]) -> dict[str, int]:
    """How many of `ops` each node holds, asked through its client."""
    held: dict[str, int] = {}
    for node in nodes:
        assert node.client is not None
        have = 0
        for op in ops:
            if await node.client.message(room_id, op) is not None:
                have += 1
        held[node.name] = have
    return held


async def _traffic(
    scenario: Scenario,
    seed: int,
    nodes: list[_Process],
    room_id: bytes,
    recorder: Recorder,
    started: float,
) -> None:
    rng = random.Random(f"{seed}:traffic")
    end = time.monotonic() + scenario.duration
    count = 0
    while time.monotonic() < end:
        await trio.sleep(rng.expovariate(scenario.traffic.rate))
        index = rng.randrange(len(nodes))
        client = nodes[index].client
        assert client is not None
        text = message_text(count, nodes[index].name, scenario.traffic.draw_size(rng))
        op_id = await client.send(room_id, text)
        recorder.on_sent(op_id, index, time.monotonic() - started, len(nodes))
        count += 1


async def _digest(node: _Process, room_id: bytes) -> tuple[str, int, int]:
    if node.client is not None:
        digest = await room_digest_remote(node.client, room_id)
        info = await node.client.room(room_id)
        return digest, info.messages, info.members
    return await trio.to_thread.run_sync(_file_digest, node.data_dir)


async def _settle(
    scenario: Scenario,
    nodes: list[_Process],
    room_id: bytes,
    started: float,
    recorder: Recorder,
    progress: Progress | None,
) -> float | None:
    """Poll until every node shows the same room with every member in it."""
    deadline = time.monotonic() + min(scenario.settle, 120.0)
    while time.monotonic() < deadline:
        views = [await _digest(n, room_id) for n in nodes]
        members = min(v[2] for v in views)
        if progress is not None:
            up = sum(1 for n in nodes if n.up)
            progress(time.monotonic() - started, members, len(nodes), up, "joining")
        if len({v[0] for v in views}) == 1 and members == len(nodes) and views[0][0]:
            recorder.note(time.monotonic() - started, "converged")
            return time.monotonic() - started
        await trio.sleep(1.0)
    return None


def _report(
    scenario: Scenario,
    seed: int,
    nodes: list[_Process],
    digests: dict[str, str],
    converged_at: float | None,
    recorder: Recorder,
    window: tuple[float, float] | None,
    held: dict[str, int] | None,
) -> dict[str, Any]:
    """The report, shaped as a simulated one; what a real run does not measure (latency,
    receptions per op, bytes, DHT datagrams; delivery when no client could send) is None,
    never a 0 that would read as a result."""
    converged = converged_at is not None and len(set(digests.values())) == 1
    per_node: dict[str, dict[str, Any]] = {
        n.name: {
            "peer": n.peer[:8],
            "up": n.up,
            "retired": False,
            "starts": 1,
            "links": [],  # counted, not named, by the metrics
            "link_count": int(n.counters.get("rumor_links", 0)),
            "dht_contacts": int(n.counters.get("rumor_dht_contacts", 0)),
            "bytes": None,  # not measured: the OS does not count per process
            "ops": {
                "received": int(n.counters.get("rumor_room_ops_received", 0)),
                "sent": int(n.counters.get("rumor_room_ops_sent", 0)),
                "duplicates": int(n.counters.get("rumor_room_ops_duplicate", 0)),
                "penalties": int(n.counters.get("rumor_room_penalties", 0)),
            },
        }
        for n in nodes
    }
    totals = {
        k: sum(n["ops"][k] for n in per_node.values())
        for k in ("received", "sent", "duplicates", "penalties")
    }
    contacts: list[int] = sorted(n["dht_contacts"] for n in per_node.values())
    degrees: list[int] = [n["link_count"] for n in per_node.values()]
    checks = [
        {
            "name": "every process started and stayed up",
            "ok": all(n.up for n in nodes),
            "detail": f"{sum(1 for n in nodes if n.up)}/{len(nodes)} up",
        },
        {
            "name": "converged: every node shows the same room",
            "ok": converged,
            "detail": f"{len(set(digests.values()))} distinct digest(s) over {len(nodes)} nodes",
        },
    ]
    sent = len(recorder.sent)
    if held is not None:
        due = sent * len(nodes)
        got = sum(held.values())
        delivery: dict[str, Any] = {
            "messages": sent,
            "members": len(nodes),
            "held": got,
            "due": due,
            "rate": round(got / due, 3) if due else 1.0,
            "missing_by_node": {k: sent - v for k, v in held.items() if v < sent},
        }
        checks.append(
            {
                "name": "every node holds every message",
                "ok": got == due,
                "detail": f"{got}/{due}",
            }
        )
    else:
        delivery = {
            "messages": sent,
            "members": len(nodes),
            "held": None,
            "due": None,
            "rate": None,
            "missing_by_node": {},
        }
    return {
        "format": FORMAT,
        "mode": "real",
        "seed": seed,
        "scenario": scenario_dict(scenario),
        "passed": all(c["ok"] for c in checks),
        "checks": checks,
        "time": {
            "traffic_start": round(window[0], 3) if window else None,
            "traffic_end": round(window[1], 3) if window else None,
            "converged_at": round(converged_at, 3) if converged_at is not None else None,
            "time_to_converge": (
                round(max(0.0, converged_at - window[1]), 3)
                if converged_at is not None and window
                else None
            ),
        },
        "delivery": delivery,
        "latency_ms": None,  # not measured: arrivals are not watched in a real run
        "receptions_per_op": None,  # not measured
        "ops": totals,
        "rejected": {},
        "convergence": {
            "converged": converged,
            "distinct_digests": len(set(digests.values())),
            "digests": digests,
        },
        "links": {
            "edges": [],
            "degree_min": min(degrees),
            "degree_mean": round(sum(degrees) / len(degrees), 3),
            "degree_max": max(degrees),
            "isolated": [k for k, n in per_node.items() if not n["link_count"]],
        },
        "dht": {
            "contacts_min": contacts[0],
            "contacts_median": contacts[len(contacts) // 2],
            "contacts_max": contacts[-1],
            "without_contacts": contacts.count(0),
        },
        "dht_network": None,  # not measured
        "nodes": per_node,
        "events": [[round(t, 3), w] for t, w in recorder.events],
        "delivery_over_time": [],
    }
