"""A nursery whose single error comes out as itself, for APIs that run helper tasks.

With strict exception groups, anything raised inside `async with open_nursery()` reaches
the caller wrapped in an ExceptionGroup, even an error from the caller's own body. A store
that fails to open should raise StoreError, not a group holding one. (node keeps the same
helper in `node/_nursery.py`: crdt never imports node.)
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
        lone: BaseException = group
        while isinstance(lone, BaseExceptionGroup) and len(lone.exceptions) == 1:
            lone = lone.exceptions[0]
        if lone is group:
            raise
        context = lone.__context__  # keep its own cause and context, not the group
        try:
            raise lone
        finally:
            lone.__context__ = context
            del lone, context
