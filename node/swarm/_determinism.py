"""One seed, one run: what makes a simulated swarm reproducible bit for bit.

Virtual time (`trio.testing.MockClock`) and the simulated network's seeded generators
cover the clock and the network; two things are left that a seed does not reach:

- **trio's scheduler** runs each batch of ready tasks in a random order (from its own
  module-level generator) so that no one relies on an order. A simulation has to: trio
  has a switch, `_ALLOW_DETERMINISTIC_SCHEDULING`, which pytest-trio flips for
  Hypothesis; with it set the batch is sorted by task creation and shuffled by `_r`,
  which we seed. Both names are private to trio, so they are touched here and nowhere
  else (`deterministic_scheduling`); a trio release that renames them fails loudly here.
- **str and bytes hashing** (`PYTHONHASHSEED`) orders sets of peer ids and room ids. The
  command re-runs itself with `PYTHONHASHSEED=0` when it is not set (`hash_seed_fixed`),
  so a report is the same across processes and machines of one kind.

This module must never be imported by a node serving real peers: it changes trio
process-wide.
"""

from __future__ import annotations

import os
import random
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

import trio
import trio.testing

__all__ = ["HASH_SEED", "deterministic_scheduling", "hash_seed_fixed", "run_simulated"]

HASH_SEED: Final = "0"

T = TypeVar("T")


def deterministic_scheduling(seed: int) -> None:
    """Make trio run ready tasks in an order that only `seed` decides (process-wide).

    Call it before `trio.run`. Reaches into `trio._core._run` (private): see the module
    docstring for why; the checks make a renamed switch an error, not a silent loss."""
    from trio._core import _run  # private: kept to this one function

    if not hasattr(_run, "_ALLOW_DETERMINISTIC_SCHEDULING") or not hasattr(_run, "_r"):
        raise RuntimeError("this trio version has no deterministic scheduling switch")
    _run._ALLOW_DETERMINISTIC_SCHEDULING = True  # type: ignore[misc]
    rng = _run._r
    if not isinstance(rng, random.Random):
        raise RuntimeError("trio's scheduler generator is not a random.Random")
    rng.seed(seed)


def hash_seed_fixed() -> bool:
    """Whether str/bytes hashing is the fixed one a reproducible run needs."""
    return os.environ.get("PYTHONHASHSEED") == HASH_SEED


def run_simulated(async_fn: Callable[[], Awaitable[T]], seed: int) -> T:
    """``trio.run(async_fn)`` in virtual time (a MockClock that jumps whenever every task
    waits) with trio's scheduling order taken from `seed`."""
    deterministic_scheduling(seed)
    clock = trio.testing.MockClock(autojump_threshold=0)
    return trio.run(async_fn, clock=clock)
