"""Signature verification on worker processes, and ingest through a History."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from crdt import Op, Outcome, Reason, Replica, decode_op
from crdt._history import History
from crdt._verify import INLINE_BELOW, Verifier

from .conftest import ROOM, T0, identity


def chain(author: int, count: int, start: int = 0) -> list[Op]:
    replica = Replica(ROOM, identity=identity(author))
    ops = []
    for i in range(count):
        op = replica.new_message(f"message {start + i} of {author}", now_ms=T0 + i)
        replica.admit(op)
        ops.append(op)
    return ops


def forged(op: Op) -> Op:
    return decode_op(op.data[:-64] + bytes(64))


@pytest.mark.parametrize("workers", [0, 2])
async def test_verdicts_match_signatures(workers: int) -> None:
    ops = chain(0, 100) + chain(1, 100)
    ops[3] = forged(ops[3])
    ops[150] = forged(ops[150])
    async with Verifier.open(workers) as verifier:
        assert verifier.workers == workers
        verdicts = await verifier.verify(ops)
        small = await verifier.verify(ops[: INLINE_BELOW - 1])  # verified in-process
    assert [i for i, ok in enumerate(verdicts) if not ok] == [3, 150]
    assert small == verdicts[: INLINE_BELOW - 1]


async def test_concurrent_batches_get_their_own_verdicts() -> None:
    batches = [chain(n, 60) for n in range(6)]
    for n, batch in enumerate(batches):
        batch[n] = forged(batch[n])
    results: dict[int, list[bool]] = {}
    async with Verifier.open(2) as verifier:

        async def run(n: int) -> None:
            results[n] = await verifier.verify(batches[n])

        async with trio.open_nursery() as nursery:
            for n in range(len(batches)):
                nursery.start_soon(run, n)
    for n in range(len(batches)):
        assert [i for i, ok in enumerate(results[n]) if not ok] == [n]


async def test_a_dead_worker_is_replaced_and_nothing_is_lost() -> None:
    ops = chain(0, 80)
    ops[10] = forged(ops[10])
    async with Verifier.open(1) as verifier:
        verifier._workers[0].process.kill()
        verdicts = await verifier.verify(ops)
        assert [i for i, ok in enumerate(verdicts) if not ok] == [10]
        assert verifier.restarts == 1
        assert verifier.workers == 1
        assert await verifier.verify(ops) == verdicts  # the new worker answers


async def test_ingest_reports_each_op_and_persists_the_added(tmp_path: Path) -> None:
    good = chain(0, 300) + chain(1, 5)
    batch = [op.data for op in good]
    batch.insert(7, forged(good[7]).data)  # a forged copy, just before the genuine op
    batch.insert(50, b"garbage")
    batch.append(good[0].data)  # a duplicate within the batch
    async with (
        Verifier.open(2) as verifier,
        History.open(
            tmp_path / "room.sqlite3", room=ROOM, verifier=verifier, wall_clock=lambda: T0
        ) as history,
    ):
        report = await history.ingest(batch)
        assert len(report.outcomes) == len(batch)
        assert report.outcomes[7] is Outcome.REJECTED
        assert report.reasons[7] is Reason.BAD_SIGNATURE
        assert report.outcomes[8] is Outcome.ADDED  # the forgery did not shadow it
        assert report.outcomes[50] is Outcome.REJECTED
        assert report.reasons[50] is Reason.MALFORMED
        assert report.outcomes[-1] is Outcome.DUPLICATE
        assert report.rejected == {Reason.BAD_SIGNATURE: 1, Reason.MALFORMED: 1}
        assert report.count(Outcome.ADDED) == len(good)
        assert report.added == good
        assert len(report.changes) == len(good)  # one MessageAdded each
        assert report.waiting_for == {}
        assert await history.store.count() == len(good)
        again = await history.ingest(batch)
        assert again.count(Outcome.ADDED) == 0
        assert again.count(Outcome.DUPLICATE) == len(good) + 2  # the forged copy too, now
        assert again.added == []
        assert await history.store.count() == len(good)


async def test_overlapping_ingests_apply_in_call_order(tmp_path: Path) -> None:
    ops = chain(0, 400)
    async with History.open(tmp_path / "room.sqlite3", room=ROOM) as history:
        first = [op.data for op in ops[:300]]
        second = [op.data for op in ops[300:]]
        results: dict[str, int] = {}

        async def run(name: str, batch: list[bytes]) -> None:
            await history.ingest(batch)
            results[name] = history.replica.held_count

        async with trio.open_nursery() as nursery:
            nursery.start_soon(run, "first", first)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(run, "second", second)
        # Nothing was ever held after either call: the first call's ops were applied
        # before the second's, although the second was decoded and verified meanwhile.
        assert results == {"first": 0, "second": 0}
        assert history.replica.held_count == 0
        assert len(history.replica.timeline()) == 400


async def test_ingest_reports_what_held_ops_wait_for(tmp_path: Path) -> None:
    ops = chain(0, 5)
    async with History.open(tmp_path / "room.sqlite3", room=ROOM, verifier=None) as history:
        report = await history.ingest([op.data for op in ops[2:]])
        assert report.waiting_for == {
            ops[2].id: ops[1].id,
            ops[3].id: ops[2].id,
            ops[4].id: ops[3].id,
        }
        assert [op.id for op in report.added] == [op.id for op in ops[2:]]
        assert report.changes == []
        report = await history.ingest([op.data for op in ops[:2]])
        assert report.waiting_for == {}
        assert len(report.changes) == 5


async def test_ingest_takes_decoded_ops_and_still_verifies_them(tmp_path: Path) -> None:
    ops = chain(0, 40)
    ops[5] = forged(ops[5])
    async with History.open(tmp_path / "room.sqlite3", room=ROOM, verifier=None) as history:
        report = await history.ingest(ops)
        assert report.reasons == {5: Reason.BAD_SIGNATURE}
        # The rest of the chain is kept, held until the genuine op 5 arrives.
        assert [op.id for op in report.added] == [op.id for op in ops[:5] + ops[6:]]
        assert report.waiting_for == {ops[i].id: ops[i - 1].id for i in range(6, 40)}
        assert len(history.replica.timeline()) == 5
