"""`Collector`: when the UI lets Python's cyclic garbage collector do a full collection.

A full collection scans every tracked object; with the node and a timeline in one process
it took 0.1-0.4 s, and the automatic ones came every second or two during a flood of
messages, each one a frozen screen under the user's fingers. So, while the app runs, the
objects alive at start are frozen (`gc.freeze`), automatic full collections are put off,
and the app runs one when the user has not pressed a key for a moment (or when one is
long overdue). Young collections stay automatic: they are short.

The policy is pure (times in, a decision out); `install` and `uninstall` are the only
functions that touch the `gc` module's settings. It must never run a collection itself.
"""

from __future__ import annotations

import gc
from typing import Final

__all__ = ["Collector", "install", "uninstall"]

QUIET: Final = 1.0  # seconds without input before a full collection may run
EVERY: Final = 10.0  # seconds between full collections, at least ...
OVERDUE: Final = 60.0  # ... and at most, even while the user keeps typing
NO_AUTOMATIC_FULL: Final = 1 << 30  # young collections between automatic full ones


class Collector:
    """Decides when a full collection may run: ``due(now)`` after ``input(now)`` calls."""

    def __init__(self, now: float) -> None:
        self.last_input = now
        self.last_collection = now

    def input(self, now: float) -> None:
        """The user pressed a key or moved the mouse."""
        self.last_input = now

    def due(self, now: float) -> bool:
        """Whether to collect now: quiet for QUIET and EVERY since the last, or OVERDUE."""
        since = now - self.last_collection
        quiet = now - self.last_input >= QUIET
        return since >= OVERDUE or (since >= EVERY and quiet)

    def collected(self, now: float) -> None:
        self.last_collection = now


def install() -> tuple[int, int, int]:
    """Freeze what is alive and put off automatic full collections; the old thresholds."""
    old = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(old[0], old[1], NO_AUTOMATIC_FULL)
    return old


def uninstall(old: tuple[int, int, int]) -> None:
    """Back to the thresholds `install` found, with nothing frozen."""
    gc.unfreeze()
    gc.set_threshold(*old)
