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


@dataclass(slots=True)
class _Candidate:
    contact: Contact
    distance: int
    # How many replies led here: seeds are 0, a contact learned from a depth-d reply is d+1.
    depth: int
    state: int = _NEW
    # Slow to answer: still awaited, but no longer holding one of the alpha slots.
    stalled: bool = False


@dataclass(frozen=True, slots=True)
class LookupStats:
    """What a finished lookup cost."""

    rpcs: int
    rounds: int
    failures: int


class Lookup:
    """Find the k contacts closest to `target`, alpha queries at a time."""

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
        self._by_id: dict[bytes, _Candidate] = {}
        self._order: list[tuple[int, bytes]] = []
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
        for contact in contacts:
            node_id = contact.node_id
            if node_id in self._by_id or node_id == self._own_id:
                continue
            dist = contact.distance_key ^ self._t
            if len(self._order) >= self._max:
                if dist >= self._order[-1][0]:
                    continue
                _, far_id = self._order[-1]
                if self._by_id[far_id].state == _IN_FLIGHT:
                    continue
                self._order.pop()
                del self._by_id[far_id]
            self._by_id[node_id] = _Candidate(contact, dist, depth)
            bisect.insort(self._order, (dist, node_id))

    def _add_first(self, contacts: Iterable[Contact], depth: int) -> None:
        """Seed an empty lookup: one sort instead of an insertion per contact."""
        t = self._t
        for contact in contacts:
            node_id = contact.node_id
            if node_id not in self._by_id and node_id != self._own_id:
                self._by_id[node_id] = _Candidate(contact, contact.distance_key ^ t, depth)
        order = sorted((cand.distance, node_id) for node_id, cand in self._by_id.items())
        for _, node_id in order[self._max :]:
            del self._by_id[node_id]
        self._order = order[: self._max]

    def _closest_live(self) -> list[_Candidate]:
        live = []
        by_id = self._by_id
        for _, node_id in self._order:
            cand = by_id[node_id]
            if cand.state != _FAILED:
                live.append(cand)
                if len(live) == self.k:
                    break
        return live

    @property
    def done(self) -> bool:
        """Kademlia §2.3: done once the k closest known (not failed) have all answered."""
        if self._finished:
            return True
        return all(c.state == _ANSWERED for c in self._closest_live())

    def advance(self) -> list[Contact] | None:
        """`next_queries()`, or None if the lookup is done: one pass over the candidates."""
        if self._finished:
            return None
        live = self._closest_live()
        picked = []
        unanswered = False
        for cand in live:
            state = cand.state
            if state == _ANSWERED:
                continue
            unanswered = True
            if state == _NEW and self.in_flight < self.alpha:
                cand.state = _IN_FLIGHT
                self.in_flight += 1
                self.rpcs += 1
                picked.append(cand.contact)
        return picked if unanswered else None

    def finish(self) -> None:
        """Stop early (a value was found); later outcomes are still accepted."""
        self._finished = True

    def next_queries(self) -> list[Contact]:
        """Contacts to query now, marked in flight; empty when done or alpha are out."""
        if self.done:
            return []
        picked = []
        for cand in self._closest_live():
            if self.in_flight >= self.alpha:
                break
            if cand.state == _NEW:
                cand.state = _IN_FLIGHT
                self.in_flight += 1
                self.rpcs += 1
                picked.append(cand.contact)
        return picked

    def _settle(self, node_id: bytes, state: int) -> _Candidate | None:
        cand = self._by_id.get(node_id)
        if cand is None or cand.state != _IN_FLIGHT:
            return None
        cand.state = state
        if not cand.stalled:
            self.in_flight -= 1
        return cand

    def on_stall(self, node_id: bytes) -> None:
        """`node_id` is slow (its first attempt timed out): free its slot, keep waiting.

        Kademlia §2.3 lets a lookup move on past slow nodes; a late answer still counts.
        """
        cand = self._by_id.get(node_id)
        if cand is not None and cand.state == _IN_FLIGHT and not cand.stalled:
            cand.stalled = True
            self.in_flight -= 1

    def on_response(self, node_id: bytes, contacts: Iterable[Contact] = ()) -> None:
        """`node_id` answered, naming `contacts` closer to the target (at most k used)."""
        cand = self._settle(node_id, _ANSWERED)
        if cand is None:
            return
        self._rounds = max(self._rounds, cand.depth + 1)
        self._add(list(contacts)[: self.k], cand.depth + 1)

    def on_failure(self, node_id: bytes) -> None:
        """`node_id` timed out or answered nonsense."""
        if self._settle(node_id, _FAILED) is not None:
            self.failures += 1

    def is_in_flight(self, node_id: bytes) -> bool:
        cand = self._by_id.get(node_id)
        return cand is not None and cand.state == _IN_FLIGHT

    def result(self) -> list[Contact]:
        """The closest contacts that answered, nearest first (at most k)."""
        answered = []
        for _, node_id in self._order:
            cand = self._by_id[node_id]
            if cand.state == _ANSWERED:
                answered.append(cand.contact)
                if len(answered) == self.k:
                    break
        return answered

    def stats(self) -> LookupStats:
        return LookupStats(self.rpcs, self._rounds, self.failures)
