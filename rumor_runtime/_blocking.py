"""How blocking work (SQLite calls, file reads) runs: on a worker thread, or inline.

A `Blocking` is handed to whatever does blocking work: `THREADED` on a real node, `INLINE`
in virtual time (tests, the simulator), where nothing may wait on a thread because an
autojumping clock would run ahead while it worked. Both keep trio's cancellation
semantics for `to_thread`: a checkpoint before the call starts; once started, it finishes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

import trio

__all__ = ["INLINE", "THREADED", "Blocking", "run_inline", "run_threaded"]

T = TypeVar("T")


class Blocking(Protocol):
    """Runs `fn(*args)` somewhere the trio thread need not wait for, and returns its result.

    `limiter` bounds how many calls run at once on worker threads (inline calls run one at
    a time by nature)."""

    def __call__(
        self,
        fn: Callable[..., T],
        *args: object,
        limiter: trio.CapacityLimiter | None = None,
    ) -> Awaitable[T]: ...


async def run_threaded(
    fn: Callable[..., T], *args: object, limiter: trio.CapacityLimiter | None = None
) -> T:
    """`fn(*args)` on a trio worker thread."""
    return await trio.to_thread.run_sync(fn, *args, limiter=limiter)


async def run_inline(
    fn: Callable[..., T], *args: object, limiter: trio.CapacityLimiter | None = None
) -> T:
    """`fn(*args)` on the trio thread, blocking it meanwhile: for virtual time only."""
    await trio.lowlevel.checkpoint_if_cancelled()
    result = fn(*args)
    await trio.lowlevel.cancel_shielded_checkpoint()
    return result


THREADED: Blocking = run_threaded
INLINE: Blocking = run_inline
