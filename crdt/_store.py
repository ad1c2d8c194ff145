"""SQLite persistence of one room: its ops, the views derived from them, and its metadata.

All writes happen on one worker thread, one transaction at a time (`trio.to_thread` with a
limiter of one), through the standard `sqlite3` module; or, opened with `blocking=INLINE`,
on the trio thread itself, for runs in virtual time, where nothing may wait on a thread
(an autojumping clock skips ahead while a thread works). A write is a function run on the
writer's connection inside a transaction (`submit` / `transact`); writes that queue up
while a transaction runs share the next one (group commit), and each caller learns its
result only after the commit.

Reads that the UI and sync make on the trio thread go through a second, read-only
connection (`reader`): in WAL mode it sees the last committed state and never waits for
the writer. Those reads are indexed lookups and short range scans only.

Durability (WAL mode): a write marked `durable` (ops this node authored) is committed with
`synchronous=FULL`, so it survives power loss before anyone sees it; other writes use
`synchronous=NORMAL`, which survives a crash of the process but may lose the last commits
on power loss. Those ops came from peers and are fetched again by sync.

Checkpoints (folding the WAL into the file and syncing it, hundreds of ms on a slow disk)
run beside the writer on threads, on a connection of their own, after every
`CHECKPOINT_OPS` ops committed; the writer only folds in what was written meanwhile, a
little, between two transactions, so that the WAL starts over. SQLite's own checkpoint in
the commit stays as a backstop at four times the size. Inline, SQLite's own checkpoint
does it all.

Errors: every `sqlite3` error is turned into `StoreError` with a one-line reason naming
the file. A full disk, an I/O error or a damaged file stops the store's writes for good
(every later write fails at once with the same reason); a busy or locked file fails only
the writes of that transaction. This module must never let a raw `sqlite3.Error` out.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import trio

from rumor_runtime import THREADED, Blocking, open_unwrapping_nursery

__all__ = ["SCHEMA_VERSION", "Store", "StoreError"]

T = TypeVar("T")

# MIGRATIONS[n] takes a database from schema version n to n + 1. Steps are SQL only; a step
# that needs the CRDT's rules (2: rebuilding the views from the old `ops` rows) leaves the
# old rows in a table that `History` replays on open.
MIGRATIONS: list[Sequence[str]] = [
    (
        """CREATE TABLE meta (
               key TEXT PRIMARY KEY,
               value BLOB NOT NULL
           ) WITHOUT ROWID""",
        """CREATE TABLE ops (
               n INTEGER PRIMARY KEY,
               id BLOB NOT NULL,
               data BLOB NOT NULL
           )""",
    ),
    (
        # Schema 1 kept every op in arrival order and the views in memory only. Its rows
        # wait in ops_v1 until `History` replays them into the tables below.
        "ALTER TABLE ops RENAME TO ops_v1",
        # Authors by a small number, so that the chain index stays small.
        """CREATE TABLE authors (
               a INTEGER PRIMARY KEY,
               key BLOB NOT NULL UNIQUE
           )""",
        # Every op in effect; n is the order in which ops took effect (each after its
        # chain predecessor and its target), which is the order sync sends them in.
        """CREATE TABLE ops (
               n INTEGER PRIMARY KEY,
               id BLOB NOT NULL UNIQUE,
               a INTEGER NOT NULL,
               seq INTEGER NOT NULL,
               data BLOB NOT NULL
           )""",
        "CREATE INDEX ops_chain ON ops (a, seq)",
        # Ops accepted but waiting for their chain predecessor or their target (bounded).
        """CREATE TABLE held (
               id BLOB PRIMARY KEY,
               data BLOB NOT NULL
           ) WITHOUT ROWID""",
        # Seqs at which an author's chain holds two ops.
        """CREATE TABLE forks (
               a INTEGER NOT NULL,
               seq INTEGER NOT NULL,
               PRIMARY KEY (a, seq)
           ) WITHOUT ROWID""",
        # The timeline, in (hlc, author, seq, id) order (hlc stored minus 2**63, to fit a
        # signed integer in the same order). Texts are never copied here: what is shown
        # is read from the ops themselves (n, and the latest edit's n), whose bytes are
        # checked against their ids on every read.
        """CREATE TABLE messages (
               hlc INTEGER NOT NULL,
               author BLOB NOT NULL,
               seq INTEGER NOT NULL,
               id BLOB NOT NULL,
               n INTEGER NOT NULL,
               edit INTEGER,
               deleted INTEGER NOT NULL DEFAULT 0,
               reacted INTEGER NOT NULL DEFAULT 0,
               PRIMARY KEY (hlc, author, seq, id)
           ) WITHOUT ROWID""",
        # The latest react or unreact per (message, author, emoji).
        """CREATE TABLE reactions (
               target BLOB NOT NULL,
               author BLOB NOT NULL,
               emoji TEXT NOT NULL,
               hlc INTEGER NOT NULL,
               seq INTEGER NOT NULL,
               id BLOB NOT NULL,
               present INTEGER NOT NULL,
               PRIMARY KEY (target, author, emoji)
           ) WITHOUT ROWID""",
        # Last-writer-wins registers: the topic (who empty), each author's nick and
        # membership (reg is the op kind TOPIC, NICK or JOIN; kind the winning op's).
        """CREATE TABLE registers (
               reg INTEGER NOT NULL,
               who BLOB NOT NULL,
               author BLOB NOT NULL,
               kind INTEGER NOT NULL,
               hlc INTEGER NOT NULL,
               seq INTEGER NOT NULL,
               id BLOB NOT NULL,
               n INTEGER NOT NULL,
               PRIMARY KEY (reg, who)
           ) WITHOUT ROWID""",
        # Rows found damaged (bytes that no longer hash to their id, or no longer decode)
        # are moved here, never deleted; `healed` is set once the genuine op came back.
        """CREATE TABLE quarantine (
               n INTEGER,
               id BLOB,
               a INTEGER,
               seq INTEGER,
               data BLOB,
               held INTEGER NOT NULL,
               reason TEXT NOT NULL,
               healed INTEGER NOT NULL DEFAULT 0
           )""",
    ),
    (
        # Schema 2 kept a unique index on ops.id. Ids are hashes, so every op wrote a page
        # at random in it: in a room of a million ops, a page write per op. Ids now live in
        # `op_ids`, written in bulk and in id order: the ids of the rows after `through`
        # are kept in the writer's memory (rebuilt from `ops` on open) and merged when
        # they are many (see `crdt._applier`).
        """CREATE TABLE ops_v3 (
               n INTEGER PRIMARY KEY,
               id BLOB NOT NULL,
               a INTEGER NOT NULL,
               seq INTEGER NOT NULL,
               data BLOB NOT NULL
           )""",
        "INSERT INTO ops_v3 (n, id, a, seq, data) SELECT n, id, a, seq, data FROM ops",
        "DROP TABLE ops",
        "ALTER TABLE ops_v3 RENAME TO ops",
        "CREATE INDEX ops_chain ON ops (a, seq)",
        """CREATE TABLE op_ids (
               id BLOB PRIMARY KEY,
               n INTEGER NOT NULL
           ) WITHOUT ROWID""",
        "INSERT INTO op_ids (id, n) SELECT id, n FROM ops ORDER BY id",
        "CREATE TABLE op_ids_through (n INTEGER NOT NULL)",
        "INSERT INTO op_ids_through (n) SELECT coalesce(max(n), -1) FROM ops",
    ),
    (
        # Schema 3 indexed ops by (author, seq): a commit wrote a page of that index for
        # every author it touched (in a room of 200 busy authors, 200 pages a commit).
        # Chains now live in `chain`, written in bulk with `op_ids`: the entries of rows
        # after `op_ids_through` are kept in the writer's memory, as their ids are.
        """CREATE TABLE chain (
               a INTEGER NOT NULL,
               seq INTEGER NOT NULL,
               n INTEGER NOT NULL,
               PRIMARY KEY (a, seq, n)
           ) WITHOUT ROWID""",
        "INSERT INTO chain (a, seq, n) SELECT a, seq, n FROM ops"
        " WHERE n <= (SELECT n FROM op_ids_through) ORDER BY a, seq, n",
        "DROP INDEX ops_chain",
    ),
]
SCHEMA_VERSION = len(MIGRATIONS)
WAL_PAGES = 16384  # the WAL is folded into the file when it reaches this (64 MiB)
# While more writes are announced, a transaction of non-durable writes waits up to
# GROUP_WAIT seconds for them, until it holds GROUP_WEIGHT ops: a commit writes every page
# it touched whole, and ops' ids land on random index pages, so small commits cost several
# times as much per op.
GROUP_WAIT = 0.02
GROUP_WEIGHT = 512
CHECKPOINT_OPS = 32768  # ops committed between two checkpoints beside the writer
CHECKPOINT_REST = 1024  # WAL pages left for the writer to fold in itself
CHECKPOINT_ROUNDS = 4  # rounds beside the writer, each folding what the last left

# SQLite primary result codes after which a file takes no more writes this run.
_FATAL_CODES = {
    8: "read-only",  # SQLITE_READONLY
    10: "I/O error",  # SQLITE_IOERR
    11: "damaged",  # SQLITE_CORRUPT
    13: "disk full",  # SQLITE_FULL
    26: "not a database",  # SQLITE_NOTADB
}


class StoreError(Exception):
    """A store file that cannot be used: not SQLite, damaged, full, or from a newer rumor."""


def describe(path: Path, exc: BaseException) -> str:
    """One line naming the file and what went wrong."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    code = getattr(exc, "sqlite_errorcode", None)
    kind = _FATAL_CODES.get(code & 0xFF) if isinstance(code, int) else None
    return f"{path}: {kind}: {text}" if kind else f"{path}: {text}"


def is_fatal(exc: BaseException) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return (code & 0xFF) in _FATAL_CODES
    return isinstance(exc, sqlite3.DatabaseError) and not isinstance(
        exc, sqlite3.OperationalError | sqlite3.IntegrityError
    )


@dataclass
class Job(Generic[T]):
    """One write: `fn` runs on the writer's connection inside a shared transaction."""

    fn: Callable[[sqlite3.Connection], T]
    durable: bool
    weight: int = 1  # ops it writes, roughly: a transaction grows to GROUP_WEIGHT
    done: trio.Event = field(default_factory=trio.Event)
    result: T | None = None
    error: BaseException | None = None

    async def wait(self) -> T:
        await self.done.wait()
        if self.error is not None:
            if isinstance(self.error, StoreError | trio.ClosedResourceError):
                raise self.error
            raise StoreError(str(self.error)) from self.error
        return self.result  # type: ignore[return-value]


class Expected:
    """Writes announced to a store (`Store.expect`); `close` once they are submitted or
    will not come. Closing twice is harmless."""

    def __init__(self, store: Store) -> None:
        self._store: Store | None = store
        store._expected += 1

    def close(self) -> None:
        store, self._store = self._store, None
        if store is not None:
            store._expected -= 1
            store._wakeup.set()


class Store:
    """One room's SQLite file. Open with `async with Store.open(path) as store`."""

    def __init__(
        self,
        connection: sqlite3.Connection,
        reader: sqlite3.Connection,
        path: Path,
        *,
        blocking: Blocking = THREADED,
    ) -> None:
        self.path = path
        self._db = connection
        self.reader = reader
        self._blocking = blocking
        self._limiter = trio.CapacityLimiter(1)
        self._queue: list[Job[Any]] = []
        self._wakeup = trio.Event()
        # Writes announced (`expect`) and not yet submitted: while there are some, the
        # writer lets a transaction of non-durable writes grow a little (GROUP_WAIT,
        # GROUP_WEIGHT), since every commit rewrites each page it touched.
        self._expected = 0
        self._closed = False
        self._writer_gone = False
        self._synchronous = "NORMAL"
        self.commits = 0  # transactions committed by writes, for tests and metrics
        self.checkpoints = 0  # checkpoints run beside the writer, for tests and metrics
        self._unfolded = 0  # ops committed since the last checkpoint began
        self._checkpoint_due = trio.Event()
        self.failed: str | None = None  # why writes stopped for good, if they did
        # Set by the owner (History): run on the writer's thread after each transaction
        # (True: committed; False: rolled back), returning what `publish` then receives on
        # the trio thread.
        self.after: Callable[[bool], object] | None = None
        # Set by the owner: run on the writer's thread inside each transaction, after its
        # writes and before the commit (to write what they left buffered).
        self.before_commit: Callable[[], None] | None = None
        self.publish: Callable[[object], None] | None = None

    @classmethod
    @asynccontextmanager
    async def open(cls, path: str | Path, *, blocking: Blocking = THREADED) -> AsyncIterator[Store]:
        """Open (creating if needed) the store at `path`.

        `blocking` says where SQLite calls run: on a worker thread (`THREADED`), or on the
        trio thread (`INLINE`), blocking it meanwhile: only for virtual time (tests, the
        simulator), never for a node serving real peers.
        """
        path = Path(path)
        connection, reader = await blocking(_connect, path)
        store = cls(connection, reader, path, blocking=blocking)
        checkpointer: sqlite3.Connection | None = None
        try:
            async with open_unwrapping_nursery() as nursery:
                nursery.start_soon(store._write_loop)
                if blocking is THREADED:
                    checkpointer = await blocking(_open_checkpointer, path, connection)
                    if checkpointer is not None:
                        nursery.start_soon(store._checkpoint_loop, checkpointer)
                try:
                    yield store
                finally:
                    store._closed = True
                    store._wakeup.set()
                    store._checkpoint_due.set()
        finally:
            if checkpointer is not None:
                _close(checkpointer)
            # The reader stays open until the store is garbage collected: a closed room's
            # history can still be read (the node shows a room it left), as it could when
            # the views lived in memory.
            with trio.CancelScope(shield=True):
                await blocking(_checkpoint_and_close, connection)

    async def run(self, fn: Callable[[], T]) -> T:
        """`fn()` on the writer's thread, between transactions; sqlite3 errors become
        StoreError."""

        def guarded() -> T:
            with self.guard():
                return fn()

        return await self._blocking(guarded, limiter=self._limiter)

    @contextmanager
    def guard(self) -> Iterator[None]:
        """Turn sqlite3 errors into StoreError (the one error type callers handle)."""
        try:
            yield
        except sqlite3.Error as exc:
            raise StoreError(describe(self.path, exc)) from exc

    # -- writing --------------------------------------------------------------------------

    def submit(
        self, fn: Callable[[sqlite3.Connection], T], *, durable: bool, weight: int = 1
    ) -> Job[T]:
        """Queue a write; its transaction runs after every write submitted before it.
        `await job.wait()` returns `fn`'s result once committed, or raises StoreError."""
        if self._closed or self._writer_gone:
            raise trio.ClosedResourceError("store is closed")
        if self.failed is not None:
            raise StoreError(f"{self.path}: writes stopped: {self.failed}")
        job: Job[T] = Job(fn, durable, weight)
        self._queue.append(job)
        self._wakeup.set()
        return job

    async def transact(
        self, fn: Callable[[sqlite3.Connection], T], *, durable: bool, weight: int = 1
    ) -> T:
        return await self.submit(fn, durable=durable, weight=weight).wait()

    def expect(self) -> Expected:
        """Announce non-durable writes on their way (an ingest still verifying), until
        the returned handle is closed: the writer may wait for them briefly, to commit
        them together with those queued."""
        return Expected(self)

    def _worth_waiting(self) -> bool:
        queue = self._queue
        return (
            self._expected > 0
            and not self._closed
            and not any(job.durable for job in queue)
            and sum(job.weight for job in queue) < GROUP_WEIGHT
        )

    async def _write_loop(self) -> None:
        try:
            while True:
                await self._wakeup.wait()
                self._wakeup = trio.Event()
                if self._queue and self._worth_waiting():
                    with trio.move_on_after(GROUP_WAIT):
                        while self._worth_waiting():
                            await self._wakeup.wait()
                            self._wakeup = trio.Event()
                jobs, self._queue = self._queue, []
                if jobs:
                    await self._commit(jobs)
                if self._closed and not self._queue:
                    return
        finally:
            # Cancelled (the block holding the store was): fail what is still queued
            # rather than leave its callers waiting for a writer that is gone.
            self._writer_gone = True
            for job in self._queue:
                job.error = trio.ClosedResourceError("store closed before this write")
                job.done.set()
            self._queue = []

    async def _checkpoint_loop(self, checkpointer: sqlite3.Connection) -> None:
        limiter = trio.CapacityLimiter(1)
        while True:
            await self._checkpoint_due.wait()
            self._checkpoint_due = trio.Event()
            if self._closed:
                return
            self._unfolded = 0
            for _ in range(CHECKPOINT_ROUNDS):
                left = await self._blocking(_fold, checkpointer, limiter=limiter)
                if left <= CHECKPOINT_REST:
                    break
            # What the writer wrote meanwhile, folded in between its transactions: with
            # every page of the WAL in the file, the next transaction starts it over.
            if not self._closed and self.failed is None:
                await self._blocking(_fold, self._db, limiter=self._limiter)
            self.checkpoints += 1

    async def _commit(self, jobs: list[Job[Any]]) -> None:
        durable = any(job.durable for job in jobs)
        after = self.after
        before_commit = self.before_commit

        def write() -> tuple[BaseException | None, object]:
            error: BaseException | None = None
            if self.failed is not None:
                return StoreError(f"{self.path}: writes stopped: {self.failed}"), None
            try:
                mode = "FULL" if durable else "NORMAL"
                if mode != self._synchronous:
                    self._db.execute(f"PRAGMA synchronous={mode}")
                    self._synchronous = mode
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    for job in jobs:
                        job.result = job.fn(self._db)
                    if before_commit is not None:
                        before_commit()
                    self._db.execute("COMMIT")
                except BaseException:
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    raise
            except Exception as exc:
                if isinstance(exc, sqlite3.Error) and is_fatal(exc):
                    self.failed = describe(self.path, exc)
                    error = StoreError(f"{self.failed}; this room's writes are stopped")
                elif isinstance(exc, sqlite3.Error):
                    error = StoreError(describe(self.path, exc))
                else:
                    error = exc
            summary = None
            if after is not None:
                try:
                    summary = after(error is None)
                except sqlite3.Error as exc:  # reloading after a failure failed too
                    self.failed = self.failed or describe(self.path, exc)
                    error = error or StoreError(self.failed)
            return error, summary

        with trio.CancelScope(shield=True):  # a started commit is always seen through
            error, summary = await self._blocking(write, limiter=self._limiter)
        if error is None:
            self.commits += 1
            self._unfolded += sum(job.weight for job in jobs)
            if self._unfolded >= CHECKPOINT_OPS:
                self._checkpoint_due.set()
        if self.publish is not None and summary is not None:
            self.publish(summary)
        for job in jobs:
            job.error = error
            job.done.set()

    async def set_meta(self, items: Mapping[str, bytes], *, durable: bool = True) -> None:
        """Set metadata values (durably unless they are only hints)."""

        def write(db: sqlite3.Connection) -> None:
            db.executemany(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", list(items.items())
            )

        await self.transact(write, durable=durable)

    # -- reading --------------------------------------------------------------------------

    async def meta(self) -> dict[str, bytes]:
        def read() -> dict[str, bytes]:
            return {str(k): bytes(v) for k, v in self._db.execute("SELECT key, value FROM meta")}

        return await self.run(read)

    async def load(self) -> list[bytes]:
        """Every stored op's bytes: those in effect in the order they took effect, then
        the held ones."""

        def read() -> list[bytes]:
            rows = self._db.execute("SELECT data FROM ops ORDER BY n").fetchall()
            rows += self._db.execute("SELECT data FROM held").fetchall()
            return [bytes(row[0]) for row in rows]

        return await self.run(read)

    async def count(self) -> int:
        """Stored ops, held ones included (not those set aside as damaged)."""

        def read() -> int:
            ops = self._db.execute("SELECT count(*) FROM ops").fetchone()[0]
            return int(ops) + int(self._db.execute("SELECT count(*) FROM held").fetchone()[0])

        return await self.run(read)

    async def integrity_check(self) -> str:
        """SQLite's `PRAGMA integrity_check`: "ok" for a sound file."""

        def check() -> str:
            rows = self._db.execute("PRAGMA integrity_check").fetchall()
            return "\n".join(str(row[0]) for row in rows)

        return await self.run(check)


def _close(*connections: sqlite3.Connection) -> None:
    for connection in connections:
        with suppress(sqlite3.Error):
            connection.close()


def _open_checkpointer(path: Path, writer: sqlite3.Connection) -> sqlite3.Connection | None:
    """A connection for checkpoints beside the writer (opened once the writer has set the
    file up), and SQLite's own checkpoint moved to four times the size, as a backstop; or
    None if that cannot be done (then SQLite's own does it all, as before)."""
    try:
        connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    except sqlite3.Error:
        return None
    try:
        connection.execute("PRAGMA cache_size=-1024")
        writer.execute(f"PRAGMA wal_autocheckpoint={4 * WAL_PAGES}")
    except sqlite3.Error:
        _close(connection)
        return None
    return connection


def _fold(connection: sqlite3.Connection) -> int:
    """A passive checkpoint (it never waits for, nor holds up, the writer or readers);
    returns how many pages of the WAL it left unfolded. An error leaves it to the next one,
    or to SQLite's own checkpoint in the writer's commit."""
    try:
        _, log, folded = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    except sqlite3.Error:
        return 0
    return max(0, int(log) - int(folded))


def _checkpoint_and_close(connection: sqlite3.Connection) -> None:
    """Fold the WAL into the file (the reader may outlive this connection), then close."""
    with suppress(sqlite3.Error):
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    _close(connection)


def _connect(path: Path) -> tuple[sqlite3.Connection, sqlite3.Connection]:
    """Open (creating if needed) and migrate a store file, and open its reader; raises
    StoreError.

    A file that is not a rumor store, or is from a newer rumor, is refused before anything
    is written to it (switching to WAL would already change its header). The schema and
    the meta table are read in full, which finds a file whose first pages are damaged.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    except (OSError, sqlite3.Error) as exc:
        raise StoreError(f"cannot open {describe(path, exc)}") from None
    reader: sqlite3.Connection | None = None
    try:
        db.execute("PRAGMA busy_timeout=5000")
        _check_schema(db, path)
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"{path}: cannot switch to WAL mode")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA cache_size=-32768")  # 32 MiB: the id index's hot pages
        # Each commit rewrites about one page of the (random) id index per op; checkpoints
        # copy those pages into the file and fsync it. Fewer, larger checkpoints copy a page
        # rewritten by many commits once (measured: commit time halved in a 1M-op room).
        db.execute(f"PRAGMA wal_autocheckpoint={WAL_PAGES}")
        _migrate(db)
        db.execute("SELECT count(*) FROM meta").fetchone()
        reader = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        reader.execute("PRAGMA query_only=1")
        reader.execute("PRAGMA cache_size=-8192")
    except sqlite3.DatabaseError as exc:
        _close(db, *([reader] if reader is not None else []))
        raise StoreError(f"{describe(path, exc)}: it is not a rumor store, or is damaged") from None
    except StoreError:
        _close(db, *([reader] if reader is not None else []))
        raise
    return db, reader


def _check_schema(db: sqlite3.Connection, path: Path) -> None:
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{path} has schema version {version}; this rumor reads up to {SCHEMA_VERSION}"
        )
    if version == 0 and _has_tables(db):
        raise StoreError(f"{path} is an SQLite file, but not a rumor store")


def _migrate(db: sqlite3.Connection) -> None:
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    for target in range(version, len(MIGRATIONS)):
        db.execute("BEGIN IMMEDIATE")
        try:
            for statement in MIGRATIONS[target]:
                db.execute(statement)
            db.execute(f"PRAGMA user_version={target + 1}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise


def _has_tables(db: sqlite3.Connection) -> bool:
    row = db.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()
    return bool(row[0])
