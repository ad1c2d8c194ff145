"""The iterative node lookup of Kademlia §2.3, as a state machine with no IO.

The caller asks `next_queries()` whom to query, sends the RPCs, and reports each outcome
with `on_response` or `on_failure` (timeouts are the caller's: it owns the clock).  The
lookup keeps at most `alpha` queries in flight and is done when the `k` closest contacts
it knows of, failed ones aside, have all answered.  It also counts what it cost (RPCs
sent, and rounds: the longest chain of replies that led to a contact), which the
benchmarks report.

This module never sends, never reads the clock and never touches the routing table.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass

from ._errors import LocalProtocolError
from ._ids import Contact, id_to_int

__all__ = ["Lookup", "LookupStats"]

_NEW, _IN_FLIGHT, _ANSWERED, _FAILED = range(4)


@dataclass(frozen=True, slots=True)
class LookupStats:
    """What a finished lookup cost."""

    rpcs: int
    rounds: int
    failures: int


class Lookup:
    """Find the k contacts closest to `target`, alpha queries at a time.

    Candidates live in flat maps keyed by node id rather than one object each: a lookup
    meets hundreds of contacts and queries a few dozen, so most are never more than a
    name in `_order`.
    """

    def __init__(
        self,
        target: bytes,
        seeds: Iterable[Contact],
        *,
        k: int = 20,
        alpha: int = 3,
        own_id: bytes | None = None,
        max_candidates: int | None = None,
    ) -> None:
        if k < 1 or alpha < 1:
            raise LocalProtocolError("k and alpha are at least 1")
        self.target = target
        self.k = k
        self.alpha = alpha
        self._t = id_to_int(target)
        self._own_id = own_id
        # Bounds memory when replies are hostile: far candidates never matter anyway.
        self._max = max_candidates if max_candidates is not None else 8 * k
        self._contacts: dict[bytes, Contact] = {}
        # How many replies led to a candidate: seeds are 0, a contact learned from a
        # depth-d reply is d+1.
        self._depth: dict[bytes, int] = {}
        self._state: dict[bytes, int] = {}  # absent: _NEW
        # Slow to answer: still awaited, but no longer holding one of the alpha slots.
        self._stalled: set[bytes] = set()
        self._order: list[tuple[int, bytes]] = []  # (distance, id), nearest first
        self.in_flight = 0
        self.rpcs = 0
        self.failures = 0
        self._rounds = 0
        self._finished = False
        self._add(seeds, 0)

    def _add(self, contacts: Iterable[Contact], depth: int) -> None:
        if not self._order:
            self._add_first(contacts, depth)
            return
        known, order, t = self._contacts, self._order, self._t
        for contact in contacts:
            node_id = contact.node_id
            if node_id in known or node_id == self._own_id:
                continue
            dist = contact.distance_key ^ t
            if len(order) >= self._max:
                if dist >= order[-1][0]:
                    continue
                far_id = order[-1][1]
                if self._state.get(far_id) == _IN_FLIGHT:
                    continue
                order.pop()
                self._forget(far_id)
            known[node_id] = contact
            self._depth[node_id] = depth
            bisect.insort(order, (dist, node_id))

    def _add_first(self, contacts: Iterable[Contact], depth: int) -> None:
        """Seed an empty lookup: one sort instead of an insertion per contact."""
        t, own = self._t, self._own_id
        known = {c.node_id: c for c in contacts if c.node_id != own}
        order = sorted([(c.distance_key ^ t, node_id) for node_id, c in known.items()])
        for _, node_id in order[self._max :]:
            del known[node_id]
        self._contacts = known
        self._depth = dict.fromkeys(known, depth)
        self._order = order[: self._max]

    def _forget(self, node_id: bytes) -> None:
        del self._contacts[node_id]
        del self._depth[node_id]
        self._state.pop(node_id, None)

    def _closest_live(self) -> list[bytes]:
        live = []
        state = self._state
        for _, node_id in self._order:
            if state.get(node_id) != _FAILED:
                live.append(node_id)
                if len(live) == self.k:
                    break
        return live

    @property
    def done(self) -> bool:
        """Kademlia §2.3: done once the k closest known (not failed) have all answered."""
        if self._finished:
            return True
        state = self._state
        return all(state.get(node_id) == _ANSWERED for node_id in self._closest_live())

    def advance(self) -> list[Contact] | None:
        """`next_queries()`, or None if the lookup is done: one pass over the candidates."""
        if self._finished:
            return None
        # One pass over the k closest live candidates (what `_closest_live` would list).
        state, alpha, k = self._state, self.alpha, self.k
        picked = []
        unanswered = False
        live = 0
        for _, node_id in self._order:
            current = state.get(node_id, _NEW)
            if current == _FAILED:
                continue
            if current != _ANSWERED:
                unanswered = True
                if self.in_flight >= alpha:
                    break  # nothing more to send, and not done: that is all we need
                if current == _NEW:
                    state[node_id] = _IN_FLIGHT
                    self.in_flight += 1
                    self.rpcs += 1
                    picked.append(self._contacts[node_id])
            live += 1
            if live == k:
                break
        return picked if unanswered else None

    def finish(self) -> None:
        """Stop early (a value was found); later outcomes are still accepted."""
        self._finished = True

    def next_queries(self) -> list[Contact]:
        """Contacts to query now, marked in flight; empty when done or alpha are out."""
        if self.done:
            return []
        state = self._state
        picked = []
        for node_id in self._closest_live():
            if self.in_flight >= self.alpha:
                break
            if node_id not in state:
                state[node_id] = _IN_FLIGHT
                self.in_flight += 1
                self.rpcs += 1
                picked.append(self._contacts[node_id])
        return picked

    def _settle(self, node_id: bytes, outcome: int) -> bool:
        if self._state.get(node_id) != _IN_FLIGHT:
            return False
        self._state[node_id] = outcome
        if node_id in self._stalled:
            self._stalled.discard(node_id)
        else:
            self.in_flight -= 1
        return True

    def on_stall(self, node_id: bytes) -> None:
        """`node_id` is slow (its first attempt timed out): free its slot, keep waiting.

        Kademlia §2.3 lets a lookup move on past slow nodes; a late answer still counts.
        """
        if self._state.get(node_id) == _IN_FLIGHT and node_id not in self._stalled:
            self._stalled.add(node_id)
            self.in_flight -= 1

    def on_response(self, node_id: bytes, contacts: Iterable[Contact] = ()) -> None:
        """`node_id` answered, naming `contacts` closer to the target (at most k used)."""
        if not self._settle(node_id, _ANSWERED):
            return
        depth = self._depth[node_id] + 1
        if depth > self._rounds:
            self._rounds = depth
        if not isinstance(contacts, tuple | list):
            contacts = list(contacts)
        self._add(contacts[: self.k], depth)

    def on_failure(self, node_id: bytes) -> None:
        """`node_id` timed out or answered nonsense."""
        if self._settle(node_id, _FAILED):
            self.failures += 1

    def is_in_flight(self, node_id: bytes) -> bool:
        return self._state.get(node_id) == _IN_FLIGHT

    def result(self) -> list[Contact]:
        """The closest contacts that answered, nearest first (at most k)."""
        answered = []
        state = self._state
        for _, node_id in self._order:
            if state.get(node_id) == _ANSWERED:
                answered.append(self._contacts[node_id])
                if len(answered) == self.k:
                    break
        return answered

    def stats(self) -> LookupStats:
        return LookupStats(self.rpcs, self._rounds, self.failures)
