"""`TrioGuest`: a trio run hosted by the running asyncio loop, and calls across to it.

Textual owns the thread and runs asyncio; the node is a trio program. Trio's guest mode
(`trio.lowlevel.start_guest_run`) runs trio's scheduler as callbacks on the asyncio loop,
so both live on one thread and no bridge library is needed. Across the two:

- asyncio -> trio: `call(fn, *args)` returns an asyncio future for ``await fn(*args)``
  run as a trio task; cancelling the future cancels the task. The request crosses through
  the trio token (`run_sync_soon`), the one entry point trio allows from outside a task.
- trio -> asyncio: trio tasks run on the loop's thread, so they may resolve asyncio futures
  and post Textual messages directly.

This module knows nothing of the node or the UI, and never blocks the asyncio loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import outcome
import trio

from rumor_runtime import open_unwrapping_nursery

__all__ = ["GuestClosed", "TrioGuest"]

T = TypeVar("T")

STOP_GRACE = 10.0  # seconds `aclose` lets the node close itself before cancelling it

Main = Callable[[trio.Event], Awaitable[None]]


class GuestClosed(Exception):
    """The trio run is not running (not started yet, stopping, or finished)."""


class TrioGuest:
    """One trio run inside the running asyncio loop: `start(main)`, `call(...)`, `stop()`.

    `main(stopping)` is the trio program; it must return soon after the `stopping` event
    is set. Calls made before trio is up wait for it; calls made after it ended fail with
    `GuestClosed`.
    """

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._requests: trio.MemorySendChannel[_Task] | None = None
        self._waiting: list[_Task] = []  # calls made before trio was up
        self._cancel_scope: trio.CancelScope | None = None
        self._stopping: trio.Event | None = None
        self._finished = False
        self._stop_requested = False
        self.done: asyncio.Future[outcome.Outcome[None]] | None = None

    @property
    def running(self) -> bool:
        return self.done is not None and not self._finished

    def start(self, main: Main) -> asyncio.Future[outcome.Outcome[None]]:
        """Start `main` as a guest of the running asyncio loop; the returned future
        resolves with its outcome (`outcome.Value` or `outcome.Error`) once trio ends."""
        if self.done is not None:
            raise RuntimeError("this guest was already started")
        loop = asyncio.get_running_loop()
        self._loop = loop
        self.done = loop.create_future()

        def finished(result: outcome.Outcome[None]) -> None:
            self._finished = True
            for waiting in self._waiting:
                waiting.fail()  # trio is gone
            self._waiting.clear()
            assert self.done is not None
            if not self.done.done():
                self.done.set_result(result)

        trio.lowlevel.start_guest_run(
            self._main,
            main,
            run_sync_soon_threadsafe=loop.call_soon_threadsafe,
            done_callback=finished,
            host_uses_signal_set_wakeup_fd=False,
        )
        return self.done

    async def _main(self, main: Main) -> None:
        send, receive = trio.open_memory_channel[_Task](math.inf)
        # A lone error of `main` (the node failed to open) comes out as itself.
        async with open_unwrapping_nursery() as nursery:
            self._cancel_scope = nursery.cancel_scope
            self._token = trio.lowlevel.current_trio_token()
            self._stopping = trio.Event()
            self._requests = send
            nursery.start_soon(self._serve, receive, nursery)
            for waiting in self._waiting:
                send.send_nowait(waiting)
            self._waiting.clear()
            if self._stop_requested:
                self._stopping.set()
            try:
                await main(self._stopping)
            finally:
                send.close()
                nursery.cancel_scope.cancel()

    @staticmethod
    async def _serve(receive: trio.MemoryReceiveChannel[_Task], nursery: trio.Nursery) -> None:
        async for task in receive:
            nursery.start_soon(task.run)

    def call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> asyncio.Future[T]:
        """``await fn(*args)`` in trio; the future holds its result or exception."""
        loop = self._loop if self._loop is not None else asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        task = _Task(self, fn, args, future)
        if self._finished:
            task.fail()
        elif self._requests is None or self._token is None:
            self._waiting.append(task)
        else:
            try:
                self._token.run_sync_soon(_send_or_fail, self._requests, task)
            except trio.RunFinishedError:
                task.fail()
        return future

    def stop(self) -> None:
        """Ask `main` to return (sets its `stopping` event); idempotent."""
        self._stop_requested = True
        if self._token is None or self._finished or self._stopping is None:
            return
        with contextlib.suppress(trio.RunFinishedError):
            self._token.run_sync_soon(self._stopping.set)

    def cancel(self) -> None:
        """End the trio run now, cancelling everything in it (the last resort of `stop`)."""
        if self._token is None or self._finished or self._cancel_scope is None:
            return
        with contextlib.suppress(trio.RunFinishedError):
            self._token.run_sync_soon(self._cancel_scope.cancel)

    async def aclose(self) -> outcome.Outcome[None] | None:
        """Stop the run and wait for it to end (cancelling it after `STOP_GRACE` seconds)."""
        if self.done is None:
            return None
        self.stop()
        try:
            return await asyncio.wait_for(asyncio.shield(self.done), STOP_GRACE)
        except TimeoutError:
            self.cancel()
            return await self.done


def _send_or_fail(requests: trio.MemorySendChannel[_Task], task: _Task) -> None:
    try:
        requests.send_nowait(task)
    except (trio.ClosedResourceError, trio.BrokenResourceError):
        task.fail()  # the run is ending


class _Task:
    """One call from asyncio: runs in trio, resolves its asyncio future."""

    def __init__(
        self,
        guest: TrioGuest,
        fn: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
        future: asyncio.Future[Any],
    ) -> None:
        self.guest = guest
        self.fn = fn
        self.args = args
        self.future = future

    def fail(self) -> None:
        if not self.future.done():
            self.future.set_exception(GuestClosed("the node is not running"))

    async def run(self) -> None:
        future = self.future
        if future.done():  # cancelled before it started
            return
        token = trio.lowlevel.current_trio_token()
        with trio.CancelScope() as scope:

            def on_done(f: asyncio.Future[Any]) -> None:
                if f.cancelled():
                    with contextlib.suppress(trio.RunFinishedError):
                        token.run_sync_soon(scope.cancel)

            future.add_done_callback(on_done)
            try:
                result = await self.fn(*self.args)
            except Exception as exc:
                if not future.done():
                    future.set_exception(exc)
                return
            if not future.done():
                future.set_result(result)
        self.fail()  # cancelled: the run is stopping (or the future was cancelled)
