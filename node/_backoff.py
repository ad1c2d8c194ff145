"""When to dial a peer again: exponential backoff with jitter, and a per-peer circuit breaker.

Pure: callers pass `now` (seconds, any monotonic origin) and a seeded `random.Random`, so
a swarm's dialing is reproducible under MockClock.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass

__all__ = ["Backoff", "Breaker", "BreakerState"]


@dataclass
class Backoff:
    """Delays of base * 2**n, capped, with "full jitter" (AWS architecture blog, 2015):
    each delay is uniform in [0, cap], which spreads out peers that failed together."""

    base: float = 1.0
    cap: float = 300.0
    failures: int = 0

    def next_delay(self, rng: random.Random) -> float:
        """The delay before the next attempt, after one more failure."""
        ceiling = min(self.cap, self.base * (2 ** min(self.failures, 62)))
        self.failures += 1
        return rng.uniform(0, ceiling)

    def reset(self) -> None:
        self.failures = 0


class BreakerState(enum.Enum):
    CLOSED = "closed"  # dial freely
    OPEN = "open"  # failing: no dials until the cool-down ends
    HALF_OPEN = "half_open"  # cool-down over: one trial dial decides


@dataclass
class Breaker:
    """Opens after `threshold` failures in a row; after `cooldown` seconds lets one trial
    through; a success closes it, a failure opens it again for twice as long (capped)."""

    threshold: int = 5
    cooldown: float = 60.0
    max_cooldown: float = 3600.0
    failures: int = 0
    opened_at: float | None = None
    current_cooldown: float = 0.0
    trial_in_flight: bool = False

    def state(self, now: float) -> BreakerState:
        if self.opened_at is None:
            return BreakerState.CLOSED
        # The same sum as `reopens_at`: `now - opened_at >= cooldown` can be one ulp short
        # at that very time, and a caller sleeping until then would spin.
        if now >= self.opened_at + self.current_cooldown:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def allow(self, now: float) -> bool:
        """Whether a dial may start now (a half-open breaker allows one at a time)."""
        state = self.state(now)
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.HALF_OPEN and not self.trial_in_flight:
            self.trial_in_flight = True
            return True
        return False

    def succeeded(self) -> None:
        self.failures = 0
        self.opened_at = None
        self.current_cooldown = 0.0
        self.trial_in_flight = False

    def failed(self, now: float) -> None:
        self.failures += 1
        if self.trial_in_flight:
            self.trial_in_flight = False
            self.opened_at = now
            self.current_cooldown = min(self.max_cooldown, self.current_cooldown * 2)
        elif self.opened_at is None and self.failures >= self.threshold:
            self.opened_at = now
            self.current_cooldown = self.cooldown

    def reopens_at(self) -> float | None:
        """When an open breaker lets a trial through, for the caller's timer."""
        return None if self.opened_at is None else self.opened_at + self.current_cooldown
