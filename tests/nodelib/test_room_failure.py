"""A room whose file cannot be opened or written stops alone: the node keeps serving its
other rooms, reports the failure, and leaves the file as it was. In virtual time."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import trio
import trio.testing

from node import SimNetwork

from ._helpers import open_sim_node, same_room, texts, wait_until


def network() -> SimNetwork:
    return SimNetwork(random.Random(5), latency=(0.02, 0.02), jitter=0.0)


async def test_a_damaged_room_file_is_skipped_and_left_alone(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    net = network()
    async with open_sim_node(net, tmp_path / "a") as a:
        room = await a.create_room("kept")
        await room.send("still here")
    damaged = tmp_path / "a" / "rooms" / f"{'ab' * 32}.sqlite3"
    damaged.write_bytes(b"not a database at all")

    async with open_sim_node(net, tmp_path / "a") as a:
        (room,) = a.rooms()
        assert texts(room) == ["still here"]
        (failed,) = a.status().failed_rooms
        assert failed[0] == damaged.name and "not a rumor store" in failed[1]
        await room.send("and writable")
        assert texts(room) == ["still here", "and writable"]
    assert damaged.read_bytes() == b"not a database at all"


async def test_a_store_failing_at_run_time_stops_only_its_room(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    net = network()
    with trio.fail_after(120):
        async with (
            open_sim_node(net, tmp_path / "a") as a,
            open_sim_node(net, tmp_path / "b") as b,
        ):
            a_address = a.address
            doomed_a = await a.create_room("doomed")
            healthy_a = await a.create_room("healthy")
            await doomed_a.send("before the failure")
            doomed_b = await b.join(doomed_a.invite())
            healthy_b = await b.join(healthy_a.invite())
            await wait_until(
                lambda: same_room(doomed_a, doomed_b) and same_room(healthy_a, healthy_b)
            )

            # b's file for the doomed room stops taking writes (as a full or failing disk
            # would): the next ops a sends there cannot be stored.
            store = b._rooms[doomed_b.id].history.store
            store._db.execute("PRAGMA query_only = ON")
            async with doomed_b.events() as events:
                await doomed_a.send("cannot be stored at b")
                async for _ in events:  # the stream ends when the room stops
                    pytest.fail("an op was shown that could not be stored")

            status = b.status()
            assert [name for name, _ in status.failed_rooms] == [f"{doomed_b.id.hex()}.sqlite3"]
            assert "readonly" in status.failed_rooms[0][1]
            assert [r.room_id for r in status.rooms] == [healthy_b.id]
            with pytest.raises(trio.ClosedResourceError, match="stopped"):
                await doomed_b.send("nowhere to go")

            # The other room, and the links, carry on.
            await healthy_a.send("life goes on")
            await wait_until(lambda: texts(healthy_b) == ["life goes on"])
            await healthy_b.send("indeed")
            await wait_until(lambda: texts(healthy_a) == ["life goes on", "indeed"])

    # What b had stored is still there, and once the file takes writes again the room
    # comes back and catches up.
    async with (
        open_sim_node(net, tmp_path / "a", listen=a_address) as a,
        open_sim_node(net, tmp_path / "b") as b,
    ):
        room_b = b.room(doomed_b.id)
        assert texts(room_b)[:1] == ["before the failure"]
        room_a = a.room(doomed_a.id)
        with trio.fail_after(120):
            await wait_until(lambda: same_room(room_a, room_b))
        assert texts(room_b) == ["before the failure", "cannot be stored at b"]
        assert b.status().failed_rooms == ()
