"""A room's history on disk: the replica's rules applied to its `Store`, fed through
parallel verification.

Ops from peers go through `ingest`: decoded and screened on the trio thread, verified on
one worker process per core, then applied in arrival order inside the store's write
transactions (the views are updated in the same transaction as the op), committed in
groups; `ingest` returns once every op it added is committed. Ops of the local identity go
through `author`, which creates, applies and commits them with fsync in one transaction,
so no op is handed to anyone before it is durable, and a failed commit leaves no trace.

What readers see (`history.replica`, a `StoredReplica`) is the committed state only.
Opening checks the file: SQLite's quick check and every op's bytes against its id for a
room of moderate size, in the background for a larger one (`scrub`). A damaged op is set
aside and fetched again from peers (see `crdt._applier`); a damaged file raises StoreError.
"""

from __future__ import annotations

import logging
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, closing
from functools import partial
from pathlib import Path
from typing import Any

import trio

from rumor_runtime import THREADED, Blocking, open_unwrapping_nursery

from ._applier import Applier, Summary, load_op
from ._hlc import HLC
from ._identity import Identity
from ._op import InvalidOp, Kind, Op, Reason, decode_op, stored_intact
from ._replica import DEFAULT_MAX_PENDING, DEFAULT_MAX_PENDING_BYTES
from ._store import Expected, Job, Store, StoreError, describe
from ._stored import StoredReplica
from ._verify import Verifier
from ._views import ApplyResult, IngestReport, Outcome

__all__ = ["History", "wall_clock_ms"]

CHUNK = 256  # ops per verification job: large enough that process hand-off is noise
# Verified ops applied per write (at least; a batch's last ones go as they are). Each op
# rewrites a page of the random id index, but a transaction also rewrites a page of every
# author's chain index and the tails of the ops and messages tables: larger ones share those.
APPLY_OPS = 1024
CHECK_AT_OPEN_BYTES = 16 << 20  # files up to this size are checked in full before use
SCRUB_ROWS = 4096  # op rows checked per step of a scrub
SCRUB_PAUSE = 0.05  # seconds between the steps of a background scrub: some 20% of a core
# A background scrub starts this long after the room opens: a node just started is the
# one its peers catch up from (they reconnect too), and the scrub would take from that.
SCRUB_DELAY = 60.0

log = logging.getLogger("crdt.store")
DEFAULT_LIMITS = (DEFAULT_MAX_PENDING, DEFAULT_MAX_PENDING_BYTES)


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


class _Turns:
    """Numbered calls taking turns in the order of their numbers; a call ends its turn
    once, whether it took it or gave up (then later calls need not wait for it)."""

    def __init__(self) -> None:
        self._turn = 0
        self._ended: set[int] = set()
        # One event per ticket waited for: a turn wakes its own waiters, not every call in
        # flight (a sync keeps a window of 16 batches ingesting, each waiting twice).
        self._waiting: dict[int, trio.Event] = {}

    async def wait_for(self, ticket: int) -> None:
        while self._turn != ticket:
            event = self._waiting.get(ticket)
            if event is None:
                event = self._waiting[ticket] = trio.Event()
            await event.wait()

    def end(self, ticket: int) -> None:
        if ticket < self._turn:
            return  # ended before
        self._ended.add(ticket)
        if self._turn in self._ended:
            while self._turn in self._ended:
                self._ended.discard(self._turn)
                self._wake(self._turn)
                self._turn += 1
            self._wake(self._turn)

    def _wake(self, ticket: int) -> None:
        event = self._waiting.pop(ticket, None)
        if event is not None:
            event.set()


class History:
    """Open with `async with History.open(path, room=..., identity=...) as history`."""

    def __init__(
        self,
        applier: Applier,
        store: Store,
        verifier: Verifier,
        wall_clock: Callable[[], int],
        nursery: trio.Nursery,
    ) -> None:
        self._applier = applier
        self.replica = StoredReplica(applier, store)
        self.store = store
        self.verifier = verifier
        self.wall_clock = wall_clock
        self.skipped_on_load = 0  # ops of an older schema that could not be placed (kept)
        self._nursery = nursery
        self._suspects: set[int] = set()  # damaged rows being set aside
        self._author_lock = trio.Lock()
        self._tickets = 0  # ingest calls so far
        # Ingest calls apply their ops in the order they were made, and return in that
        # order too (calls committed together would otherwise wake in any order, and
        # their callers publish the changes in the order the calls return).
        self._applying = _Turns()
        self._returning = _Turns()
        self.replica.on_damage = self._on_damage
        store.after = self._after_transaction
        store.before_commit = applier.before_commit
        store.publish = self._publish

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
        scrub: bool = True,
    ) -> AsyncIterator[History]:
        """Open (or create, when `room` is given) the history stored at `path`.

        `blocking` says where the store's SQLite calls run (see `Store.open`); `INLINE` is
        for virtual time only. With `scrub`, a file too large to check before use is
        checked in the background (`History.scrub`). Raises StoreError for a file that is
        not a sound rumor store.
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
            small = await store.run(lambda: _file_bytes(store) <= CHECK_AT_OPEN_BYTES)
            if small:
                await _quick_check(store)
            applier = Applier(stored, store._db, identity=identity, clock=clock, path=path)
            skipped = await store.transact(partial(_prepare, applier), durable=True)
            nursery = await stack.enter_async_context(open_unwrapping_nursery())
            history = cls(applier, store, verifier, wall_clock, nursery)
            history.replica.install(applier.summary())
            history.skipped_on_load = skipped
            if small:
                await history.scrub(quick_check=False)
            elif scrub:
                nursery.start_soon(history._background_scrub)
            try:
                yield history
            finally:
                nursery.cancel_scope.cancel()

    @property
    def room(self) -> bytes:
        return self.replica.room

    @property
    def damaged(self) -> int:
        """Stored ops found damaged and set aside (never deleted); each is fetched again
        from peers by sync, and shown once it is back. For the room's status and metrics."""
        return self.replica.damaged

    # -- after each transaction (on the writer's thread) and on the trio thread -------------

    def _after_transaction(self, committed: bool) -> Summary:
        if not committed:
            # Rolled back: what the applier holds in memory may be ahead of the tables.
            self._applier.load()
        return self._applier.summary()

    def _publish(self, summary: object) -> None:
        assert isinstance(summary, Summary)
        self.replica.install(summary)

    # -- damage -----------------------------------------------------------------------------

    def _on_damage(self, n: int) -> None:
        """A read came across a damaged op row: set it aside (through the writer)."""
        if n not in self._suspects:
            self._suspects.add(n)
            self._nursery.start_soon(self._set_aside, [n])

    async def _set_aside(self, rows: list[int]) -> int:
        applier = self._applier

        def write(db: sqlite3.Connection) -> int:
            return sum(applier.set_aside(n) for n in rows)

        try:
            return await self.store.transact(write, durable=False)
        except (StoreError, trio.ClosedResourceError) as exc:
            log.warning("%s: could not set damaged ops aside: %s", self.store.path, exc)
            return 0
        finally:
            self._suspects.difference_update(rows)

    async def _background_scrub(self) -> None:
        await trio.sleep(SCRUB_DELAY)
        try:
            await self.scrub(pause=SCRUB_PAUSE)
        except StoreError as exc:
            log.error("%s", exc)

    async def scrub(self, *, quick_check: bool = True, pause: float = 0.0) -> int:
        """Check every stored op's bytes against its id, setting aside those that fail;
        returns how many were found. With `quick_check`, SQLite's quick check runs first;
        `pause` seconds pass between steps (in the background, a scrub must leave the
        node's own work the CPU). Raises StoreError if the file itself is damaged (its
        writes are then stopped)."""
        store = self.store
        found = 0
        after: int | None = -1
        # A connection of its own: a long check on the reader the trio thread shares would
        # hold its snapshot open, and reads there would miss ops committed meanwhile.
        with closing(await store._blocking(_scrub_connection, store.path)) as db:
            if quick_check:
                result = await store._blocking(_quick_check_on, db, limiter=trio.CapacityLimiter(1))
                if result != "ok":
                    store.failed = store.failed or f"{store.path}: damaged file: {result}"
                    raise StoreError(store.failed)
            while True:
                assert after is not None
                bad, after = await store._blocking(
                    _scrub_step, db, store.path, after, limiter=trio.CapacityLimiter(1)
                )
                if bad:
                    found += await self._set_aside(bad)
                if after is None:
                    return found
                await trio.sleep(pause)

    # -- ops from peers ---------------------------------------------------------------------

    async def ingest(self, batch: Sequence[bytes] | Sequence[Op]) -> IngestReport:
        """Decode, verify, apply and persist ops from a peer.

        `batch` holds op wire forms, or ops already made by `decode_op` (which are then
        not decoded again; their signatures are still verified).

        Returns after every op it added is committed (with `synchronous=NORMAL`); raises
        StoreError if the commit failed (then none of them took effect). The report gives
        each op's outcome, the reasons for refusals, the ops added and the view changes.
        """
        now_ms = self.wall_clock()
        report = IngestReport([Outcome.REJECTED] * len(batch), {}, [], [])
        # Calls may overlap (decoding and verifying one batch while another is applied),
        # but they apply in the order they were made: each waits for its ticket's turn.
        ticket = self._tickets
        self._tickets += 1
        # Until its writes are submitted, the writer may hold a commit for them.
        expected = self.store.expect()
        try:
            if 0 < len(batch) <= CHUNK:
                # One chunk (every push, most catch-up batches) takes the same steps in this
                # task alone: the pipeline below spawns two tasks and a channel for it,
                # which cost some 5 trio task steps an op in a swarm.
                chunk = self._screen(batch, 0, report, now_ms)
                await self._verify(chunk)
                await self._applying.wait_for(ticket)
                job = self._submit_apply([chunk], report)
                expected.close()
                self._applying.end(ticket)
                await job.wait()
            else:
                async with open_unwrapping_nursery() as nursery:
                    send, receive = trio.open_memory_channel[_Chunk](self.verifier.parallelism)
                    nursery.start_soon(self._apply_in_order, receive, report, ticket, expected)
                    async with send:
                        for start in range(0, len(batch), CHUNK):
                            chunk = self._screen(batch, start, report, now_ms)
                            nursery.start_soon(self._verify, chunk)
                            await send.send(chunk)
            await self._returning.wait_for(ticket)
        finally:
            expected.close()
            self._applying.end(ticket)
            self._returning.end(ticket)
        return report

    def _screen(
        self, batch: Sequence[bytes] | Sequence[Op], start: int, report: IngestReport, now_ms: int
    ) -> _Chunk:
        """Decode one chunk; settle what needs no signature check, return the rest."""
        decoded: list[tuple[int, Op]] = []
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
            decoded.append((index, op))
        known = self.replica.known_ops([op for _, op in decoded])
        check = self.replica.check_unknown
        chunk = _Chunk()
        for index, op in decoded:
            if op.id in known:
                report.outcomes[index] = Outcome.DUPLICATE
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
        self,
        receive: trio.MemoryReceiveChannel[_Chunk],
        report: IngestReport,
        ticket: int,
        expected: Expected,
    ) -> None:
        jobs = []
        verified: list[_Chunk] = []
        count = 0
        async with receive:
            await self._applying.wait_for(ticket)
            async for chunk in receive:
                await chunk.verified.wait()
                verified.append(chunk)
                count += len(chunk.ops)
                if count >= APPLY_OPS:
                    # The store runs writes in the order they were submitted, sharing
                    # transactions between those that queue up.
                    jobs.append(self._submit_apply(verified, report))
                    verified, count = [], 0
            if verified:
                jobs.append(self._submit_apply(verified, report))
            expected.close()
            self._applying.end(ticket)
        for job in jobs:
            await job.wait()

    def _submit_apply(self, chunks: list[_Chunk], report: IngestReport) -> Job[None]:
        weight = sum(len(chunk.ops) for chunk in chunks)
        return self.store.submit(partial(self._apply, chunks, report), durable=False, weight=weight)

    def _apply(self, chunks: list[_Chunk], report: IngestReport, db: sqlite3.Connection) -> None:
        """Apply verified chunks, inside a write transaction (on the writer's thread)."""
        admit = self._applier.admit_into
        changes = report.changes
        for chunk in chunks:
            for index, op, ok in zip(chunk.indexes, chunk.ops, chunk.verdicts, strict=True):
                if not ok:
                    report.reasons[index] = Reason.BAD_SIGNATURE
                    continue
                outcome, reason, waiting_for = admit(op, changes)
                report.outcomes[index] = outcome
                if outcome is Outcome.ADDED:
                    report.added.append(op)
                    if waiting_for is not None:
                        report.waiting_for[op.id] = waiting_for
                elif reason is not None:
                    report.reasons[index] = reason

    # -- ops of our own ---------------------------------------------------------------------

    async def author(self, kind: Kind, body: tuple[Any, ...]) -> tuple[Op, ApplyResult]:
        """Create an op of the local identity, apply it and commit it with fsync, in one
        transaction; returns once it is durable.

        Raises ValueError if the op would be refused (such as editing another's message),
        StoreError if it could not be committed (then it is not applied either).
        """
        applier = self._applier
        async with self._author_lock:
            now_ms = self.wall_clock()

            def write(db: sqlite3.Connection) -> tuple[Op, ApplyResult] | ValueError:
                try:
                    op = applier.create(kind, body, now_ms=now_ms)
                except ValueError as exc:
                    return exc
                return op, applier.admit(op)

            # A started commit is seen through, so that the op and its seq are settled
            # before the next one is created.
            with trio.CancelScope(shield=True):
                result = await self.store.transact(write, durable=True)
        if isinstance(result, ValueError):
            raise result
        return result


def _file_bytes(store: Store) -> int:
    try:
        return store.path.stat().st_size
    except OSError:
        return 0


async def _quick_check(store: Store, limiter: trio.CapacityLimiter | None = None) -> None:
    """Raise StoreError unless SQLite's quick check finds the file sound."""

    def check() -> str:
        with store.guard():
            rows = store.reader.execute("PRAGMA quick_check").fetchall()
        return "; ".join(str(row[0]) for row in rows[:3])

    result = await store._blocking(check, limiter=limiter)
    if result != "ok":
        raise StoreError(f"{store.path}: damaged file: {result}")


def _quick_check_on(db: sqlite3.Connection) -> str:
    """SQLite's quick check on a connection of the caller's: "ok" for a sound file."""
    try:
        rows = db.execute("PRAGMA quick_check").fetchall()
    except sqlite3.DatabaseError as exc:
        return str(exc)
    return "; ".join(str(row[0]) for row in rows[:3])


def _prepare(applier: Applier, db: sqlite3.Connection) -> int:
    """Inside the opening transaction: replay the rows of an older schema (kept in ops_v1)
    through the rules into the new tables, then load the applier. Returns how many old
    rows could not be placed (damaged, another room's, or never valid): they are kept in
    the quarantine table."""
    skipped = 0
    old = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'ops_v1'")
    applier.load()
    if old.fetchone() is not None:
        applier.max_pending = applier.max_pending_bytes = sys.maxsize  # held ops stay
        for op_id, data in db.execute("SELECT id, data FROM ops_v1 ORDER BY n").fetchall():
            op = load_op(bytes(op_id), data)
            placed = op is not None and op.room == applier.room
            if op is not None and placed:
                placed = applier.admit(op).outcome in (Outcome.ADDED, Outcome.DUPLICATE)
            if not placed:
                skipped += 1
                db.execute(
                    "INSERT INTO quarantine (id, data, held, reason)"
                    " VALUES (?, ?, 1, 'not placed on upgrade')",
                    (op_id, data),
                )
        db.execute("DROP TABLE ops_v1")
        applier.flush()
        applier.max_pending, applier.max_pending_bytes = DEFAULT_LIMITS
        applier.load()
    return skipped


def _scrub_connection(path: Path) -> sqlite3.Connection:
    try:
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA query_only=1")
    except sqlite3.Error as exc:
        raise StoreError(describe(path, exc)) from exc
    return db


def _scrub_step(db: sqlite3.Connection, path: Path, after: int) -> tuple[list[int], int | None]:
    """Check the op rows after row `after`: (damaged rows, the last row checked or None
    at the end)."""
    try:
        rows = db.execute(
            "SELECT n, id, data FROM ops WHERE n > ? ORDER BY n LIMIT ?", (after, SCRUB_ROWS)
        ).fetchall()
    except sqlite3.Error as exc:
        raise StoreError(describe(path, exc)) from exc
    bad = [n for n, op_id, data in rows if not stored_intact(op_id, data)]
    return bad, (rows[-1][0] if len(rows) == SCRUB_ROWS else None)
