"""`RoomEvents`, the stream of what changes in a room (`crdt.MessageAdded`, ...)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from types import TracebackType

import trio

from crdt import Change

__all__ = ["RoomEvents"]


class RoomEvents:
    """An async iterator of a room's change events (`crdt.MessageAdded`, `TopicChanged`, ...).

    It sees every change made after it was created, by anyone, in order. It buffers
    without bound until read: iterate it, or close it (`aclose()`, or `async with`) when
    done. It ends when the node closes.
    """

    def __init__(self, unsubscribe: Callable[[RoomEvents], None]) -> None:
        self._queue: deque[Change] = deque()
        self._wake = trio.Event()
        self._ended = False
        self._unsubscribe = unsubscribe

    def _push(self, changes: list[Change]) -> None:
        if changes and not self._ended:
            self._queue.extend(changes)
            self._wake.set()

    def _end(self) -> None:
        self._ended = True
        self._wake.set()

    def __aiter__(self) -> RoomEvents:
        return self

    async def __anext__(self) -> Change:
        while not self._queue:
            if self._ended:
                raise StopAsyncIteration
            await self._wake.wait()
            self._wake = trio.Event()
        return self._queue.popleft()

    async def aclose(self) -> None:
        """Stop receiving events; buffered ones are dropped."""
        self._unsubscribe(self)
        self._queue.clear()
        self._end()

    async def __aenter__(self) -> RoomEvents:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
