"""A hostile member on a real link: garbage, bad signatures and oversized batches cut it off,
while the node keeps serving and loses nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import trio_websocket

from ._attacks import ATTACKS, Attack, member_equivocates, member_turns_hostile
from ._helpers import open_node, same_room, wait_until


@pytest.mark.parametrize("attack", ATTACKS)
async def test_misbehaving_member_is_cut_off_and_nothing_is_lost(
    tmp_path: Path, attack: Attack
) -> None:
    with trio.fail_after(15):
        await member_turns_hostile(open_node, tmp_path, attack)


async def test_an_equivocating_member_is_seen_forked_by_all(tmp_path: Path) -> None:
    with trio.fail_after(15):
        await member_equivocates(open_node, tmp_path)


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
