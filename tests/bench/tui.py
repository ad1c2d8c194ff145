"""Benchmark: the chat UI on a room of 100,000 messages, and under a flood from a peer.

Builds the room once in a temp data dir (a node creates it; the ops of one other author
are signed with crdt's `Replica` and ingested into the room's file through `History`),
then in one run of the app (headless, 120x40, `App.run_test`):
  - first paint: from creating the app (the node opens inside it) to the first screen
    update showing the room's newest messages; the node's own share (opening the room
    file) is printed beside it;
  - page scroll (PageUp) and jump to the top (Ctrl+Home: the top of the loaded history,
    which asks for the next older page) as key-to-paint times;
  - keypress-to-paint latency p50/p99 while a peer, in its own process and holding a copy
    of the room, sends 200 messages a second;
  - the process's memory: RSS after the first paint and after the flood, and the
    timeline's loaded window (it keeps at most MAX_LOADED messages while following).
Targets: first paint <= 1.0 s; page scroll and keypress p99 <= 50 ms; the UI's memory per
message bounded (its window stays <= MAX_LOADED + TRIM_SLACK messages, whatever arrives).

    python tests/bench/tui.py           # 100,000 messages, a 10 s flood
    python tests/bench/tui.py --quick   # 10,000 messages, a 3 s flood, for CI
    ... --room DIR        # build the room in DIR once and reuse it (copied) in later runs
    ... --profile PREFIX  # pyinstrument profiles of each phase, PREFIX-<phase>.txt
"""

# The benchmark polls conditions of a running app on purpose (that is what it measures).
# ruff: noqa: ASYNC110, ASYNC220, ASYNC240

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio
from textual import events

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from crdt import History, Identity, Kind, Replica
from node import Node
from node.client import LocalClient
from tui import RumorApp
from tui._timeline import MAX_LOADED, TRIM_SLACK

FIRST_PAINT_TARGET = 1.0
LATENCY_TARGET = 0.050
FLOOD_RATE = 200
SIZE = (120, 40)


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def verdict(name: str, value: float, target: float, unit: str = "s") -> None:
    ratio = value / target
    state = "MET" if value <= target else "NOT MET"
    print(f"{name}: {value:.4f} {unit} (target <= {target} {unit}, ratio {ratio:.2f}) {state}")


# -- building the room -------------------------------------------------------------------


async def build_room(data_dir: Path, count: int) -> tuple[bytes, str]:
    """A room in `data_dir` holding `count` messages of another author; its id and invite."""
    async with Node.open(data_dir, dht_port=None, verify_workers=0, listen=None) as node:
        room = await node.create_room("big")
        room_id, invite = room.id, room.invite()
    author = Replica(room_id, identity=Identity.from_seed(b"\x07" * 32))
    rng = random.Random(7)
    words = ["the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "rumor", "sync"]
    start_ms = int(time.time() * 1000) - count * 1000
    ops = []
    op = author.create(Kind.JOIN, (), now_ms=start_ms)
    author.admit(op)
    ops.append(op)
    for index in range(count):
        text = f"{index} " + " ".join(rng.choice(words) for _ in range(rng.randint(3, 25)))
        op = author.create(Kind.MESSAGE, (text, None), now_ms=start_ms + index * 1000)
        author.admit(op)
        ops.append(op)
    # Ingested as sync would deliver them (verified, applied, stored in the room's views).
    path = data_dir / "rooms" / f"{room_id.hex()}.sqlite3"
    async with History.open(path) as history:
        for first in range(0, len(ops), 1000):
            await history.ingest(ops[first : first + 1000])
    return room_id, invite


async def open_time(data_dir: Path) -> float:
    started = time.perf_counter()
    async with Node.open(data_dir, dht_port=None, verify_workers=0, listen=None):
        return time.perf_counter() - started


# -- the flooding peer (a child process) ---------------------------------------------------


async def flood(data_dir: Path, invite: str, seconds: float, ready_file: Path) -> None:
    async with Node.open(data_dir, dht_port=None, verify_workers=0) as node:
        room = await node.join(invite)
        while not node.status().links:
            await trio.sleep(0.05)
        ready_file.write_text("linked")
        interval = 1 / FLOOD_RATE
        deadline = trio.current_time() + seconds
        sent = 0
        next_at = trio.current_time()
        while trio.current_time() < deadline:
            await room.send(f"flood {sent}")
            sent += 1
            next_at += interval
            await trio.sleep_until(next_at)
        ready_file.write_text(f"done {sent}")
        await trio.sleep(1)


# -- the UI run ---------------------------------------------------------------------------


async def measure(
    data_dir: Path, peer_dir: Path, invite_room: bytes, args: argparse.Namespace
) -> None:
    from contextlib import asynccontextmanager

    opened_at: list[float] = []

    @asynccontextmanager
    async def factory():  # type: ignore[no-untyped-def]
        # As `tui.run` opens it: signatures verified in a worker process, not on the UI's
        # thread (one worker: the machine has two cores and the peer needs one).
        async with Node.open(data_dir, dht_port=None, verify_workers=1) as node:
            opened_at.append(time.perf_counter())
            yield LocalClient(node)

    phases = Phases(args.profile)
    phases.start()
    started = time.perf_counter()
    app = RumorApp(factory, state_dir=data_dir, notify_mode="off")
    clock = PaintClock(app)

    def room_shown() -> bool:
        shown = app._timeline
        return shown is not None and shown.room_id == invite_room and shown.line_count > 0

    # Painted: the first screen update made once the room's messages are in the timeline
    # (not Pilot's wait for idle, which would also wait for the node's background work).
    clock.waiting = room_shown
    async with app.run_test(size=SIZE) as pilot:
        timeline = app.timeline
        while not clock.painted_at and time.perf_counter() < started + 60:
            await asyncio.sleep(0.0005)
        first_paint = clock.painted_at - started
        while not app.ready:
            await asyncio.sleep(0.001)
        phases.stop("first-paint")
        node_share = opened_at[0] - started
        verdict(
            "first paint of a 100k-message room" if not args.quick else "first paint",
            first_paint,
            FIRST_PAINT_TARGET,
        )
        print(
            f"  of which the node opening the room: {node_share:.3f} s;"
            f" the UI: {first_paint - node_share:.3f} s"
        )
        rss_start = rss_mib()

        app.input.focus()
        await pilot.pause()
        phases.start()
        scrolls = []
        for _ in range(30):
            y = timeline.scroll_y
            scrolls.append(
                await clock.key_to_paint(
                    app, "pageup", lambda y=y: timeline.scroll_y != y or timeline.scroll_y == 0
                )
            )
            await pilot.pause()
        phases.stop("scroll")
        print(f"page scroll p50: {percentile(scrolls, 50) * 1000:.1f} ms")
        verdict("page scroll p99", percentile(scrolls, 99), LATENCY_TARGET)
        t = time.perf_counter()
        await pilot.press("ctrl+end")
        await pilot.pause()
        far = timeline.scroll_y - 2 * SIZE[1]  # well above where it was: at the top
        jump = await clock.key_to_paint(app, "ctrl+home", lambda: timeline.scroll_y < far)
        while timeline.loading_older:
            await asyncio.sleep(0.001)
        await pilot.pause()
        jump_loaded = time.perf_counter() - t
        verdict("jump to the top (of the loaded history)", jump, LATENCY_TARGET)
        print(f"  with the next older page loaded and painted: {jump_loaded:.4f} s")
        await pilot.press("ctrl+end")

        # The flood: a peer in its own process, holding a copy of the room.
        invite = await app.call(app.api.invite, invite_room)
        ready = peer_dir / "ready"
        child = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--flood-peer",
                str(peer_dir),
                invite,
                str(args.flood_seconds),
                str(ready),
            ],
        )
        try:
            while not ready.exists():
                await pilot.pause(0.05)
            before = timeline.line_count
            phases.start()
            latencies = []
            t_end = time.perf_counter() + args.flood_seconds
            while time.perf_counter() < t_end:
                length = len(app.input.text)
                latencies.append(
                    await clock.key_to_paint(app, "x", lambda n=length: len(app.input.text) > n)
                )
                await asyncio.sleep(0.02)
            phases.stop("flood")
            deadline = time.perf_counter() + 30
            while not ready.read_text().startswith("done") and time.perf_counter() < deadline:
                await pilot.pause(0.05)
            sent = int(ready.read_text().split()[1]) if ready.read_text().startswith("done") else 0
            await pilot.pause(2.5)  # quiet: the UI may run its full garbage collection
        finally:
            child.wait(timeout=60)
        print(
            f"  the peer sent {sent} messages in {args.flood_seconds} s;"
            f" timeline lines {before} -> {timeline.line_count}"
        )
        print(f"keypress latency during the flood: p50 {percentile(latencies, 50) * 1000:.1f} ms")
        verdict("keypress p99 during the flood", percentile(latencies, 99), LATENCY_TARGET)
        rss_end = rss_mib()
        loaded = len(timeline.messages)
        print(
            f"memory: RSS {rss_start:.0f} MiB after first paint, {rss_end:.0f} MiB after the flood "
            f"({(rss_end - rss_start) * 1024 / max(sent, 1):.2f} KiB per flooded message,"
            " node included)"
        )
        bound = MAX_LOADED + TRIM_SLACK
        state = "MET" if loaded <= bound else "NOT MET"
        print(
            f"UI window: {loaded} messages loaded"
            f" (bound {bound}, ratio {loaded / bound:.2f}) {state}"
        )


class PaintClock:
    """Times of the app's screen updates (`App._display`), to time key-to-paint without
    Pilot's waits for idle (which a flood of messages would stretch): a key counts as
    painted at the first screen update made once its effect (`changed()`) holds."""

    def __init__(self, app: RumorApp) -> None:
        self.waiting: Callable[[], bool] | None = None
        self.painted_at = 0.0
        original = app._display

        def display(screen, renderable):  # type: ignore[no-untyped-def]
            original(screen, renderable)
            if self.waiting is not None and renderable is not None and self.waiting():
                self.painted_at = time.perf_counter()
                self.waiting = None

        app._display = display  # type: ignore[method-assign]

    async def key_to_paint(self, app: RumorApp, key: str, changed) -> float:  # type: ignore[no-untyped-def]
        """Post `key`; the time until a screen update shows its effect."""
        character = key if len(key) == 1 else None
        self.painted_at = 0.0
        self.waiting = changed
        started = time.perf_counter()
        app.post_message(events.Key(key, character))
        deadline = started + 10
        while not self.painted_at and time.perf_counter() < deadline:
            await asyncio.sleep(0.0005)
        self.waiting = None
        return self.painted_at - started if self.painted_at else float("inf")


class Phases:
    """Optional pyinstrument profiles of the run's phases (the UI thread: app and node)."""

    def __init__(self, prefix: str | None) -> None:
        self.prefix = prefix
        self.profiler: Any = None

    def start(self) -> None:
        if self.prefix:
            from pyinstrument import Profiler

            self.profiler = Profiler(interval=0.0005, async_mode="disabled")
            self.profiler.start()

    def stop(self, phase: str) -> None:
        if self.profiler is not None:
            self.profiler.stop()
            path = Path(f"{self.prefix}-{phase}.txt")
            path.write_text(self.profiler.output_text(unicode=True, show_all=False))
            self.profiler.last_session.save(f"{self.prefix}-{phase}.pyisession")
            self.profiler = None


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def prepared_room(data_dir: Path, count: int, cache: Path | None) -> bytes:
    """Build the room in `data_dir` (or copy the one built in `cache` before); its id."""
    source = cache / str(count) if cache is not None else data_dir
    if cache is None or not (source / "room-id").exists():
        t = time.perf_counter()
        room_id, _ = trio.run(build_room, source, count)
        (source / "room-id").write_text(room_id.hex())
        print(f"built a room of {count} messages in {time.perf_counter() - t:.1f} s")
    if source != data_dir:
        shutil.copytree(source, data_dir)
    return bytes.fromhex((source / "room-id").read_text())


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--room", type=Path, metavar="DIR", help="build the room here once")
    parser.add_argument("--profile", metavar="PREFIX", help="profile each phase")
    parser.add_argument("--flood-peer", nargs=4, metavar=("DIR", "INVITE", "SECONDS", "READY"))
    args = parser.parse_args()
    if args.flood_peer:
        peer_dir, invite, seconds, ready = args.flood_peer
        trio.run(flood, Path(peer_dir), invite, float(seconds), Path(ready))
        return 0
    count = args.count = 10_000 if args.quick else 100_000
    args.flood_seconds = 3.0 if args.quick else 10.0
    with tempfile.TemporaryDirectory(prefix="rumor-bench-tui-") as tmp:
        data_dir, peer_dir = Path(tmp) / "ui", Path(tmp) / "peer"
        room_id = prepared_room(data_dir, count, args.room)
        # The peer holds a copy of the room, so the flood is not a 100k-op sync.
        (peer_dir / "rooms").mkdir(parents=True)
        shutil.copy(data_dir / "rooms" / f"{room_id.hex()}.sqlite3", peer_dir / "rooms")
        print(f"the node alone opens it in {trio.run(open_time, data_dir):.3f} s")
        asyncio.run(measure(data_dir, peer_dir, room_id, args))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TEXTUAL_ANIMATIONS", "none")
    sys.exit(main())
