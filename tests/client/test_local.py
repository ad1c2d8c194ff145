"""`LocalClient`: the chat interface over an in-process Node, on the simulated network."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import trio
import trio.testing

from crdt import MessageAdded
from node import SimNetwork
from node.client import ClientError, LocalClient, RoomChanged, RoomsChanged

from ..nodelib._helpers import open_sim_node, wait_until


def network() -> SimNetwork:
    return SimNetwork(random.Random(7), latency=(0.02, 0.02), jitter=0.0)


async def test_two_clients_chat_page_history_and_see_events(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    net = network()
    with trio.fail_after(120):
        async with (
            open_sim_node(net, tmp_path / "a") as node_a,
            open_sim_node(net, tmp_path / "b") as node_b,
        ):
            a, b = LocalClient(node_a), LocalClient(node_b)
            await a.set_nick("alice")
            async with a.events() as a_events:
                info = await a.create_room("plans")
                assert isinstance(await anext(a_events), RoomsChanged)
                assert info.name == "plans" and info.messages == 0
                joined = await b.join(await a.invite(info.id))
                assert joined.id == info.id
                ids = [await b.send(info.id, f"line {i}") for i in range(5)]
                seen: list[bytes] = []
                async for event in a_events:
                    if isinstance(event, RoomChanged) and isinstance(event.change, MessageAdded):
                        seen.append(event.change.id)
                        if len(seen) == 5:
                            break
                assert seen == ids

            newest = await a.history(info.id, limit=2)
            assert [m.text for m in newest.messages] == ["line 3", "line 4"]
            assert newest.more_before
            older = await a.history(info.id, before=newest.messages[0].id, limit=10)
            assert [m.text for m in older.messages] == ["line 0", "line 1", "line 2"]
            assert not older.more_before
            # A burst of ids in one call: in the order asked, ids we lack left out.
            wanted = [ids[3], b"\x09" * 32, ids[0]]
            assert [m.text for m in await a.messages(info.id, wanted)] == ["line 3", "line 0"]
            assert await a.messages(info.id, []) == []

            members = {m.peer_id: m for m in await a.members(info.id)}
            assert members[node_a.peer_id].nick == "alice"
            assert members[node_b.peer_id].linked
            # b's messages reached a: b sees them held by a peer.
            await wait_until(lambda: node_b.status().rooms[0].acked_seq >= 5)
            diagnostics = await b.diagnostics(info.id)
            assert [p.address for p in diagnostics.peers] == [node_a.address]
            assert diagnostics.peers[0].linked and diagnostics.peers[0].failures == 0


async def test_refusals_are_client_errors(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with open_sim_node(network(), tmp_path / "a") as node:
        client = LocalClient(node)
        with pytest.raises(ClientError, match="no room"):
            await client.send(b"\x01" * 32, "hello")
        with pytest.raises(ClientError):
            await client.join("rumor://invite/garbage")
        room = await client.create_room("r")
        with pytest.raises(ClientError, match="1 to"):
            await client.history(room.id, limit=0)
        with pytest.raises(ClientError, match="at most"):
            await client.messages(room.id, [b"\x01" * 32] * 1001)
