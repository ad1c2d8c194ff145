"""Rooms outlive any member, on the simulated network in virtual time: members learn each
other's addresses from signed address records passed around the room, keep them across a
restart, and never dial an address a record's signer cannot prove is its own."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import trio
import trio.testing

from crdt import Identity
from node import Invite, InviteError, SimNetwork, parse_invite
from node._addressbook import (
    RECORD_TTL,
    record_channel,
    sign_record,
)
from node._peers import MAX_BAD_RECORDS
from node._status import caught_up_line
from node.app._metrics import NodeCollector
from node.link import connect_link

from ._helpers import open_sim_node, texts, wait_until


@pytest.fixture(autouse=True)
def no_threads_or_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    async def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a simulated node waited on a thread or a process")

    monkeypatch.setattr(trio.to_thread, "run_sync", refuse)
    monkeypatch.setattr(trio.lowlevel, "open_process", refuse)


def network() -> SimNetwork:
    return SimNetwork(random.Random(7), latency=(0.02, 0.05))


async def test_three_members_without_bootstrap_outlive_the_creator(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """A creates the room, B and C join from A's invite (which names A alone), no DHT;
    A closes for good. B and C go on chatting both ways, also after B restarts."""
    net = network()
    with trio.fail_after(600):
        async with open_sim_node(net, tmp_path / "b") as b, open_sim_node(net, tmp_path / "c") as c:
            async with open_sim_node(net, tmp_path / "a") as a:
                ra = await a.create_room("outlive")
                invite = ra.invite()
                assert parse_invite(invite).peers == (a.address,)
                rb, rc = await b.join(invite), await c.join(invite)
                await ra.send("from a")
                await wait_until(
                    lambda: len(ra.members()) == 3 and texts(rb) == texts(rc) == ["from a"]
                )
            # A is gone for good, its node closed; nobody listens at its address again.
            await rb.send("b after a left")
            await rc.send("c after a left")
            await wait_until(lambda: len(texts(rb)) == len(texts(rc)) == 3)
            assert (
                set(texts(rb)) == set(texts(rc)) == {"from a", "b after a left", "c after a left"}
            )
            assert c.peer_id in b.status().links and b.peer_id in c.status().links
            c_address = c.address
        # B and C both restart: the records kept in the room file bring them together again.
        async with (
            open_sim_node(net, tmp_path / "c", listen=c_address) as c,
            open_sim_node(net, tmp_path / "b") as b,
        ):
            (rb,), (rc,) = b.rooms(), c.rooms()
            await rc.send("c after the restart")
            await rb.send("b after the restart")
            await wait_until(lambda: len(texts(rb)) == len(texts(rc)) == 5)


async def test_forged_address_records_are_never_dialed_nor_linked(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """A member M sends V two records: one for X's peer id that M signed (a forged
    signature), naming a trap address; and one M signed for itself naming X's address,
    where X (no member) answers. V never connects to the trap and never links to X."""
    net = network()
    connects: list[str] = []
    with trio.fail_after(300):
        async with (
            open_sim_node(net, tmp_path / "v") as v,
            open_sim_node(net, tmp_path / "x") as x,
        ):
            rv = await v.create_room("victim")
            invite = parse_invite(rv.invite())
            trap_host = net.new_host()
            trap_listeners, trap_port = await net.transport(trap_host).open_listeners(trap_host, 0)
            trap = f"{trap_host}:{trap_port}"

            async def count_trap() -> None:
                stream = await trap_listeners[0].accept()
                connects.append(trap)
                await stream.aclose()

            mallory = Identity.generate()
            now = int(net.environment(trap_host).wall_clock_ms() / 1000)
            channel = record_channel(invite.room)
            # Signed by M, claiming to be X's record: the signature does not verify for X.
            good = sign_record(mallory, invite.room, [trap], now + RECORD_TTL)
            forged = good.data.replace(mallory.peer_id, x.peer_id)
            # M's own valid record, naming the address where X answers.
            pointing = sign_record(mallory, invite.room, [x.address], now + RECORD_TTL)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(count_trap)
                async with connect_link(
                    f"ws://{v.address}/", mallory, transport=net.transport(net.new_host())
                ) as link:
                    await link.join_room(invite.room, invite.secret)
                    assert await link.join_room(channel, invite.secret)
                    link.send_nowait(channel, forged)
                    link.send_nowait(channel, pointing.data)
                    await link.flush()
                    await wait_until(lambda: sum(v._peers.record_drops.values()) == 1)
                    await trio.sleep(1)
                # M's link is gone: V dials where M's record says M is, expecting M.
                await trio.sleep(120)  # dials are retried with backoff meanwhile
                nursery.cancel_scope.cancel()
            assert connects == []
            assert v.status().links == x.status().links == ()
            state = v.dial_states()[x.address]
            assert state.failures >= 2 and state.peer_id == mallory.peer_id
            assert v._peers.record_drops == {"bad-signature": 1}
            assert x.status().links == ()


async def test_blank_room_names_and_nicks_are_refused_in_one_line(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with open_sim_node(network(), tmp_path / "a") as a:
        for name in ("", "   ", "\t"):
            with pytest.raises(InviteError, match="not empty or blank"):
                await a.create_room(name)
        for nick in ("", "  "):
            with pytest.raises(ValueError, match="empty or blank") as caught:
                await a.set_nick(nick)
            assert "\n" not in str(caught.value)
        assert a.rooms() == [] and a.nick == ""


async def test_invites_carry_the_bound_port_and_dht_contacts_an_invitee_bootstraps_from(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """A listens on port 0: its invite names the port it got. B has no bootstrap of its
    own; the invite's DHT contacts get it into the DHT, where it finds C, who also only
    ever saw the invite's contacts."""
    net = network()
    with trio.fail_after(600):
        async with (
            open_sim_node(net, tmp_path / "a", listen="0.0.0.0:0", dht_port=0) as a,
            open_sim_node(net, tmp_path / "b", dht_port=0, discovery_interval=5) as b,
            open_sim_node(net, tmp_path / "c", dht_port=0, discovery_interval=5) as c,
        ):
            assert a.reachability_problem() is None  # a simulated host, not loopback
            ra = await a.create_room("dht")
            invite = parse_invite(ra.invite())
            port = invite.peers[0].rsplit(":", 1)[1]
            assert int(port) != 0 and invite.peers == (a.address,)
            assert a.dht is not None and invite.dht[0] == "{}:{}".format(*a.dht.address)
            assert b.dht is not None and b.dht.contacts() == []
            # Only the secret and the DHT contacts: B and C must meet through the DHT.
            bare = Invite(invite.room, invite.secret, invite.name, (), invite.dht)
            rb, rc = await b.join(bare), await c.join(bare)
            await wait_until(lambda: b.dht is not None and len(b.dht.contacts()) >= 1)
            await rb.send("found you")
            await wait_until(lambda: texts(rc) == ["found you"])
            assert c.peer_id in b.status().links or b.peer_id in c.status().links


async def test_a_node_that_accepts_no_links_says_so(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with open_sim_node(network(), tmp_path / "a", listen=None) as a:
        problem = a.reachability_problem()
        assert problem is not None and "accepts no links" in problem
        room = await a.create_room("quiet")
        assert parse_invite(room.invite()).peers == ()


async def test_the_caught_up_figures_add_up_and_drops_are_metrics(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    net = network()
    with trio.fail_after(120):
        async with open_sim_node(net, tmp_path / "a") as a, open_sim_node(net, tmp_path / "b") as b:
            ra = await a.create_room("figures")
            for n in range(20):
                await ra.send(f"message {n}")
            await b.join(ra.invite())
            await wait_until(lambda: b.status().rooms[0].synced and len(texts(b.rooms()[0])) == 20)
            await trio.sleep(5)
            room = b.status().rooms[0]
            # A's JOIN and 20 messages came from A; B's own JOIN is not "received".
            assert room.added == 21 and room.ops == 22
            assert room.received == room.added + room.duplicates + room.refused
            assert "22 ops, " in caught_up_line(room)
            families = {m.name: m for m in NodeCollector(b.status).collect()}
            assert "rumor_address_records_dropped" in families
            samples = {
                s.labels["why"]: s.value for s in families["rumor_link_handshakes_closed"].samples
            }
            assert samples == {"source-cap": 0, "pushed-out": 0}


async def test_records_are_signed_again_before_they_expire_and_expire_when_not(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    net = network()
    with trio.fail_after(4 * RECORD_TTL):
        async with open_sim_node(net, tmp_path / "b") as b:
            async with open_sim_node(net, tmp_path / "a") as a:
                ra = await a.create_room("hours")
                rb = await b.join(ra.invite())
                await wait_until(lambda: rb._driver.book.get(a.peer_id) is not None)
                await trio.sleep(2 * RECORD_TTL)  # two lifetimes: refreshed all along
                record = rb._driver.book.get(a.peer_id)
                assert record is not None and record.expires > b.wall_clock() + RECORD_TTL / 4
                assert a.address in parse_invite(rb.invite()).peers
            # A is gone: its last record runs out, and b's invites stop naming A from it.
            await trio.sleep(RECORD_TTL + 1)
            assert rb._driver.book.others(b.wall_clock()) == []


async def test_a_member_sending_junk_records_is_cut_off(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    net = network()
    with trio.fail_after(60):
        async with open_sim_node(net, tmp_path / "v") as v:
            invite = parse_invite((await v.create_room("junk")).invite())
            channel = record_channel(invite.room)
            mallory = Identity.generate()
            async with connect_link(
                f"ws://{v.address}/", mallory, transport=net.transport(net.new_host())
            ) as link:
                await link.join_room(invite.room, invite.secret)
                assert await link.join_room(channel, invite.secret)
                for n in range(MAX_BAD_RECORDS):
                    link.send_nowait(channel, b"\x93junk %d" % n)
                await wait_until(lambda: link.closed is not None)
            assert v._peers.record_drops == {"malformed": MAX_BAD_RECORDS}
