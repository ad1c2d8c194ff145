"""The simulated network itself: exact latencies in virtual time, loss, partitions,
closed sockets, and reproducibility from one seed."""

from __future__ import annotations

import random

import pytest
import trio
import trio.testing

from dht import DHTNode, LinkSpec, LocalProtocolError, SimNetwork, SimSwarm


def quiet_network(seed: int = 0) -> SimNetwork:
    return SimNetwork(random.Random(seed), latency=(0.0, 0.0), jitter=0.0)


async def test_link_latency_is_exact_in_virtual_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = quiet_network()
    a_sock, b_sock = net.socket("10.0.0.1"), net.socket("10.0.0.2")
    net.set_link("10.0.0.1", "10.0.0.2", LinkSpec(latency=0.25))
    net.set_link("10.0.0.2", "10.0.0.1", LinkSpec(latency=0.125))
    async with (
        DHTNode(transport=a_sock, rng=random.Random(1)) as a,
        DHTNode(transport=b_sock, rng=random.Random(2)) as b,
    ):
        start = trio.current_time()
        assert await a.ping(b.address) == b.node_id
        assert trio.current_time() - start == 0.375


async def test_partition_and_heal(autojump_clock: trio.testing.MockClock) -> None:
    net = quiet_network()
    async with (
        DHTNode(transport=net.socket("10.0.0.1"), rng=random.Random(1)) as a,
        DHTNode(transport=net.socket("10.0.0.2"), rng=random.Random(2)) as b,
    ):
        net.block("10.0.0.1", "10.0.0.2")
        assert await a.ping(b.address) is None
        net.unblock("10.0.0.1", "10.0.0.2")
        assert await a.ping(b.address) == b.node_id


async def test_one_way_loss_and_closed_sockets(autojump_clock: trio.testing.MockClock) -> None:
    net = quiet_network()
    b_sock = net.socket("10.0.0.2")
    async with DHTNode(transport=net.socket("10.0.0.1"), rng=random.Random(1)) as a:
        async with DHTNode(transport=b_sock, rng=random.Random(2)) as b:
            net.set_link("10.0.0.2", "10.0.0.1", LinkSpec(loss=1.0))  # replies never arrive
            assert await a.ping(b.address) is None
            assert b.counters()["served ping"] == 6  # every retry arrived, none came back
            net.set_link("10.0.0.2", "10.0.0.1", LinkSpec())
            address = b.address
        assert b_sock.closed
        assert await a.ping(address) is None  # a closed socket's datagrams vanish
    with pytest.raises(LocalProtocolError):
        net.socket("not-an-ip")


async def test_same_seed_same_network(autojump_clock: trio.testing.MockClock) -> None:
    async def run(seed: int) -> list[tuple[bytes, tuple[str, int]]]:
        async with trio.open_nursery() as nursery:
            swarm = SimSwarm(SimNetwork(random.Random(seed)), nursery, rng=random.Random(seed))
            for _ in range(20):
                await swarm.spawn()
            nodes = [(n.node_id, n.address) for n in swarm.nodes]
            nursery.cancel_scope.cancel()
        return nodes

    assert await run(3) == await run(3)
    assert await run(3) != await run(4)
