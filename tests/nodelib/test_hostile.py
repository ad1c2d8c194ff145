"""A hostile member on a real link: garbage, bad signatures and oversized batches cut it off,
while the node keeps serving and loses nothing."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import trio
import trio_websocket

from crdt import Identity
from node import parse_invite
from node.gossip import PROTOCOL_VERSION, GossipConfig, Hello, encode_message
from node.link import connect_link

from ._attacks import ATTACKS, LIMIT, bad_signature
from ._helpers import open_node, same_room, wait_until


@pytest.mark.parametrize("attack", ATTACKS)
async def test_misbehaving_member_is_cut_off_and_nothing_is_lost(
    tmp_path: Path, attack: Callable[[bytes, Identity], bytes]
) -> None:
    with trio.fail_after(15):
        config = GossipConfig(max_message_bytes=LIMIT)
        async with open_node(tmp_path / "a", gossip_config=config) as a:
            ra = await a.create_room("target")
            for n in range(10):
                await ra.send(f"kept {n}")
            before, ops_before = ra.timeline(), a.status().rooms[0].ops
            invite = parse_invite(ra.invite())
            mallory = Identity.generate()
            async with connect_link(f"ws://{a.address}/", mallory) as link:
                assert await link.join_room(invite.room, invite.secret)  # a member...
                hello = Hello(PROTOCOL_VERSION, 4, LIMIT)
                await link.send(invite.room, encode_message(hello))
                await link.send(invite.room, attack(invite.room, mallory))  # ...gone bad
                async for _ in link:  # A's HELLO, vector, catch-up: until A closes the link
                    pass
                assert link.closed is not None and link.closed.reason in ("peer", "transport")
            await wait_until(lambda: a.status().links == ())
            status = a.status().rooms[0]
            assert status.penalties == 1
            # Only a batch that reached verification shows among the refusals.
            expected = (("bad_signature", 1),) if attack is bad_signature else ()
            assert status.rejected == expected
            assert ra.timeline() == before and status.ops == ops_before
            assert mallory.peer_id not in ra.members()
            # And A keeps serving: an honest member joins and gets everything.
            async with open_node(tmp_path / "b") as b:
                rb = await b.join(ra.invite())
                await rb.send("still here?")
                await wait_until(lambda: len(ra.timeline()) == 11 and same_room(ra, rb))


async def read_until_closed(ws: trio_websocket.WebSocketConnection) -> None:
    while True:
        await ws.get_message()


async def test_garbage_frames_before_the_handshake_are_dropped(tmp_path: Path) -> None:
    with trio.fail_after(15):
        async with open_node(tmp_path / "a") as a:
            ra = await a.create_room("target")
            await ra.send("kept")
            host, port = a.address.rsplit(":", 1)
            # Not a Noise handshake: the link layer drops the connection.
            async with trio_websocket.open_websocket(host, int(port), "/", use_ssl=False) as ws:
                await ws.send_message(b"\x00" * 100 + b"garbage")
                with pytest.raises(trio_websocket.ConnectionClosed):
                    await read_until_closed(ws)
            assert a.status().links == ()
            async with open_node(tmp_path / "b") as b:
                rb = await b.join(ra.invite())
                await wait_until(lambda: same_room(ra, rb) and len(rb.timeline()) == 1)
