"""Leaving a room, and joining it again, in virtual time."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import trio
import trio.testing

from crdt import MemberLeft
from node import SimNetwork

from ._helpers import open_sim_node, same_room, texts, wait_until


async def test_leave_tells_the_members_and_keeps_the_history_for_a_rejoin(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    net = SimNetwork(random.Random(3), latency=(0.02, 0.02), jitter=0.0)
    with trio.fail_after(300):
        async with (
            open_sim_node(net, tmp_path / "a") as a,
            open_sim_node(net, tmp_path / "b") as b,
        ):
            room_a = await a.create_room("come and go")
            other_a = await a.create_room("stays")
            room_b = await b.join(room_a.invite())
            other_b = await b.join(other_a.invite())
            await room_b.send("hi, then bye")
            await wait_until(lambda: same_room(room_a, room_b) and same_room(other_a, other_b))
            assert set(room_a.members()) == {a.peer_id, b.peer_id}

            async with room_b.events() as events:
                await room_b.leave()
                # Our own leave is the last change; then the stream ends.
                assert [change async for change in events] == [MemberLeft(b.peer_id)]
            await wait_until(lambda: room_a.members() == [a.peer_id])
            assert [r.id for r in b.rooms()] == [other_b.id]
            with pytest.raises(KeyError):
                b.room(room_a.id)
            with pytest.raises(trio.ClosedResourceError, match="left"):
                await room_b.send("after leaving")
            with pytest.raises(trio.ClosedResourceError):
                await room_b.leave()
            rooms_dir = tmp_path / "b" / "rooms"
            name = f"{room_a.id.hex()}.sqlite3"
            assert not (rooms_dir / name).exists() and (rooms_dir / "left" / name).exists()

            # The room goes on without b; the other room still links a and b.
            await room_a.send("while b was away")
            await other_a.send("b still hears this")
            await wait_until(lambda: texts(other_b) == ["b still hears this"])
            assert texts(room_b) == ["hi, then bye"]

            # Joining again takes the kept history back and goes on with b's own chain.
            again = await b.join(room_a.invite())
            assert texts(again)[:1] == ["hi, then bye"]
            await again.send("back again")
            await wait_until(lambda: same_room(room_a, again) and len(room_a.timeline()) == 3)
            assert set(room_a.members()) == {a.peer_id, b.peer_id}
            assert texts(room_a) == ["hi, then bye", "while b was away", "back again"]
            # b's ops carry on from where its chain stopped: nobody sees b forked.
            assert a._rooms[room_a.id].history.replica.forked_authors() == []
            assert not (rooms_dir / "left" / name).exists()

    # After a restart b holds both rooms again (the rejoined one from rooms/).
    async with open_sim_node(net, tmp_path / "b") as b:
        assert {r.id for r in b.rooms()} == {room_a.id, other_a.id}
