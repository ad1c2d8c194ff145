"""Ops announced to us (IHAVE) that we do not hold yet: when to pull which, from whom.

Plumtree's lazy half (§3.2): an announced op gets `graft_timeout` (jittered) to arrive by
push; then it is pulled from its first announcer, then from the next after
`retry_timeout`, and so on. When the first announcement came is kept too: an IHAVE that
beat the parent's push tells the tree about a faster path (`_trees.py`).

Pure bookkeeping over op ids; the core decides what to do with a due pull. It never reads
a clock or draws randomness except from the `random.Random` it is given, and never
touches IO.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Container
from dataclasses import dataclass

from ._config import GossipConfig

__all__ = ["GRAFT_JITTER", "Announced", "Pulls"]

GRAFT_JITTER = 1.5  # the pull timeout is drawn from [1, GRAFT_JITTER] x graft_timeout
# Peers asked at random once every announcer of an op has gone (their links closed):
# by then most peers hold it, and a WANT for an op a peer lacks goes unanswered.
FALLBACK_PULLS = 3


@dataclass(slots=True)
class Announced:
    deadline: float
    announcers: list[bytes]  # the peers to pull it from, in the order they announced it
    first_at: float  # when the first announcement came
    first: bytes  # and who made it
    holders: set[bytes]  # every peer that announced it: they need no copy, nor an IHAVE
    fallbacks: int = 0  # peers asked that had not announced it


class Pulls:
    """The announced ops we lack, each with its announcers and its pull deadline."""

    def __init__(self, config: GossipConfig, rng: random.Random) -> None:
        self.config = config
        self.rng = rng
        self._missing: dict[bytes, Announced] = {}
        self._heap: list[tuple[float, bytes]] = []

    def __len__(self) -> int:
        return len(self._missing)

    def get(self, op_id: bytes) -> Announced | None:
        return self._missing.get(op_id)

    def announced(self, peer: bytes, op_id: bytes, now: float, *, at_once: bool = False) -> None:
        """`peer` announced `op_id`, which we neither hold nor are ingesting. `at_once`: no
        push of it is coming (a catch-up list), so pull it without waiting."""
        missing = self._missing.get(op_id)
        if missing is not None:
            if peer not in missing.holders:
                missing.announcers.append(peer)
                missing.holders.add(peer)
        elif len(self._missing) < self.config.max_missing:
            # Give the push time to deliver it first. The jitter spreads the nodes that
            # lack it, so the first to pull it can push it to the rest before they pull.
            deadline = now
            if not at_once:
                deadline += self.config.graft_timeout * self.rng.uniform(1.0, GRAFT_JITTER)
            self._missing[op_id] = Announced(deadline, [peer], now, peer, {peer})
            heapq.heappush(self._heap, (deadline, op_id))

    def arrived(self, op_id: bytes) -> Announced | None:
        """We hold `op_id` now: no more pulls of it. Returns what its announcements told."""
        return self._missing.pop(op_id, None)

    def next_deadline(self) -> float | None:
        heap = self._heap
        while heap:
            deadline, op_id = heap[0]
            missing = self._missing.get(op_id)
            if missing is not None and missing.deadline == deadline:
                return deadline
            heapq.heappop(heap)
        return None

    def due(
        self,
        now: float,
        holds: Callable[[bytes], bool],
        live: Container[bytes],
        peers: list[bytes],
    ) -> list[tuple[bytes, bytes]]:
        """The pulls due at `now`, as (peer, op id); each op's next announcer is asked
        after `retry_timeout`, then, once no announcer is left, a few of `peers` at
        random. Ops we came to hold (`holds`) are dropped, and so are ops nobody is left
        to ask: catch-up brings those."""
        heap = self._heap
        pulls: list[tuple[bytes, bytes]] = []
        while heap and heap[0][0] <= now:
            deadline, op_id = heapq.heappop(heap)
            missing = self._missing.get(op_id)
            if missing is None or missing.deadline != deadline:
                continue
            if holds(op_id):
                del self._missing[op_id]
                continue
            while missing.announcers and missing.announcers[0] not in live:
                missing.announcers.pop(0)
            if missing.announcers:
                pulls.append((missing.announcers.pop(0), op_id))
            elif missing.fallbacks < FALLBACK_PULLS and peers:
                missing.fallbacks += 1
                pulls.append((self.rng.choice(peers), op_id))
            else:
                del self._missing[op_id]
                continue
            missing.deadline = now + self.config.retry_timeout
            heapq.heappush(heap, (missing.deadline, op_id))
        return pulls
