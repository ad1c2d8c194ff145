"""Distance-vector repair of the per-author trees (`_trees.py`), between their authors' ops.

A tree is otherwise mended only by its own author's ops (a race its copies win), and an
author writes every few seconds at most: in between, members come and go and the tree
goes stale. Here every author's tree shares one measure of each link:

- Each link's one-way latency, from a PING/PONG echo when the link opens and every
  `PROBE_INTERVAL` (jittered) after: half the round trip, the least of the last
  `SAMPLES` (a PONG held up behind a batch, or a lost message, reads slow).
- Per author, our distance: the parent's advertised distance, plus the parent link's
  latency and `HOP_COST` (the author itself: 0). A distance that moved by `REPORT_STEP`
  or more, or a new path, is advertised to every peer (DIST), gathered for
  `FLUSH_DELAY`; a link that opens gets our whole table.
- A peer that is not our child for an author and offers a distance that, with its link,
  beats ours by `margin` becomes the author's parent (graft it, prune the old one), as
  a race the peer's copy won does. Only if its distance is below our feasibility
  distance (Babel, RFC 8966 §3.5.1): the least distance we had since our distance last
  grew more than `HOLD` ago. A peer below us in the tree got its distance through us,
  so it never offers one below our least: when ours grows (a relay upstream left), the
  stale distances of the peers below us cannot pull the author into a cycle before the
  growth reaches them. When our distance grows, every peer is looked at again, at once
  and when the hold ends.

The race rules of `_trees.py` stay the ground truth when an op comes: a parent picked
by a race is not moved back here unless a distance changes.

Pure: peers, distances, latencies and `now` in; the pings, pongs, DISTs to send and the
parents to move to out. It never reads a clock and never touches IO.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Container, Iterable

from ._config import MAX_VECTOR_AUTHORS
from ._wire import MAX_IDS, TAG_BYTES, UNREACHABLE, Dist, Ping, Pong

__all__ = ["Routes"]

PROBE_INTERVAL = 5.0  # a link's latency is measured again this often (x 0.75..1.25)
SAMPLES = 4  # its latency: the least of its last few half round trips
HOP_COST = 0.002  # s a hop costs beyond its link: the next node ingests before it forwards
REPORT_STEP = 2  # ms: a distance is advertised again once it moved this much
FLUSH_DELAY = 0.02  # distances that changed are gathered this long into one DIST
HOLD = 1.0  # s: our feasibility distance resets to our distance this long after it grew
# ms: a longer distance is advertised as UNREACHABLE: a cycle in a tree (a stand-in
# below us, picked before distances were known) counts up to it, not on forever.
MAX_DISTANCE = 300
# Distances a peer's table keeps of authors we have not forwarded (yet): a peer naming
# made-up authors cannot grow it past this (a room's authors, `MAX_VECTOR_AUTHORS`).
MAX_TAGS = MAX_VECTOR_AUTHORS
MARGIN = 0.01  # s: a peer's path must beat ours by this much to become the parent
SETTLE = 0.1  # s: when our distance grew, the others are looked at this much later


class Routes:
    """Link latencies and per-author distances of one room's core, and the parents
    they point to."""

    def __init__(
        self,
        rng: random.Random,
        parent: Callable[[bytes], bytes | None],
        is_child: Callable[[bytes, bytes], bool],
        margin: float | None = None,
    ) -> None:
        self.rng = rng
        self.margin = round((MARGIN if margin is None else margin) * 1000)  # ms
        self._parent = parent
        self.is_child = is_child
        self._latency: dict[bytes, list[float]] = {}  # peer -> its last half round trips
        self._ping: dict[bytes, tuple[int, float]] = {}  # peer -> our PING on its way
        self._next_ping: dict[bytes, float] = {}
        self._nonce = 0
        self._theirs: dict[bytes, dict[bytes, int]] = {}  # peer -> tag -> its distance
        self._tags: dict[bytes, bytes] = {}  # tag -> author (the authors we forwarded)
        self._own: set[bytes] = set()
        self._told: dict[bytes, int] = {}  # author -> the distance we advertised
        self._feasible: dict[bytes, tuple[int, float]] = {}  # author -> least, grew at
        self._review: dict[bytes, float] = {}  # author -> when to look at every peer
        self._dirty: dict[bytes, None] = {}  # authors whose parent changed
        self._pending: dict[bytes, int] = {}  # authors to advertise -> what we told before
        self._whole: set[bytes] = set()  # peers that get our whole table
        # peer -> authors whose distance we owe it: it was closer than us, and no longer
        # is (we did not tell it our shorter distances meanwhile)
        self._owed: dict[bytes, dict[bytes, None]] = {}
        self._flush_at: float | None = None

    # -- link latency ---------------------------------------------------------------------

    def latency(self, peer: bytes) -> float | None:
        samples = self._latency.get(peer)
        return min(samples) if samples else None

    def peer_up(self, peer: bytes, now: float) -> list[tuple[bytes, Ping | Pong | Dist]]:
        """A link opened: measure it at once, and send it our whole table."""
        self._theirs[peer] = {}
        self._next_ping[peer] = now
        if self._told:
            self._whole.add(peer)
            if self._flush_at is None:
                self._flush_at = now + FLUSH_DELAY
        return self._probe(now)

    def peer_down(self, peer: bytes) -> None:
        for table in (self._latency, self._ping, self._next_ping, self._theirs, self._owed):
            table.pop(peer, None)
        self._whole.discard(peer)

    def _probe(self, now: float) -> list[tuple[bytes, Ping | Pong | Dist]]:
        out: list[tuple[bytes, Ping | Pong | Dist]] = []
        for peer, at in self._next_ping.items():
            if at <= now:
                self._nonce = (self._nonce + 1) & 0xFFFFFFFF
                self._ping[peer] = (self._nonce, now)
                self._next_ping[peer] = now + PROBE_INTERVAL * self.rng.uniform(0.75, 1.25)
                out.append((peer, Ping(self._nonce)))
        return out

    def pong(
        self, peer: bytes, nonce: int, now: float, live: Container[bytes]
    ) -> list[tuple[bytes, bytes]]:
        """`peer` echoed a PING: the link's latency, and the moves it brings."""
        ping = self._ping.get(peer)
        if ping is None or ping[0] != nonce:
            return []
        del self._ping[peer]
        before = self.latency(peer)
        samples = self._latency.setdefault(peer, [])
        samples.append((now - ping[1]) / 2)
        del samples[:-SAMPLES]
        after = self.latency(peer)
        if before is not None and after is not None and abs(after - before) < 0.001:
            return []
        moves: list[tuple[bytes, bytes]] = []
        for author in self._tags.values():
            parent = self._parent(author)
            if parent == peer:
                self._dirty[author] = None
            elif parent is not None:
                self._offer(author, (peer,), now, live, moves)
        return moves

    # -- distances ------------------------------------------------------------------------

    def learn(self, author: bytes, *, own: bool = False) -> None:
        """We forward `author`'s ops (`own`: we are the author)."""
        if own and author not in self._own:
            self._own.add(author)
            self._dirty[author] = None
        self._tags.setdefault(author[:TAG_BYTES], author)

    def moved(self, authors: Iterable[bytes]) -> None:
        """These authors' parents changed: their distances follow (at the next `due`)."""
        for author in authors:
            self._dirty[author] = None

    def distance(self, author: bytes) -> int | None:
        """Ours from `author`, in ms: None while unknown (no parent, or no distance or
        latency of it yet), `UNREACHABLE` when the parent has no path or a too long one."""
        if author in self._own:
            return 0
        parent = self._parent(author)
        if parent is None:
            return None
        theirs = self._theirs.get(parent, {}).get(author[:TAG_BYTES])
        latency = self.latency(parent)
        if theirs is None or latency is None:
            return None
        ours = theirs + round((latency + HOP_COST) * 1000)
        return UNREACHABLE if theirs == UNREACHABLE or ours > MAX_DISTANCE else ours

    def best(self, author: bytes, old: bytes, live: Container[bytes]) -> bytes | None:
        """The peer to graft `author` on now that `old`, its parent, is gone: the one with
        the shortest feasible path, if any."""
        moves: list[tuple[bytes, bytes]] = []
        peers = [p for p in self._theirs if p != old]
        self._offer(author, peers, -HOLD, live, moves, ours=UNREACHABLE)
        return moves[0][1] if moves else None

    def dist(
        self, peer: bytes, message: Dist, now: float, live: Container[bytes]
    ) -> list[tuple[bytes, bytes]]:
        """`peer` advertised distances: ours follow where it is our parent, and it may
        become the parent of others."""
        table = self._theirs.get(peer)
        if table is None:
            return []
        moves: list[tuple[bytes, bytes]] = []
        tags = message.tags
        for n, ms in enumerate(message.ms):
            tag = tags[n * TAG_BYTES : (n + 1) * TAG_BYTES]
            before = table.get(tag)
            author = self._tags.get(tag)
            if author is None and before is None and len(table) >= MAX_TAGS:
                continue  # made-up authors by the thousand: their room would be that big
            table[tag] = ms
            if author is None:
                continue
            told = self._told.get(author)
            if told is not None and before is not None and before <= told < ms:
                self._owed.setdefault(peer, {})[author] = None
                if self._flush_at is None:
                    self._flush_at = now + FLUSH_DELAY
            if author in self._own:
                continue
            parent = self._parent(author)
            if parent == peer:
                self._update(author, now, live, moves)
            elif parent is not None:
                self._offer(author, (peer,), now, live, moves)
        return moves

    def _update(
        self, author: bytes, now: float, live: Container[bytes], moves: list[tuple[bytes, bytes]]
    ) -> None:
        """Our distance from `author` may have changed: advertise it if it moved, and
        look for a better parent if it grew."""
        ours = self.distance(author)
        told = self._told.get(author)
        if ours is None or ours == UNREACHABLE:
            # No path, or one we cannot measure yet: we claim none (a stand-in below us,
            # grafted on before its distance came, must not look close to anyone).
            if told is not None and told != UNREACHABLE:
                least = self._feasible.get(author, (UNREACHABLE, -HOLD))[0]
                self._feasible[author] = (least, now)
                self._advertise(author, UNREACHABLE, now)
            if ours is not None:
                self._review.setdefault(author, now + SETTLE)
            return
        least, grew = self._feasible.get(author, (UNREACHABLE, -HOLD))
        if told is not None and told != UNREACHABLE and ours > told:
            grew = now
        self._feasible[author] = (min(least, ours), grew)
        if told is None or told == UNREACHABLE or abs(ours - told) >= REPORT_STEP:
            self._advertise(author, ours, now)
        if told is not None and ours > told:
            # The others are looked at once the peers that took their distance from
            # ours (and may have moved below us) have had time to tell us theirs.
            self._review.setdefault(author, now + SETTLE)

    def _advertise(self, author: bytes, ms: int, now: float) -> None:
        self._pending.setdefault(author, self._told.get(author, UNREACHABLE))
        self._told[author] = ms
        if self._flush_at is None:
            self._flush_at = now + FLUSH_DELAY

    def _offer(
        self,
        author: bytes,
        peers: Iterable[bytes],
        now: float,
        live: Container[bytes],
        moves: list[tuple[bytes, bytes]],
        ours: int | None = None,
    ) -> None:
        """Move `author` to the best of `peers` whose path beats ours by the margin and
        is feasible, if any."""
        if ours is None:
            ours = self.distance(author)
        if ours is None:
            return
        tag = author[:TAG_BYTES]
        best: tuple[int, bytes] | None = None
        for peer in peers:
            theirs = self._theirs.get(peer, {}).get(tag)
            latency = self.latency(peer)
            if theirs is None or theirs == UNREACHABLE or latency is None:
                continue
            cost = theirs + round((latency + HOP_COST) * 1000)
            if cost + self.margin >= ours or (best is not None and cost >= best[0]):
                continue
            if peer not in live or self.is_child(peer, author):
                continue
            least, grew = self._feasible.get(author, (ours, -HOLD))
            if now >= grew + HOLD:
                least = ours  # the hold is over: the peers below us know our distance now
                self._feasible[author] = (least, grew)
            if theirs < least:
                best = (cost, peer)
        if best is not None:
            moves.append((author, best[1]))

    # -- timers ---------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        times = list(self._next_ping.values())
        if self._dirty:
            return 0.0  # at once: distances follow the parents just moved
        if self._flush_at is not None:
            times.append(self._flush_at)
        if self._review:
            times.append(min(self._review.values()))
        return min(times, default=None)

    def due(
        self, now: float, live: Container[bytes]
    ) -> tuple[list[tuple[bytes, Ping | Pong | Dist]], list[tuple[bytes, bytes]]]:
        """What is due at `now`: distances of authors whose parent moved, holds that ended,
        pings, DISTs. Returns the messages to send and the parents to move to."""
        moves: list[tuple[bytes, bytes]] = []
        while self._dirty:
            dirty, self._dirty = self._dirty, {}
            for author in dirty:
                self._update(author, now, live, moves)
            if moves:
                break  # the caller moves them, and calls again
        for author in [a for a, at in self._review.items() if at <= now]:
            del self._review[author]
            if self._parent(author) is not None:
                self._offer(author, self._theirs, now, live, moves)
                grew = self._feasible.get(author, (0, -HOLD))[1]
                if now < grew + HOLD:
                    self._review[author] = grew + HOLD  # and again once the hold ends
        out = self._probe(now)
        if self._flush_at is not None and now >= self._flush_at:
            self._flush_at = None
            out += self._flush()
        return out, moves

    def _flush(self) -> list[tuple[bytes, Ping | Pong | Dist]]:
        out: list[tuple[bytes, Ping | Pong | Dist]] = []
        pending, self._pending = self._pending, {}
        whole, self._whole = self._whole, set()
        every = list(self._told)
        told = self._told
        for peer, theirs in self._theirs.items():
            if peer in whole:
                authors = every
            else:
                # A shorter distance only to the peers it may help: not to one as close to
                # the author as we are now (nor to our parent, for which we are a child).
                # Longer ones go to every peer, so that what each peer holds of ours is
                # never below the truth, and a peer that stopped telling us its own (we
                # were closer) is told it is needed again.
                owed = self._owed.pop(peer, {})
                authors = [
                    a
                    for a, before in pending.items()
                    if told[a] >= before or theirs.get(a[:TAG_BYTES], UNREACHABLE) > told[a]
                ]
                authors += [a for a in owed if a not in pending and a in told]
            for start in range(0, len(authors), MAX_IDS):
                chunk = authors[start : start + MAX_IDS]
                tags = b"".join(a[:TAG_BYTES] for a in chunk)
                out.append((peer, Dist(tags, tuple(self._told[a] for a in chunk))))
        return out
