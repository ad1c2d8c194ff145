"""The read side of a stored room: what the node, sync and the UI read, on the trio thread.

`StoredReplica` (the node's `history.replica`) answers per-author questions from the
`Summary` the applier published after its last commit, and everything else by indexed
reads of the committed tables through the store's read-only connection (in WAL mode it
sees the last commit and never waits for the writer).

It must never write: a damaged row it comes across is reported through `on_damage`, and
the writer sets it aside. Of the applier's in-memory state it reads only the published
summary, the held ops and the screening checks (`check_unknown`); and it never lets a raw
`sqlite3.Error` out (reads go through `Store.guard`).
"""

from __future__ import annotations

import heapq
from array import array
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from ._applier import SHIFT, Applier, Summary, load_op, tail_pairs
from ._hlc import make_hlc
from ._op import Kind, Op, stored_intact
from ._store import Store
from ._views import ApplyResult, Message, render_views

__all__ = ["SHIFT", "StoredReplica"]

PAGE_FIRST = 16  # rows a sync read takes per author at first; doubled as it goes on
PAGE_MOST = 512
# Read in effect order when the rows from the earliest missing op on are at most this many
# times the ops missing.
SCAN_SPAN = 4
SCAN_PAGE_MOST = 4096


_Row = tuple[int, Any, Any, int, int]  # an op's row: n, id, data, a (author number), seq


def _merge(runs: list[Iterator[_Row]]) -> Iterator[_Row]:
    """Rows of several runs, each in effect order, in effect order (one run as it is)."""
    return runs[0] if len(runs) == 1 else heapq.merge(*runs, key=_effect_index)


def _effect_index(row: _Row) -> int:
    return row[0]


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
        op = load_op(op_id, data) if type(op_id) is bytes else None
        if op is None:
            self._damage(n)
        return op

    # -- screening (for History.ingest) ---------------------------------------------------

    def known(self, ids: list[bytes]) -> set[bytes]:
        """Which of `ids` are stored here (committed, in effect or held)."""
        found: set[bytes] = set()
        pending = self._summary.pending
        rows: dict[int, bytes] = {}  # ids the writer holds in memory, by their row
        rest = []
        for op_id in ids:
            n = pending.get(op_id)
            if n is None:
                rest.append(op_id)
            else:
                rows[n] = op_id
        for part in _parts(list(rows)):
            query = f"SELECT n, id FROM ops WHERE n IN ({_marks(part)})"
            found.update(rows[n] for n, op_id in self._rows(query, part) if rows[n] == op_id)
        # Rows not committed yet may be in effect in the writer's open transaction only.
        rest.extend(op_id for op_id in rows.values() if op_id not in found)
        for part in _parts(rest):
            marks = _marks(part)
            for table in ("op_ids", "held"):
                found.update(
                    bytes(row[0])
                    for row in self._rows(f"SELECT id FROM {table} WHERE id IN ({marks})", part)
                )
        return found

    def known_ops(self, ops: list[Op]) -> set[bytes]:
        """Which of `ops` are stored here, as `known`, looking up only those that can be: an
        op beyond its author's committed head is not in effect, and unless ops are held it
        is not held either. (Ops committed since the summary are found by the applier.)"""
        heads = self._summary.heads
        if self._summary.held:
            return self.known([op.id for op in ops])
        return self.known([op.id for op in ops if op.seq <= heads.get(op.author, 0)])

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

    def _effect_row(self, op_id: bytes) -> tuple[int, Any] | None:
        """(row, bytes) of the op `op_id` if it is in effect and committed."""
        n = self._summary.pending.get(op_id)
        if n is not None:
            rows = self._rows("SELECT id, data FROM ops WHERE n = ?", (n,))
            if rows and rows[0][0] == op_id:
                return n, rows[0][1]
        rows = self._rows(
            "SELECT o.n, o.data FROM op_ids i JOIN ops o ON o.n = i.n WHERE i.id = ?", (op_id,)
        )
        return (rows[0][0], rows[0][1]) if rows else None

    def get(self, op_id: bytes) -> Op | None:
        row = self._effect_row(op_id)
        if row is not None:
            return self._load(row[0], op_id, row[1])
        held = self._applier._held_ops.get(op_id)
        if held is not None:
            return held
        rows = self._rows("SELECT data FROM held WHERE id = ?", (op_id,))
        return load_op(op_id, rows[0][0]) if rows else None

    def in_effect(self, op_id: bytes) -> bool:
        return self._effect_row(op_id) is not None

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

    def _tail(self, a: int, after: int, forked: bool) -> list[tuple[int, int]]:
        """(seq, row) of author `a`'s ops with seq > `after` not yet in `chain`, by seq
        (rows after the summary's may be listed, and rows of a transaction not committed
        yet). The writer only appends to a tail, or inserts a healed op at its old row,
        and drops it whole when it merges, so a copy of it is consistent."""
        if forked:  # twins break seq order; forks are rare
            flat = self._summary.tail.get(a, array("q"))[:]
            return sorted((seq, n) for seq, n in tail_pairs(flat) if seq > after)
        seqs, rows, start = self._unforked_tail(a, after)
        return list(zip(seqs[start:], rows[start:], strict=True))

    def _tail_first(self, a: int, after: int) -> tuple[int, int] | None:
        """The first entry of `_tail(a, after, False)`, without building the rest (a sync
        asks it of every author for every batch, and a tail may hold thousands)."""
        seqs, rows, start = self._unforked_tail(a, after)
        return (seqs[start], rows[start]) if start < len(seqs) else None

    def _unforked_tail(self, a: int, after: int) -> tuple[array[int], array[int], int]:
        """An unforked chain's tail (its seqs and rows, from one copy) and where the seqs
        above `after` start: such a chain takes effect in seq order, so its tail is in
        seq order too."""
        # One C-level copy: the writer extends the array while we read.
        flat = self._summary.tail.get(a, array("q"))[:]
        seqs = flat[0::2]
        return seqs, flat[1::2], bisect_right(seqs, after)

    def _rows_by_n(self, rows: list[int]) -> dict[int, _Row]:
        found: dict[int, _Row] = {}
        for part in _parts(rows):
            marks = _marks(part)
            for row in self._rows(
                f"SELECT n, id, data, a, seq FROM ops WHERE n IN ({marks})", part
            ):
                found[row[0]] = row
        return found

    def _rows_at(self, a: int, entries: list[tuple[int, int]]) -> list[_Row]:
        """The rows of tail `entries` of author `a`, in their order: those in this snapshot
        that are still the op listed."""
        found = self._rows_by_n([n for _, n in entries])
        return [
            row
            for seq, n in entries
            if (row := found.get(n)) is not None and row[3] == a and row[4] == seq
        ]

    _CHAIN = "SELECT o.n, o.id, o.data, o.a, o.seq FROM chain c JOIN ops o ON o.n = c.n"

    def _chain_rows(self, a: int, after: int, forked: bool) -> Iterator[_Row]:
        """(n, id, data, a, seq) of author `a`'s ops with seq > `after`, in the order they
        took effect, read a page at a time (pages double: a sync batch takes a few hundred
        ops of a room that may hold millions): from `chain`, then from the writer's tail."""
        if forked:  # twins break seq order; forks are rare
            rows = self._rows(self._CHAIN + " WHERE c.a = ? AND c.seq > ?", (a, after))
            merged = {row[0] for row in rows}  # merged since the summary: listed twice
            tail = self._tail(a, after, True)
            rows += [row for row in self._rows_at(a, tail) if row[0] not in merged]
            yield from sorted(rows)
            return
        size = PAGE_FIRST
        while True:
            rows = self._rows(
                self._CHAIN + " WHERE c.a = ? AND c.seq > ? ORDER BY c.seq LIMIT ?",
                (a, after, size),
            )
            yield from rows
            if len(rows) < size:
                break
            after = rows[-1][4]
            size = min(size * 2, PAGE_MOST)
        # An unforked chain's rows in `chain` come before its tail's, in seq as in effect
        # order; tail entries merged since the summary are at or below `after`.
        tail = self._tail(a, after, False)
        for at in range(0, len(tail), PAGE_MOST):
            yield from self._rows_at(a, tail[at : at + PAGE_MOST])

    def _first_rows(self, lacking: dict[int, int]) -> list[int]:
        """The row of each author's first op beyond `lacking` (unforked chains): the op at
        the next seq, found for every author at once in `chain`, else first in the tail;
        a chain with a gap there (an op set aside as damaged) is asked on its own."""
        found: dict[int, int] = {}
        pairs = [(a, have + 1) for a, have in lacking.items()]
        for at in range(0, len(pairs), 400):
            part = pairs[at : at + 400]
            values = ",".join("(?, ?)" for _ in part)
            args = [value for pair in part for value in pair]
            for a, n in self._rows(
                "SELECT a, n FROM chain WHERE (a, seq) IN"
                f" (SELECT column1, column2 FROM (VALUES {values}))",
                args,
            ):
                found[a] = min(n, found.get(a, n))
        in_tail: dict[int, tuple[int, int]] = {}  # author -> (seq, row) at the next seq
        for a, have in lacking.items():
            if a not in found:
                entry = self._tail_first(a, have)
                if entry is not None and entry[0] == have + 1:
                    in_tail[a] = entry
        rows = self._rows_by_n([n for _, n in in_tail.values()])
        for a, (seq, n) in in_tail.items():
            row = rows.get(n)
            if row is not None and row[3] == a and row[4] == seq:
                found[a] = n
        for a, have in lacking.items():
            if a not in found:
                first = next(self._chain_rows(a, have, False), None)
                if first is not None:
                    found[a] = first[0]
        return list(found.values())

    def _merged(self, runs: list[Iterator[_Row]], limit: int | None) -> list[Op]:
        found: list[Op] = []
        for n, op_id, data, _, _ in _merge(runs):
            op = self._load(n, op_id, data)
            if op is None:
                continue
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
        runs, _ = self._missing_runs(version_vector, limit)
        return self._merged(runs, limit)

    def missing_wire(
        self, version_vector: Mapping[bytes, int], limit: int | None = None
    ) -> list[tuple[bytes, int, bytes]]:
        """`missing_for` as (author, seq, wire form): all a catch-up batch sends. Each op's
        bytes are checked against its id (a damaged one is reported and left out, as
        `missing_for` does) but not decoded: a sync reads the whole room through here."""
        runs, keys = self._missing_runs(version_vector, limit)
        found: list[tuple[bytes, int, bytes]] = []
        for n, op_id, data, a, seq in _merge(runs):
            if not stored_intact(op_id, data):
                self._damage(n)
                continue
            found.append((keys[a], seq, data))
            if limit is not None and len(found) >= limit:
                break
        return found

    def _missing_runs(
        self, version_vector: Mapping[bytes, int], limit: int | None
    ) -> tuple[list[Iterator[_Row]], dict[int, bytes]]:
        """The runs of rows `missing_for` merges, and the authors' keys by number."""
        summary = self._summary
        lacking: dict[int, int] = {}  # author number -> seq it has, for unforked chains
        runs = []
        keys: dict[int, bytes] = {}
        missing = 0
        for author, head in summary.heads.items():
            have = max(0, version_vector.get(author, 0))
            if head > have:
                a = summary.authors[author]
                keys[a] = author
                missing += head - have
                if author in summary.forks:
                    runs.append(self._chain_rows(a, have, True))
                else:
                    lacking[a] = have
        if lacking:
            runs.append(self._lacking_rows(lacking, missing, limit))
        return runs, keys

    def _lacking_rows(
        self, lacking: dict[int, int], missing: int, limit: int | None
    ) -> Iterator[_Row]:
        """(n, id, data, a, seq) of the unforked chains' ops beyond `lacking`, in the order
        they took effect. Each author's missing ops are the tail of its chain in that order,
        so when they make up most of the room from the earliest of them on (a node joining
        or back from a long absence) one read in effect order takes them with little to
        skip; otherwise each chain is read on its own and the runs are merged."""
        starts = self._first_rows(lacking)
        if not starts:
            return
        start = min(starts)
        span = max(1, self._summary.ops - start)
        if span > SCAN_SPAN * missing:
            yield from _merge([self._chain_rows(a, have, False) for a, have in lacking.items()])
            return
        # The first page holds about what `limit` takes, at the expected share of rows taken.
        wanted = missing if limit is None else min(limit, missing)
        size = min(max(wanted * span // missing + PAGE_FIRST, PAGE_FIRST), SCAN_PAGE_MOST)
        while True:
            rows = self._rows(
                "SELECT n, id, data, a, seq FROM ops WHERE n >= ? ORDER BY n LIMIT ?",
                (start, size),
            )
            for row in rows:
                if row[4] > lacking.get(row[3], row[4]):
                    yield row
            if len(rows) < size:
                return
            start = rows[-1][0] + 1
            size = min(size * 2, SCAN_PAGE_MOST)

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
        row = self._effect_row(op_id)
        if row is None:
            return None
        op = self._load(row[0], op_id, row[1])
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
        return render_views(self)


def _parts(items: list[Any], size: int = 500) -> Iterator[list[Any]]:
    """`items` in lists of at most `size` (the parameters of one SQL statement), each
    padded to a power of two (or `size`) by repeating its last item, for `_marks`."""
    for at in range(0, len(items), size):
        part = items[at : at + size]
        width = min(size, 1 << (len(part) - 1).bit_length())
        part.extend(part[-1:] * (width - len(part)))
        yield part


def _marks(part: list[Any]) -> str:
    """The `?, ?, ...` of an `IN (...)` list for `part`. The connection caches each
    statement text it prepares (128 of them): one text per list length made each new
    length a new statement, prepared and cached beside the others; padded to a few
    lengths by `_parts` (a repeated item matches the same rows), each query has ten
    texts at most (measured at 100 nodes: 290 to 279 KiB of statements a node)."""
    return ",".join("?" * len(part))
