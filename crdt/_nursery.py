"""A nursery whose single error comes out as itself, for APIs that run helper tasks.

With strict exception groups, anything raised inside `async with open_nursery()` reaches
the caller wrapped in an ExceptionGroup, even an error from the caller's own body. A store
that fails to open should raise StoreError, not a group holding one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

__all__ = ["open_nursery"]


@asynccontextmanager
async def open_nursery() -> AsyncIterator[trio.Nursery]:
    try:
        async with trio.open_nursery() as nursery:
            yield nursery
    except BaseExceptionGroup as group:
        error: BaseException = group
        while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
            error = error.exceptions[0]
        if error is group:
            raise
        raise error from None
