"""A nursery whose lone error comes out as itself, for context managers that run tasks.

With strict exception groups an error raised in the caller's own `async with` body would
come out wrapped in an ExceptionGroup; `async with Node.open(...)`, `open_link(...)` and
`Store.open(...)` must leave an embedder's exception unchanged.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

__all__ = ["lone_error", "open_unwrapping_nursery"]


def lone_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one error inside nested groups of one, or the group itself if it holds more."""
    lone: BaseException = group
    while isinstance(lone, BaseExceptionGroup) and len(lone.exceptions) == 1:
        lone = lone.exceptions[0]
    return lone


@asynccontextmanager
async def open_unwrapping_nursery() -> AsyncIterator[trio.Nursery]:
    try:
        async with trio.open_nursery() as nursery:
            yield nursery
    except BaseExceptionGroup as group:
        lone = lone_error(group)
        if lone is group:
            raise
        context = lone.__context__  # keep its own cause and context, not the group
        try:
            raise lone
        finally:
            lone.__context__ = context
            del lone, context
