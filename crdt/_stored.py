"""A room kept in its SQLite file: the replica's rules over stored state, and its reads.

Two halves, one per thread:

- `Applier` is a `Replica` whose state hooks read and write the store's tables (ops in
  effect, held ops, chains, the timeline, edits, deletes, reactions, registers) instead of
  dicts. It runs only inside the store's write transactions, on the writer's thread, so
  the views are updated in the same transaction as the op and follow the very same rules
  as the in-memory `Replica`. In memory it keeps only what is per author (chain heads,
  forks, gaps left by damaged rows, the registers) and the held ops (bounded).
- `StoredReplica` is what the node, sync and the UI read, on the trio thread: the
  per-author summary the applier publishes after each commit, and indexed reads of the
  committed state through the store's read-only connection.

Damage: every op read back is decoded and its bytes hashed against its id. A row that
fails is never shown: it is moved to the `quarantine` table (never deleted), counted, and
its (author, seq) becomes a gap that lowers that author's version vector entry, so sync
fetches the op again; when the genuine op comes back it takes its old place (its old
effect index) and the gap closes. The views were built with the op in place, so nothing
else has to change. Neither half may ever let a raw `sqlite3.Error` out.
"""

from __future__ import annotations

import heapq
import logging
import sqlite3
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import msgpack

from ._hlc import HLC, make_hlc
from ._identity import Identity
from ._op import InvalidOp, Kind, Op, decode_op
from ._replica import Replica, SortKey
from ._store import Store, StoreError
from ._views import ApplyResult, AuthorForked, Change, Message

__all__ = ["Applier", "StoredReplica", "Summary", "load_op"]

log = logging.getLogger("crdt.store")

SHIFT = 1 << 63  # hlc is an unsigned 64-bit number; SQLite integers are signed
RECENT = 8192  # ops that took effect lately, kept decoded: most lookups are for these
PAGE_FIRST = 16  # rows a sync read takes per author at first; doubled as it goes on
PAGE_MOST = 512


def load_op(op_id: bytes, data: object) -> Op | None:
    """The op stored as `data` under `op_id`, or None if the bytes are damaged (they no
    longer decode, or no longer hash to the id)."""
    if not isinstance(data, bytes):
        return None
    try:
        op = decode_op(data)
    except InvalidOp:
        return None
    return op if op.id == op_id else None


class _Head:
    """One author's chain, as far as sync and authoring need it."""

    __slots__ = ("a", "forks", "gaps", "head", "head_hlc", "head_id")

    def __init__(self, a: int) -> None:
        self.a = a
        self.head = 0  # every seq 1..head took effect
        self.head_id: bytes | None = None  # the first op that took effect at head
        self.head_hlc = 0
        self.forks: set[int] = set()
        self.gaps: dict[int, bytes] = {}  # seq -> id of an op in effect set aside as damaged


@dataclass(frozen=True, slots=True)
class Summary:
    """What the applier publishes after each transaction, for reads on the trio thread."""

    authors: dict[bytes, int]
    heads: dict[bytes, int]
    vector: dict[bytes, int]
    forks: dict[bytes, int]  # author -> lowest forked seq
    ops: int
    held: int
    messages: int
    topic: str
    nicks: dict[bytes, str]
    members: list[bytes]
    damaged: int


class Applier(Replica):
    """The replica's rules over the store's tables. Use only inside a store transaction."""

    def __init__(
        self,
        room: bytes,
        db: sqlite3.Connection,
        *,
        identity: Identity | None = None,
        clock: HLC | None = None,
        path: object = "",
    ) -> None:
        super().__init__(room, identity=identity, clock=clock)
        self.db = db
        self.path = path
        self._heads: dict[bytes, _Head] = {}
        self._authors: dict[bytes, int] = {}
        self._recent: OrderedDict[bytes, tuple[Op, int]] = OrderedDict()  # id -> (op, n)
        self._n = 0  # the effect index (row) of the op taking effect now
        self._restoring = False
        self._ops_count = 0
        self._messages = 0
        self.damaged = 0  # rows set aside this run, and before (from the quarantine table)

    # -- loading --------------------------------------------------------------------------

    def load(self) -> None:
        """(Re)build the in-memory part from the tables: on open, and after a rollback."""
        db = self.db
        self._heads.clear()
        self._authors.clear()
        self._recent.clear()
        self._waiting.clear()
        self._held.clear()
        self._held_ops.clear()
        self._held_bytes = 0
        self._topic = None
        self._nicks.clear()
        self._membership.clear()
        for a, key in db.execute("SELECT a, key FROM authors"):
            self._authors[bytes(key)] = a
            self._heads[bytes(key)] = _Head(a)
        for a, seq in db.execute("SELECT a, seq FROM forks"):
            self._head_of(a).forks.add(seq)
        for a, seq, op_id in db.execute(
            "SELECT a, seq, id FROM quarantine WHERE held = 0 AND healed = 0"
        ):
            if isinstance(a, int) and isinstance(seq, int) and isinstance(op_id, bytes):
                self._head_of(a).gaps[seq] = op_id
        self.damaged = int(db.execute("SELECT count(*) FROM quarantine").fetchone()[0])
        last = db.execute(
            "SELECT max(coalesce((SELECT max(n) FROM ops), -1),"
            " coalesce((SELECT max(n) FROM quarantine), -1))"
        ).fetchone()[0]
        self._effects = int(last) + 1
        self._ops_count = int(db.execute("SELECT count(*) FROM ops").fetchone()[0])
        self._messages = int(db.execute("SELECT count(*) FROM messages").fetchone()[0])
        for author, head in list(self._heads.items()):
            self._load_head(author, head)
        self._load_registers()
        for op_id, data in db.execute("SELECT id, data FROM held").fetchall():
            op = load_op(bytes(op_id), data)
            if op is None:
                self._set_aside_held(bytes(op_id), data, "damaged")
                continue
            waiting_for, reason = self._dependency(op)
            if reason is None and waiting_for is not None:
                self._hold(op, waiting_for)
                self.clock.observe(op.hlc)
            else:  # cannot happen with tables this module wrote; kept, not applied
                self._set_aside_held(op.id, data, f"unplaced: {reason}")

    def _head_of(self, a: int) -> _Head:
        for head in self._heads.values():
            if head.a == a:
                return head
        raise StoreError(f"{self.path}: chain of unknown author {a}")

    def _load_head(self, author: bytes, head: _Head) -> None:
        db = self.db
        top = db.execute("SELECT max(seq) FROM ops WHERE a = ?", (head.a,)).fetchone()[0]
        head.head = max(int(top or 0), max(head.gaps, default=0))
        while head.head:
            if head.head in head.gaps:
                head.head_id = head.gaps[head.head]
                head.head_hlc = 0
                return
            row = db.execute(
                "SELECT n, id, data FROM ops WHERE a = ? AND seq = ? ORDER BY n LIMIT 1",
                (head.a, head.head),
            ).fetchone()
            if row is None:
                raise StoreError(f"{self.path}: chain of {author.hex()[:8]} has no head")
            op = load_op(bytes(row[1]), row[2])
            if op is None:
                self._set_aside(int(row[0]), "damaged")  # makes a gap; look again
                continue
            head.head_id, head.head_hlc = op.id, op.hlc
            self.clock.observe(op.hlc)
            return

    def _load_registers(self) -> None:
        rows = self.db.execute(
            "SELECT reg, author, kind, hlc, seq, id, n FROM registers"
        ).fetchall()
        for reg, author, kind, hlc, seq, op_id, n in rows:
            author = bytes(author)
            key: SortKey = (hlc + SHIFT, author, seq, bytes(op_id))
            if reg == Kind.JOIN:
                self._membership[author] = (key, kind == Kind.JOIN)
                continue
            op = self._op_at(n)
            text = op.body[0] if op is not None else ""  # damaged: shown again once healed
            if reg == Kind.TOPIC:
                self._topic = (key, text, author)
            else:
                self._nicks[author] = (key, text)

    def _op_at(self, n: int) -> Op | None:
        row = self.db.execute("SELECT id, data FROM ops WHERE n = ?", (n,)).fetchone()
        if row is None:
            return None
        op = load_op(bytes(row[0]), row[1])
        if op is None:
            self._set_aside(n, "damaged")
        return op

    def summary(self) -> Summary:
        vector = {}
        heads = {}
        forks = {}
        for author, head in self._heads.items():
            heads[author] = head.head
            vector[author] = min(head.gaps) - 1 if head.gaps else head.head
            if head.forks:
                forks[author] = min(head.forks)
        topic = "" if self._topic is None else self._topic[1]
        return Summary(
            authors=dict(self._authors),
            heads=heads,
            vector=vector,
            forks=forks,
            ops=self._ops_count,
            held=len(self._held),
            messages=self._messages,
            topic=topic,
            nicks={a: nick for a, (_, nick) in self._nicks.items() if nick},
            members=sorted(a for a, (_, joined) in self._membership.items() if joined),
            damaged=self.damaged,
        )

    # -- damage ---------------------------------------------------------------------------

    def set_aside(self, n: int, reason: str = "damaged") -> bool:
        """Move the op row `n` to quarantine if it is (still) damaged; True if it was."""
        row = self.db.execute("SELECT id, data FROM ops WHERE n = ?", (n,)).fetchone()
        if row is None or load_op(bytes(row[0]), row[1]) is not None:
            return False
        self._set_aside(n, reason)
        return True

    def _set_aside(self, n: int, reason: str) -> None:
        db = self.db
        row = db.execute("SELECT id, a, seq, data FROM ops WHERE n = ?", (n,)).fetchone()
        if row is None:
            return
        op_id, a, seq, data = row
        db.execute(
            "INSERT INTO quarantine (n, id, a, seq, data, held, reason) VALUES (?,?,?,?,?,0,?)",
            (n, op_id, a, seq, data, reason),
        )
        db.execute("DELETE FROM ops WHERE n = ?", (n,))
        self._recent.pop(bytes(op_id), None)
        self._ops_count -= 1
        self.damaged += 1
        # If the author number is damaged too there is nothing to ask peers for by seq.
        with suppress(StoreError):
            self._head_of(a).gaps[seq] = bytes(op_id)
        log.warning(
            "%s: stored op %s (#%s) is damaged (%s): set aside, to be fetched again from peers",
            self.path,
            bytes(op_id).hex()[:16],
            seq,
            reason,
        )

    def _set_aside_held(self, op_id: bytes, data: object, reason: str) -> None:
        self.db.execute(
            "INSERT INTO quarantine (id, data, held, reason) VALUES (?, ?, 1, ?)",
            (op_id, data, reason),
        )
        self.db.execute("DELETE FROM held WHERE id = ?", (op_id,))
        self.damaged += 1
        log.warning("%s: held op %s set aside (%s)", self.path, op_id.hex()[:16], reason)

    # -- state hooks ----------------------------------------------------------------------

    def _known(self, op_id: bytes) -> bool:
        if op_id in self._held or op_id in self._recent:
            return True
        return self.db.execute("SELECT 1 FROM ops WHERE id = ?", (op_id,)).fetchone() is not None

    def _find(self, op_id: bytes) -> Op | None:
        op = self._held_ops.get(op_id)
        if op is not None:
            return op
        recent = self._recent.get(op_id)
        if recent is not None:
            return recent[0]
        row = self.db.execute("SELECT n, data FROM ops WHERE id = ?", (op_id,)).fetchone()
        if row is None:
            return None
        op = load_op(op_id, row[1])
        if op is None:
            self._set_aside(int(row[0]), "damaged")
            return None
        self._remember(op, int(row[0]))
        return op

    def _n_of(self, op_id: bytes) -> int | None:
        recent = self._recent.get(op_id)
        if recent is not None:
            return recent[1]
        row = self.db.execute("SELECT n FROM ops WHERE id = ?", (op_id,)).fetchone()
        return None if row is None else int(row[0])

    def _remember(self, op: Op, n: int) -> None:
        self._recent[op.id] = (op, n)
        if len(self._recent) > RECENT:
            self._recent.popitem(last=False)

    def _put_held(self, op: Op) -> None:
        self.db.execute("INSERT OR REPLACE INTO held (id, data) VALUES (?, ?)", (op.id, op.data))

    def _forget_held(self, op: Op) -> None:
        self.db.execute("DELETE FROM held WHERE id = ?", (op.id,))

    def _author(self, author: bytes) -> _Head:
        head = self._heads.get(author)
        if head is None:
            a = self.db.execute("INSERT INTO authors (key) VALUES (?)", (author,)).lastrowid
            assert a is not None
            self._authors[author] = a
            head = self._heads[author] = _Head(a)
        return head

    def _put_effect(self, op: Op, index: int, was_held: bool) -> None:
        db = self.db
        head = self._author(op.author)
        n = index
        if head.gaps.get(op.seq) == op.id:
            # The genuine copy of an op set aside as damaged: back in its old place.
            row = db.execute(
                "SELECT n FROM quarantine WHERE id = ? AND held = 0 AND healed = 0 LIMIT 1",
                (op.id,),
            ).fetchone()
            if row is not None and row[0] is not None:
                n = int(row[0])
                db.execute("UPDATE quarantine SET healed = 1 WHERE id = ?", (op.id,))
                del head.gaps[op.seq]
                self._restoring = True
                log.warning("%s: op %s healed from a peer", self.path, op.id.hex()[:16])
        db.execute(
            "INSERT INTO ops (n, id, a, seq, data) VALUES (?, ?, ?, ?, ?)",
            (n, op.id, head.a, op.seq, op.data),
        )
        if was_held:
            db.execute("DELETE FROM held WHERE id = ?", (op.id,))
        self._n = n
        self._ops_count += 1
        self._remember(op, n)

    def _extend_chain(self, op: Op, index: int, changes: list[Change]) -> None:
        head = self._heads[op.author]
        if self._restoring:
            self._restoring = False
            return
        if op.seq <= head.head:
            if op.seq not in head.forks:
                head.forks.add(op.seq)
                self.db.execute("INSERT INTO forks (a, seq) VALUES (?, ?)", (head.a, op.seq))
                changes.append(AuthorForked(op.author, op.seq))
        else:
            head.head, head.head_id, head.head_hlc = op.seq, op.id, op.hlc

    def _head_op(self, author: bytes) -> tuple[int, bytes | None, int]:
        head = self._heads.get(author)
        if head is None:
            return 0, None, 0
        return head.head, head.head_id, head.head_hlc

    def _add_message(self, op: Op) -> None:
        cursor = self.db.execute(
            "INSERT OR IGNORE INTO messages (hlc, author, seq, id, n) VALUES (?, ?, ?, ?, ?)",
            (op.hlc - SHIFT, op.author, op.seq, op.id, self._n),
        )
        self._messages += cursor.rowcount

    def _message_row(self, target: bytes) -> tuple[tuple[int, bytes, int, bytes], Any] | None:
        op = self._find(target)
        if op is None:
            return None
        pk = (op.hlc - SHIFT, op.author, op.seq, op.id)
        row = self.db.execute(
            "SELECT edit, deleted, reacted FROM messages"
            " WHERE hlc = ? AND author = ? AND seq = ? AND id = ?",
            pk,
        ).fetchone()
        return None if row is None else (pk, row)

    def _edit_key(self, target: bytes) -> SortKey | None:
        found = self._message_row(target)
        if found is None or found[1][0] is None:
            return None
        edit = self._op_at(found[1][0])
        return None if edit is None else edit.sort_key

    def _set_edit(self, target: bytes, op: Op) -> None:
        found = self._message_row(target)
        if found is not None:
            self.db.execute(
                "UPDATE messages SET edit = ? WHERE hlc = ? AND author = ? AND seq = ? AND id = ?",
                (self._n, *found[0]),
            )

    def _is_deleted(self, target: bytes) -> bool:
        found = self._message_row(target)
        return found is not None and bool(found[1][1])

    def _set_deleted(self, target: bytes, op: Op) -> None:
        found = self._message_row(target)
        if found is not None:
            self.db.execute(
                "UPDATE messages SET deleted = 1"
                " WHERE hlc = ? AND author = ? AND seq = ? AND id = ?",
                found[0],
            )

    def _reaction(self, target: bytes, slot: tuple[bytes, str]) -> tuple[SortKey, bool] | None:
        row = self.db.execute(
            "SELECT hlc, seq, id, present FROM reactions"
            " WHERE target = ? AND author = ? AND emoji = ?",
            (target, *slot),
        ).fetchone()
        if row is None:
            return None
        return (row[0] + SHIFT, slot[0], row[1], bytes(row[2])), bool(row[3])

    def _set_reaction(self, target: bytes, slot: tuple[bytes, str], op: Op, present: bool) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO reactions (target, author, emoji, hlc, seq, id, present)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (target, slot[0], slot[1], op.hlc - SHIFT, op.seq, op.id, int(present)),
        )
        found = self._message_row(target)
        if found is not None and not found[1][2]:
            self.db.execute(
                "UPDATE messages SET reacted = 1"
                " WHERE hlc = ? AND author = ? AND seq = ? AND id = ?",
                found[0],
            )

    def _set_register(self, op: Op) -> None:
        reg = Kind.JOIN if op.kind in (Kind.JOIN, Kind.LEAVE) else op.kind
        who = b"" if op.kind == Kind.TOPIC else op.author
        self.db.execute(
            "INSERT OR REPLACE INTO registers (reg, who, author, kind, hlc, seq, id, n)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (int(reg), who, op.author, op.kind, op.hlc - SHIFT, op.seq, op.id, self._n),
        )


class StoredReplica:
    """The read side of a stored room (the node's `history.replica`), on the trio thread.

    Per-author figures come from the applier's last published summary; ops and messages
    from indexed reads of the committed tables. `timeline()`, `ops()` and `render()` read
    the whole room: for tests and small rooms; the UI reads `page()`.
    """

    def __init__(self, applier: Applier, store: Store) -> None:
        self.room = applier.room
        self.identity = applier.identity
        self.clock = applier.clock
        self._applier = applier
        self._store = store
        self._db = store.reader
        self._summary = applier.summary()
        # Called with the row of each damaged op a read comes across (History sets it
        # aside through the writer).
        self.on_damage: Callable[[int], None] | None = None

    def install(self, summary: Summary) -> None:
        self._summary = summary

    @property
    def damaged(self) -> int:
        """Stored ops found damaged and set aside (they are fetched again from peers)."""
        return self._summary.damaged

    def _damage(self, n: int) -> None:
        if self.on_damage is not None:
            self.on_damage(n)

    def _rows(self, query: str, args: Iterable[Any] = ()) -> list[Any]:
        with self._store.guard():
            return self._db.execute(query, tuple(args)).fetchall()

    def _load(self, n: int, op_id: object, data: object) -> Op | None:
        op = load_op(bytes(op_id), data) if isinstance(op_id, bytes) else None
        if op is None:
            self._damage(n)
        return op

    # -- screening (for History.ingest) ---------------------------------------------------

    def known(self, ids: list[bytes]) -> set[bytes]:
        """Which of `ids` are stored here (committed, in effect or held)."""
        found: set[bytes] = set()
        for at in range(0, len(ids), 500):
            part = ids[at : at + 500]
            marks = ",".join("?" * len(part))
            for table in ("ops", "held"):
                found.update(
                    bytes(row[0])
                    for row in self._rows(f"SELECT id FROM {table} WHERE id IN ({marks})", part)
                )
        return found

    def check_unknown(self, op: Op, *, now_ms: int | None = None) -> ApplyResult | None:
        return self._applier.check_unknown(op, now_ms=now_ms)

    # -- per author -----------------------------------------------------------------------

    def version_vector(self) -> dict[bytes, int]:
        """Per author, the highest seq up to which every op has taken effect here (and is
        sound on disk: a damaged op lowers it until the op is fetched again)."""
        return dict(self._summary.vector)

    def head(self, author: bytes) -> int:
        return self._summary.heads.get(author, 0)

    def fork_seq(self, author: bytes) -> int | None:
        return self._summary.forks.get(author)

    def forked_authors(self) -> list[bytes]:
        return sorted(self._summary.forks)

    @property
    def held_count(self) -> int:
        return self._summary.held

    def __len__(self) -> int:
        """Accepted ops, held ones included."""
        return self._summary.ops + self._summary.held

    @property
    def message_count(self) -> int:
        """Messages in the timeline, deleted ones included."""
        return self._summary.messages

    @property
    def topic(self) -> str:
        return self._summary.topic

    def nicknames(self) -> dict[bytes, str]:
        return dict(self._summary.nicks)

    def nick(self, author: bytes) -> str | None:
        return self._summary.nicks.get(author)

    def members(self) -> list[bytes]:
        return list(self._summary.members)

    # -- ops ------------------------------------------------------------------------------

    def get(self, op_id: bytes) -> Op | None:
        rows = self._rows("SELECT n, data FROM ops WHERE id = ?", (op_id,))
        if rows:
            return self._load(rows[0][0], op_id, rows[0][1])
        held = self._applier._held_ops.get(op_id)
        if held is not None:
            return held
        rows = self._rows("SELECT data FROM held WHERE id = ?", (op_id,))
        return load_op(op_id, rows[0][0]) if rows else None

    def in_effect(self, op_id: bytes) -> bool:
        return bool(self._rows("SELECT 1 FROM ops WHERE id = ?", (op_id,)))

    def __contains__(self, op_id: object) -> bool:
        if not isinstance(op_id, bytes):
            return False
        return bool(self.known([op_id]))

    def ops(self) -> list[Op]:
        """Every accepted op, held ones included (reads the whole room)."""
        found = []
        for n, op_id, data in self._rows("SELECT n, id, data FROM ops ORDER BY n"):
            op = self._load(n, op_id, data)
            if op is not None:
                found.append(op)
        for op_id, data in self._rows("SELECT id, data FROM held"):
            op = load_op(bytes(op_id), data)
            if op is not None:
                found.append(op)
        return found

    def _chain_rows(self, a: int, after: int, forked: bool) -> Iterator[tuple[int, Any, Any]]:
        """(n, id, data) of author `a`'s ops with seq > `after`, in the order they took
        effect, read a page at a time (pages double: a sync batch takes a few hundred ops
        of a room that may hold millions)."""
        if forked:  # twins break seq order; forks are rare
            yield from sorted(
                self._rows("SELECT n, id, data FROM ops WHERE a = ? AND seq > ?", (a, after))
            )
            return
        size = PAGE_FIRST
        while True:
            rows = self._rows(
                "SELECT n, id, data, seq FROM ops WHERE a = ? AND seq > ? ORDER BY seq LIMIT ?",
                (a, after, size),
            )
            for n, op_id, data, _ in rows:
                yield n, op_id, data
            if len(rows) < size:
                return
            after = rows[-1][3]
            size = min(size * 2, PAGE_MOST)

    def _merged(self, runs: list[Iterator[tuple[int, Any, Any]]], limit: int | None) -> list[Op]:
        found: list[Op] = []
        for n, op_id, data in heapq.merge(*runs, key=lambda row: row[0]):
            op = self._load(n, op_id, data)
            if op is not None:
                found.append(op)
                if limit is not None and len(found) >= limit:
                    break
        return found

    def missing_for(
        self, version_vector: Mapping[bytes, int], limit: int | None = None
    ) -> list[Op]:
        """The ops in effect here beyond `version_vector`, in the order they took effect
        (each after its chain predecessor and its target). Costs what is taken, not the
        size of the room."""
        summary = self._summary
        runs = []
        for author, head in summary.heads.items():
            have = max(0, version_vector.get(author, 0))
            if head > have:
                a = summary.authors[author]
                runs.append(self._chain_rows(a, have, author in summary.forks))
        return self._merged(runs, limit)

    def fork_ops(self, limit: int | None = None) -> list[Op]:
        """Every op of a forked chain from its first fork on, in the order they took effect."""
        summary = self._summary
        runs = [
            self._chain_rows(summary.authors[author], first - 1, True)
            for author, first in summary.forks.items()
        ]
        return self._merged(runs, limit)

    # -- messages -------------------------------------------------------------------------

    _SELECT = (
        "SELECT m.n, m.id, m.deleted, m.reacted, o.data, m.edit, e.id, e.data"
        " FROM messages m LEFT JOIN ops o ON o.n = m.n LEFT JOIN ops e ON e.n = m.edit"
    )

    def _messages(self, rows: list[Any]) -> list[Message]:
        shown: list[Message] = []
        for n, op_id, deleted, reacted, data, edit_n, edit_id, edit_data in rows:
            if data is None:
                continue  # set aside as damaged: shown again once healed
            op = self._load(n, op_id, data)
            if op is None:
                continue
            text = op.body[0]
            if edit_n is not None:
                if edit_data is None:
                    continue
                edit = self._load(edit_n, edit_id, edit_data)
                if edit is None:
                    continue
                text = edit.body[1]
            reactions: tuple[tuple[str, tuple[bytes, ...]], ...] = ()
            if reacted and not deleted:
                by_emoji: dict[str, list[bytes]] = {}
                for author, emoji in self._rows(
                    "SELECT author, emoji FROM reactions WHERE target = ? AND present = 1",
                    (op.id,),
                ):
                    by_emoji.setdefault(emoji, []).append(bytes(author))
                reactions = tuple((e, tuple(sorted(a))) for e, a in sorted(by_emoji.items()))
            shown.append(
                Message(
                    id=op.id,
                    author=op.author,
                    seq=op.seq,
                    hlc=op.hlc,
                    text="" if deleted else text,
                    reply_to=op.body[1],
                    edited=edit_n is not None,
                    deleted=bool(deleted),
                    reactions=reactions,
                )
            )
        return shown

    def timeline(self) -> list[Message]:
        """Every message in (hlc, author, seq) order (reads the whole room)."""
        order = " ORDER BY m.hlc, m.author, m.seq, m.id"
        return self._messages(self._rows(self._SELECT + order))

    def page(
        self, *, before: bytes | None = None, before_ms: int | None = None, limit: int = 100
    ) -> list[Message]:
        """Up to `limit` messages in timeline order: the newest older than message `before`
        (or than wall-clock time `before_ms`), else the newest of all. An unknown `before`
        gives none. An indexed range read: as fast deep in history as at its end."""
        order = " ORDER BY m.hlc DESC, m.author DESC, m.seq DESC, m.id DESC LIMIT ?"
        if before is not None:
            op = self._message_op(before)
            if op is None:
                return []
            rows = self._rows(
                self._SELECT + " WHERE (m.hlc, m.author, m.seq, m.id) < (?, ?, ?, ?)" + order,
                (op.hlc - SHIFT, op.author, op.seq, op.id, limit),
            )
        elif before_ms is not None:
            bound = make_hlc(before_ms) - SHIFT
            rows = self._rows(self._SELECT + " WHERE m.hlc < ?" + order, (bound, limit))
        else:
            rows = self._rows(self._SELECT + order, (limit,))
        rows.reverse()
        return self._messages(rows)

    def _message_op(self, op_id: bytes) -> Op | None:
        rows = self._rows("SELECT n, data FROM ops WHERE id = ?", (op_id,))
        if not rows:
            return None
        op = self._load(rows[0][0], op_id, rows[0][1])
        return op if op is not None and op.kind == Kind.MESSAGE else None

    def message(self, op_id: bytes) -> Message | None:
        op = self._message_op(op_id)
        if op is None:
            return None
        rows = self._rows(
            self._SELECT + " WHERE m.hlc = ? AND m.author = ? AND m.seq = ? AND m.id = ?",
            (op.hlc - SHIFT, op.author, op.seq, op.id),
        )
        shown = self._messages(rows)
        return shown[0] if shown else None

    # -- canonical form -------------------------------------------------------------------

    def render(self) -> bytes:
        """The views as canonical bytes, exactly as `Replica.render` makes them."""
        rendered: bytes = msgpack.packb(
            [
                self.room,
                [
                    [
                        m.id,
                        m.author,
                        m.seq,
                        m.hlc,
                        m.text,
                        m.reply_to,
                        m.edited,
                        m.deleted,
                        [[e, list(a)] for e, a in m.reactions],
                    ]
                    for m in self.timeline()
                ],
                self.topic,
                sorted(self.nicknames().items()),
                self.members(),
                self.forked_authors(),
                sorted(self.version_vector().items()),
            ]
        )
        return rendered
