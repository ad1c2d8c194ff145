"""Durability against a crash of the process: a child writes to a History and reports each
step once `ingest` or `author` has returned; we SIGKILL it at a random moment and check,
after reopening its store, that every reported step is there.

The kill point is a random number of reported steps plus a random number of bytes more
that the child writes to its store files: a delay measured by its own progress, so the
kill lands at varied points between and inside commits whatever the machine's speed.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import BinaryIO

import msgpack
import pytest
import trio

from crdt import Identity, Kind, Op, Replica, decode_op, encode_op, make_hlc
from crdt._history import CHUNK, History
from crdt._verify import Verifier

from .crash_child import plan

CHILD = Path(__file__).with_name("crash_child.py")
ROOT = Path(__file__).resolve().parents[2]
NOW = 1_780_000_000_000
ROOM = bytes(range(32, 64))
DEADLINE = 20  # seconds for one child; a healthy run takes a fraction of one
POLL = 0.002  # seconds between looks at the child's store files

BATCHES, BATCH_SIZE = 24, 40
INGEST_KILLS = 4
AUTHOR_COUNT = 150
AUTHOR_KILLS = 4


@pytest.fixture
async def verifier() -> AsyncIterator[Verifier]:
    async with Verifier.open(workers=0) as verifier:
        yield verifier


def _store_bytes(db: Path) -> int:
    total = 0
    for path in (db, db.with_name(db.name + "-wal")):
        with contextlib.suppress(FileNotFoundError):
            total += path.stat().st_size
    return total


def _create(path: Path) -> BinaryIO:
    return path.open("wb")


async def run_and_kill(
    mode: str, db: Path, spec: dict[str, object], reports: int, extra_bytes: int
) -> tuple[list[int], int]:
    """Run the child in `mode`; SIGKILL it once it has reported `reports` steps and then
    written `extra_bytes` more to its store. Returns every step it reported (read to the
    end of its output) and its exit status."""
    spec_path = db.with_name("spec.msgpack")
    spec_path.write_bytes(msgpack.packb(spec))
    path = os.environ.get("PYTHONPATH")
    env = {**os.environ, "PYTHONPATH": str(ROOT) if not path else f"{ROOT}{os.pathsep}{path}"}
    log = db.with_name("child.log")
    with _create(log) as stderr:  # the child's and its verification workers' stderr
        process = await trio.lowlevel.open_process(
            [sys.executable, str(CHILD), mode, str(db), str(spec_path)],
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=env,
        )
    assert process.stdout is not None
    output = bytearray()
    try:
        with trio.fail_after(DEADLINE):
            while output.count(b"\n") < reports:
                chunk = await process.stdout.receive_some()
                if not chunk:
                    break
                output += chunk
            target = _store_bytes(db) + extra_bytes
            # Poll the child's progress; bounded by the deadline and by its exit.
            while True:
                if process.poll() is not None or _store_bytes(db) >= target:
                    break
                await trio.sleep(POLL)
            process.kill()
            while chunk := await process.stdout.receive_some():
                output += chunk
            status = await process.wait()
    finally:
        with trio.CancelScope(shield=True):
            if process.returncode is None:
                process.kill()
                await process.wait()
            await process.stdout.aclose()
    text = output.decode(errors="replace")
    lines = text.splitlines()
    problem = f"child {mode} exited with {status}:\n{text}\n{log.read_text(errors='replace')}"
    assert all(line.isdigit() for line in lines), problem
    assert status in (0, -signal.SIGKILL), problem
    return [int(line) for line in lines], status


def _identity(n: int) -> Identity:
    return Identity.from_seed(bytes([0xC0 + n]) * 32)


def build_batches(rng: random.Random) -> list[list[Op]]:
    """Signed ops of four authors in batches as a peer might send them: partly out of
    order (so ops are held across batches, then released), with one op that is held and
    then dropped, taking the op chained after it along."""
    authors = [Replica(ROOM, identity=_identity(n)) for n in range(3)]
    ops: list[Op] = []
    now = NOW - 600_000

    def add(op: Op) -> Op:
        for replica in authors:
            assert replica.admit(op).added
        ops.append(op)
        return op

    dave = _identity(3)
    dave_join = encode_op(
        dave, room=ROOM, seq=1, prev=None, hlc=make_hlc(now), kind=Kind.JOIN, body=()
    )
    total = BATCHES * BATCH_SIZE - 3  # three ops of Dave's go in by hand
    messages: list[Op] = []
    while len(ops) < total:
        now += 1
        replica = authors[rng.randrange(3)]
        choice = rng.random()
        if messages and choice < 0.15:
            op = replica.new_reaction(
                rng.choice(messages[-20:]).id,
                rng.choice("👍🎉x"),
                now_ms=now,
                remove=rng.random() < 0.3,
            )
        elif choice < 0.25 and replica.identity is not None:
            own = [m for m in messages[-20:] if m.author == replica.identity.peer_id]
            if not own:
                continue
            op = replica.new_edit(own[-1].id, f"edited at {now}", now_ms=now)
        elif choice < 0.28:
            op = replica.new_topic(f"topic {now}", now_ms=now)
        else:
            op = replica.new_message(f"message {len(ops)}", now_ms=now)
            messages.append(op)
        add(op)

    # Local reordering: each op moves at most a window away from its place.
    window = 60
    shuffled: list[Op] = []
    for start in range(0, len(ops), window):
        part = ops[start : start + window]
        rng.shuffle(part)
        shuffled += part
    # Dave's edit of someone else's message and his next op come in batch 2, held until
    # the target arrives (batch 6 or later), then dropped.
    target = next(op for op in shuffled[5 * BATCH_SIZE :] if op.kind == Kind.MESSAGE)
    forged = encode_op(
        dave,
        room=ROOM,
        seq=2,
        prev=dave_join.id,
        hlc=make_hlc(now + 1),
        kind=Kind.EDIT,
        body=(target.id, "not yours"),
    )
    after = encode_op(
        dave,
        room=ROOM,
        seq=3,
        prev=forged.id,
        hlc=make_hlc(now + 2),
        kind=Kind.MESSAGE,
        body=("behind the forged edit", None),
    )
    shuffled[BATCH_SIZE + 5 : BATCH_SIZE + 5] = [dave_join, forged, after]
    batches = [shuffled[i : i + BATCH_SIZE] for i in range(0, len(shuffled), BATCH_SIZE)]
    assert len(batches) == BATCHES
    # One chunk per batch, so each batch is committed in one transaction.
    assert all(len(batch) <= CHUNK for batch in batches)
    return batches


def reference(batches: Sequence[Sequence[Op]]) -> Replica:
    replica = Replica(ROOM)
    for batch in batches:
        for op in batch:
            assert replica.admit(op).added
    return replica


async def test_ingested_batches_survive_sigkill(tmp_path: Path, verifier: Verifier) -> None:
    rng = random.Random(20240611)
    batches = build_batches(rng)
    references = [reference(batches[:n]) for n in range(BATCHES + 1)]
    assert max(r.held_count for r in references) >= 10  # the disorder does hold ops
    spec: dict[str, object] = {
        "room": ROOM,
        "now": NOW,
        "workers": 1,
        "batches": [[op.data for op in batch] for batch in batches],
    }
    outcomes = []
    for trial in range(INGEST_KILLS):
        db = tmp_path / f"ingest-{trial}" / "room.db"
        db.parent.mkdir()
        reports = rng.randrange(BATCHES * 3 // 4)
        extra = rng.choice([0, rng.randrange(60_000)])
        reported, status = await run_and_kill("ingest", db, spec, reports, extra)
        assert reported == list(range(1, len(reported) + 1))
        done = len(reported)
        assert done >= min(reports, BATCHES)
        outcomes.append((reports, extra, done, status))

        async with History.open(
            db, room=ROOM, verifier=verifier, wall_clock=lambda: NOW
        ) as history:
            assert await history.store.integrity_check() == "ok"
            replica = history.replica
            claimed = references[done]
            # Every op of every reported batch is there, and in effect if it is in effect
            # once those batches are applied.
            for op in claimed.ops():
                assert op.id in replica
                assert replica.in_effect(op.id) or not claimed.in_effect(op.id)
            # A batch is one transaction: the store holds the reported batches, or those
            # and the one being ingested when the child died, nothing in between.
            possible = {claimed.render()}
            if done < BATCHES:
                possible.add(references[done + 1].render())
            assert replica.render() in possible
            assert history.skipped_on_load == 0
            stored = {decode_op(data).id for data in await history.store.load()}
            assert stored == {op.id for op in replica.ops()}  # dropped ops were removed
    # The kill points were varied: not every child ran to the end.
    assert any(status == -signal.SIGKILL for *_, status in outcomes), outcomes


async def test_authored_ops_survive_sigkill(tmp_path: Path, verifier: Verifier) -> None:
    rng = random.Random(977)
    me = _identity(7)
    spec: dict[str, object] = {
        "room": ROOM,
        "now": NOW,
        "seed": bytes([0xC7]) * 32,
        "count": AUTHOR_COUNT,
    }
    outcomes = []
    for trial in range(AUTHOR_KILLS):
        db = tmp_path / f"author-{trial}" / "room.db"
        db.parent.mkdir()
        reports = rng.randrange(AUTHOR_COUNT // 3)
        extra = rng.choice([0, rng.randrange(40_000)])
        printed, status = await run_and_kill("author", db, spec, reports, extra)
        assert printed == list(range(1, len(printed) + 1))
        done = len(printed)
        outcomes.append((reports, extra, done, status))

        async with History.open(
            db, room=ROOM, identity=me, verifier=verifier, wall_clock=lambda: NOW
        ) as history:
            assert await history.store.integrity_check() == "ok"
            replica = history.replica
            head = replica.head(me.peer_id)
            # Every printed seq is stored; at most one more was committed before the kill.
            assert done <= head <= done + 1
            assert replica.forked_authors() == []
            mine = {op.seq: op for op in replica.ops() if op.author == me.peer_id}
            assert sorted(mine) == list(range(1, head + 1))
            for seq, op in mine.items():
                assert replica.in_effect(op.id)
                kind, text = plan(seq)
                assert op.kind == kind
                assert op.body == ((mine[seq - 1].id, text) if kind == Kind.EDIT else (text, None))
            # Authoring carries on from there without forking our chain.
            op, result = await history.author(Kind.MESSAGE, ("after the crash", None))
            assert result.added and op.seq == head + 1
            assert replica.forked_authors() == []
    assert any(status == -signal.SIGKILL for *_, status in outcomes), outcomes
