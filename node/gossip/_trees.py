"""One Plumtree tree per author (Plumtree §3.8: a tree per source), grown by the receivers.

Per author, each node keeps its parent: the peer it asked (GRAFT) to push it that
author's ops. Nobody else pushes them, so past the first each op reaches each node about
once:

- An author new to a node (no op of it forwarded yet, or the first less than
  `graft_window` ago) has no tree there: its ops go to every peer of their author and
  along the thin eager core (each node asks a few peers, `eager_peers`, to push it such
  ops), and are announced (IHAVE) on every other link at once. The copy that arrives
  first, pushed or pulled after its IHAVE, makes its sender the parent, and we graft the
  author on it. The other copies need no PRUNE: their senders push that author no further.
- A parent is replaced (graft the new one, prune the old one, for that author only) when
  another peer proves faster: its IHAVE or its push beat the parent's push by
  `reroute_margin`, or the parent's push did not come in time and we pulled the op from
  its announcer. That keeps each tree near the fastest paths from its author as links come, go and
  slow down, without a repair storm: each node decides for itself.
- When a parent's link closes, its authors go to their runner-ups: peers that held one
  of their ops before we had forwarded it, so upstream of us (never a peer that may have
  had it from us: that would close a cycle the author's ops never enter). That runner-up
  (or the spare taken for want of one) is a stand-in: when the old parent's link comes
  back (a restart, a network blip) the author goes back to it, unless a race has
  picked another parent meanwhile. Churn otherwise leaves each tree a little longer at
  every departure, as stand-ins seldom lie on the fastest path.
- A peer pushing an author we never asked it for (past the first op and the window) or
  after we pruned it is pruned (again).

Pure: peers, ops and `now` in; the grafts and prunes to send out. It never reads a clock,
never sends anything itself and never touches IO.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass, field

from crdt import Op

from ._pulls import Announced

__all__ = ["RECENT_OPS", "Reshape", "Trees"]

RECENT_OPS = 4096  # ops whose author we remember, to tell whose op a late IHAVE announces
REPRUNE = 1.0  # a pruned peer still pushing is pruned again only after this long
RECENT_PER_AUTHOR = 4  # an author's latest ops we forwarded, for a peer that grafts it


@dataclass(slots=True)
class Reshape:
    """What to tell peers: push me these authors' ops (GRAFT), or stop (PRUNE)."""

    grafts: dict[bytes, list[bytes]] = field(default_factory=dict)  # peer -> authors
    prunes: dict[bytes, list[bytes]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.grafts or self.prunes)


@dataclass(slots=True)
class _First:
    seq: int  # the author's latest op pushed to us
    peer: bytes  # who pushed it first
    at: float  # and when


class Trees:
    """The parents of one room's per-author trees, as this node sees them."""

    def __init__(
        self,
        margin: float,
        window: float,
        stall: float,
        is_child: Callable[[bytes, bytes], bool],
    ) -> None:
        self.margin = margin
        self.window = window
        # A parent whose push came this much or more after another peer's copy may have
        # stalled (a lost message held its link up): it goes only if that happens twice
        # in a row. An op we had to pull moves its author at once: the parent may be cut
        # off from the author (a cycle), and waiting for a second pull costs more.
        self.stall = stall
        self._strikes: set[bytes] = set()  # authors whose parent stalled once
        # is_child(peer, author): `peer` grafted `author` on us. It gets that author's
        # ops from us, so making it the author's parent here would close a cycle.
        self.is_child = is_child
        self._parent: dict[bytes, bytes] = {}  # author -> the peer that pushes us its ops
        self._cut: dict[bytes, dict[bytes, float]] = {}  # author -> peers we pruned, when
        self._first: dict[bytes, _First] = {}  # author -> its latest op's first push
        self._backup: dict[bytes, bytes] = {}  # author -> the runner-up to its parent
        # author -> peers that announced its ops only after we forwarded them: they may
        # have them from us, and are not grafted on while another peer will do
        # (tuples, not sets: a node holds one per author, and a set of one took 216 bytes)
        self._below: dict[bytes, tuple[bytes, ...]] = {}
        self._recent: dict[bytes, bytes] = {}  # op id -> author, for the latest ops
        # author -> its latest ops we forwarded, flat: op id, seq, when, op id, seq, when,
        # ... (one tuple an author, not a list of tuples: some 200 bytes less an author)
        self._latest: dict[bytes, tuple[bytes | int | float, ...]] = {}
        # author -> the first op of it we forwarded: its seq, and when
        self._start: dict[bytes, tuple[int, float]] = {}
        self._own: set[bytes] = set()  # authors we are (our ops need no parent)
        # author -> the parent it had when that parent's link closed, while its parent
        # is a stand-in (a runner-up or spare picked then, or the first link back): a
        # parent was picked by a race its copies won, a stand-in was not, so when the
        # old parent's link comes back (a restart, a blip) the author goes back to it.
        self._lost: dict[bytes, bytes] = {}
        self._standin: set[bytes] = set()  # authors whose parent is such a stand-in
        # route(author, old): the peer whose path from `author` is shortest, now that its
        # parent `old` is gone (`_routes.py`), if distances know one.
        self.route: Callable[[bytes, bytes], bytes | None] | None = None

    def parent(self, author: bytes) -> bytes | None:
        return self._parent.get(author)

    def is_new(self, author: bytes, now: float) -> bool:
        """Whether `author` has no tree through us yet: we forwarded no op of it, or the
        first less than `window` ago, and the grafts it brings may still be on their way
        (a burst of ops). Its ops go along the thin eager core meanwhile."""
        start = self._start.get(author)
        return start is None or now < start[1] + self.window

    def forwarded(self, op: Op, now: float, *, own: bool = False) -> None:
        """We forwarded `op` at `now` (`own`: we authored it)."""
        if own:
            self._own.add(op.author)
        self._start.setdefault(op.author, (op.seq, now))
        self._recent[op.id] = op.author
        if len(self._recent) > RECENT_OPS:
            del self._recent[next(iter(self._recent))]
        keep = 3 * (RECENT_PER_AUTHOR - 1)  # values of the ops kept beside this one
        kept = self._latest.get(op.author, ())[-keep:] if keep else ()
        self._latest[op.author] = (*kept, op.id, op.seq, now)

    def latest(self, author: bytes, since: float) -> list[tuple[bytes, int]]:
        """`author`'s ops we forwarded at `since` or later: (op id, seq), oldest first."""
        flat = iter(self._latest.get(author, ()))
        return [
            (i, seq)
            for i, seq, when in zip(flat, flat, flat, strict=True)
            if isinstance(i, bytes) and isinstance(seq, int) and float(when) >= since
        ]

    def runner_up(self, author: bytes, peer: bytes) -> None:
        """`peer` held an op of `author` before we had forwarded it (it announced the op
        while we lacked it or were still ingesting it): `peer` is upstream of us, the
        next fastest way the author's ops reach us, should the parent go. A peer that
        announces an op only after we forwarded it may have it from us (a descendant of
        ours in the author's tree), and grafting on a descendant closes a cycle that the
        author's ops never enter."""
        if self._parent.get(author) != peer and not self.is_child(peer, author):
            self._backup[author] = peer
            below = self._below.get(author)
            if below is not None and peer in below:
                rest = tuple(p for p in below if p != peer)
                if rest:
                    self._below[author] = rest
                else:
                    del self._below[author]

    def announced_late(self, peer: bytes, op_id: bytes) -> None:
        """`peer` announced an op after we forwarded it: it may be our descendant."""
        author = self._recent.get(op_id)
        if author is not None and self._backup.get(author) != peer:
            below = self._below.get(author, ())
            if peer not in below:
                self._below[author] = (*below, peer)

    def adopt_orphans(self, peer: bytes, live: Container[bytes], now: float) -> Reshape:
        """The link to `peer` came up: graft on it every author we have forwarded ops of
        and have no parent for (our links went down, or came up anew): their next ops
        are pushed to us at once, not each pulled after its IHAVE; a faster peer takes
        over once it shows. The authors it was parent of when its link closed, and that
        only a stand-in has fed since, go back to it (the stand-in is pruned)."""
        change = Reshape()
        for author in self._start:
            if author not in self._own and self._parent.get(author) not in live:
                self._adopt(author, peer, change, standin=True)
        back = [a for a, p in self._lost.items() if p == peer and a in self._standin]
        for author in back:
            if not self.is_child(peer, author):
                self._reroute(author, peer, now, change)
        return change

    def peer_down(
        self,
        peer: bytes,
        live: Container[bytes],
        spares: list[bytes],
        last: Sequence[bytes] = (),
    ) -> Reshape:
        """The link to `peer` closed: each author it was parent of moves to its runner-up,
        or to the first of `spares` it has none (a graft at once, not a pull per author
        once their next ops are announced); never to a child of ours for it, unless
        every peer left is one: then to the first of `last`, children that give way
        when their parent grafts the author on them (crossed grafts, `RoomGossip`), so
        the author's ops find a way in rather than our whole subtree pulling them."""
        change = Reshape()
        for author in [a for a, p in self._parent.items() if p == peer]:
            if author not in self._standin:
                self._lost[author] = peer
                self._standin.add(author)
            self._replace(author, peer, live, spares, change)
            if author not in self._parent and last:
                self._adopt(author, last[0], change, standin=True)
        for author in [a for a, p in self._backup.items() if p == peer]:
            del self._backup[author]
        for cut in self._cut.values():
            cut.pop(peer, None)
        return change

    def crossed(
        self, peer: bytes, author: bytes, live: Container[bytes], spares: list[bytes]
    ) -> Reshape:
        """`peer`, our parent for `author`, grafted `author` on us: our grafts crossed (two
        nodes that lost their parents, or a link that came up, each picked the other),
        and left alone they would close a cycle the author's ops never enter. The side
        that gives way (`RoomGossip` decides which) calls this: `peer` becomes its child,
        and the author moves to a runner-up or a spare other than `peer`, if it has one;
        the other side keeps its parent and takes the graft as usual."""
        change = Reshape()
        if self._parent.get(author) == peer:
            self._replace(author, peer, live, [p for p in spares if p != peer], change)
            if author not in self._parent:
                # Nobody else to graft on: keep the cycle rather than cut `peer` off; the
                # first op either of us has to pull moves the author out of it.
                self._parent[author] = peer
        return change

    def _replace(
        self,
        author: bytes,
        old: bytes,
        live: Container[bytes],
        spares: list[bytes],
        change: Reshape,
    ) -> None:
        del self._parent[author]
        backup = self._backup.pop(author, None)
        if self.route is not None:
            best = self.route(author, old)
            if best is not None and not self.is_child(best, author):
                self._adopt(author, best, change)
                return
        if backup is None or backup == old or backup not in live or self.is_child(backup, author):
            below = self._below.get(author, ())
            fits = [p for p in spares if not self.is_child(p, author)]
            backup = next((p for p in fits if p not in below), fits[0] if fits else None)
        if backup is not None:
            self._adopt(author, backup, change, standin=True)

    def pushed(
        self,
        peer: bytes,
        fresh: list[Op],
        repeated: list[Op],
        now: float,
        announced: Callable[[bytes], Announced | None],
        live: Container[bytes],
    ) -> Reshape:
        """`peer` pushed us `fresh` (ops new to us) and `repeated` (ones we hold or are
        ingesting already). `announced` gives what IHAVEs told us of an op."""
        change = Reshape()
        for op in fresh:
            author = op.author
            self._first[author] = _First(op.seq, peer, now)
            parent = self._parent.get(author)
            if parent is not None and parent not in live:
                parent = None
            if parent is not None and parent != peer:
                continue  # the parent's copy decides, when it comes (below)
            faster = None
            missing = announced(op.id)
            if missing is not None and missing.first_at + self.margin <= now:
                # An IHAVE came first: its sender is on a faster path from the author.
                faster = next(
                    (
                        p
                        for p in missing.announcers
                        if p != peer and p in live and not self.is_child(p, author)
                    ),
                    None,
                )
            if parent is None:
                self._adopt(author, faster if faster is not None else peer, change)
            elif faster is not None and missing is not None:
                self._beaten(author, faster, now - missing.first_at, now, change)
            else:
                self._strikes.discard(author)  # the parent came first
        for op in repeated:
            author = op.author
            parent = self._parent.get(author)
            first = self._first.get(author)
            if peer == parent:
                if (
                    first is not None
                    and first.seq == op.seq
                    and first.peer != peer
                    and first.peer in live
                    and not self.is_child(first.peer, author)
                    and first.at + self.margin <= now
                ):
                    self._beaten(author, first.peer, now - first.at, now, change)
            elif peer in self._cut.get(author, ()) or self._settled(op, now):
                # Not a new author's one-off copy: it pushes this author though we never
                # asked, or though we pruned it (the PRUNE crossed its push, or was lost;
                # within `REPRUNE` it may still be on its way, behind a lost message).
                cut = self._cut.setdefault(author, {})
                if now >= cut.get(peer, -REPRUNE) + REPRUNE:
                    change.prunes.setdefault(peer, []).append(author)
                    cut[peer] = now
        return change

    def _settled(self, op: Op, now: float) -> bool:
        """Whether `op` came past its author's first op and graft window here: a peer
        pushing it on its own has no reason left to."""
        start = self._start.get(op.author)
        return start is not None and op.seq > start[0] and now >= start[1] + self.window

    def pulled(self, peer: bytes, fresh: list[Op], now: float, live: Container[bytes]) -> Reshape:
        """We had to pull `fresh` from `peer`: their pushes were late or never came, and
        `peer`, whose IHAVE came first, becomes the parent of their authors."""
        change = Reshape()
        for op in fresh:
            author = op.author
            if self._parent.get(author) != peer and not self.is_child(peer, author):
                if self._parent.get(author) in live:
                    self._strikes.discard(author)
                    self._reroute(author, peer, now, change)
                else:
                    self._adopt(author, peer, change)
        return change

    def ahead(self, peer: bytes, authors: list[bytes], live: Container[bytes]) -> Reshape:
        """`peer`'s version vector shows more of `authors`' ops than we hold: those with no
        parent here are grafted on it, as for a catch-up (`synced`), before the ops come."""
        change = Reshape()
        for author in authors:
            if (
                author not in self._own
                and self._parent.get(author) not in live
                and not self.is_child(peer, author)
            ):
                self._adopt(author, peer, change, standin=True)
        return change

    def synced(self, peer: bytes, fresh: list[Op], live: Container[bytes]) -> Reshape:
        """`peer`'s catch-up brought `fresh`: their authors with no parent here (we had
        none of their ops, or were cut off) are grafted on it, as nobody pushes us their
        next ops otherwise, and an IHAVE goes to a few peers only."""
        # Each author once (a batch holds many ops of each): adopting an author changes
        # nothing the rule reads for another, nor for its own later ops.
        return self.ahead(peer, list(dict.fromkeys(op.author for op in fresh)), live)

    def prefer(self, moves: list[tuple[bytes, bytes]], now: float) -> Reshape:
        """Move each author to the peer paired with it (a shorter path, `_routes.py`), as
        a race that peer's copy won would."""
        change = Reshape()
        for author, peer in moves:
            if self._parent.get(author) != peer:
                self._strikes.discard(author)
                self._reroute(author, peer, now, change)
        return change

    def _beaten(self, author: bytes, peer: bytes, lead: float, now: float, change: Reshape) -> None:
        """`peer` beat the parent by `lead`: a steady lead is a faster path, and the
        author moves to it; a stall moves it only the second time in a row."""
        if lead < self.stall or author in self._strikes:
            self._strikes.discard(author)
            self._reroute(author, peer, now, change)
        else:
            self._strikes.add(author)

    def _adopt(self, author: bytes, peer: bytes, change: Reshape, *, standin: bool = False) -> None:
        """Make `peer` the parent of `author`: picked by a race its copies won, or a
        `standin` (for want of one: the parent we lost stays remembered)."""
        self._parent[author] = peer
        if standin:
            self._standin.add(author)
        else:
            self._standin.discard(author)
            self._lost.pop(author, None)
        self._backup.pop(author, None)
        cut = self._cut.get(author)
        if cut is not None:
            cut.pop(peer, None)
        authors = change.grafts.setdefault(peer, [])
        if author not in authors:
            authors.append(author)

    def _reroute(self, author: bytes, peer: bytes, now: float, change: Reshape) -> None:
        old = self._parent.get(author)
        self._adopt(author, peer, change)
        if old is not None and old != peer:
            authors = change.prunes.setdefault(old, [])
            if author not in authors:
                authors.append(author)
            self._cut.setdefault(author, {})[old] = now
