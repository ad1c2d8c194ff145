"""Shared helpers for the Node tests: nodes on loopback or on the simulated network, and
waiting for a condition."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from node import Node, Room, SimNetwork

POLL = 0.01  # seconds between looks at a condition; the deadline is the test's fail_after


async def wait_until(condition: Callable[[], bool]) -> None:
    """Return once `condition()` holds; the caller's `trio.fail_after` bounds the wait."""
    while True:  # polling: the conditions are views of several nodes, with no one event
        if condition():
            return
        await trio.sleep(POLL)


@asynccontextmanager
async def open_node(data_dir: Path, **options: Any) -> AsyncIterator[Node]:
    """A node on loopback, verifying in-process (the machine is small), no DHT unless
    asked for."""
    options.setdefault("dht_port", None)
    options.setdefault("verify_workers", 0)
    async with Node.open(data_dir, **options) as node:
        yield node


@asynccontextmanager
async def open_sim_node(network: SimNetwork, data_dir: Path, **options: Any) -> AsyncIterator[Node]:
    """A node on the simulated network (in virtual time), no DHT unless asked for."""
    options.setdefault("dht_port", None)
    async with Node.open(data_dir, network=network, **options) as node:
        yield node


def texts(room: Room) -> list[str]:
    return [m.text for m in room.timeline()]


def same_room(*rooms: Room) -> bool:
    """All show the same timeline, members and topic."""
    first = rooms[0]
    return all(
        r.timeline() == first.timeline()
        and r.members() == first.members()
        and r.topic == first.topic
        for r in rooms[1:]
    )
