"""DHTNode over both transports: the same conformance tests on the simulator (virtual
time) and on real UDP sockets on loopback; restarts from the data dir; IPv6."""

from __future__ import annotations

import contextlib
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import msgpack
import pytest
import trio
import trio.testing
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from dht import (
    DHTConfig,
    DHTNode,
    PeerRecord,
    SimNetwork,
    UDPTransport,
    node_id_from_public_key,
)
from dht._driver import SAVED_CONTACTS, STATE_FILE
from rumor_runtime import INLINE


@contextlib.asynccontextmanager
async def sim_nodes(count: int = 6) -> AsyncIterator[list[DHTNode]]:
    net = SimNetwork(random.Random(1), loss=0.05)
    async with contextlib.AsyncExitStack() as stack:
        nodes = [
            await stack.enter_async_context(DHTNode(transport=net.socket(), rng=random.Random(i)))
            for i in range(count)
        ]
        yield nodes


@contextlib.asynccontextmanager
async def udp_nodes(count: int = 6) -> AsyncIterator[list[DHTNode]]:
    async with contextlib.AsyncExitStack() as stack:
        nodes = [await stack.enter_async_context(DHTNode("127.0.0.1")) for _ in range(count)]
        yield nodes


async def join(nodes: list[DHTNode]) -> None:
    for node in nodes[1:]:
        assert await node.bootstrap([nodes[0].address]) == 1


async def check_set_get_ping_stun(nodes: list[DHTNode]) -> None:
    await join(nodes)
    assert await nodes[1].ping(nodes[2].address) == nodes[2].node_id
    assert await nodes[1].stun(nodes[2].address) == nodes[1].address
    assert await nodes[3].stun() == nodes[3].address
    assert await nodes[1].set("room", b"value")
    for node in nodes:
        assert await node.get("room") == b"value"
    assert await nodes[4].get("missing") is None


async def check_announce_and_get_peers(nodes: list[DHTNode]) -> None:
    await join(nodes)
    key = bytes(range(20))
    expires = int(nodes[0].protocol.wall(trio.current_time())) + 3600
    records = []
    for node in nodes[:3]:
        record = PeerRecord.create(Ed25519PrivateKey.generate(), key, [node.address], expires)
        assert await node.announce(key, record) >= 3
        records.append(record)
    for node in nodes:
        found = await node.get_peers(key)
        assert sorted(r.peer_id for r in found) == sorted(r.peer_id for r in records)
    assert await nodes[5].get_peers(bytes(20)) == []


CONFORMANCE = [check_set_get_ping_stun, check_announce_and_get_peers]
Check = Callable[[list[DHTNode]], Awaitable[None]]


@pytest.mark.parametrize("check", CONFORMANCE)
async def test_conformance_on_the_simulator(
    check: Check, autojump_clock: trio.testing.MockClock
) -> None:
    async with sim_nodes() as nodes:
        await check(nodes)


@pytest.mark.parametrize("check", CONFORMANCE)
async def test_conformance_on_udp(check: Check) -> None:
    async with udp_nodes() as nodes:
        await check(nodes)


async def test_unanswered_ping_gives_up_after_exactly_4_8_seconds(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = SimNetwork(random.Random(2))
    async with DHTNode(transport=net.socket(), rng=random.Random(0)) as node:
        start = trio.current_time()
        assert await node.ping(("10.9.9.9", 4000)) is None
        # rpc_attempts (6) sends, rpc_timeout (0.8 s) apart.
        assert trio.current_time() - start == pytest.approx(4.8)
        assert node.protocol.counters["rpc retry"] == 5


async def test_node_id_comes_from_the_identity() -> None:
    sk = Ed25519PrivateKey.generate()
    async with DHTNode("127.0.0.1", identity=sk) as node:
        assert node.node_id == node_id_from_public_key(sk.public_key().public_bytes_raw())


async def test_restart_keeps_the_id_and_bootstraps_from_saved_contacts(tmp_path: Path) -> None:
    async with udp_nodes(4) as others:
        await join(others)
        assert await others[1].set("kept", "yes")
        async with DHTNode("127.0.0.1", data_dir=tmp_path) as node:
            await node.bootstrap([others[0].address])
            first_id = node.node_id
        assert (tmp_path / STATE_FILE).exists()
        async with DHTNode("127.0.0.1", data_dir=tmp_path) as node:
            assert node.node_id == first_id
            # The saved contacts bootstrap in the background: opening does not wait.
            with trio.fail_after(5):
                while True:  # polling: no event marks the background bootstrap's end
                    if {c.node_id for c in node.contacts()} >= {o.node_id for o in others}:
                        break
                    await trio.sleep(0.01)
            assert await node.get("kept") == "yes"


async def test_a_simulated_node_saves_its_contacts_inline_and_restarts_from_them(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    net = SimNetwork(random.Random(3))
    async with contextlib.AsyncExitStack() as stack:
        others = [
            await stack.enter_async_context(DHTNode(transport=net.socket(), rng=random.Random(i)))
            for i in range(4)
        ]
        await join(others)
        assert await others[1].set("kept", "yes")

        def restartable(seed: int) -> DHTNode:
            return DHTNode(
                transport=net.socket(), rng=random.Random(seed), data_dir=tmp_path, blocking=INLINE
            )

        async with restartable(9) as node:
            await node.bootstrap([others[0].address])
            first_id = node.node_id
        assert (tmp_path / STATE_FILE).exists()
        async with restartable(10) as node:
            assert node.node_id == first_id
            await trio.sleep(5)  # virtual: the background bootstrap from saved contacts
            assert {c.node_id for c in node.contacts()} >= {o.node_id for o in others}
            assert await node.get("kept") == "yes"


async def test_saved_contacts_that_are_gone_do_not_hold_up_opening(tmp_path: Path) -> None:
    """Opening bootstraps from the saved contacts in the background: with all of them
    gone, the node is up at once, not after every retry of every RPC has timed out."""
    config = DHTConfig(rpc_timeout=5.0, rpc_attempts=6)  # 30 s before a bootstrap gives up
    async with DHTNode("127.0.0.1") as gone:
        host, port = gone.address
    state = {"version": 1, "node_id": b"\x02" * 20, "contacts": [[b"\x01" * 20, host, port]]}
    (tmp_path / STATE_FILE).write_bytes(msgpack.packb(state, use_bin_type=True))
    opened_at = trio.current_time()
    async with DHTNode("127.0.0.1", data_dir=tmp_path, config=config) as node:
        assert trio.current_time() - opened_at < config.rpc_timeout
        await trio.testing.wait_all_tasks_blocked()
        assert node.protocol.counters["rpc ping"] == 1  # the bootstrap is on its way


async def test_more_saved_contacts_than_a_reply_holds_are_kept(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """A node saves up to SAVED_CONTACTS, more than one reply may carry (64): a file with
    that many is read back whole, not ignored as damaged (the node kept neither its id nor
    its contacts across a restart)."""
    net = SimNetwork(random.Random(5))
    contacts = [[bytes([i]) * 20, f"10.0.{i}.1", 4000 + i] for i in range(1, SAVED_CONTACTS + 1)]
    state = {"version": 1, "node_id": b"\x02" * 20, "contacts": contacts}
    (tmp_path / STATE_FILE).write_bytes(msgpack.packb(state, use_bin_type=True))
    node = DHTNode(transport=net.socket(), rng=random.Random(1), data_dir=tmp_path, blocking=INLINE)
    async with node:
        assert node.node_id == b"\x02" * 20
    state["contacts"] = [*contacts, [b"\x03" * 20, "10.9.9.9", 4000]]  # one too many
    (tmp_path / STATE_FILE).write_bytes(msgpack.packb(state, use_bin_type=True))
    node = DHTNode(transport=net.socket(), rng=random.Random(1), data_dir=tmp_path, blocking=INLINE)
    async with node:
        assert node.node_id != b"\x02" * 20


async def test_damaged_state_file_is_ignored(tmp_path: Path) -> None:
    (tmp_path / STATE_FILE).write_bytes(b"\x81\xa7version\x02 garbage")
    async with DHTNode("127.0.0.1", data_dir=tmp_path) as node:
        assert node.contacts() == []


async def test_ipv6_and_dual_stack() -> None:
    try:
        probe = await UDPTransport.bind("::1", 0)
    except OSError:
        pytest.skip("no IPv6 loopback here")
    probe.close()
    async with DHTNode("::1") as a, DHTNode("::1") as b, DHTNode("::") as dual:
        assert await b.bootstrap([a.address]) == 1
        assert await a.set("v6", 6)
        assert await b.get("v6") == 6
        # An IPv4 peer of a dual-stack node is named by its plain IPv4 address.
        async with DHTNode("127.0.0.1") as v4:
            assert await v4.ping(("127.0.0.1", dual.address[1])) == dual.node_id
            assert any(c.host == "127.0.0.1" for c in dual.contacts())
