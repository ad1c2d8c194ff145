"""Storage damage is contained and healed (issue 10); a reopened room shows what replaying
its ops shows (issue 14); schema 1 files are upgraded.

Damaged files raise StoreError (never a raw sqlite3 error); an op row whose bytes no
longer hash to their id, or no longer decode, is set aside (never deleted), reported, and
healed when sync delivers the genuine op; a full disk stops the room's writes with a clear
message and loses no acknowledged op.
"""

from __future__ import annotations

import itertools
import random
import sqlite3
from array import array
from contextlib import closing, suppress
from pathlib import Path

import pytest
import trio
import trio.testing

import crdt._applier as applier_module
import crdt._history as history_module
from crdt import History, Kind, Op, Outcome, Replica, StoreError, encode_op
from crdt._applier import Applier, Summary
from crdt._verify import Verifier
from rumor_runtime import INLINE

from .test_store import ALICE, BOB, CAROL, ME, NOW, ROOM, Peers, conversation, open_history

pytestmark = pytest.mark.usefixtures("id_merges")


def _sql(path: Path, query: str, args: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    with closing(sqlite3.connect(path, isolation_level=None)) as db:
        return db.execute(query, args).fetchall()


def rebuilt_summary(path: Path) -> Summary:
    """The summary of what is committed at `path`, built from the tables afresh."""
    with closing(sqlite3.connect(path, isolation_level=None)) as db:
        applier = Applier(ROOM, db)
        applier.load()
        return applier.summary()


def reference(ops: list[Op]) -> Replica:
    replica = Replica(ROOM)
    for op in ops:
        replica.admit(op)
    return replica


async def _stored(path: Path, verifier: Verifier, ops: list[Op]) -> None:
    async with open_history(path, verifier) as history:
        report = await history.ingest([op.data for op in ops])
        assert set(report.outcomes) == {Outcome.ADDED}


@pytest.fixture
async def verifier() -> Verifier:  # type: ignore[misc]
    async with Verifier.open(workers=0) as verifier:
        yield verifier


@pytest.mark.parametrize("damage", ["one letter", "no longer decodes"])
async def test_damaged_row_is_set_aside_reported_and_healed_by_sync(
    tmp_path: Path, verifier: Verifier, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    peers, hello = conversation()
    path = tmp_path / "room.db"
    await _stored(path, verifier, peers.ops)
    # An early message of Alice's, with later ops of hers (and others' reactions) after it.
    victim = next(op for op in peers.ops if op.author == ALICE.peer_id and op.kind == Kind.MESSAGE)
    assert victim.id == hello.id
    genuine = reference(peers.ops)
    if damage == "one letter":
        changed = victim.data.replace(b"hello", b"hellO")
    else:
        changed = b"\xc1" + victim.data[1:]
    assert changed != victim.data
    _sql(path, "UPDATE ops SET data = ? WHERE id = ?", (changed, victim.id))

    async with open_history(path, verifier) as history:
        replica = history.replica
        # Never shown: not as it was, not as it is now.
        assert replica.message(victim.id) is None
        assert victim.id not in [m.id for m in replica.timeline()]
        assert "hellO" not in str([m.text for m in replica.timeline()])
        assert replica.get(victim.id) is None
        # Reported: a count for the room's status, and a log line.
        assert history.damaged == 1
        assert "damaged" in caplog.text and victim.id.hex()[:16] in caplog.text
        # Every intact op is still in effect and shown: nothing else was lost.
        shown = {m.id for m in replica.timeline()}
        assert shown == {m.id for m in genuine.timeline()} - {victim.id}
        # Set aside, not deleted.
        assert _sql(path, "SELECT data FROM quarantine WHERE id = ?", (victim.id,)) == [(changed,)]
        # Missing from the version vector, so the normal sync asks for it again.
        vector = replica.version_vector()
        assert vector[ALICE.peer_id] == victim.seq - 1
        resent = genuine.missing_for(vector)
        assert victim in resent
        report = await history.ingest([op.data for op in resent])
        assert report.outcomes.count(Outcome.ADDED) == 1
        # Healed: every view is the genuine room's again, without a restart.
        assert replica.render() == genuine.render()
        assert replica.version_vector() == genuine.version_vector()
    async with open_history(path, verifier) as history:
        assert history.replica.render() == genuine.render()
        assert history.damaged == 1  # the quarantined row is kept as a record


async def _room_with_a_damaged_op(tmp_path: Path, verifier: Verifier) -> tuple[Path, list[Op], Op]:
    """A room of 40 messages whose 11th op's stored bytes had one letter changed."""
    peers = Peers(ALICE, BOB)
    ops = [peers.message((ALICE, BOB)[i % 2], f"message {i}") for i in range(40)]
    path = tmp_path / "room.db"
    await _stored(path, verifier, ops)
    victim = ops[10]
    _sql(
        path,
        "UPDATE ops SET data = ? WHERE id = ?",
        (victim.data.replace(b"message 10", b"message 1O"), victim.id),
    )
    return path, ops, victim


async def test_damaged_row_found_by_a_read_of_a_large_room(
    tmp_path: Path, verifier: Verifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Too large to check at open: a read that comes across the row sets it aside."""
    monkeypatch.setattr(history_module, "CHECK_AT_OPEN_BYTES", 0)
    path, ops, victim = await _room_with_a_damaged_op(tmp_path, verifier)
    async with History.open(path, verifier=verifier, wall_clock=lambda: NOW, scrub=False) as h:
        assert h.damaged == 0
        texts = [m.text for m in h.replica.page(limit=100)]
        assert "message 10" not in texts and len(texts) == 39
        for _ in range(10):
            await h.store.run(lambda: None)  # let the writer set it aside
        assert h.damaged == 1
        assert h.replica.version_vector()[victim.author] == victim.seq - 1
        await h.ingest([victim.data])
        assert h.replica.render() == reference(ops).render()


async def test_damaged_row_found_by_a_catch_up_read_is_left_out_and_set_aside(
    tmp_path: Path, verifier: Verifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`missing_wire` checks each op's bytes against its id, as `missing_for` does: a
    damaged op is never sent to a peer (which would take us for a forger)."""
    monkeypatch.setattr(history_module, "CHECK_AT_OPEN_BYTES", 0)
    path, ops, victim = await _room_with_a_damaged_op(tmp_path, verifier)
    async with History.open(path, verifier=verifier, wall_clock=lambda: NOW, scrub=False) as h:
        sent = h.replica.missing_wire({})
        assert sent == [(op.author, op.seq, op.data) for op in ops if op is not victim]
        for _ in range(10):
            await h.store.run(lambda: None)  # let the writer set it aside
        assert h.damaged == 1


async def test_scrub_finds_every_damaged_row(
    tmp_path: Path, verifier: Verifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(history_module, "CHECK_AT_OPEN_BYTES", 0)
    peers = Peers(ALICE)
    ops = [peers.message(ALICE, f"m{i}") for i in range(50)]
    path = tmp_path / "room.db"
    await _stored(path, verifier, ops)
    for victim in (ops[3], ops[30]):
        _sql(path, "UPDATE ops SET data = ? WHERE id = ?", (b"junk", victim.id))
    async with History.open(path, verifier=verifier, wall_clock=lambda: NOW, scrub=False) as h:
        assert await h.scrub() == 2
        assert h.damaged == 2
        assert h.replica.version_vector() == {ALICE.peer_id: 3}
        await h.ingest([op.data for op in reference(ops).missing_for({ALICE.peer_id: 3})])
        assert h.replica.render() == reference(ops).render()


async def test_background_scrub_pauses_between_steps_and_still_finds_damage(
    tmp_path: Path,
    verifier: Verifier,
    monkeypatch: pytest.MonkeyPatch,
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A room too large to check before use is scrubbed in the background, from a while
    after it opens, a step at a time with a pause between steps, so that the node's own
    work keeps the CPU."""
    monkeypatch.setattr(history_module, "CHECK_AT_OPEN_BYTES", 0)
    monkeypatch.setattr(history_module, "SCRUB_ROWS", 10)
    peers = Peers(ALICE)
    ops = [peers.message(ALICE, f"m{i}") for i in range(45)]  # 5 steps of 10 rows at most
    path = tmp_path / "room.db"
    await _stored(path, verifier, ops)
    _sql(path, "UPDATE ops SET data = ? WHERE id = ?", (b"junk", ops[40].id))
    async with History.open(
        path, verifier=verifier, wall_clock=lambda: NOW, blocking=INLINE
    ) as history:
        await trio.sleep(history_module.SCRUB_DELAY - 0.01)
        assert history.damaged == 0  # not started yet
        await trio.sleep(0.01)
        # The damaged row is in the fifth step: four pauses come before it.
        await trio.sleep(3.5 * history_module.SCRUB_PAUSE)
        assert history.damaged == 0
        await trio.sleep(history_module.SCRUB_PAUSE)
        assert history.damaged == 1
        assert history.replica.version_vector() == {ALICE.peer_id: 40}


def _damage_pages(path: Path, rng: random.Random, pages: int = 4) -> None:
    size = path.stat().st_size
    page = 4096
    with open(path, "r+b") as f:
        for at in rng.sample(range(2, size // page), pages):
            f.seek(at * page)
            f.write(rng.randbytes(page))


async def test_file_with_damaged_pages_raises_store_error(
    tmp_path: Path, verifier: Verifier
) -> None:
    peers = Peers(ALICE, BOB)
    ops = [peers.message((ALICE, BOB)[i % 2], f"message number {i} " * 5) for i in range(1500)]
    path = tmp_path / "room.db"
    await _stored(path, verifier, ops)
    _damage_pages(path, random.Random(1))
    with pytest.raises(StoreError) as caught:
        async with open_history(path, verifier):
            pytest.fail("opened a damaged file")
    message = str(caught.value)
    assert str(path) in message and "\n" not in message


@pytest.mark.parametrize("seed", range(6))
async def test_damaged_pages_never_let_a_raw_sqlite_error_out(
    tmp_path: Path, verifier: Verifier, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    """Not checked at open (as a large file): whatever reads or writes then come across
    damaged pages fail with StoreError, never sqlite3.DatabaseError."""
    monkeypatch.setattr(history_module, "CHECK_AT_OPEN_BYTES", 0)
    peers = Peers(ALICE, BOB)
    ops = [peers.message((ALICE, BOB)[i % 2], f"message number {i} " * 5) for i in range(1500)]
    path = tmp_path / "room.db"
    await _stored(path, verifier, ops)
    _damage_pages(path, random.Random(seed), pages=8)
    later = peers.message(ALICE, "later")
    try:
        async with History.open(
            path, identity=ME, verifier=verifier, wall_clock=lambda: NOW, scrub=False
        ) as history:
            replica = history.replica
            for read in (
                lambda: replica.timeline(),
                lambda: replica.page(limit=50),
                lambda: replica.page(before=ops[700].id),
                lambda: replica.missing_for({}),
                lambda: replica.missing_wire({}),
                lambda: replica.get(ops[900].id),
            ):
                with suppress(StoreError):
                    read()
            for write in (
                lambda: history.ingest([later.data]),
                lambda: history.author(Kind.MESSAGE, ("mine", None)),
                lambda: history.scrub(),
            ):
                with suppress(StoreError):
                    await write()
    except StoreError:
        pass


async def test_disk_full_stops_writes_and_loses_no_acknowledged_op(
    tmp_path: Path, verifier: Verifier
) -> None:
    path = tmp_path / "room.db"
    peers = Peers(ALICE)
    acknowledged: list[str] = []
    async with open_history(path, verifier, identity=ME) as history:
        await history.ingest([peers.message(ALICE, "from a peer").data])
        store = history.store
        pages = await store.run(lambda: store._db.execute("PRAGMA page_count").fetchone()[0])
        await store.run(lambda: store._db.execute(f"PRAGMA max_page_count={pages + 3}"))
        error: StoreError | None = None
        for i in range(1000):
            text = f"message {i} " + "x" * 3000
            try:
                await history.author(Kind.MESSAGE, (text, None))
            except StoreError as exc:
                error = exc
                break
            acknowledged.append(text)
        assert error is not None
        message = str(error)
        assert "full" in message and str(path) in message and "\n" not in message
        assert acknowledged  # some went in before the disk filled
        shown = [m.text for m in history.replica.timeline()]
        assert shown == ["from a peer", *acknowledged]
        # The room's writes are stopped, with the same reason; reads go on.
        with pytest.raises(StoreError, match="stopped"):
            await history.author(Kind.MESSAGE, ("after", None))
        with pytest.raises(StoreError, match="stopped"):
            await history.ingest([peers.message(ALICE, "also after").data])
        assert history.replica.page(limit=5)
        rendered = history.replica.render()
    async with open_history(path, verifier, identity=ME) as history:
        assert history.replica.render() == rendered
        op, _ = await history.author(Kind.MESSAGE, ("with room to spare", None))
        assert op.seq == len(acknowledged) + 1  # no seq was taken by a lost op


# -- the views a reopened room shows are those of replaying its ops ------------------------


def random_room(rng: random.Random, count: int) -> list[Op]:
    """Ops of every kind from four authors, one of whom forks its chain."""
    peers = Peers(ALICE, BOB, CAROL)
    people = (ALICE, BOB, CAROL)
    messages: dict[bytes, list[Op]] = {p.peer_id: [] for p in people}
    for who in people:
        peers.join(who)
    while len(peers.ops) < count:
        who = rng.choice(people)
        mine = messages[who.peer_id]
        anyone = [m for ms in messages.values() for m in ms]
        roll = rng.random()
        if roll < 0.45 or not anyone:
            mine.append(peers.message(who, f"m{len(peers.ops)}"))
        elif roll < 0.55 and mine:
            peers.edit(who, rng.choice(mine), f"edited {len(peers.ops)}")
        elif roll < 0.6 and mine:
            peers.delete(who, rng.choice(mine))
        elif roll < 0.8:
            peers.react(who, rng.choice(anyone), rng.choice("👍🎉❤"), remove=rng.random() < 0.3)
        elif roll < 0.85:
            peers.topic(who, f"topic {len(peers.ops)}")
        elif roll < 0.9:
            peers.nick(who, rng.choice(["ann", "bo", "cy", ""]))
        elif roll < 0.95:
            (peers.join if rng.random() < 0.6 else peers.leave)(who)
        else:  # an equivocation: a second op at Carol's latest seq
            last = peers.last_of(CAROL)
            twin = encode_op(
                CAROL,
                room=ROOM,
                seq=last.seq,
                prev=last.prev,
                hlc=last.hlc + 1 if last.prev is None else last.hlc,
                kind=Kind.MESSAGE,
                body=(f"twin {len(peers.ops)}", None),
            )
            if twin.prev is not None:
                peers.ops.append(twin)
    return peers.ops


@pytest.mark.parametrize("seed", range(3))
async def test_reopened_room_shows_what_replaying_every_op_shows(
    tmp_path: Path, verifier: Verifier, seed: int
) -> None:
    rng = random.Random(seed)
    ops = random_room(rng, 2500)
    genuine = reference(ops)
    assert genuine.forked_authors() and genuine.held_count == 0
    delivered = ops[:]
    rng.shuffle(delivered)  # random delivery order: many ops are held for a while
    path = tmp_path / "room.db"
    async with open_history(path, verifier) as history:
        at = 0
        while at < len(delivered):
            size = rng.randint(1, 400)
            await history.ingest([op.data for op in delivered[at : at + size]])
            at += size
            # What the applier keeps up to date op by op is what loading the tables gives.
            assert history.replica._summary == rebuilt_summary(path)
        assert history.replica.render() == genuine.render()
    async with open_history(path, verifier) as history:
        replica = history.replica
        assert replica.render() == genuine.render()
        assert len(replica) == len(genuine) and replica.held_count == 0
        # Sync order is the order ops took effect here (each after what it depends on).
        sent = replica.missing_for({})
        assert {op.id for op in sent} == {op.id for op in genuine.missing_for({})}
        assert replica.missing_wire({}) == [(op.author, op.seq, op.data) for op in sent]
        seen: set[bytes] = set()
        for op in sent:
            assert op.prev is None or op.prev in seen
            assert op.target is None or op.target in seen
            seen.add(op.id)
        assert {op.id for op in replica.fork_ops()} == {op.id for op in genuine.fork_ops()}
        newest = genuine.timeline()[-30:]
        assert replica.page(limit=30) == newest
        assert replica.page(before=newest[0].id, limit=30) == genuine.page(
            before=newest[0].id, limit=30
        )


async def test_the_published_summary_follows_forks_damage_and_healing(
    tmp_path: Path, verifier: Verifier
) -> None:
    """Forks, gaps left by damaged rows and their healing each change what the applier
    publishes; after each, the published summary is what loading the tables gives."""
    peers, hello = conversation()
    path = tmp_path / "room.db"
    async with open_history(path, verifier) as history:
        await history.ingest([op.data for op in peers.ops])
        assert history.replica._summary == rebuilt_summary(path)
        last = peers.last_of(CAROL)
        twin = encode_op(
            CAROL, room=ROOM, seq=last.seq, prev=last.prev, hlc=last.hlc,
            kind=Kind.MESSAGE, body=("a twin", None),
        )  # fmt: skip
        await history.ingest([twin.data])
        assert history.replica._summary.forks == {CAROL.peer_id: last.seq}
        assert history.replica._summary == rebuilt_summary(path)
    _sql(path, "UPDATE ops SET data = ? WHERE id = ?", (b"junk", hello.id))
    async with History.open(path, verifier=verifier, wall_clock=lambda: NOW) as h:
        assert h.damaged == 1  # found by the check on opening
        assert h.replica.version_vector()[ALICE.peer_id] == hello.seq - 1
        assert h.replica._summary == rebuilt_summary(path)
        await h.ingest([hello.data])
        assert h.replica.version_vector()[ALICE.peer_id] == h.replica.head(ALICE.peer_id)
        assert h.replica._summary == rebuilt_summary(path)


async def test_schema_1_file_is_upgraded_on_open(tmp_path: Path, verifier: Verifier) -> None:
    rng = random.Random(9)
    ops = random_room(rng, 600)
    delivered = ops[:]
    rng.shuffle(delivered)
    path = tmp_path / "room.db"
    with closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID")
        db.execute("CREATE TABLE ops (n INTEGER PRIMARY KEY, id BLOB NOT NULL, data BLOB NOT NULL)")
        db.execute("INSERT INTO meta VALUES ('room', ?)", (ROOM,))
        db.executemany(
            "INSERT INTO ops (id, data) VALUES (?, ?)", [(o.id, o.data) for o in delivered]
        )
        db.execute("PRAGMA user_version=1")
    async with open_history(path, verifier) as history:
        assert history.replica.render() == reference(ops).render()
        assert history.skipped_on_load == 0
    async with open_history(path, verifier) as history:
        assert history.replica.render() == reference(ops).render()
    tables = {row[0] for row in _sql(path, "SELECT name FROM sqlite_master WHERE type='table'")}
    assert "ops_v1" not in tables


async def _in_old_layout(
    path: Path, verifier: Verifier, seed: int, statements: list[str]
) -> list[Op]:
    """A stored room of 600 random ops, its file then taken back to an older schema by
    `statements` (in one transaction); returns the ops."""
    ops = random_room(random.Random(seed), 600)
    await _stored(path, verifier, ops)
    with closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute("BEGIN")
        for statement in statements:
            db.execute(statement)
        db.execute("COMMIT")
    return ops


async def test_schema_2_file_is_upgraded_on_open(tmp_path: Path, verifier: Verifier) -> None:
    path = tmp_path / "room.db"
    # Back to schema 2's layout: a unique index on ops.id, no op_ids.
    ops = await _in_old_layout(
        path,
        verifier,
        5,
        [
            "CREATE TABLE ops_v2 (n INTEGER PRIMARY KEY, id BLOB NOT NULL UNIQUE,"
            " a INTEGER NOT NULL, seq INTEGER NOT NULL, data BLOB NOT NULL)",
            "INSERT INTO ops_v2 SELECT n, id, a, seq, data FROM ops",
            "DROP TABLE ops",
            "ALTER TABLE ops_v2 RENAME TO ops",
            "CREATE INDEX ops_chain ON ops (a, seq)",
            "DROP TABLE op_ids",
            "DROP TABLE op_ids_through",
            "DROP TABLE chain",
            "PRAGMA user_version=2",
        ],
    )
    genuine = reference(ops)
    async with open_history(path, verifier) as history:
        replica = history.replica
        assert replica.render() == genuine.render()
        assert replica.known([op.id for op in ops]) == {op.id for op in ops}
        assert replica._summary.pending == {}  # every id was moved to op_ids
        report = await history.ingest([op.data for op in ops])
        assert set(report.outcomes) == {Outcome.DUPLICATE}
    assert _sql(path, "SELECT count(*) FROM op_ids") == [(len(ops),)]
    assert _sql(path, "SELECT n FROM op_ids_through") == _sql(path, "SELECT max(n) FROM ops")
    assert _sql(path, "SELECT count(*) FROM chain") == [(len(ops),)]


async def test_schema_3_file_is_upgraded_on_open(tmp_path: Path, verifier: Verifier) -> None:
    path = tmp_path / "room.db"
    # Back to schema 3's layout: an index on ops (a, seq), no chain table; the ids of the
    # rows after row 299 not merged yet.
    ops = await _in_old_layout(
        path,
        verifier,
        6,
        [
            "DROP TABLE chain",
            "CREATE INDEX ops_chain ON ops (a, seq)",
            "DELETE FROM op_ids",
            "INSERT INTO op_ids (id, n) SELECT id, n FROM ops WHERE n <= 299",
            "UPDATE op_ids_through SET n = 299",
            "PRAGMA user_version=3",
        ],
    )
    genuine = reference(ops)
    async with open_history(path, verifier) as history:
        replica = history.replica
        assert replica.render() == genuine.render()
        assert replica.known([op.id for op in ops]) == {op.id for op in ops}
        tail = replica._summary.tail
        assert sorted(n for entries in tail.values() for n in entries[1::2]) == [
            n for (n,) in _sql(path, "SELECT n FROM ops WHERE n > 299 ORDER BY n")
        ]
        # Sync reads every chain through `chain` and the tail: all of it, in effect order.
        assert [op.id for op in replica.missing_for({})] == [
            op_id for (op_id,) in _sql(path, "SELECT id FROM ops ORDER BY n")
        ]
    assert _sql(path, "SELECT count(*) FROM chain") == _sql(
        path, "SELECT count(*) FROM ops WHERE n <= 299"
    )
    assert "ops_chain" not in {
        row[0] for row in _sql(path, "SELECT name FROM sqlite_master WHERE type = 'index'")
    }


async def test_pending_ids_are_merged_in_bulk_and_found_on_both_sides(
    tmp_path: Path, verifier: Verifier, id_merges: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    bulk = id_merges == "ids merged when many"
    if bulk:
        monkeypatch.setattr(applier_module, "MERGE_LEAST", 700)
    merges: list[int] = []
    rng = random.Random(3)
    ops = random_room(rng, 2500)
    path = tmp_path / "room.db"
    genuine = reference(ops)
    in_effect = {op.id for op in genuine.ops()}
    async with open_history(path, verifier) as history:
        for at in range(0, len(ops), 100):
            await history.ingest([op.data for op in ops[at : at + 100]])
            merged = int(str(_sql(path, "SELECT count(*) FROM op_ids")[0][0]))
            if merged != (merges[-1] if merges else 0):
                merges.append(merged)
            through = int(str(_sql(path, "SELECT n FROM op_ids_through")[0][0]))
            pending = history.replica._summary.pending
            # Every row is either merged or pending, never both; pending is what follows.
            assert merged + len(pending) == len(history.replica)
            assert all(n > through for n in pending.values())
            # The same for chains: in `chain`, or in the writer's tail, in row order.
            tails = history.replica._summary.tail
            chained = int(str(_sql(path, "SELECT count(*) FROM chain")[0][0]))
            tail_rows = sorted(n for rows in tails.values() for n in rows[1::2])
            assert chained + len(tail_rows) == merged + len(pending)
            assert sorted(pending.values()) == tail_rows
            assert all(list(rows[1::2]) == sorted(rows[1::2]) for rows in tails.values())
        replica = history.replica
        assert replica.known(list(in_effect)) == in_effect
        assert all(replica.get(op_id) is not None for op_id in list(in_effect)[:200])
        if bulk:  # a few merges, each of at least MERGE_LEAST ids
            assert 2 <= len(merges) <= 3
            assert all(b - a >= 700 for a, b in itertools.pairwise([0, *merges]))
        else:
            assert len(merges) == len(range(0, len(ops), 100))
        # A pending id is trusted only if its row holds that id (the writer's dict may
        # hold ops of a transaction not yet committed).
        stranger = bytes(32)
        replica._summary.pending[stranger] = 0
        assert replica.known([stranger]) == set()
        assert replica.get(stranger) is None
        del replica._summary.pending[stranger]
        # So is a chain entry in the writer's tail: one naming a row that holds another op
        # is left out of the chain's reads.
        author, a = next(iter(replica._summary.authors.items()))
        head = replica._summary.heads[author]
        chain = list(replica._chain_rows(a, 0, False))
        assert [row[4] for row in chain] == list(range(1, head + 1))
        tail = replica._summary.tail.setdefault(a, array("q"))
        tail.extend((head + 1, 0))  # row 0 holds another op
        assert list(replica._chain_rows(a, 0, False)) == chain
        assert replica._first_rows({a: head}) == []
        del tail[-2:]
    async with open_history(path, verifier) as history:
        assert history.replica.render() == genuine.render()
        assert history.replica.known(list(in_effect)) == in_effect
