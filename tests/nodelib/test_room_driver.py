"""The room driver's inbox: what posting to it costs the poster."""

from __future__ import annotations

import random
from pathlib import Path

import trio
import trio.testing

from crdt import History, Identity
from node._room_driver import INBOX, RoomDriver, _Handled
from node.gossip import RoomGossip
from rumor_runtime import INLINE

ROOM = b"\x07" * 32


class _Host:
    """The least of a `RoomHost` a driver that never runs needs."""

    def __init__(self, peer_id: bytes) -> None:
        self.peer_id = peer_id


async def test_posting_waits_only_while_the_inbox_is_full(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    identity = Identity.generate()
    async with History.open(
        tmp_path / "room.db", room=ROOM, identity=identity, blocking=INLINE
    ) as history:
        core = RoomGossip(history.replica, rng=random.Random(1), peer_id=identity.peer_id)
        host = _Host(identity.peer_id)
        driver = RoomDriver(host, history, b"\x08" * 32, "r", [], core, settles_at=0.0)  # type: ignore[arg-type]
        # A link reader posts once a message: with room in the inbox that is no yield.
        with trio.testing.assert_no_checkpoints():
            for _ in range(INBOX):
                await driver.post(_Handled(trio.Event()))
        with trio.move_on_after(1) as waited:  # full: the poster waits for the room task
            await driver.post(_Handled(trio.Event()))
        assert waited.cancelled_caught
