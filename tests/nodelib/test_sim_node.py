"""Whole nodes on the simulated network, in virtual time: convergence, relays, late joins,
wrong secrets, restarts mid-sync, discovery through the simulated DHT alone, partitions
that heal, and hostile members. Latencies are fixed (no jitter) where a test asserts a
virtual time, so the bounds below count round trips."""

from __future__ import annotations

import functools
import random
from pathlib import Path

import pytest
import trio
import trio.testing
import trio_websocket

from crdt import MessageAdded
from dht import DHTNode
from node import Invite, SimNetwork, parse_invite
from node.gossip import GossipConfig
from node.link import MAX_MESSAGE, LinkConfig

from ._attacks import ATTACKS, Attack, member_equivocates, member_turns_hostile
from ._helpers import open_sim_node, same_room, texts, wait_until
from ._scenarios import restarted_mid_sync

ONE_WAY = 0.05  # seconds between any two hosts, in the tests that time things
RTT = 2 * ONE_WAY


@pytest.fixture(autouse=True)
def no_threads_or_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    """In virtual time nothing may wait on a thread or a process: the clock would jump
    while it worked. Any attempt fails the test."""

    async def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a simulated node waited on a thread or a process")

    monkeypatch.setattr(trio.to_thread, "run_sync", refuse)
    monkeypatch.setattr(trio.lowlevel, "open_process", refuse)


def fixed_network(seed: int = 1) -> SimNetwork:
    return SimNetwork(random.Random(seed), latency=(ONE_WAY, ONE_WAY), jitter=0.0)


def secret_only(invite: str) -> Invite:
    """The invite without any address: members must be found through the DHT."""
    real = parse_invite(invite)
    return Invite(real.room, real.secret, real.name, ())


async def test_two_nodes_converge(tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    net = fixed_network()
    with trio.fail_after(60):
        async with (
            open_sim_node(net, tmp_path / "a") as a,
            open_sim_node(net, tmp_path / "b") as b,
        ):
            assert a.address.startswith("10.") and a.address != b.address
            await a.set_nick("alice")
            ra = await a.create_room("plans")
            await ra.send("hello from a")
            start = trio.current_time()
            rb = await b.join(ra.invite())
            await rb.send("hello from b")
            await wait_until(lambda: len(ra.timeline()) == 2 and same_room(ra, rb))
            took = trio.current_time() - start
            # TCP, the WebSocket upgrade and Noise XX take three round trips before a byte
            # of the room can flow; proofs, vectors and one catch-up batch take a few more.
            assert 3 * RTT < took <= 8 * RTT
            assert ra.nicknames() == {a.peer_id: "alice"}
            assert a.status().links == (b.peer_id,) and b.status().links == (a.peer_id,)
            await wait_until(lambda: a.status().rooms[0].synced and b.status().rooms[0].synced)
            # A new message after that is one push away: exactly one trip.
            async with rb.events() as events:
                sent_at = trio.current_time()
                pushed = await ra.send("pushed")
                assert await events.__anext__() == MessageAdded(pushed)
            assert trio.current_time() - sent_at == pytest.approx(ONE_WAY)


async def test_line_a_b_c_relays_through_b(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    net = fixed_network()
    with trio.fail_after(60):
        async with (
            open_sim_node(net, tmp_path / "a") as a,
            open_sim_node(net, tmp_path / "b") as b,
            open_sim_node(net, tmp_path / "c") as c,
        ):
            ra = await a.create_room("line")
            rb = await b.join(ra.invite())
            await wait_until(lambda: b.peer_id in ra.members())
            real = parse_invite(rb.invite())
            rc = await c.join(Invite(real.room, real.secret, real.name, (b.address,)))
            await wait_until(lambda: c.peer_id in ra.members())
            start = trio.current_time()
            for n in range(5):
                await ra.send(f"from a {n}")
            await rc.send("from c")
            await wait_until(lambda: len(rc.timeline()) == 6 and same_room(ra, rb, rc))
            # Two hops, pushed (plus up to one poll of wait_until, and float rounding).
            assert trio.current_time() - start <= 2 * ONE_WAY + 0.0101
            assert a.peer_id not in c.status().links  # it really went through B
            assert c.peer_id not in a.status().links


async def test_late_joiner_gets_the_whole_history(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    net = fixed_network()
    with trio.fail_after(120):
        async with open_sim_node(net, tmp_path / "a") as a, open_sim_node(net, tmp_path / "b") as b:
            ra = await a.create_room("history")
            first = await ra.send("message 0")
            for n in range(1, 400):
                await ra.send(f"message {n}")
            await ra.edit(first, "message 0 (edited)")
            start = trio.current_time()
            rb = await b.join(ra.invite())
            await wait_until(lambda: len(rb.timeline()) == 400 and same_room(ra, rb))
            # 403 ops in batches of 128, the whole window in flight at once: the catch-up
            # costs about one round trip more than a single message would.
            assert trio.current_time() - start <= 10 * RTT
            assert texts(rb)[0] == "message 0 (edited)" and texts(rb)[-1] == "message 399"
            await wait_until(lambda: b.status().rooms[0].synced)
            assert b.status().rooms[0].received >= 402  # A's join, 400 messages, an edit


async def test_wrong_secret_gets_nothing(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    net = fixed_network()
    with trio.fail_after(300):
        async with open_sim_node(net, tmp_path / "a") as a, open_sim_node(net, tmp_path / "m") as m:
            ra = await a.create_room("private")
            await ra.send("secret plans")
            real = parse_invite(ra.invite())
            rm = await m.join(Invite(real.room, bytes(32), real.name, (a.address,)))
            await wait_until(lambda: a.status().refusals == 1)
            await ra.send("more secret plans")
            await trio.sleep(120)  # plenty of time for anything to leak (sync runs each 60 s)
            assert m.status().links == (a.peer_id,)  # linked, but not in the room
            # M never heard from a member, so its JOIN waits (see test_node.py).
            assert rm.timeline() == [] and rm.members() == []
            assert ra.members() == [a.peer_id] and a.status().rooms[0].peers == ()
            assert a.status().refusals == 1  # refused once, for good on that link


@pytest.mark.parametrize("stop", ["closed", "cancelled"])
async def test_node_restarted_mid_sync_finishes(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, stop: str
) -> None:
    opener = functools.partial(open_sim_node, fixed_network())
    with trio.fail_after(300):
        # B takes one batch at a time, so it really is mid-sync when it stops.
        slow = GossipConfig(window=1)
        await restarted_mid_sync(opener, tmp_path, stop, total=1000, gossip_config=slow)


async def test_members_find_each_other_through_the_simulated_dht_and_keep_a_small_mesh(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    net = SimNetwork(random.Random(7))
    boot_host = net.new_host()
    mesh = 2
    async with DHTNode(transport=net.datagram_socket(boot_host, 4000), rng=random.Random(0)):
        options = {
            "dht_port": 0,
            "bootstrap": [f"{boot_host}:4000"],
            "discovery_interval": 5.0,
            "mesh_size": mesh,
        }
        with trio.fail_after(600):
            start = trio.current_time()
            async with (
                open_sim_node(net, tmp_path / "a", **options) as a,
                open_sim_node(net, tmp_path / "b", **options) as b,
                open_sim_node(net, tmp_path / "c", **options) as c,
                open_sim_node(net, tmp_path / "d", **options) as d,
                open_sim_node(net, tmp_path / "e", **options) as e,
            ):
                nodes = [a, b, c, d, e]
                ra = await a.create_room("found")
                invite = secret_only(ra.invite())  # no address at all: only the DHT
                rooms = [ra] + [await node.join(invite) for node in nodes[1:]]
                for node, room in zip(nodes, rooms, strict=True):
                    await room.send(f"from {node.address}")
                await wait_until(lambda: len(ra.timeline()) == 5 and same_room(*rooms))
                assert trio.current_time() - start < 60  # a few discovery rounds
                for node in nodes:
                    status = node.status()
                    assert status.dht_contacts is not None and status.dht_contacts >= 1
                    assert len(node._peering.dialed_in(ra.id)) <= mesh
                # Each link was dialed by one of its ends: at most mesh per node.
                links = {frozenset((n.peer_id, p)) for n in nodes for p in n.status().links}
                assert len(links) <= mesh * len(nodes)


async def test_records_are_announced_again_as_virtual_hours_pass(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """A record lives an hour on the DHT's wall clock; two virtual hours later a newcomer
    with only the secret still finds the room's first member."""
    net = SimNetwork(random.Random(8))
    boot_host = net.new_host()
    async with DHTNode(transport=net.datagram_socket(boot_host, 4000), rng=random.Random(0)):
        options = {"dht_port": 0, "bootstrap": [f"{boot_host}:4000"]}
        with trio.fail_after(3 * 3600):
            async with open_sim_node(net, tmp_path / "a", **options) as a:
                ra = await a.create_room("long-lived")
                await ra.send("still here")
                await trio.sleep(2 * 3600)
                async with open_sim_node(net, tmp_path / "b", **options) as b:
                    start = trio.current_time()
                    rb = await b.join(secret_only(ra.invite()))
                    await wait_until(lambda: same_room(ra, rb) and len(rb.timeline()) == 1)
                    assert trio.current_time() - start < 60  # found on its first lookups


async def test_a_partition_heals_and_the_sides_converge(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    net = fixed_network()
    with trio.fail_after(900):
        async with (
            open_sim_node(net, tmp_path / "a") as a,
            open_sim_node(net, tmp_path / "b") as b,
            open_sim_node(net, tmp_path / "c") as c,
        ):
            ra = await a.create_room("split")
            rb, rc = await b.join(ra.invite()), await c.join(ra.invite())
            await wait_until(lambda: len(ra.members()) == 3 and same_room(ra, rb, rc))
            host = {n.peer_id: n.address.split(":")[0] for n in (a, b, c)}
            net.block(host[c.peer_id], host[a.peer_id])
            net.block(host[c.peer_id], host[b.peer_id])
            await wait_until(lambda: c.status().links == ())
            await ra.send("from a, while c is away")
            await rc.send("from c, alone")
            await trio.sleep(100)  # C's dials fail, back off, and open its breaker
            assert len(ra.timeline()) == len(rc.timeline()) == 1
            assert same_room(ra, rb)
            assert net.refused >= 5
            net.unblock(host[c.peer_id], host[a.peer_id])
            net.unblock(host[c.peer_id], host[b.peer_id])
            healed = trio.current_time()
            await wait_until(lambda: len(ra.timeline()) == 2 and same_room(ra, rb, rc))
            # The breaker opened for 60 s after five failed dials (backoff at most 1 + 2 +
            # 4 + 8 s between them) and a failed trial doubled that: the next trial comes
            # at most 120 s after the heal, and gets through.
            assert trio.current_time() - healed <= 120 + 10 * RTT


async def test_a_departed_node_is_redialed_when_it_returns_at_its_address(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    net = fixed_network()
    with trio.fail_after(600):
        async with open_sim_node(net, tmp_path / "a") as a:
            ra = await a.create_room("come back")
            address = a.address
            async with open_sim_node(net, tmp_path / "b") as b:
                rb = await b.join(ra.invite())
                await wait_until(lambda: same_room(ra, rb) and len(ra.members()) == 2)
                await rb.send("before a left")
                await wait_until(lambda: len(ra.timeline()) == 1)
        # A is gone: B's dials are refused; B writes on alone.
        async with open_sim_node(net, tmp_path / "b") as b:
            (rb,) = b.rooms()
            await rb.send("while a was gone")
            await trio.sleep(30)
            assert b.status().links == ()
            refused = net.refused
            assert refused >= 1
            async with open_sim_node(net, tmp_path / "a", listen=address) as a:
                assert a.address == address
                (ra,) = a.rooms()
                await wait_until(lambda: len(ra.timeline()) == 2 and same_room(ra, rb))


@pytest.mark.parametrize("attack", ATTACKS)
async def test_misbehaving_member_is_cut_off_and_nothing_is_lost(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, attack: Attack
) -> None:
    net = fixed_network()
    with trio.fail_after(120):
        opener = functools.partial(open_sim_node, net)
        await member_turns_hostile(opener, tmp_path, attack, net.transport(net.new_host()))


async def test_an_equivocating_member_is_seen_forked_by_all(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    net = fixed_network()
    with trio.fail_after(120):
        opener = functools.partial(open_sim_node, net)
        await member_equivocates(opener, tmp_path, net.transport(net.new_host()))


async def read_until_closed(ws: trio_websocket.WebSocketConnection) -> None:
    while True:
        await ws.get_message()


async def test_a_node_with_hostile_neighbours_keeps_its_honest_links(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Garbage before the handshake costs only that connection: an honest link that was
    already up carries on, untouched."""
    net = fixed_network()
    with trio.fail_after(60):
        async with open_sim_node(net, tmp_path / "a") as a, open_sim_node(net, tmp_path / "b") as b:
            ra = await a.create_room("target")
            rb = await b.join(ra.invite())
            await wait_until(lambda: same_room(ra, rb) and len(ra.members()) == 2)
            host, port = a.address.split(":")
            stream = await net.transport(net.new_host()).open_stream(host, int(port))
            async with trio.open_nursery() as nursery:
                ws = await trio_websocket.wrap_client_stream(
                    nursery,
                    stream,  # type: ignore[arg-type]  # any trio Stream works
                    host,
                    "/",
                    max_message_size=MAX_MESSAGE,
                )
                await ws.send_message(b"\x00" * 100 + b"garbage")
                with pytest.raises(trio_websocket.ConnectionClosed):
                    await read_until_closed(ws)
                await stream.aclose()
            assert a.status().links == (b.peer_id,)
            await rb.send("unbothered")
            await wait_until(lambda: len(ra.timeline()) == 1)


async def test_a_node_offline_for_a_week_catches_up(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """C is away for seven virtual days while A and B talk; it comes back on another
    address, finds them through the DHT alone, and receives the whole week."""
    net = SimNetwork(random.Random(11))
    boot_host = net.new_host()
    async with DHTNode(transport=net.datagram_socket(boot_host, 4000), rng=random.Random(0)):
        # Discovery every 20 minutes keeps each hour-long record announced; slower
        # keepalives and vector swaps keep a simulated week cheap to run.
        options = {
            "dht_port": 0,
            "bootstrap": [f"{boot_host}:4000"],
            "discovery_interval": 1200.0,
            "link_config": LinkConfig(keepalive=600.0, idle_timeout=1800.0),
            "gossip_config": GossipConfig(sync_interval=3600.0),
        }
        with trio.fail_after(8 * 86400):
            async with (
                open_sim_node(net, tmp_path / "a", **options) as a,
                open_sim_node(net, tmp_path / "b", **options) as b,
            ):
                ra = await a.create_room("weekly")
                invite = secret_only(ra.invite())
                rb = await b.join(invite)
                async with open_sim_node(net, tmp_path / "c", **options) as c:
                    rc = await c.join(invite)
                    await rc.send("see you next week")
                    await wait_until(lambda: same_room(ra, rb, rc) and len(ra.members()) == 3)
                left_at = trio.current_time()
                for day in range(7):
                    for n in range(20):
                        await (ra if n % 2 else rb).send(f"day {day} message {n}")
                    await trio.sleep(86400)
                assert texts(rc) == ["see you next week"]
                async with open_sim_node(net, tmp_path / "c", **options) as c:
                    assert c.address != a.address and trio.current_time() - left_at > 7 * 86400 - 1
                    (rc,) = c.rooms()
                    back_at = trio.current_time()
                    await wait_until(lambda: same_room(ra, rb, rc) and len(rc.timeline()) == 141)
                    assert trio.current_time() - back_at < 60  # its first discovery round


async def test_a_lost_or_restored_room_file_does_not_fork_our_own_chain(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """B's file for a room is lost (then, later, rolled back to an old copy): B writes
    again only once a member has shown what B held there, so its chain goes on rather
    than forking, and everyone converges."""
    net = fixed_network()
    with trio.fail_after(600):
        async with open_sim_node(net, tmp_path / "a") as a:
            ra = await a.create_room("keep your chain")
            b_address = ""
            async with open_sim_node(net, tmp_path / "b") as b:
                b_address = b.address
                rb = await b.join(ra.invite())
                for n in range(3):
                    await rb.send(f"bob old {n}")
                await wait_until(lambda: len(ra.timeline()) == 3)
            room_file = tmp_path / "b" / "rooms" / f"{ra.id.hex()}.sqlite3"
            backup = room_file.read_bytes()  # B's history as of now (WAL checkpointed)
            room_file.unlink()

            # Lost: B joins again with a fresh file. Its writes wait for A's vector.
            async with open_sim_node(net, tmp_path / "b", listen=b_address) as b:
                rb = await b.join(ra.invite())
                await rb.send("bob new after rejoin")
                await wait_until(lambda: len(ra.timeline()) == 4 and same_room(ra, rb))
                assert texts(rb) == [*(f"bob old {n}" for n in range(3)), "bob new after rejoin"]
                await rb.send("bob later")
                await wait_until(lambda: len(ra.timeline()) == 5)

            # Restored from the old copy: B lacks its last two ops; it gets them back first.
            room_file.write_bytes(backup)
            async with open_sim_node(net, tmp_path / "b", listen=b_address) as b:
                (rb,) = b.rooms()
                await rb.send("bob after the restore")
                await wait_until(lambda: len(ra.timeline()) == 6 and same_room(ra, rb))
                assert texts(ra)[-1] == "bob after the restore"
                for node, room in ((a, ra), (b, rb)):
                    assert node._rooms[room.id].history.replica.forked_authors() == []
                    assert node.status().rooms[0].held == 0
