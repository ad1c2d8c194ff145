"""What a swarm's traffic looks like: a rate, bursts, a message-size distribution, and
how many members write. Plain values; `Swarm.traffic` drives them."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Literal

from . import _checks as checks

__all__ = ["Traffic", "message_text"]


@dataclass(frozen=True)
class Traffic:
    """Messages across the room: on average `rate` a second (Poisson arrivals), plus
    `burst_size` at once every `burst_every` seconds; each from a writer chosen at random
    (among the first `writers` nodes, or all when 0), `size` bytes long, drawn uniformly
    or log-normally (most messages short, a few long) between `min_size` and `max_size`."""

    rate: float = 1.0
    min_size: int = 16
    max_size: int = 512
    size: Literal["uniform", "lognormal"] = "lognormal"
    burst_every: float = 0.0
    burst_size: int = 0
    writers: int = 0

    def __post_init__(self) -> None:
        checks.number("rate", self.rate, low=0, low_open=True)
        checks.whole("min_size", self.min_size, low=1)
        checks.whole("max_size", self.max_size, low=self.min_size)
        checks.choice("size", self.size, ("uniform", "lognormal"))
        checks.number("burst_every", self.burst_every, low=0)
        checks.whole("burst_size", self.burst_size, low=0)
        checks.whole("writers", self.writers, low=0)

    def draw_size(self, rng: random.Random) -> int:
        if self.size == "uniform":
            return rng.randint(self.min_size, self.max_size)
        # Median at a fifth of the way up the log range: chat is mostly short lines.
        low, high = math.log(self.min_size), math.log(self.max_size)
        value = rng.lognormvariate(low + (high - low) / 5, (high - low) / 4)
        return max(self.min_size, min(self.max_size, round(value)))


def message_text(n: int, writer: str, size: int) -> str:
    """Message `n` of the run, from `writer`, padded to `size` characters."""
    head = f"#{n} {writer} "
    return (head + "x" * max(0, size - len(head)))[: max(size, len(head))]
