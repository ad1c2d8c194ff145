"""A room's history on disk: a `Replica` kept in its `Store`, fed through parallel verification.

This is the driver around the pure replica. Ops from peers go through `ingest`: decoded and
screened on the trio thread, verified on one worker process per core, applied in arrival
order, and committed in groups; `ingest` returns once every op it added is committed.
Ops of the local identity go through `author`, which commits them with fsync before it
applies them, so no op is handed to anyone before it is durable.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from rumor_runtime import THREADED, Blocking, open_unwrapping_nursery

from ._hlc import HLC
from ._identity import Identity
from ._op import InvalidOp, Kind, Op, Reason, decode_op
from ._replica import Replica
from ._store import Store, StoreError
from ._verify import Verifier
from ._views import ApplyResult, IngestReport, OpDropped, Outcome

__all__ = ["History", "wall_clock_ms"]

FLUSH_TIMEOUT = 5.0  # seconds a closing history may spend saving what failed to save
CHUNK = 256  # ops per verification job: large enough that process hand-off is noise


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class _Chunk:
    """Ops of one batch on their way through verification (parallel lists, no tuples)."""

    __slots__ = ("indexes", "ops", "verdicts", "verified")

    def __init__(self) -> None:
        self.indexes: list[int] = []
        self.ops: list[Op] = []
        self.verdicts: list[bool] = []
        self.verified = trio.Event()


class History:
    """Open with `async with History.open(path, room=..., identity=...) as history`."""

    def __init__(
        self,
        replica: Replica,
        store: Store,
        verifier: Verifier,
        wall_clock: Callable[[], int],
    ) -> None:
        self.replica = replica
        self.store = store
        self.verifier = verifier
        self.wall_clock = wall_clock
        self.skipped_on_load = 0  # stored ops that no longer apply; kept on disk, not shown
        self._author_lock = trio.Lock()
        self._unsaved: dict[bytes, bytes] = {}  # applied, but their commit failed
        self._tickets = 0  # ingest calls so far
        self._turn = 0  # the ticket whose ops are applied now
        self._turns_ended: set[int] = set()
        self._turn_changed = trio.Event()

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        path: str | Path,
        *,
        room: bytes | None = None,
        identity: Identity | None = None,
        clock: HLC | None = None,
        verifier: Verifier | None = None,
        wall_clock: Callable[[], int] = wall_clock_ms,
        blocking: Blocking = THREADED,
    ) -> AsyncIterator[History]:
        """Open (or create, when `room` is given) the history stored at `path`.

        `blocking` says where the store's SQLite calls run (see `Store.open`); `INLINE` is
        for virtual time only.
        """
        async with AsyncExitStack() as stack:
            store = await stack.enter_async_context(Store.open(path, blocking=blocking))
            if verifier is None:
                verifier = await stack.enter_async_context(Verifier.open())
            stored = (await store.meta()).get("room")
            if stored is None:
                if room is None:
                    raise StoreError(f"{path} holds no room yet and no room id was given")
                await store.set_meta({"room": room})
                stored = room
            elif room is not None and room != stored:
                raise StoreError(f"{path} holds room {stored.hex()}, not {room.hex()}")
            replica = Replica(stored, identity=identity, clock=clock)
            history = cls(replica, store, verifier, wall_clock)
            await history._restore()
            try:
                yield history
            finally:
                # Best effort, and bounded: peers still hold these ops.
                with (
                    trio.CancelScope(shield=True) as flushing,
                    contextlib.suppress(StoreError, trio.ClosedResourceError),
                ):
                    flushing.deadline = trio.current_time() + FLUSH_TIMEOUT
                    await history._flush()

    async def _restore(self) -> None:
        """Rebuild the replica from the store, in the order the ops were first stored.

        Stored ops were verified before they were stored, so they are not verified again.
        """
        for n, data in enumerate(await self.store.load()):
            try:
                op = decode_op(data)
            except InvalidOp:
                self.skipped_on_load += 1
                continue
            if op.room != self.replica.room or self.replica.admit(op).outcome is not Outcome.ADDED:
                self.skipped_on_load += 1
            if n % CHUNK == CHUNK - 1:
                await trio.lowlevel.checkpoint()

    @property
    def room(self) -> bytes:
        return self.replica.room

    # -- ops from peers ---------------------------------------------------------------------

    async def ingest(self, batch: Sequence[bytes] | Sequence[Op]) -> IngestReport:
        """Decode, verify, apply and persist ops from a peer.

        `batch` holds op wire forms, or ops already made by `decode_op` (which are then
        not decoded again; their signatures are still verified).

        Returns after every op it added is committed (with `synchronous=NORMAL`). The
        report gives each op's outcome, the reasons for refusals, the ops added and the
        view changes.
        """
        now_ms = self.wall_clock()
        report = IngestReport([Outcome.REJECTED] * len(batch), {}, [], [])
        # Calls may overlap (decoding and verifying one batch while another is applied),
        # but they apply in the order they were made: each waits for its ticket's turn.
        ticket = self._tickets
        self._tickets += 1
        try:
            async with open_unwrapping_nursery() as nursery:
                send, receive = trio.open_memory_channel[_Chunk](self.verifier.parallelism)
                nursery.start_soon(self._apply_in_order, receive, report, ticket)
                async with send:
                    for start in range(0, len(batch), CHUNK):
                        chunk = self._screen(batch, start, report, now_ms)
                        nursery.start_soon(self._verify, chunk)
                        await send.send(chunk)
        finally:
            self._end_turn(ticket)
        return report

    async def _wait_for_turn(self, ticket: int) -> None:
        while self._turn != ticket:
            await self._turn_changed.wait()

    def _end_turn(self, ticket: int) -> None:
        self._turns_ended.add(ticket)
        if self._turn in self._turns_ended:
            while self._turn in self._turns_ended:
                self._turns_ended.discard(self._turn)
                self._turn += 1
            self._turn_changed.set()
            self._turn_changed = trio.Event()

    def _screen(
        self, batch: Sequence[bytes] | Sequence[Op], start: int, report: IngestReport, now_ms: int
    ) -> _Chunk:
        """Decode one chunk; settle what needs no signature check, return the rest."""
        chunk = _Chunk()
        check = self.replica.check
        for index in range(start, min(start + CHUNK, len(batch))):
            item = batch[index]
            if type(item) is Op:
                op = item
            else:
                try:
                    op = decode_op(item)  # type: ignore[arg-type]
                except InvalidOp as exc:
                    report.reasons[index] = exc.reason
                    continue
            # Copies within the batch are all verified: the first might be a forgery.
            early = check(op, now_ms=now_ms)
            if early is not None:
                report.outcomes[index] = early.outcome
                if early.reason is not None:
                    report.reasons[index] = early.reason
                continue
            chunk.indexes.append(index)
            chunk.ops.append(op)
        return chunk

    async def _verify(self, chunk: _Chunk) -> None:
        chunk.verdicts = await self.verifier.verify(chunk.ops)
        chunk.verified.set()

    async def _apply_in_order(
        self, receive: trio.MemoryReceiveChannel[_Chunk], report: IngestReport, ticket: int
    ) -> None:
        admit = self.replica.admit_into
        changes = report.changes
        async with receive, open_unwrapping_nursery() as commits:
            await self._wait_for_turn(ticket)
            async for chunk in receive:
                await chunk.verified.wait()
                rows: list[tuple[bytes, bytes]] = []
                first_change = len(changes)
                for index, op, ok in zip(chunk.indexes, chunk.ops, chunk.verdicts, strict=True):
                    if not ok:
                        report.reasons[index] = Reason.BAD_SIGNATURE
                        continue
                    outcome, reason, waiting_for = admit(op, changes)
                    report.outcomes[index] = outcome
                    if outcome is Outcome.ADDED:
                        rows.append((op.id, op.data))
                        report.added.append(op)
                        if waiting_for is not None:
                            report.waiting_for[op.id] = waiting_for
                    elif reason is not None:
                        report.reasons[index] = reason
                removals = [c.id for c in changes[first_change:] if isinstance(c, OpDropped)]
                # The store commits writes in call order and groups those that queue up.
                commits.start_soon(self._write, rows, removals)
            if self._unsaved:
                commits.start_soon(self._write, [], [])
            self._end_turn(ticket)

    async def _write(self, rows: list[tuple[bytes, bytes]], removals: list[bytes]) -> None:
        """Commit ops already applied in memory. If the commit fails they stay applied, so
        they are kept here and written again with the next batch (or on close): a peer
        sending them again would only get "duplicate"."""
        for op_id in removals:
            self._unsaved.pop(op_id, None)
        retry, self._unsaved = self._unsaved, {}
        try:
            await self.store.write([*retry.items(), *rows], removals, durable=False)
        except BaseException:
            self._unsaved.update(retry)
            self._unsaved.update(rows)
            raise

    async def _flush(self) -> None:
        if self._unsaved:
            await self._write([], [])

    # -- ops of our own ---------------------------------------------------------------------

    async def author(self, kind: Kind, body: tuple[Any, ...]) -> tuple[Op, ApplyResult]:
        """Create an op of the local identity, commit it with fsync, then apply it.

        Raises ValueError if the op would be refused (such as editing another's message).
        """
        async with self._author_lock:
            op = self.replica.create(kind, body, now_ms=self.wall_clock())
            # Once the commit is under way the op must be applied too, or the next one
            # would take the same seq and fork our own chain: no cancelling in between.
            with trio.CancelScope(shield=True):
                await self.store.append([(op.id, op.data)], durable=True)
                result = self.replica.admit(op)
        return op, result
