"""Hybrid logical clock (Kulkarni et al., "Logical Physical Clocks", 2014).

A timestamp is one integer: wall-clock milliseconds in the high 48 bits and a counter in the
low 16, so integer order is timestamp order and msgpack stores it in at most 9 bytes.
The clock never reads the time itself: callers pass `wall_ms` in, which keeps it pure and
lets tests run on virtual time.
"""

from __future__ import annotations

__all__ = ["HLC", "MAX_SKEW_MS", "hlc_counter", "hlc_millis", "make_hlc"]

COUNTER_BITS = 16
MAX_HLC = (1 << 64) - 1
# How far ahead of our wall clock a peer's timestamp may be before we refuse it: a peer with
# a clock an hour fast must not drag every later message of ours an hour into the future.
MAX_SKEW_MS = 5 * 60 * 1000


def make_hlc(millis: int, counter: int = 0) -> int:
    return (millis << COUNTER_BITS) | counter


def hlc_millis(hlc: int) -> int:
    return hlc >> COUNTER_BITS


def hlc_counter(hlc: int) -> int:
    return hlc & ((1 << COUNTER_BITS) - 1)


class HLC:
    """The node's clock. `last` only ever grows, also across restarts (see `observe`)."""

    __slots__ = ("last", "max_skew_ms")

    def __init__(self, last: int = 0, *, max_skew_ms: int = MAX_SKEW_MS) -> None:
        self.last = last
        self.max_skew_ms = max_skew_ms

    def now(self, wall_ms: int) -> int:
        """A timestamp for a local event, greater than every timestamp seen so far."""
        wall = make_hlc(wall_ms)
        # LPC §3 "send or local event": l' = max(l, pt); c = c + 1 if l' == l else 0.
        # Counter overflow carries into the millis, which keeps the order total.
        self.last = wall if wall > self.last else self.last + 1
        if self.last > MAX_HLC:
            raise OverflowError("hybrid logical clock exhausted")
        return self.last

    def acceptable(self, remote: int, wall_ms: int) -> bool:
        """False if `remote` is further ahead of `wall_ms` than the skew tolerance."""
        return hlc_millis(remote) <= wall_ms + self.max_skew_ms

    def observe(self, remote: int) -> None:
        """Take in a timestamp received from a peer (or read back from storage)."""
        if remote > self.last:
            self.last = remote
