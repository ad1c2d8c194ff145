"""Accounting for dropped input: one counter per `DropReason`, one event per drop, and a
summary by reason at most once per `drop_summary_interval`.

Sans-IO: `now` comes in with every call, events go out through the deque it is given.
This module never logs, reads a clock or touches a socket; the driver turns its events
into log lines.
"""

from __future__ import annotations

import math
from collections import Counter, deque

from ._errors import DropReason
from ._events import DatagramDropped, DropSummary, Event
from ._ids import Address

__all__ = ["Drops"]


class Drops:
    """Counts drops into the node's `counters` under the reason's label only."""

    def __init__(
        self, counters: Counter[str], events: deque[Event], *, interval: float, now: float
    ) -> None:
        self._counters = counters
        self._events = events
        self._interval = interval
        self._since = now  # start of the period the next summary covers
        self._pending: Counter[DropReason] = Counter()
        self._due = math.inf  # when the next summary is due (none while nothing dropped)

    def drop(self, address: Address, reason: DropReason, detail: str, now: float) -> None:
        self._counters[reason.value] += 1
        self._events.append(DatagramDropped(address, reason, detail))
        if not self._pending:
            self._due = max(now, self._since + self._interval)
        self._pending[reason] += 1

    @property
    def timer(self) -> float:
        """When `handle_timer` must run to emit the next summary (inf if none is owed)."""
        return self._due

    def handle_timer(self, now: float) -> None:
        if now < self._due:
            return
        counts = sorted(self._pending.items(), key=lambda item: item[0].value)
        self._events.append(DropSummary(self._since, tuple(counts)))
        self._pending.clear()
        self._since = now
        self._due = math.inf
