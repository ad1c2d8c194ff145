"""The writer's side of a stored room: the replica's rules over the store's tables.

`Applier` is a `Replica` whose state hooks read and write the store's tables (ops in
effect, held ops, chains, the timeline, edits, deletes, reactions, registers) instead of
dicts, so the views follow the very same rules as the in-memory `Replica`. In memory it
keeps only what is per author (chain heads, forks, gaps left by damaged rows, the
registers) and the held ops (bounded). After each transaction it publishes a `Summary`
of that per-author state for the read side (`crdt._stored`).

It must never run outside the store's write transactions (on the writer's thread): every
hook assumes the open transaction, and the views are updated in the same transaction as
the op. It must never be read from the trio thread except through its `Summary`.

Bulk writes: the rows of ops and messages that take effect are kept in lists and written
with one statement per table (`flush`), which must run before any read of those tables
(every hook that reads them calls it) and before the commit (the store's `before_commit`).
An op beyond its author's chain head is new without a lookup: every op in the ops table
has a seq up to its author's head.

Ids and chains: an op is found by id in `op_ids`, and by (author, seq) in `chain`, if its
row is at or before `through`; else in `pending` and `tail` (in memory: every ops row
after `through`, rebuilt from the table on load). They are merged into the tables in one
sorted write once they are many (`MERGE_*`): ids are hashes, so an index written op by op
takes a random page write per op, and a chain index a page write per author a commit
touches; a sorted merge of up to half the room writes each page about once.

Damage: every op read back is decoded and its bytes hashed against its id. A row that
fails is never shown: it is moved to the `quarantine` table (never deleted), counted, and
its (author, seq) becomes a gap that lowers that author's version vector entry, so sync
fetches the op again; when the genuine op comes back it takes its old place (its old
effect index) and the gap closes. The views were built with the op in place, so nothing
else has to change.
"""

from __future__ import annotations

import logging
import sqlite3
from array import array
from bisect import bisect_left
from collections.abc import Iterator, Mapping
from collections.abc import Set as AbstractSet
from contextlib import suppress
from dataclasses import dataclass
from itertools import islice
from types import MappingProxyType
from typing import Any

from ._bulk import insert_rows
from ._hlc import HLC
from ._identity import Identity
from ._op import Kind, Op, decode_stored
from ._replica import Replica, SortKey
from ._store import StoreError
from ._views import AuthorForked, Change

__all__ = ["SHIFT", "Applier", "Summary", "load_op", "tail_pairs"]

log = logging.getLogger("crdt.store")

SHIFT = 1 << 63  # hlc is an unsigned 64-bit number; SQLite integers are signed
RECENT = 1024  # ops that took effect lately, kept decoded (the latest 768-1024): most lookups
MERGE_LEAST = 4096  # pending ids merged into op_ids at once: at least this many,
MERGE_PART = 2  # and at least this part of the ops in effect (a merge rewrites op_ids),
MERGE_MOST = 65536  # and at most this many (about 10 MiB of memory, ids and chains)
_PARTS = ("topic", "forks", "nicks", "members", "authors")  # of a summary, rebuilt apart
_INSERT_OP = "INSERT INTO ops (n, id, a, seq, data)"
_INSERT_MESSAGE = "INSERT OR IGNORE INTO messages (hlc, author, seq, id, n)"


def tail_pairs(tail: array[int]) -> Iterator[tuple[int, int]]:
    """(seq, row) of each entry of a chain tail (a flat array: seq, row, seq, row, ...)."""
    return zip(tail[0::2], tail[1::2], strict=True)


def load_op(op_id: bytes, data: object) -> Op | None:
    """The op stored as `data` under `op_id`, or None if the bytes are damaged (they no
    longer hash to the id)."""
    if not isinstance(data, bytes):
        return None
    return decode_stored(op_id, data)


_NO_FORKS: frozenset[int] = frozenset()
_NO_GAPS: Mapping[int, bytes] = MappingProxyType({})


class _Head:
    """One author's chain, as far as sync and authoring need it. A room holds one per
    member in every node, so the forks and gaps (nearly always none) are shared empty
    constants until the first is added: an empty set and dict took 280 bytes an author."""

    __slots__ = ("a", "forks", "gaps", "head", "head_hlc", "head_id")

    def __init__(self, a: int) -> None:
        self.a = a
        self.head = 0  # every seq 1..head took effect
        self.head_id: bytes | None = None  # the first op that took effect at head
        self.head_hlc = 0
        self.forks: AbstractSet[int] = _NO_FORKS
        self.gaps: Mapping[int, bytes] = _NO_GAPS  # seq -> id of an op in effect set aside

    def add_fork(self, seq: int) -> None:
        self.forks = self.forks | {seq}

    def add_gap(self, seq: int, op_id: bytes) -> None:
        self.gaps = {**self.gaps, seq: op_id}

    def close_gap(self, seq: int) -> None:
        gaps = {s: i for s, i in self.gaps.items() if s != seq}
        self.gaps = gaps or _NO_GAPS


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
    # The ids of ops in effect not yet in op_ids, and their rows. The writer keeps adding to
    # this dict (and starts a new one when it merges): read it only with `get`, and check
    # the row, since it may hold ops of a transaction not yet committed.
    pending: dict[bytes, int]
    # The same rows by author number, not yet in `chain`: seq, row, seq, row, ... in row
    # (effect) order. The writer extends these arrays in place (a pair in one
    # call): copy one before reading it, and check the rows, as for `pending`.
    tail: dict[int, array[int]]


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
        # id -> op, oldest first: a plain dict of the ops alone (an OrderedDict of (op, row)
        # pairs, the row never read, took some 140 bytes more an entry, and a busy room
        # keeps `RECENT` of them in every node)
        self._recent: dict[bytes, Op] = {}
        self._n = 0  # the effect index (row) of the op taking effect now
        # Rows of ops and messages that took effect in this transaction and are not yet
        # written: written together (`flush`) before any read of those tables and before
        # the commit.
        # Rows waiting for `flush`, flat (see `insert_rows`): (n, id, a, seq, data) and
        # (hlc, author, seq, id, n), one after the other.
        self._op_rows: list[Any] = []
        self._message_rows: list[Any] = []
        self._pending: dict[bytes, int] = {}  # id -> row, for every ops row after _through
        self._tail: dict[int, array[int]] = {}  # author number -> seq, row, ... (the same)
        self._through = -1
        self._restoring = False
        self._ops_count = 0
        self._messages = 0
        self.damaged = 0  # rows set aside this run, and before (from the quarantine table)
        # What `summary` publishes, kept up to date as ops take effect, so that a commit
        # costs what changed, not the room's number of authors: head seqs (copied whole,
        # a C-level copy), and the parts that change rarely, rebuilt only when they did.
        self._head_seqs: dict[bytes, int] = {}
        self._gapped = 0  # authors with gaps (their vector entry is below their head)
        # The parts of the summary that changed since the last one (each rebuilt alone:
        # a room forming commits a member's JOIN or NICK in most transactions).
        self._stale: set[str] = set(_PARTS)
        self._published: Summary | None = None
        # The members in order and their nicks, kept as registers change: a summary
        # copies them (C-level copies), where sorting and filtering the registers cost
        # O(authors) in Python per transaction that changed one.
        self._members: list[bytes] = []
        self._nick_texts: dict[bytes, str] = {}

    # -- loading --------------------------------------------------------------------------

    def load(self) -> None:
        """(Re)build the in-memory part from the tables: on open, and after a rollback."""
        db = self.db
        self._op_rows.clear()
        self._message_rows.clear()
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
            self._head_of(a).add_fork(seq)
        for a, seq, op_id in db.execute(
            "SELECT a, seq, id FROM quarantine WHERE held = 0 AND healed = 0"
        ):
            if isinstance(a, int) and isinstance(seq, int) and isinstance(op_id, bytes):
                self._head_of(a).add_gap(seq, op_id)
        self.damaged = int(db.execute("SELECT count(*) FROM quarantine").fetchone()[0])
        last = db.execute(
            "SELECT max(coalesce((SELECT max(n) FROM ops), -1),"
            " coalesce((SELECT max(n) FROM quarantine), -1))"
        ).fetchone()[0]
        self._effects = int(last) + 1
        self._through = int(db.execute("SELECT n FROM op_ids_through").fetchone()[0])
        # Counted in `chain` (a row for every ops row up to `through`: far smaller than ops)
        # and in the rows after it: counting ops itself reads the whole table.
        self._ops_count = int(
            db.execute(
                "SELECT (SELECT count(*) FROM chain) + (SELECT count(*) FROM ops WHERE n > ?)",
                (self._through,),
            ).fetchone()[0]
        )
        # New dicts, never the old ones cleared: readers may still hold the old ones.
        self._pending = {}
        self._tail = {}
        for op_id, n, a, seq in db.execute(
            "SELECT id, n, a, seq FROM ops WHERE n > ? ORDER BY n", (self._through,)
        ):
            self._pending[bytes(op_id)] = n
            self._tail_of(a).extend((seq, n))
        self._messages = int(db.execute("SELECT count(*) FROM messages").fetchone()[0])
        for author, head in list(self._heads.items()):
            self._load_head(author, head)
        self._head_seqs = {author: head.head for author, head in self._heads.items()}
        self._gapped = sum(1 for head in self._heads.values() if head.gaps)
        self._stale = set(_PARTS)
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

    def _tail_of(self, a: int) -> array[int]:
        tail = self._tail.get(a)
        if tail is None:
            tail = self._tail[a] = array("q")
        return tail

    def _load_head(self, author: bytes, head: _Head) -> None:
        db = self.db
        tail = self._tail.get(head.a, array("q"))
        top = db.execute("SELECT max(seq) FROM chain WHERE a = ?", (head.a,)).fetchone()[0]
        head.head = max(int(top or 0), max(tail[0::2], default=0), max(head.gaps, default=0))
        while head.head:
            if head.head in head.gaps:
                head.head_id = head.gaps[head.head]
                head.head_hlc = 0
                return
            rows = [n for seq, n in tail_pairs(tail) if seq == head.head]
            rows += [
                n
                for (n,) in db.execute(
                    "SELECT n FROM chain WHERE a = ? AND seq = ? ORDER BY n LIMIT 1",
                    (head.a, head.head),
                )
            ]
            row = (
                db.execute("SELECT n, id, data FROM ops WHERE n = ?", (min(rows),)).fetchone()
                if rows
                else None
            )
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
        self._members = sorted(a for a, (_, joined) in self._membership.items() if joined)
        self._nick_texts = {a: nick for a, (_, nick) in self._nicks.items() if nick}

    def _op_at(self, n: int) -> Op | None:
        self.flush()
        row = self.db.execute("SELECT id, data FROM ops WHERE n = ?", (n,)).fetchone()
        if row is None:
            return None
        op = load_op(bytes(row[0]), row[1])
        if op is None:
            self._set_aside(n, "damaged")
        return op

    def summary(self) -> Summary:
        heads = dict(self._head_seqs)
        if self._gapped:
            vector = {
                author: min(head.gaps) - 1 if head.gaps else head.head
                for author, head in self._heads.items()
            }
        else:
            vector = heads  # published read-only: both may be the same dict
        last, stale = self._published, self._stale
        if last is None:
            stale = set(_PARTS)
        # Published parts are never changed afterwards: a changed part is a new copy.
        if "topic" in stale or last is None:
            topic = "" if self._topic is None else self._topic[1]
        else:
            topic = last.topic
        if "forks" in stale or last is None:
            forks = {a: min(h.forks) for a, h in self._heads.items() if h.forks}
        else:
            forks = last.forks
        nicks = dict(self._nick_texts) if "nicks" in stale or last is None else last.nicks
        members = list(self._members) if "members" in stale or last is None else last.members
        authors = dict(self._authors) if "authors" in stale or last is None else last.authors
        self._stale = set()
        self._published = Summary(
            authors=authors,
            heads=heads,
            vector=vector,
            forks=forks,
            ops=self._ops_count,
            held=len(self._held),
            messages=self._messages,
            topic=topic,
            nicks=nicks,
            members=members,
            damaged=self.damaged,
            pending=self._pending,
            tail=self._tail,
        )
        return self._published

    # -- damage ---------------------------------------------------------------------------

    def set_aside(self, n: int, reason: str = "damaged") -> bool:
        """Move the op row `n` to quarantine if it is (still) damaged; True if it was."""
        self.flush()
        row = self.db.execute("SELECT id, data FROM ops WHERE n = ?", (n,)).fetchone()
        if row is None or load_op(bytes(row[0]), row[1]) is not None:
            return False
        self._set_aside(n, reason)
        return True

    def _set_aside(self, n: int, reason: str) -> None:
        self.flush()
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
        op_id = bytes(op_id)
        if self._pending.get(op_id) == n:
            del self._pending[op_id]
            tail = self._tail.get(a)
            if tail is not None and n in tail[1::2]:
                at = 2 * tail[1::2].index(n)
                del tail[at : at + 2]  # one call: a reader copies the pairs whole
        else:
            db.execute("DELETE FROM op_ids WHERE id = ? AND n = ?", (op_id, n))
            db.execute("DELETE FROM chain WHERE a = ? AND seq = ? AND n = ?", (a, seq, n))
        self._recent.pop(op_id, None)
        self._ops_count -= 1
        self.damaged += 1
        # If the author number is damaged too there is nothing to ask peers for by seq.
        with suppress(StoreError):
            head = self._head_of(a)
            self._gapped += not head.gaps
            head.add_gap(seq, bytes(op_id))
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

    def flush(self) -> None:
        """Write the rows of ops that took effect since the last flush (one statement per
        table, not one per op). Run before any read of those tables, and before commit."""
        if self._op_rows:
            db = self.db
            insert_rows(db, _INSERT_OP, 5, self._op_rows)
            self._messages += insert_rows(db, _INSERT_MESSAGE, 5, self._message_rows)
            self._op_rows.clear()
            self._message_rows.clear()

    def before_commit(self) -> None:
        """Write what is buffered, and merge the pending ids once they are many."""
        self.flush()
        if len(self._pending) >= max(MERGE_LEAST, min(MERGE_MOST, self._ops_count // MERGE_PART)):
            self.merge_ids()

    def merge_ids(self) -> None:
        """Move every pending id into op_ids, in id order, and every chain entry of the
        tail into chain, in (author, seq) order (each index page written once)."""
        self.flush()
        # Flat rows, made without a tuple each (see `crdt._bulk`).
        pending = self._pending
        ids: list[Any] = []
        for op_id in sorted(pending):
            ids += (op_id, pending[op_id])
        # An id already there is the same op (ids are hashes): keep its first row.
        insert_rows(self.db, "INSERT OR IGNORE INTO op_ids (id, n)", 2, ids)
        chains: list[int] = []
        for a in sorted(self._tail):
            tail = self._tail[a]
            pairs = tail_pairs(tail)
            if any(tail[i] > tail[i + 2] for i in range(0, len(tail) - 2, 2)):
                pairs = iter(sorted(pairs))  # a forked chain's rows are not in seq order
            for seq, n in pairs:
                chains += (a, seq, n)
        insert_rows(self.db, "INSERT OR IGNORE INTO chain (a, seq, n)", 3, chains)
        # Every row up to the last effect index given out is now in op_ids and chain (or
        # set aside).
        self._through = self._effects - 1
        self.db.execute("UPDATE op_ids_through SET n = ?", (self._through,))
        self._pending = {}
        self._tail = {}

    def _known(self, op_id: bytes) -> bool:
        if op_id in self._held or op_id in self._recent or op_id in self._pending:
            return True
        row = self.db.execute("SELECT 1 FROM op_ids WHERE id = ?", (op_id,)).fetchone()
        return row is not None

    def _known_op(self, op: Op) -> bool:
        head = self._heads.get(op.author)
        if head is None or op.seq > head.head:
            # Every op of a chain in the ops table has a seq up to its head: no lookup.
            return op.id in self._held
        return self._known(op.id)

    def _find(self, op_id: bytes) -> Op | None:
        op = self._held_ops.get(op_id)
        if op is not None:
            return op
        recent = self._recent.get(op_id)
        if recent is not None:
            return recent
        n = self._pending.get(op_id)
        if n is None:
            found = self.db.execute("SELECT n FROM op_ids WHERE id = ?", (op_id,)).fetchone()
            if found is None:
                return None
            n = int(found[0])
        self.flush()  # its row may still be buffered
        row = self.db.execute("SELECT n, data FROM ops WHERE n = ?", (n,)).fetchone()
        if row is None:
            return None
        op = load_op(op_id, row[1])
        if op is None:
            self._set_aside(int(row[0]), "damaged")
            return None
        self._remember(op)
        return op

    def _remember(self, op: Op) -> None:
        self._recent[op.id] = op
        if len(self._recent) > RECENT:
            # The oldest quarter goes at once. Deleting the oldest key one at a time
            # leaves dead slots at the front of the dict that every later lookup of its
            # first key walks again (CPython keeps no index of the first live one): half
            # a microsecond an op at this size. A new dict has none.
            self._recent = dict(islice(self._recent.items(), RECENT // 4, None))

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
            self._head_seqs[author] = 0
            self._stale.add("authors")
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
                head.close_gap(op.seq)
                self._gapped -= not head.gaps
                self._restoring = True
                log.warning("%s: op %s healed from a peer", self.path, op.id.hex()[:16])
        self._op_rows += (n, op.id, head.a, op.seq, op.data)
        if n > self._through:
            self._pending[op.id] = n
            tail = self._tail_of(head.a)
            if tail and tail[-1] > n:  # healed in its old place: keep the tail in row order
                at = 2 * bisect_left(tail[1::2], n)
                tail[at:at] = array("q", (op.seq, n))  # one call, as `extend`
            else:
                tail.extend((op.seq, n))
        else:  # healed in its old place, among merged rows
            db.execute("INSERT OR IGNORE INTO op_ids (id, n) VALUES (?, ?)", (op.id, n))
            db.execute(
                "INSERT OR IGNORE INTO chain (a, seq, n) VALUES (?, ?, ?)", (head.a, op.seq, n)
            )
        if was_held:
            db.execute("DELETE FROM held WHERE id = ?", (op.id,))
        self._n = n
        self._ops_count += 1
        self._remember(op)

    def _extend_chain(self, op: Op, index: int, changes: list[Change]) -> None:
        head = self._heads[op.author]
        if self._restoring:
            self._restoring = False
            return
        if op.seq <= head.head:
            if op.seq not in head.forks:
                head.add_fork(op.seq)
                self._stale.add("forks")
                self.db.execute("INSERT INTO forks (a, seq) VALUES (?, ?)", (head.a, op.seq))
                changes.append(AuthorForked(op.author, op.seq))
        else:
            head.head, head.head_id, head.head_hlc = op.seq, op.id, op.hlc
            self._head_seqs[op.author] = op.seq

    def _head_op(self, author: bytes) -> tuple[int, bytes | None, int]:
        head = self._heads.get(author)
        if head is None:
            return 0, None, 0
        return head.head, head.head_id, head.head_hlc

    def _add_message(self, op: Op) -> None:
        self._message_rows += (op.hlc - SHIFT, op.author, op.seq, op.id, self._n)

    def _message_row(self, target: bytes) -> tuple[tuple[int, bytes, int, bytes], Any] | None:
        op = self._find(target)
        if op is None:
            return None
        self.flush()
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
        author = op.author
        if op.kind == Kind.TOPIC:
            self._stale.add("topic")
        elif op.kind == Kind.NICK:
            self._stale.add("nicks")
            nick = self._nicks[author][1]
            if nick:
                self._nick_texts[author] = nick
            else:
                self._nick_texts.pop(author, None)
        else:  # JOIN or LEAVE: the membership register just set
            self._stale.add("members")
            members, joined = self._members, self._membership[author][1]
            at = bisect_left(members, author)
            present = at < len(members) and members[at] == author
            if joined and not present:
                members.insert(at, author)
            elif present and not joined:
                del members[at]
        reg = Kind.JOIN if op.kind in (Kind.JOIN, Kind.LEAVE) else op.kind
        who = b"" if op.kind == Kind.TOPIC else op.author
        self.db.execute(
            "INSERT OR REPLACE INTO registers (reg, who, author, kind, hlc, seq, id, n)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (int(reg), who, op.author, op.kind, op.hlc - SHIFT, op.seq, op.id, self._n),
        )
