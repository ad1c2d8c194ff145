"""History's turns: ingest calls apply and return in the order they were made."""

from __future__ import annotations

import trio
import trio.testing

from crdt._history import _Turns


async def test_calls_take_their_turns_in_ticket_order() -> None:
    turns = _Turns()
    done: list[int] = []

    async def call(ticket: int) -> None:
        await turns.wait_for(ticket)
        done.append(ticket)
        turns.end(ticket)

    async with trio.open_nursery() as nursery:
        for ticket in (3, 1, 2, 0):
            nursery.start_soon(call, ticket)
    assert done == [0, 1, 2, 3]


async def test_a_call_that_gives_up_lets_the_later_ones_go() -> None:
    turns = _Turns()
    done: list[int] = []

    async def call(ticket: int) -> None:
        await turns.wait_for(ticket)
        done.append(ticket)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(call, 2)
        nursery.start_soon(call, 3)
        await trio.testing.wait_all_tasks_blocked()
        turns.end(1)  # gave up before its turn: 0 still holds the turn
        await trio.testing.wait_all_tasks_blocked()
        assert done == []
        turns.end(0)
        await trio.testing.wait_all_tasks_blocked()
        assert done == [2]  # 3 still waits for 2 to end
        turns.end(2)
        turns.end(2)  # ending twice changes nothing
    assert done == [2, 3]


async def test_a_turn_wakes_only_its_own_waiters() -> None:
    turns = _Turns()
    woken: list[int] = []

    async def call(ticket: int) -> None:
        await turns.wait_for(ticket)
        woken.append(ticket)

    async with trio.open_nursery() as nursery:
        for ticket in range(1, 5):
            nursery.start_soon(call, ticket)
        await trio.testing.wait_all_tasks_blocked()
        steps = _Steps()
        trio.lowlevel.add_instrument(steps)
        turns.end(0)
        await trio.testing.wait_all_tasks_blocked()
        trio.lowlevel.remove_instrument(steps)
        assert woken == [1]
        assert steps.names.count("call") == 1  # tickets 2-4 slept on
        nursery.cancel_scope.cancel()


class _Steps(trio.abc.Instrument):
    def __init__(self) -> None:
        self.names: list[str] = []

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.names.append(task.name.rsplit(".", 1)[-1])
