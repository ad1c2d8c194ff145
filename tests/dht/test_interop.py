"""Interop with the real `kademlia` package on loopback UDP (real time, no MockClock).

Package nodes run on their own asyncio loop in a thread (tests/dht/kadloop.py).
"""

from __future__ import annotations

import functools
import random
from collections.abc import AsyncIterator

import pytest
import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from dht import DHTConfig, DHTNode, PeerRecord, Value, key_digest
from tests.dht.kadloop import KademliaLoop

LOCAL = "127.0.0.1"


@pytest.fixture
async def kad() -> AsyncIterator[KademliaLoop]:
    loop = KademliaLoop()
    try:
        yield loop
    finally:
        loop.close()


async def test_package_node_bootstraps_from_ours_and_sets_a_value_ours_gets(
    kad: KademliaLoop,
) -> None:
    async with DHTNode(LOCAL) as a, DHTNode(LOCAL) as b:
        assert await b.bootstrap([a.address]) == 1
        server, port = await kad.start_server()
        await kad.run(lambda: server.bootstrap([a.address]))
        # The package pinged us and learned our id from the reply.
        assert await kad.run(lambda: server.set("greeting", "hello from asyncio"))
        assert await b.get("greeting") == "hello from asyncio"
        assert await a.get("greeting") == "hello from asyncio"
        # It is in our table now too, under its own id and port.
        assert any(c.port == port and c.node_id == server.node.id for c in a.contacts())


async def test_our_node_bootstraps_from_the_package_and_sets_a_value_it_gets(
    kad: KademliaLoop,
) -> None:
    p1, port1 = await kad.start_server()
    p2, _ = await kad.start_server()
    await kad.run(lambda: p2.bootstrap([(LOCAL, port1)]))
    async with DHTNode(LOCAL) as ours:
        assert await ours.bootstrap([(LOCAL, port1)]) == 1
        cases: list[tuple[bytes | str | int, Value]] = [
            ("text", "hi"),
            (b"raw", b"\x00\xff"),
            (7, 1.5),
            ("flag", True),
        ]
        for key, value in cases:
            assert await ours.set(key, value)
            assert await kad.run(functools.partial(p2.get, key)) == value
            # Same key hashing: the package stored it under sha1 of the key.
            assert p1.storage.get(key_digest(key)) == value


async def test_mixed_network_of_10_and_10_lookups_from_either_side(kad: KademliaLoop) -> None:
    rng = random.Random(3)
    servers = []
    first, first_port = await kad.start_server()
    servers.append(first)
    async with trio.open_nursery() as nursery:
        ours: list[DHTNode] = []

        async def run_ours(task_status: trio.TaskStatus[DHTNode]) -> None:
            # Short retries: package nodes never answer get_peers, and this is real time.
            async with DHTNode(LOCAL, config=DHTConfig(rpc_timeout=0.2, rpc_attempts=2)) as node:
                task_status.started(node)
                await trio.sleep_forever()

        for i in range(10):
            node: DHTNode = await nursery.start(run_ours)
            ours.append(node)
            # Alternate seeds so each side bootstraps from the other.
            seed = (LOCAL, first_port) if i % 2 == 0 else ours[0].address
            assert await node.bootstrap([seed]) == 1
        for _ in range(9):
            server, _ = await kad.start_server()
            seed = ours[rng.randrange(10)].address
            await kad.run(functools.partial(server.bootstrap, [seed]))
            servers.append(server)
        # Let our nodes learn the late package nodes too, as a refresh would.
        for node in ours:
            await node.find_node(node.node_id)

        ids_ours = {n.node_id for n in ours}
        ids_theirs = {s.node.id for s in servers}
        lookup = await ours[0].find_node(rng.randbytes(20))
        found = {c.node_id for c in lookup.contacts}
        assert found == (ids_ours | ids_theirs) - {ours[0].node_id}

        for i in range(10):
            key, value = f"key-{i}", f"value-{i}"
            if i % 2 == 0:  # set by ours, got by theirs
                assert await ours[i].set(key, value)
                got = await kad.run(functools.partial(servers[9 - i].get, key))
            else:  # set by theirs, got by ours
                assert await kad.run(functools.partial(servers[i].set, key, value))
                got = await ours[9 - i].get(key)
            assert got == value, key

        # Our records travel among our nodes; the package nodes ignore get_peers, yet
        # stay in our routing tables, and are left out of the next lookups.
        room = bytes(range(20))
        expires = int(ours[0].protocol.wall(trio.current_time())) + 600
        records = []
        for node in ours[:2]:
            record = PeerRecord.create(Ed25519PrivateKey.generate(), room, [node.address], expires)
            assert await node.announce(room, record) > 0
            records.append(record)
        for node in ours[5:9]:
            peers = await node.get_peers(room)
            assert {r.peer_id for r in peers} == {r.peer_id for r in records}
        for node in ours:
            assert ids_theirs & {c.node_id for c in node.contacts()}
        timeouts = sum(n.protocol.counters["rpc timeout"] for n in ours)
        with trio.fail_after(1):  # no waiting on the package nodes any more
            for node in ours[5:9]:
                assert len(await node.get_peers(room)) == 2
        assert sum(n.protocol.counters["rpc timeout"] for n in ours) == timeouts
        nursery.cancel_scope.cancel()
