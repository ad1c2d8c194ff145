"""`TrioGuest`: a trio run hosted by asyncio, and calls from asyncio into it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import outcome
import pytest
import trio

from tui._bridge import GuestClosed, TrioGuest


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 30))


async def wait_stopping(stopping: trio.Event) -> None:
    await stopping.wait()


def test_calls_return_results_and_raise_errors_in_asyncio() -> None:
    async def scenario() -> None:
        guest = TrioGuest()
        done = guest.start(wait_stopping)

        async def double(x: int) -> int:
            await trio.sleep(0.01)  # a real trio checkpoint, in the guest
            return 2 * x

        async def fail() -> None:
            await trio.lowlevel.checkpoint()
            raise ValueError("no")

        assert await guest.call(double, 21) == 42
        with pytest.raises(ValueError, match="no"):
            await guest.call(fail)
        assert guest.running
        result = await guest.aclose()
        assert isinstance(result, outcome.Value)
        assert done.done() and not guest.running

    run(scenario)


def test_calls_made_before_trio_is_up_wait_for_it() -> None:
    async def scenario() -> None:
        guest = TrioGuest()

        async def answer() -> int:
            await trio.lowlevel.checkpoint()
            return 7

        early = guest.call(answer)  # trio not started yet
        guest.start(wait_stopping)
        assert await early == 7
        await guest.aclose()

    run(scenario)


def test_cancelling_the_future_cancels_the_trio_task() -> None:
    async def scenario() -> None:
        guest = TrioGuest()
        guest.start(wait_stopping)
        cancelled = trio.Event()
        started = asyncio.Event()

        async def forever() -> None:
            try:
                started.set()
                await trio.sleep_forever()
            finally:
                cancelled.set()

        future = guest.call(forever)
        await asyncio.wait_for(started.wait(), 5)
        future.cancel()
        for _ in range(500):
            if cancelled.is_set():
                break
            await asyncio.sleep(0.01)
        assert cancelled.is_set()
        await guest.aclose()

    run(scenario)


def test_calls_after_the_run_ended_fail_with_guest_closed() -> None:
    async def scenario() -> None:
        guest = TrioGuest()
        guest.start(wait_stopping)
        await guest.aclose()

        async def never() -> None:
            raise AssertionError("ran after the end")

        with pytest.raises(GuestClosed):
            await guest.call(never)

    run(scenario)


def test_a_failing_main_ends_the_run_with_its_error() -> None:
    async def scenario() -> None:
        guest = TrioGuest()

        async def broken(stopping: trio.Event) -> None:
            await trio.lowlevel.checkpoint()
            raise OSError("data dir locked")

        result = await guest.start(broken)
        assert isinstance(result, outcome.Error)
        assert isinstance(result.error, OSError)

    run(scenario)


def test_stop_lets_main_finish_its_cleanup() -> None:
    async def scenario() -> None:
        guest = TrioGuest()
        cleaned: list[str] = []

        async def main(stopping: trio.Event) -> None:
            await stopping.wait()
            await trio.sleep(0.01)  # cleanup that awaits is not cancelled
            cleaned.append("closed")

        guest.start(main)
        await guest.aclose()
        assert cleaned == ["closed"]

    run(scenario)
