"""Embedding rumor: two nodes in one trio program chat over loopback, then one reopens.

    python embedding_example.py [DATA_DIR]      (default: a temporary directory)
"""

import sys
import tempfile
from pathlib import Path

import trio

from crdt import MessageAdded
from node import Node


async def main(data_dir: Path) -> None:
    async with (
        Node.open(data_dir / "alice") as alice,
        Node.open(data_dir / "bob") as bob,
    ):
        await alice.set_nick("alice")
        await bob.set_nick("bob")
        room = await alice.create_room("weekend plans")
        await room.set_topic("saturday")
        invite = room.invite()  # a rumor://invite/... URI: hand it to a friend

        async with room.events() as events:  # what changes in alice's copy of the room
            bobs_room = await bob.join(invite)
            await bobs_room.send("hike on saturday?")
            async for change in events:
                if isinstance(change, MessageAdded):
                    message = room.message(change.id)
                    assert message is not None
                    print(f"{room.nicknames().get(message.author, '?')}: {message.text}")
                    break

        async with bobs_room.events() as bobs_events:
            reply = await room.send("yes! 9am at the station")
            async for change in bobs_events:  # until the reply reaches bob
                if change == MessageAdded(reply):
                    break
        print(f"bob sees topic {bobs_room.topic!r} and {len(bobs_room.timeline())} messages")
        print(f"alice is linked to {len(alice.status().links)} peer(s)")

    # Everything persists in the data dir: same identity, rooms and history.
    async with Node.open(data_dir / "alice") as alice:
        (room,) = alice.rooms()
        print(f"after reopening: {room.name!r}, {[m.text for m in room.timeline()]}")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        trio.run(main, Path(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            trio.run(main, Path(tmp))
