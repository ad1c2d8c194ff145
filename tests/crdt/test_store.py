"""The SQLite store of a room and the History kept in it: round trips through close and
reopen, durability modes, group commit, schema migrations and files that are not ours."""

from __future__ import annotations

import random
import re
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, closing
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

import crdt._store as store_module
from crdt import (
    Identity,
    IngestReport,
    Kind,
    Op,
    OpDropped,
    Outcome,
    Reason,
    Replica,
    encode_op,
    make_hlc,
)
from crdt._history import CHUNK, History
from crdt._store import SCHEMA_VERSION, Store, StoreError
from crdt._stored import _parts
from crdt._verify import Verifier
from rumor_runtime import INLINE

NOW = 1_780_000_000_000  # ms; the wall clock of every History here, and near the ops' clocks
ROOM = bytes(range(32))
OTHER_ROOM = bytes(range(100, 132))

pytestmark = pytest.mark.usefixtures("id_merges")


def _identity(n: int) -> Identity:
    return Identity.from_seed(bytes([0xA0 + n]) * 32)


ALICE, BOB, CAROL, ME = (_identity(n) for n in range(4))


class Peers:
    """Replicas of a few authors that see each other's ops at once, to author real ops."""

    def __init__(self, *authors: Identity) -> None:
        self.replicas = {who.peer_id: Replica(ROOM, identity=who) for who in authors}
        self.now = NOW - 60_000
        self.ops: list[Op] = []
        self.latest: dict[bytes, Op] = {}  # author -> their latest op

    def _add(self, op: Op) -> Op:
        for replica in self.replicas.values():
            assert replica.admit(op).added
        self.ops.append(op)
        self.latest[op.author] = op
        return op

    def _by(self, who: Identity) -> tuple[Replica, int]:
        self.now += 1
        return self.replicas[who.peer_id], self.now

    def message(self, who: Identity, text: str, reply_to: bytes | None = None) -> Op:
        replica, now = self._by(who)
        return self._add(replica.new_message(text, reply_to=reply_to, now_ms=now))

    def edit(self, who: Identity, target: Op, text: str) -> Op:
        replica, now = self._by(who)
        return self._add(replica.new_edit(target.id, text, now_ms=now))

    def delete(self, who: Identity, target: Op) -> Op:
        replica, now = self._by(who)
        return self._add(replica.new_delete(target.id, now_ms=now))

    def react(self, who: Identity, target: Op, emoji: str, *, remove: bool = False) -> Op:
        replica, now = self._by(who)
        return self._add(replica.new_reaction(target.id, emoji, remove=remove, now_ms=now))

    def topic(self, who: Identity, topic: str) -> Op:
        replica, now = self._by(who)
        return self._add(replica.new_topic(topic, now_ms=now))

    def nick(self, who: Identity, nick: str) -> Op:
        replica, now = self._by(who)
        return self._add(replica.new_nick(nick, now_ms=now))

    def join(self, who: Identity) -> Op:
        replica, now = self._by(who)
        return self._add(replica.new_join(now_ms=now))

    def leave(self, who: Identity) -> Op:
        replica, now = self._by(who)
        return self._add(replica.new_leave(now_ms=now))

    def last_of(self, who: Identity) -> Op:
        return self.latest[who.peer_id]


def conversation() -> tuple[Peers, Op]:
    """Three peers using every kind of op; returns them and Alice's first message."""
    peers = Peers(ALICE, BOB, CAROL)
    for who in (ALICE, BOB, CAROL):
        peers.join(who)
    peers.nick(ALICE, "alice")
    peers.nick(BOB, "bob")
    hello = peers.message(ALICE, "hello")
    reply = peers.message(BOB, "hi alice", reply_to=hello.id)
    peers.message(CAROL, "two\nlines\tand a tab, ünïcödé 🎉")
    peers.edit(ALICE, hello, "hello, world")
    peers.react(BOB, hello, "👍")
    peers.react(CAROL, hello, "👍")
    peers.react(ALICE, reply, "🎉")
    peers.react(CAROL, reply, "x")
    peers.react(CAROL, reply, "x", remove=True)
    peers.topic(ALICE, "first topic")
    peers.topic(BOB, "rumor dev")
    oops = peers.message(CAROL, "oops")
    peers.delete(CAROL, oops)
    peers.nick(BOB, "robert")
    peers.leave(CAROL)
    for i in range(12):
        peers.message((ALICE, BOB, CAROL)[i % 3], f"message {i}")
    return peers, hello


def reference(ops: Iterable[Op]) -> Replica:
    replica = Replica(ROOM)
    for op in ops:
        assert replica.admit(op).added
    return replica


def open_history(
    path: Path, verifier: Verifier, *, identity: Identity | None = None, room: bytes | None = ROOM
) -> AbstractAsyncContextManager[History]:
    return History.open(
        path, room=room, identity=identity, verifier=verifier, wall_clock=lambda: NOW
    )


async def ingest_all(history: History, ops: Sequence[Op]) -> IngestReport:
    """Ingest `ops` as one batch, every one of which must be added."""
    report = await history.ingest([op.data for op in ops])
    assert report.outcomes == [Outcome.ADDED] * len(ops)
    return report


async def stored_ids(store: Store) -> list[bytes]:
    """The ids of the stored ops (in effect, in effect order; then held), read through a
    separate connection (so only committed rows count)."""

    def read() -> list[bytes]:
        with closing(sqlite3.connect(store.path)) as db:
            rows = db.execute("SELECT id FROM ops ORDER BY n").fetchall()
            return [bytes(row[0]) for row in rows + db.execute("SELECT id FROM held").fetchall()]

    return await trio.to_thread.run_sync(read)


async def synchronous_pragma(store: Store) -> int:
    return int(await store.run(lambda: store._db.execute("PRAGMA synchronous").fetchone()[0]))


def transactions(statements: Sequence[str], mode: str) -> list[tuple[str, list[bytes]]]:
    """From a trace of SQL statements: (synchronous mode, ids inserted) per committed
    transaction. `mode` is the connection's mode when the trace started."""
    committed: list[tuple[str, list[bytes]]] = []
    current: list[bytes] | None = None
    for statement in statements:
        words = statement.strip().upper()
        if words.startswith("PRAGMA SYNCHRONOUS="):
            mode = words.split("=", 1)[1].strip()
        elif words.startswith("BEGIN"):
            current = []
        elif words.startswith("INSERT INTO OPS"):
            # Rows of (n, id, a, seq, data), many to a statement: each row's id.
            ids = re.findall(r"\(\s*-?\d+,\s*[xX]'([0-9a-fA-F]*)'", statement)
            assert ids and current is not None
            current.extend(bytes.fromhex(found) for found in ids)
        elif words.startswith("INSERT INTO META"):
            key = re.search(r"'([^']*)'", statement)
            assert key is not None and current is not None
            current.append(key.group(1).encode())
        elif words == "ROLLBACK":
            current = None
        elif words in ("COMMIT", "END"):
            assert current is not None
            committed.append((mode, current))
            current = None
    return committed


def one_line(error: BaseException) -> str:
    message = str(error)
    assert message and "\n" not in message
    return message


async def put(store: Store, key: str, value: bytes | None, *, durable: bool = False) -> None:
    """One write of the store (a meta row): enough to watch transactions and commits."""

    def write(db: sqlite3.Connection) -> None:
        db.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (key, value))

    await store.transact(write, durable=durable)


def stored_keys(path: Path) -> list[str]:
    with closing(sqlite3.connect(path)) as db:
        rows = db.execute("SELECT key FROM meta WHERE key LIKE 'k%' ORDER BY key").fetchall()
    return [str(row[0]) for row in rows]


@pytest.fixture
async def verifier() -> AsyncIterator[Verifier]:
    async with Verifier.open(workers=0) as verifier:
        yield verifier


# -- round trips --------------------------------------------------------------------------


async def test_round_trip_preserves_views(tmp_path: Path) -> None:
    peers, hello = conversation()
    path = tmp_path / "room.db"
    assert len(peers.ops) >= 32  # one batch large enough to go to a worker process
    async with Verifier.open(workers=1) as verifier:
        async with open_history(path, verifier, identity=ME) as history:
            await ingest_all(history, peers.ops)
            assert all(history.replica.in_effect(op.id) for op in peers.ops)

            await history.author(Kind.JOIN, ())
            await history.author(Kind.NICK, ("me",))
            mine, _ = await history.author(Kind.MESSAGE, ("my first", None))
            await history.author(Kind.EDIT, (mine.id, "my first, edited"))
            await history.author(Kind.REACT, (hello.id, "👍"))
            second, _ = await history.author(Kind.MESSAGE, ("my second", hello.id))
            await history.author(Kind.DELETE, (second.id,))
            await history.author(Kind.TOPIC, ("the last topic",))
            stored = await history.store.count()
            with pytest.raises(ValueError, match="author"):
                await history.author(Kind.EDIT, (hello.id, "not mine to edit"))
            assert await history.store.count() == stored  # a refused op is never stored

            late = peers.message(BOB, "after you")
            await ingest_all(history, [late])

            replica = history.replica
            rendered, vector, size = replica.render(), replica.version_vector(), len(replica)
            # The views are not trivial: every kind of op shows.
            assert replica.topic == "the last topic"
            assert replica.nicknames() == {
                ALICE.peer_id: "alice",
                BOB.peer_id: "robert",
                ME.peer_id: "me",
            }
            assert replica.members() == sorted([ALICE.peer_id, BOB.peer_id, ME.peer_id])
            shown = replica.message(hello.id)
            assert shown is not None and shown.text == "hello, world" and shown.edited
            assert shown.reactions == (
                ("👍", tuple(sorted([BOB.peer_id, CAROL.peer_id, ME.peer_id]))),
            )
            deleted = replica.message(second.id)
            assert deleted is not None and deleted.deleted
            assert vector[ME.peer_id] == 8 and vector[BOB.peer_id] > 0
            assert size == len(peers.ops) + 8
            assert await history.store.count() == size
            assert set(await stored_ids(history.store)) == {op.id for op in replica.ops()}

        for who in (ME, None):
            async with open_history(path, verifier, identity=who, room=None) as reopened:
                assert reopened.replica.render() == rendered
                assert reopened.replica.version_vector() == vector
                assert len(reopened.replica) == size
                assert reopened.skipped_on_load == 0
                assert await reopened.store.integrity_check() == "ok"


async def test_one_batch_mixing_new_ops_copies_and_ops_aimed_at_each_other(
    tmp_path: Path, verifier: Verifier
) -> None:
    # Rows are written in bulk (before any read of their tables, and before the commit),
    # and an op beyond its author's head is taken as new without a lookup: copies within
    # a batch and of committed ops must still come out as duplicates, and an edit or a
    # reaction must find its target written in the same batch.
    peers, _ = conversation()
    first, rest = peers.ops[:20], peers.ops[20:]
    more = [peers.message((ALICE, BOB)[i % 2], f"more {i}") for i in range(40)]
    target = more[0]
    more.append(peers.edit(ALICE, target, "more 0, edited"))
    more.append(peers.react(BOB, target, "👀"))
    async with open_history(tmp_path / "room.db", verifier) as history:
        await ingest_all(history, first)
        batch = [*first[:3], *rest, rest[0], *more, more[5]]
        report = await history.ingest([op.data for op in batch])
        duplicates = {0, 1, 2, 3 + len(rest), len(batch) - 1}
        assert [i for i, o in enumerate(report.outcomes) if o is Outcome.DUPLICATE] == sorted(
            duplicates
        )
        assert all(o is Outcome.ADDED for i, o in enumerate(report.outcomes) if i not in duplicates)
        expected = Replica(ROOM)
        for op in peers.ops:
            assert expected.admit(op).added
        assert history.replica.render() == expected.render()
        shown = history.replica.message(target.id)
        assert shown is not None and shown.text == "more 0, edited"
        assert shown.reactions == (("👀", (BOB.peer_id,)),)
        assert await history.store.count() == len(peers.ops)


async def test_reopen_continues_own_chain_and_clock(tmp_path: Path, verifier: Verifier) -> None:
    path = tmp_path / "room.db"
    async with open_history(path, verifier, identity=ME) as history:
        for i in range(3):
            await history.author(Kind.MESSAGE, (f"before {i}", None))
        last_hlc = max(op.hlc for op in history.replica.ops())
    # The wall clock went back an hour; the hybrid clock must still move forward.
    async with History.open(
        path, identity=ME, verifier=verifier, wall_clock=lambda: NOW - 3_600_000
    ) as history:
        op, result = await history.author(Kind.MESSAGE, ("after", None))
        assert result.added
        assert op.seq == 4 and op.prev == history.replica.timeline()[2].id
        assert op.hlc > last_hlc
        assert history.replica.forked_authors() == []
        assert history.replica.version_vector() == {ME.peer_id: 4}


async def test_held_ops_survive_reopen(tmp_path: Path, verifier: Verifier) -> None:
    """Ops delivered out of order are stored while held, and are held again after a
    reopen until what they wait for arrives."""
    peers, _ = conversation()
    shuffled = peers.ops[:]
    random.Random(5).shuffle(shuffled)
    path = tmp_path / "room.db"
    most_held = 0
    for start in range(0, len(shuffled), 4):
        batch = shuffled[start : start + 4]
        async with open_history(path, verifier) as history:
            await ingest_all(history, batch)
            replica = history.replica
            held, rendered = replica.held_count, replica.render()
            ids = {op.id for op in replica.ops()}
            in_effect = {i for i in ids if replica.in_effect(i)}
            assert set(await stored_ids(history.store)) == ids
            most_held = max(most_held, held)
        async with open_history(path, verifier) as history:
            replica = history.replica
            assert replica.held_count == held
            assert replica.render() == rendered
            assert {op.id for op in replica.ops()} == ids
            assert {i for i in ids if replica.in_effect(i)} == in_effect
            assert history.skipped_on_load == 0
    assert most_held >= 3  # the shuffle really did hold ops across reopens
    async with open_history(path, verifier) as history:
        assert history.replica.held_count == 0
        assert history.replica.render() == reference(peers.ops).render()


def forged_edit(peers: Peers, target: Op) -> tuple[Op, Op]:
    """Bob's edit of Alice's `target` (refused once the target is known) and Bob's next op,
    chained after that edit; both validly signed."""
    bob_last = peers.last_of(BOB)
    edit = encode_op(
        BOB,
        room=ROOM,
        seq=bob_last.seq + 1,
        prev=bob_last.id,
        hlc=make_hlc(NOW - 1000),
        kind=Kind.EDIT,
        body=(target.id, "hijacked"),
    )
    after = encode_op(
        BOB,
        room=ROOM,
        seq=edit.seq + 1,
        prev=edit.id,
        hlc=make_hlc(NOW - 999),
        kind=Kind.MESSAGE,
        body=("held behind it", None),
    )
    return edit, after


async def test_dropped_ops_are_removed_from_store(tmp_path: Path, verifier: Verifier) -> None:
    peers = Peers(ALICE, BOB)
    early = [peers.join(ALICE), peers.join(BOB), peers.message(BOB, "bob was here")]
    target = peers.message(ALICE, "alice's words")
    edit, after = forged_edit(peers, target)
    path = tmp_path / "room.db"
    async with open_history(path, verifier) as history:
        await ingest_all(history, early)
        await ingest_all(history, [edit, after])
        assert history.replica.held_count == 2
        assert not history.replica.in_effect(edit.id)
        assert not history.replica.in_effect(after.id)
        assert await history.store.count() == len(early) + 2
    async with open_history(path, verifier) as history:
        assert history.replica.held_count == 2
        report = await ingest_all(history, [target])
        dropped = {c.id: c.reason for c in report.changes if isinstance(c, OpDropped)}
        assert dropped == {edit.id: Reason.NOT_AUTHOR, after.id: Reason.BAD_PREV}
        assert await history.store.count() == len(early) + 1
        assert set(await stored_ids(history.store)) == {op.id for op in [*early, target]}
        rendered, vector = history.replica.render(), history.replica.version_vector()
    async with open_history(path, verifier) as history:
        assert history.replica.render() == rendered
        assert history.replica.version_vector() == vector
        assert history.replica.held_count == 0
        assert len(history.replica) == len(early) + 1
        assert history.skipped_on_load == 0
        assert await history.store.integrity_check() == "ok"


@pytest.mark.parametrize("target_at", [5, CHUNK], ids=["same-chunk", "next-chunk"])
async def test_drop_within_one_batch(tmp_path: Path, verifier: Verifier, target_at: int) -> None:
    """A held op and the op that drops it in one batch: inserted and removed by one write
    (same chunk) or by two, the first chunk's then the second's (next chunk). Either way
    the removal must come after the insert."""
    peers = Peers(ALICE, BOB, CAROL)
    early = [peers.join(ALICE), peers.join(BOB)]
    target = peers.message(ALICE, "alice's words")
    edit, after = forged_edit(peers, target)
    filler = [peers.message(CAROL, f"filler {i}") for i in range(CHUNK)]
    batch = [edit, after, *filler]
    batch.insert(target_at, target)
    path = tmp_path / "room.db"
    async with open_history(path, verifier) as history:
        await ingest_all(history, early)
        await ingest_all(history, batch)
        ids = {op.id for op in history.replica.ops()}
        assert edit.id not in ids and after.id not in ids
        assert len(ids) == len(early) + len(batch) - 2
        assert set(await stored_ids(history.store)) == ids
        rendered = history.replica.render()
    async with open_history(path, verifier) as history:
        assert history.replica.render() == rendered
        assert history.skipped_on_load == 0


async def test_missing_for_reads_as_the_replica_does_whatever_the_vector(
    tmp_path: Path, verifier: Verifier
) -> None:
    """A stored room answers `missing_for` by reading in effect order when most of what
    follows the first missing op is missing, and chain by chain otherwise: both give
    exactly the in-memory replica's answer, whatever the vector and the limit."""
    peers = Peers(ALICE, BOB, CAROL, ME)
    rng = random.Random(5)
    who = (ALICE, BOB, CAROL, ME)
    said = {author.peer_id: peers.message(author, "first") for author in who}
    for i in range(400):
        author = who[rng.randrange(4)]
        if rng.random() < 0.1:
            peers.edit(author, said[author.peer_id], f"edited {i}")
        else:
            said[author.peer_id] = peers.message(author, f"message {i}")
    memory = reference(peers.ops)
    heads = {author: memory.head(author) for author in memory.version_vector()}
    vectors = [
        {},  # a node joining: everything
        {a: head // 2 for a, head in heads.items()},  # half of each chain
        {a: head - 3 for a, head in heads.items()},  # the last few of each chain
        {a: (head if a != ALICE.peer_id else 2) for a, head in heads.items()},  # one chain
        {a: rng.randrange(head + 2) for a, head in heads.items()},
        {ALICE.peer_id: heads[ALICE.peer_id] + 10},  # ahead of us on one chain
        dict(heads),  # nothing
    ]
    async with open_history(tmp_path / "room.db", verifier) as history:
        await ingest_all(history, peers.ops)
        stored = history.replica
        for vector in vectors:
            for limit in (None, 1, 7, 100, 1000):
                ops = memory.missing_for(vector, limit=limit)
                got = [op.id for op in stored.missing_for(vector, limit=limit)]
                assert got == [op.id for op in ops], (vector, limit)
                # What a catch-up batch sends: the same ops, as (author, seq, wire form).
                wire = [(op.author, op.seq, op.data) for op in ops]
                assert stored.missing_wire(vector, limit=limit) == wire, (vector, limit)
                assert memory.missing_wire(vector, limit=limit) == wire
        assert [op.id for op in stored.missing_for({})] == [op.id for op in peers.ops]
        # A batch's first row of each chain comes from the first tail entry alone.
        for a, tail in stored._summary.tail.items():
            for after in range(max(tail[0::2], default=0) + 2):
                whole = stored._tail(a, after, False)
                assert stored._tail_first(a, after) == (whole[0] if whole else None)


# -- durability and group commit ----------------------------------------------------------


def _in_file_alone(path: Path, query: str) -> list[Any]:
    """`query` on a copy of the database file without its WAL: what checkpoints folded in."""
    copy = path.with_name("file-alone.db")
    copy.write_bytes(path.read_bytes())
    try:
        with closing(sqlite3.connect(copy)) as db:
            return db.execute(query).fetchall()
    finally:
        copy.unlink()


async def test_checkpoints_run_beside_the_writer(
    tmp_path: Path, verifier: Verifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once CHECKPOINT_OPS ops are committed, the WAL is folded into the file beside the
    writer (SQLite's own checkpoint in the commit would wait for 4 x WAL_PAGES), and the
    writer folds in the rest: nothing is left in the WAL."""
    monkeypatch.setattr(store_module, "CHECKPOINT_OPS", 40)  # due with the last batch
    peers = Peers(ALICE, BOB)
    for i in range(40):
        peers.message((ALICE, BOB)[i % 2], f"message {i}")
    path = tmp_path / "room.db"
    async with open_history(path, verifier) as history:
        store = history.store
        for at in range(0, 40, 5):
            await ingest_all(history, peers.ops[at : at + 5])
        with trio.fail_after(10):
            while store.checkpoints < 1:  # noqa: ASYNC110 (it runs on threads: polled)
                await trio.sleep(0.01)
        # Every committed op is in the file itself: the WAL was folded in whole.
        in_file = _in_file_alone(path, "SELECT id FROM ops ORDER BY n")
        assert [bytes(row[0]) for row in in_file] == [op.id for op in peers.ops]
    async with open_history(path, verifier, room=None) as history:
        assert history.store.checkpoints == 0  # nothing committed since it opened
        assert [op.id for op in history.replica.ops()] == [op.id for op in peers.ops]


async def test_inline_stores_leave_checkpoints_to_sqlite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "CHECKPOINT_OPS", 1)
    path = tmp_path / "room.db"
    async with Store.open(path, blocking=INLINE) as store:
        for i in range(5):
            await store.set_meta({f"key {i}": b"value"})
        # Inline, a checkpoint would run on this thread: once every task waits, it is over.
        await trio.testing.wait_all_tasks_blocked()
        assert store.checkpoints == 0
        # Nothing was folded in: the file alone lacks even the tables made on open.
        assert _in_file_alone(path, "SELECT name FROM sqlite_master WHERE name = 'meta'") == []


async def test_author_commits_full_and_ingest_normal(tmp_path: Path, verifier: Verifier) -> None:
    peers, _ = conversation()
    first, second = peers.ops[:10], peers.ops[10:20]
    async with open_history(tmp_path / "room.db", verifier, identity=ME) as history:
        store = history.store
        trace: list[str] = []
        store._db.set_trace_callback(trace.append)
        initial = "FULL" if await synchronous_pragma(store) == 2 else "NORMAL"

        await ingest_all(history, first)
        assert store._synchronous == "NORMAL"
        assert await synchronous_pragma(store) == 1
        # Committed when ingest returns: a separate connection sees the rows.
        assert set(await stored_ids(store)) == {op.id for op in first}

        mine, _ = await history.author(Kind.MESSAGE, ("mine", None))
        assert store._synchronous == "FULL"
        assert await synchronous_pragma(store) == 2
        assert mine.id in await stored_ids(store)

        await ingest_all(history, second)
        assert store._synchronous == "NORMAL"
        assert await synchronous_pragma(store) == 1

        store._db.set_trace_callback(None)
        committed = transactions(trace, initial)
        modes = {op_id: mode for mode, ids in committed for op_id in ids}
        assert modes[mine.id] == "FULL"
        assert {modes[op.id] for op in first + second} == {"NORMAL"}
        assert len(modes) == len(first) + len(second) + 1


async def test_failed_author_commit_applies_nothing(tmp_path: Path, verifier: Verifier) -> None:
    """`author` applies an op only once it is committed: if the commit fails, the op is
    neither shown nor stored, and the next op takes its seq without forking the chain."""
    path = tmp_path / "room.db"
    async with open_history(path, verifier, identity=ME) as history:
        first, _ = await history.author(Kind.MESSAGE, ("first", None))
        store = history.store
        await store.run(lambda: store._db.execute("PRAGMA busy_timeout=20"))
        with closing(sqlite3.connect(path, isolation_level=None)) as other:
            other.execute("BEGIN IMMEDIATE")  # another writer holds the lock
            with pytest.raises(StoreError, match="locked"):
                await history.author(Kind.MESSAGE, ("lost", None))
            other.execute("ROLLBACK")
        assert [m.text for m in history.replica.timeline()] == ["first"]
        assert len(history.replica) == 1
        second, _ = await history.author(Kind.MESSAGE, ("second", None))
        assert second.seq == 2 and second.prev == first.id
        rendered = history.replica.render()
    async with open_history(path, verifier, identity=ME) as history:
        assert history.replica.render() == rendered
        assert history.replica.forked_authors() == []
        assert [m.text for m in history.replica.timeline()] == ["first", "second"]


async def test_concurrent_writes_share_commits(tmp_path: Path) -> None:
    rng = random.Random(11)
    tasks, rounds = 6, 5
    keys = {(t, r): f"k{t}-{r}" for t in range(tasks) for r in range(rounds)}
    durable = {key for key in keys if rng.random() < 0.3}
    async with Store.open(tmp_path / "room.db") as store:
        trace: list[str] = []
        store._db.set_trace_callback(trace.append)

        async def write_all(t: int) -> None:
            for r in range(rounds):
                await put(store, keys[t, r], b"x", durable=(t, r) in durable)
                # Returned only once committed: a separate connection sees it.
                assert keys[t, r] in stored_keys(store.path)

        async with trio.open_nursery() as nursery:
            for t in range(tasks):
                nursery.start_soon(write_all, t)
        assert 1 <= store.commits < tasks * rounds
        store._db.set_trace_callback(None)

    committed = transactions(trace, "NORMAL")
    assert len(committed) == store.commits
    assert sorted(k.decode() for _, ids in committed for k in ids) == sorted(keys.values())
    for mode, ids in committed:  # a transaction holding a durable write is durable
        if any(keys[key].encode() in ids for key in durable):
            assert mode == "FULL"


async def test_announced_writes_share_a_commit_with_those_queued(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, no_threads: None
) -> None:
    """While writes are announced (an ingest still verifying), a non-durable transaction
    waits for them, but never longer than GROUP_WAIT, nor once it is large enough, nor
    when a write in it must be durable."""
    order: list[str] = []

    def step(name: str) -> Callable[[sqlite3.Connection], None]:
        return lambda db: order.append(name)

    async with Store.open(tmp_path / "room.db", blocking=INLINE) as store:
        expected = store.expect()
        first = store.submit(step("first"), durable=False)
        await trio.sleep(store_module.GROUP_WAIT / 4)
        assert store.commits == 0  # held for the write announced
        second = store.submit(step("second"), durable=False)
        expected.close()
        await first.wait()
        await second.wait()
        assert (store.commits, order) == (1, ["first", "second"])
        assert trio.current_time() < store_module.GROUP_WAIT

        # An announced write that does not come holds the commit for GROUP_WAIT at most.
        start = trio.current_time()
        expected = store.expect()
        await store.transact(step("third"), durable=False)
        assert trio.current_time() - start == pytest.approx(store_module.GROUP_WAIT)
        # Durable writes, and transactions already large enough, do not wait.
        start = trio.current_time()
        await store.transact(step("durable"), durable=True)
        await store.transact(step("large"), durable=False, weight=store_module.GROUP_WEIGHT)
        assert trio.current_time() == start
        expected.close()
        expected.close()  # closing twice is harmless
        await store.transact(step("alone"), durable=False)
        assert trio.current_time() == start
        assert store.commits == 5


async def test_ingest_calls_committed_together_return_in_call_order(
    tmp_path: Path,
    verifier: Verifier,
    autojump_clock: trio.testing.MockClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Callers publish view changes in the order their ingest calls return: calls whose
    writes share a commit still return in the order they were made."""
    monkeypatch.setattr(store_module, "GROUP_WAIT", 3600.0)
    peers = Peers(ALICE, BOB)
    ops = [peers.message((ALICE, BOB)[i % 2], f"message {i}") for i in range(40)]
    returned: list[int] = []
    async with History.open(
        tmp_path / "room.db", room=ROOM, verifier=verifier, wall_clock=lambda: NOW, blocking=INLINE
    ) as history:
        commits = history.store.commits

        async def one(i: int) -> None:
            await history.ingest([ops[i].data])
            returned.append(i)

        hold = history.store.expect()  # the writer holds its commit while this is open
        async with trio.open_nursery() as nursery:
            for i in range(len(ops)):
                nursery.start_soon(one, i)
                await trio.testing.wait_all_tasks_blocked()
            assert returned == []  # every call's writes wait in one transaction
            hold.close()
        assert history.store.commits == commits + 1
    assert returned == list(range(len(ops)))


async def test_a_summary_rebuilds_only_the_parts_that_changed(
    tmp_path: Path, verifier: Verifier
) -> None:
    """A commit that changes one register (a member joining, a nick) publishes new copies
    of that part only; every part equals what the registers say, whatever the order."""
    peers = Peers(ALICE, BOB, CAROL)
    ops = [
        (peers.join(ALICE), "members"),
        (peers.nick(ALICE, "al"), "nicks"),
        (peers.join(CAROL), "members"),
        (peers.join(BOB), "members"),
        (peers.nick(BOB, "bo"), "nicks"),
        (peers.topic(BOB, "hello"), "topic"),
        (peers.leave(CAROL), "members"),
        (peers.nick(ALICE, "alice"), "nicks"),
        (peers.leave(ALICE), "members"),
        (peers.join(CAROL), "members"),
    ]
    async with open_history(tmp_path / "room.db", verifier) as history:
        applier = history._applier
        for op, part in ops:
            before = history.replica._summary
            await ingest_all(history, [op])
            after = history.replica._summary
            new = {"authors"} if op.seq == 1 else set()
            for name in ("topic", "forks", "nicks", "members", "authors"):
                if name not in new | {part} and name != "topic":
                    assert getattr(after, name) is getattr(before, name), (part, name)
            joined = sorted(a for a, (_, yes) in applier._membership.items() if yes)
            assert after.members == joined
            assert after.nicks == {a: nick for a, (_, nick) in applier._nicks.items() if nick}
            assert after.authors == applier._authors and after.authors is not applier._authors
        assert after.members == sorted([BOB.peer_id, CAROL.peer_id])
        assert after.nicks == {ALICE.peer_id: "alice", BOB.peer_id: "bo"}
        assert after.topic == "hello"


class _Spawned(trio.abc.Instrument):
    def __init__(self) -> None:
        self.names: list[str] = []

    def task_spawned(self, task: trio.lowlevel.Task) -> None:
        self.names.append(task.name)


@pytest.mark.parametrize("size", [1, CHUNK, CHUNK + 1])
async def test_an_ingest_of_one_chunk_runs_in_the_callers_task(
    tmp_path: Path, verifier: Verifier, autojump_clock: trio.testing.MockClock, size: int
) -> None:
    """A batch of at most one verification chunk (every push) is screened, verified,
    applied and committed without the pipeline's tasks; a larger one goes through them.
    Either way every op is added."""
    peers = Peers(ALICE, BOB)
    ops = [peers.message((ALICE, BOB)[i % 2], f"message {i}") for i in range(size)]
    async with History.open(
        tmp_path / "room.db", room=ROOM, verifier=verifier, wall_clock=lambda: NOW, blocking=INLINE
    ) as history:
        spawned = _Spawned()
        trio.lowlevel.add_instrument(spawned)
        try:
            await ingest_all(history, ops)
        finally:
            trio.lowlevel.remove_instrument(spawned)
        assert len(history.replica) == size
    pipeline = [n for n in spawned.names if "_apply_in_order" in n or "_verify" in n]
    assert (pipeline == []) == (size <= CHUNK)


async def test_queued_writes_share_one_commit_in_call_order(tmp_path: Path) -> None:
    order: list[str] = []

    def step(name: str) -> Callable[[sqlite3.Connection], None]:
        return lambda db: order.append(name)

    async with Store.open(tmp_path / "room.db") as store:
        # Hold the worker thread, so that later writes queue up.
        async with trio.open_nursery() as nursery, store._limiter:
            nursery.start_soon(partial(store.transact, step("first"), durable=False))
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(partial(store.transact, step("second"), durable=False))
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(partial(store.transact, step("third"), durable=False))
            await trio.testing.wait_all_tasks_blocked()
            assert store.commits == 0
        # The first write was taken alone; the two queued behind it were committed
        # together, in the order they were made.
        assert store.commits == 2
        assert order == ["first", "second", "third"]


async def test_failed_commit_fails_every_caller_and_keeps_nothing(tmp_path: Path) -> None:
    failed: dict[str, StoreError] = {}
    async with Store.open(tmp_path / "room.db") as store:

        async def write(key: str, value: bytes | None) -> None:
            try:
                await put(store, key, value)
            except StoreError as exc:
                failed[key] = exc

        # Hold the worker thread: good and bad queue up behind blocker, together.
        async with trio.open_nursery() as nursery, store._limiter:
            nursery.start_soon(write, "k0-blocker", b"alone")
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(write, "k1-good", b"good")
            nursery.start_soon(write, "k2-bad", None)  # NOT NULL violated: all fail
            await trio.testing.wait_all_tasks_blocked()
        assert sorted(failed) == ["k1-good", "k2-bad"]
        assert all(str(store.path) in one_line(exc) for exc in failed.values())
        assert stored_keys(store.path) == ["k0-blocker"]
        assert store.failed is None  # a constraint error is no reason to stop writing
        await put(store, "k3-later", b"x", durable=True)  # the store still works
        assert stored_keys(store.path) == ["k0-blocker", "k3-later"]


async def test_closed_store_refuses_writes(tmp_path: Path) -> None:
    async with Store.open(tmp_path / "room.db") as store:
        await put(store, "k1", b"x")
    with pytest.raises(trio.ClosedResourceError):
        await put(store, "k2", b"y")
    assert stored_keys(tmp_path / "room.db") == ["k1"]


# -- schema versions and files that are not ours ------------------------------------------


def _sql(path: Path, query: str) -> list[tuple[object, ...]]:
    with closing(sqlite3.connect(path)) as db:
        return db.execute(query).fetchall()


async def test_fresh_file_gets_current_schema(tmp_path: Path) -> None:
    path = tmp_path / "new" / "room.db"  # the directory is created too
    async with Store.open(path) as store:
        assert await store.integrity_check() == "ok"
        assert await store.count() == 0
    assert _sql(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert _sql(path, "PRAGMA journal_mode") == [("wal",)]
    tables = {row[0] for row in _sql(path, "SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"meta", "ops", "held", "messages", "reactions", "registers", "quarantine"} <= tables


async def test_newer_schema_is_refused(tmp_path: Path, verifier: Verifier) -> None:
    path = tmp_path / "room.db"
    async with open_history(path, verifier, identity=ME) as history:
        await history.author(Kind.MESSAGE, ("kept", None))
    with closing(sqlite3.connect(path)) as db:
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError) as caught:
        async with Store.open(path):
            pytest.fail("opened a store from a newer rumor")
    message = one_line(caught.value)
    assert str(path) in message and str(SCHEMA_VERSION + 1) in message
    # Nothing was changed or lost.
    assert _sql(path, "PRAGMA user_version") == [(SCHEMA_VERSION + 1,)]
    assert _sql(path, "SELECT count(*) FROM ops") == [(1,)]


async def test_random_bytes_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "room.db"
    junk = random.Random(3).randbytes(8192)
    path.write_bytes(junk)
    with pytest.raises(StoreError) as caught:
        async with Store.open(path):
            pytest.fail("opened random bytes as a store")
    assert str(path) in one_line(caught.value)
    assert path.read_bytes() == junk


def _foreign_database(path: Path) -> None:
    with closing(sqlite3.connect(path)) as db:
        db.execute("CREATE TABLE contacts (name TEXT, email TEXT)")
        db.execute("INSERT INTO contacts VALUES ('ada', 'ada@example.org')")
        db.commit()


async def test_foreign_sqlite_file_is_refused(tmp_path: Path, verifier: Verifier) -> None:
    path = tmp_path / "contacts.db"
    _foreign_database(path)
    with pytest.raises(StoreError) as caught:
        async with Store.open(path):
            pytest.fail("opened another program's database as a store")
    assert str(path) in one_line(caught.value)
    with pytest.raises(StoreError):
        async with open_history(path, verifier):
            pytest.fail("opened another program's database as a history")
    assert _sql(path, "SELECT * FROM contacts") == [("ada", "ada@example.org")]
    assert _sql(path, "PRAGMA user_version") == [(0,)]


async def test_refused_foreign_file_is_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "contacts.db"
    _foreign_database(path)
    before = path.read_bytes()
    with pytest.raises(StoreError):
        async with Store.open(path):
            pytest.fail("opened another program's database as a store")
    assert _sql(path, "PRAGMA journal_mode") == [("delete",)]
    assert path.read_bytes() == before


async def test_other_room_is_refused(tmp_path: Path, verifier: Verifier) -> None:
    path = tmp_path / "room.db"
    async with open_history(path, verifier, identity=ME) as history:
        await history.author(Kind.MESSAGE, ("in the first room", None))
        rendered = history.replica.render()
    with pytest.raises(StoreError) as caught:
        async with open_history(path, verifier, room=OTHER_ROOM):
            pytest.fail("opened a room's file as another room")
    message = one_line(caught.value)
    assert ROOM.hex() in message and OTHER_ROOM.hex() in message
    async with open_history(path, verifier, room=None) as history:
        assert history.room == ROOM
        assert history.replica.render() == rendered


async def test_new_file_needs_a_room(tmp_path: Path, verifier: Verifier) -> None:
    with pytest.raises(StoreError) as caught:
        async with open_history(tmp_path / "room.db", verifier, room=None):
            pytest.fail("opened a history without a room")
    one_line(caught.value)


MIGRATION_STEP = (
    "ALTER TABLE ops ADD COLUMN received_at INTEGER",
    "CREATE TABLE migration_runs (step INTEGER NOT NULL)",
    f"INSERT INTO migration_runs VALUES ({SCHEMA_VERSION})",
)


async def test_added_migration_runs_once(
    tmp_path: Path, verifier: Verifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "room.db"
    peers, _ = conversation()
    async with open_history(path, verifier, identity=ME) as history:
        await ingest_all(history, peers.ops)
        await history.author(Kind.MESSAGE, ("before the upgrade", None))
        rendered = history.replica.render()

    monkeypatch.setattr(store_module, "MIGRATIONS", [*store_module.MIGRATIONS, MIGRATION_STEP])
    monkeypatch.setattr(store_module, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    for _ in range(3):
        async with open_history(path, verifier, identity=ME) as history:
            assert history.replica.render() == rendered
            assert await history.store.integrity_check() == "ok"
        assert _sql(path, "PRAGMA user_version") == [(SCHEMA_VERSION + 1,)]
        assert _sql(path, "SELECT step FROM migration_runs") == [(SCHEMA_VERSION,)]
    columns = [row[1] for row in _sql(path, "PRAGMA table_info(ops)")]
    assert columns == ["n", "id", "a", "seq", "data", "received_at"]

    # This rumor again, without the step: the upgraded file is from a newer rumor.
    monkeypatch.undo()
    with pytest.raises(StoreError, match="schema version"):
        async with Store.open(path):
            pytest.fail("an older rumor opened an upgraded store")


async def test_failed_migration_changes_nothing(
    tmp_path: Path, verifier: Verifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "room.db"
    async with open_history(path, verifier, identity=ME) as history:
        await history.author(Kind.MESSAGE, ("kept", None))
        rendered = history.replica.render()
    broken = (MIGRATION_STEP[0], "INSERT INTO no_such_table VALUES (1)")
    with monkeypatch.context() as patch:
        patch.setattr(store_module, "MIGRATIONS", [*store_module.MIGRATIONS, broken])
        patch.setattr(store_module, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
        with pytest.raises(StoreError) as caught:
            async with Store.open(path):
                pytest.fail("a broken migration went through")
        one_line(caught.value)
    assert _sql(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert "received_at" not in [row[1] for row in _sql(path, "PRAGMA table_info(ops)")]
    async with open_history(path, verifier, identity=ME) as history:
        assert history.replica.render() == rendered


# -- bugs found and fixed ---------------------------------------------------------------


async def test_cancelled_author_does_not_fork_own_chain(
    tmp_path: Path, verifier: Verifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "room.db"
    async with open_history(path, verifier, identity=ME) as history:
        await history.author(Kind.MESSAGE, ("one", None))
        commit = history.store._commit
        scope = trio.CancelScope()

        async def cancel_then_commit(jobs: list[Any]) -> None:
            scope.cancel()  # the author is cancelled while its commit is under way
            await commit(jobs)

        monkeypatch.setattr(history.store, "_commit", cancel_then_commit)
        with scope:
            await history.author(Kind.MESSAGE, ("two", None))
        # A commit that began is seen through, and the op applied with it.
        assert [m.text for m in history.replica.timeline()] == ["one", "two"]
        monkeypatch.setattr(history.store, "_commit", commit)
        await history.author(Kind.MESSAGE, ("three", None))
        rendered = history.replica.render()
    async with open_history(path, verifier, identity=ME) as history:
        assert history.replica.forked_authors() == []
        assert history.replica.render() == rendered


async def test_ops_of_a_failed_ingest_commit_are_stored_when_delivered_again(
    tmp_path: Path, verifier: Verifier
) -> None:
    peers = Peers(ALICE)
    first, lost, later = (peers.message(ALICE, f"message {i}") for i in range(3))
    path = tmp_path / "room.db"
    async with open_history(path, verifier) as history:
        await ingest_all(history, [first])
        store = history.store
        await store.run(lambda: store._db.execute("PRAGMA busy_timeout=20"))
        with closing(sqlite3.connect(path, isolation_level=None)) as other:
            other.execute("BEGIN IMMEDIATE")  # another writer holds the lock
            with pytest.raises(StoreError, match="locked"):
                await history.ingest([lost.data])
            other.execute("ROLLBACK")
        # The peer sends the batch again, and more.
        await history.ingest([lost.data, later.data])
        rendered = history.replica.render()
    async with open_history(path, verifier) as history:
        assert history.replica.render() == rendered


async def test_cancelled_history_block_closes_promptly(tmp_path: Path, verifier: Verifier) -> None:
    """Cancelling the block that holds a History also cancels its store's writer and its
    background tasks; it closes at once, and a write after that is refused."""
    peers = Peers(ALICE)
    first = peers.message(ALICE, "stored")
    path = tmp_path / "room.db"
    with trio.fail_after(2):
        with trio.CancelScope() as scope:
            async with open_history(path, verifier) as history:
                await ingest_all(history, [first])
                scope.cancel()
                await trio.sleep_forever()
        assert scope.cancelled_caught
    async with open_history(path, verifier) as history:
        assert [m.text for m in history.replica.timeline()] == ["stored"]
        assert await history.store.integrity_check() == "ok"
    with pytest.raises(trio.ClosedResourceError):
        await put(history.store, "k1", b"x")


# -- inline: SQLite on the trio thread, for virtual time ------------------------------------


@pytest.fixture
def no_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any wait on a worker thread fails the test."""

    async def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a worker thread was used")

    monkeypatch.setattr(trio.to_thread, "run_sync", refuse)


async def test_inline_history_round_trips_in_virtual_time_without_threads(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, no_threads: None
) -> None:
    peers, hello = conversation()
    path = tmp_path / "room.db"
    async with Verifier.open(workers=0) as verifier:
        async with History.open(
            path, room=ROOM, identity=ME, verifier=verifier, wall_clock=lambda: NOW, blocking=INLINE
        ) as history:
            await ingest_all(history, peers.ops)
            mine, _ = await history.author(Kind.MESSAGE, ("mine", hello.id))
            rendered = history.replica.render()
            assert await history.store.count() == len(peers.ops) + 1
        async with History.open(
            path, identity=ME, verifier=verifier, wall_clock=lambda: NOW, blocking=INLINE
        ) as reopened:
            assert reopened.replica.render() == rendered
            assert reopened.replica.in_effect(mine.id)
    assert trio.current_time() == 0  # nothing waited: the clock never had to jump


async def test_inline_writes_still_share_commits_and_honour_cancellation(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, no_threads: None
) -> None:
    keys = [f"k{n}" for n in range(6)]
    async with Store.open(tmp_path / "room.db", blocking=INLINE) as store:
        async with trio.open_nursery() as nursery:
            for key in keys:
                nursery.start_soon(put, store, key, b"v")
        assert store.commits == 1  # all six queued before the writer ran: one transaction
        with trio.CancelScope() as scope:
            scope.cancel()
            await store.count()  # cancelled before it starts, as on a thread
        assert scope.cancelled_caught
        assert stored_keys(store.path) == keys


@pytest.mark.parametrize("count", [1, 2, 3, 5, 64, 65, 499, 500, 501, 1000, 1337])
def test_in_lists_come_in_a_few_lengths_and_keep_every_item(count: int) -> None:
    """The `IN (...)` lists of the read side's lookups are padded (with their last item,
    which matches the same rows again) to a power of two or the most a statement takes,
    so each lookup prepares a few statement texts, not one per length."""
    items = list(range(count))
    parts = list(_parts(items))
    assert items == list(range(count))  # the caller's list is left alone
    assert all(len(part) in {1, 2, 4, 8, 16, 32, 64, 128, 256, 500} for part in parts)
    assert [i for part in parts for i in dict.fromkeys(part)] == items
    assert len(parts) == -(-count // 500)
