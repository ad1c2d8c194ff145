"""SQLite persistence of one room: its ops and its metadata, in one file.

All SQLite work happens on a worker thread, one call at a time (`trio.to_thread` with a
limiter of one), through the standard `sqlite3` module; or, opened with `blocking=INLINE`,
on the trio thread itself, for runs in virtual time, where nothing may wait on a thread
(an autojumping clock skips ahead while a thread works). Writes are group-committed:
appends that arrive while a transaction is running share the next one, and each caller
returns only after its ops are committed.

Durability (WAL mode): a batch marked `durable` (ops this node authored) is committed with
`synchronous=FULL`, so it survives power loss before anyone sees it; other batches use
`synchronous=NORMAL`, which survives a crash of the process but may lose the last commits
on power loss. Those ops came from peers and are fetched again by sync.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import trio

from rumor_runtime import THREADED, Blocking, open_unwrapping_nursery

__all__ = ["SCHEMA_VERSION", "Store", "StoreError"]

T = TypeVar("T")

# MIGRATIONS[n] takes a database from schema version n to n + 1.
MIGRATIONS: list[Sequence[str]] = [
    (
        """CREATE TABLE meta (
               key TEXT PRIMARY KEY,
               value BLOB NOT NULL
           ) WITHOUT ROWID""",
        # n keeps arrival order, so a reopened replica is rebuilt as it was built. No index
        # on id: the replica in memory already knows every id, and an index would make each
        # insert four times dearer; a duplicate row is harmless (reopening skips it).
        """CREATE TABLE ops (
               n INTEGER PRIMARY KEY,
               id BLOB NOT NULL,
               data BLOB NOT NULL
           )""",
    ),
]
SCHEMA_VERSION = len(MIGRATIONS)


class StoreError(Exception):
    """A store file that cannot be used: not SQLite, damaged, or from a newer rumor."""


@dataclass
class _Write:
    rows: list[tuple[bytes, bytes]]
    removals: list[bytes]
    durable: bool
    done: trio.Event = field(default_factory=trio.Event)
    error: BaseException | None = None


class Store:
    """One room's SQLite file. Open with `async with Store.open(path) as store`."""

    def __init__(
        self, connection: sqlite3.Connection, path: Path, *, blocking: Blocking = THREADED
    ) -> None:
        self.path = path
        self._db = connection
        self._blocking = blocking
        self._limiter = trio.CapacityLimiter(1)
        self._queue: list[_Write] = []
        self._wakeup = trio.Event()
        self._closed = False
        self._writer_gone = False
        self._synchronous = "NORMAL"
        self.commits = 0  # transactions committed by appends, for tests and metrics

    @classmethod
    @asynccontextmanager
    async def open(
        cls, path: str | Path, *, blocking: Blocking = THREADED
    ) -> AsyncIterator[Store]:
        """Open (creating if needed) the store at `path`.

        `blocking` says where SQLite calls run: on a worker thread (`THREADED`), or on the
        trio thread (`INLINE`), blocking it meanwhile: only for virtual time (tests, the
        simulator), never for a node serving real peers.
        """
        path = Path(path)
        connection = await blocking(_connect, path)
        store = cls(connection, path, blocking=blocking)
        try:
            async with open_unwrapping_nursery() as nursery:
                nursery.start_soon(store._write_loop)
                try:
                    yield store
                finally:
                    store._closed = True
                    store._wakeup.set()
        finally:
            with trio.CancelScope(shield=True):
                await blocking(connection.close)

    async def _run(self, fn: Callable[[], T]) -> T:
        return await self._blocking(fn, limiter=self._limiter)

    # -- writing --------------------------------------------------------------------------

    async def append(self, rows: Iterable[tuple[bytes, bytes]], *, durable: bool) -> None:
        """Store `(op id, op bytes)` rows; returns once they are committed.

        Callers store only new ops (the replica knows which). `durable` commits with fsync
        (for ops we author).
        """
        await self.write(rows, (), durable=durable)

    async def remove(self, op_ids: Iterable[bytes]) -> None:
        """Delete ops that turned out invalid after they were stored (held, then refused)."""
        await self.write((), op_ids, durable=False)

    async def write(
        self, rows: Iterable[tuple[bytes, bytes]], removals: Iterable[bytes], *, durable: bool
    ) -> None:
        """Insert `rows`, then delete `removals`, in the order calls were made; returns once
        committed. Writes from concurrent callers share a transaction."""
        if self._closed or self._writer_gone:
            raise trio.ClosedResourceError("store is closed")
        job = _Write(list(rows), list(removals), durable)
        if not job.rows and not job.removals:
            return
        self._queue.append(job)
        self._wakeup.set()
        await job.done.wait()
        if job.error is not None:
            raise StoreError(f"could not write to {self.path}: {job.error}") from job.error

    async def _write_loop(self) -> None:
        try:
            while True:
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

    async def _commit(self, jobs: list[_Write]) -> None:
        durable = any(job.durable for job in jobs)

        def write() -> None:
            mode = "FULL" if durable else "NORMAL"
            if mode != self._synchronous:
                self._db.execute(f"PRAGMA synchronous={mode}")
                self._synchronous = mode
            with _transaction(self._db):
                for job in jobs:
                    if job.rows:
                        self._db.executemany("INSERT INTO ops (id, data) VALUES (?, ?)", job.rows)
                    if job.removals:
                        # One pass over the table (there is no index on id); removals
                        # are rare, each a held op that proved invalid.
                        for at in range(0, len(job.removals), 500):
                            ids = job.removals[at : at + 500]
                            marks = ",".join("?" * len(ids))
                            self._db.execute(f"DELETE FROM ops WHERE id IN ({marks})", ids)

        error: BaseException | None = None
        try:
            with trio.CancelScope(shield=True):  # a started commit is always seen through
                await self._run(write)
            self.commits += 1
        except sqlite3.Error as exc:
            error = exc
        for job in jobs:
            job.error = error
            job.done.set()

    async def set_meta(self, items: Mapping[str, bytes]) -> None:
        """Set metadata values, durably."""

        def write() -> None:
            self._db.execute("PRAGMA synchronous=FULL")
            self._synchronous = "FULL"
            with _transaction(self._db):
                self._db.executemany(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", list(items.items())
                )

        await self._run(write)

    # -- reading --------------------------------------------------------------------------

    async def meta(self) -> dict[str, bytes]:
        def read() -> dict[str, bytes]:
            return {str(k): bytes(v) for k, v in self._db.execute("SELECT key, value FROM meta")}

        return await self._run(read)

    async def load(self) -> list[bytes]:
        """Every stored op's bytes, in the order they were first stored."""

        def read() -> list[bytes]:
            return [row[0] for row in self._db.execute("SELECT data FROM ops ORDER BY n")]

        return await self._run(read)

    async def count(self) -> int:
        def read() -> int:
            return int(self._db.execute("SELECT count(*) FROM ops").fetchone()[0])

        return await self._run(read)

    async def integrity_check(self) -> str:
        """SQLite's `PRAGMA integrity_check`: "ok" for a sound file."""

        def check() -> str:
            rows = self._db.execute("PRAGMA integrity_check").fetchall()
            return "\n".join(str(row[0]) for row in rows)

        return await self._run(check)


class _transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any error."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self._db.execute("COMMIT")
        else:
            self._db.execute("ROLLBACK")


def _connect(path: Path) -> sqlite3.Connection:
    """Open (creating if needed) and migrate a store file; raises StoreError.

    A file that is not a rumor store, or is from a newer rumor, is refused before anything
    is written to it (switching to WAL would already change its header).
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    except (OSError, sqlite3.Error) as exc:
        raise StoreError(f"cannot open {path}: {exc}") from None
    try:
        db.execute("PRAGMA busy_timeout=5000")
        _check_schema(db, path)
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"{path}: cannot switch to WAL mode")
        db.execute("PRAGMA synchronous=NORMAL")
        _migrate(db)
    except sqlite3.DatabaseError as exc:
        db.close()
        raise StoreError(f"{path} is not a rumor store: {exc}") from None
    except StoreError:
        db.close()
        raise
    return db


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
        with _transaction(db):
            for statement in MIGRATIONS[target]:
                db.execute(statement)
            db.execute(f"PRAGMA user_version={target + 1}")


def _has_tables(db: sqlite3.Connection) -> bool:
    row = db.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()
    return bool(row[0])
