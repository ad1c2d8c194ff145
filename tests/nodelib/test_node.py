"""Whole nodes: convergence, relays, late joins, wrong secrets, restarts, the data dir.

Most run on the simulated network in virtual time (they need no real socket); a few run
on real loopback sockets, where the real transport is the point."""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import msgpack
import pytest
import trio
import trio.testing

from crdt import MemberJoined, MessageAdded, MessageChanged, NickChanged, Store, TopicChanged
from node import DataDirError, Invite, InviteError, Node, Room, SimNetwork, parse_invite
from node._lock import _take_lock
from node.gossip import GossipConfig

from ._helpers import open_node, open_sim_node, same_room, texts, wait_until
from ._scenarios import restarted_mid_sync


def simulated() -> Callable[..., AbstractAsyncContextManager[Node]]:
    """Nodes on one simulated network, in virtual time."""
    return functools.partial(open_sim_node, SimNetwork(random.Random(3), jitter=0.0))


async def test_two_nodes_converge(tmp_path: Path) -> None:
    with trio.fail_after(15):
        async with open_node(tmp_path / "a") as a, open_node(tmp_path / "b") as b:
            await a.set_nick("alice")
            await b.set_nick("bob")
            ra = await a.create_room("plans")
            await ra.send("hello from a")
            rb = await b.join(ra.invite())
            assert rb.id == ra.id and rb.name == "plans"
            await rb.send("hello from b")
            await ra.send("and again from a")
            await wait_until(lambda: len(ra.timeline()) == 3 and same_room(ra, rb))
            assert sorted(texts(rb)) == ["and again from a", "hello from a", "hello from b"]
            assert set(ra.members()) == {a.peer_id, b.peer_id}
            assert ra.nicknames() == {a.peer_id: "alice", b.peer_id: "bob"}
            status = a.status()
            assert status.links == (b.peer_id,)
            (room_status,) = status.rooms
            assert room_status.peers == (b.peer_id,)
            await wait_until(lambda: a.status().rooms[0].synced)


async def test_a_node_that_accepts_no_links_takes_part_by_dialing_out(tmp_path: Path) -> None:
    with trio.fail_after(15):
        async with open_node(tmp_path / "a") as a, open_node(tmp_path / "b", listen=None) as b:
            assert b.address == ""
            ra = await a.create_room("behind a NAT")
            await ra.send("from the open node")
            rb = await b.join(ra.invite())
            await rb.send("from the dial-out node")
            await wait_until(lambda: len(ra.timeline()) == 2 and same_room(ra, rb))
            # Its invites name only peers it has reached, never an address of its own.
            assert parse_invite(rb.invite()).peers == (a.address,)
            # A room it creates has no address of its own to hand out.
            rb2 = await b.create_room("started behind the NAT")
            assert parse_invite(rb2.invite()).peers == ()


async def test_line_a_b_c_relays_through_b(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    open_node = simulated()
    # A and C only dial out (no address of theirs goes round the room): B is their only
    # way to each other.
    with trio.fail_after(20):
        async with (
            open_node(tmp_path / "a", listen=None) as a,
            open_node(tmp_path / "b") as b,
            open_node(tmp_path / "c", listen=None) as c,
        ):
            rb = await b.create_room("line")
            ra = await a.join(rb.invite())
            await wait_until(lambda: a.peer_id in rb.members())
            rc = await c.join(rb.invite())
            await wait_until(lambda: c.peer_id in ra.members())
            for n in range(5):
                await ra.send(f"from a {n}")
            await rc.send("from c")
            await wait_until(lambda: len(rc.timeline()) == 6 and same_room(ra, rb, rc))
            assert a.peer_id not in c.status().links  # it really went through B
            assert c.peer_id not in a.status().links


async def test_late_joiner_gets_the_whole_history(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    open_node = simulated()
    with trio.fail_after(30):
        async with open_node(tmp_path / "a") as a, open_node(tmp_path / "b") as b:
            ra = await a.create_room("history")
            first = await ra.send("message 0")
            for n in range(1, 300):
                await ra.send(f"message {n}")
            await ra.edit(first, "message 0 (edited)")
            rb = await b.join(ra.invite())
            await wait_until(lambda: len(rb.timeline()) == 300 and same_room(ra, rb))
            assert texts(rb)[0] == "message 0 (edited)"
            assert texts(rb)[-1] == "message 299"
            await wait_until(lambda: b.status().rooms[0].synced)


async def test_wrong_secret_gets_nothing(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    open_node = simulated()
    with trio.fail_after(15):
        async with open_node(tmp_path / "a") as a, open_node(tmp_path / "m") as m:
            ra = await a.create_room("private")
            await ra.send("secret plans")
            real = parse_invite(ra.invite())
            forged = Invite(real.room, bytes(32), real.name, (a.address,))
            rm = await m.join(forged)
            # A refuses M's proof; from then on the room is closed to M on that link.
            await wait_until(lambda: a.status().refusals == 1)
            await ra.send("more secret plans")
            await wait_until(lambda: len(ra.timeline()) == 2)
            assert m.status().links == (a.peer_id,)  # linked, but not in the room
            assert rm.timeline() == []
            # M never heard from a member, so it cannot know its own chain there: its
            # JOIN waits (it could have joined before, with a lost file).
            assert rm.members() == []
            assert ra.members() == [a.peer_id]
            assert a.status().rooms[0].peers == ()


async def test_restarted_node_keeps_everything_and_catches_up(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    open_node = simulated()
    with trio.fail_after(25):
        async with open_node(tmp_path / "a") as a:
            ra = await a.create_room("durable")
            async with open_node(tmp_path / "b") as b:
                await b.set_nick("bob")
                rb = await b.join(ra.invite())
                await rb.send("before the restart")
                await wait_until(lambda: len(ra.timeline()) == 1)
                b_id, before = b.peer_id, rb.timeline()
            # While B is down, A writes on.
            for n in range(20):
                await ra.send(f"while b was down {n}")
            await ra.set_topic("after the restart")
            await wait_until(lambda: a.status().links == ())
            async with open_node(tmp_path / "b") as b:
                assert b.peer_id == b_id and b.nick == "bob"
                (rb,) = b.rooms()
                assert rb.id == ra.id and rb.name == "durable"
                assert rb.timeline() == before  # from disk, before any link is up
                await wait_until(lambda: len(rb.timeline()) == 21 and same_room(ra, rb))
                assert rb.topic == "after the restart"
                await rb.send("back again")
                await wait_until(lambda: len(ra.timeline()) == 22)


async def test_edits_deletes_reactions_and_topic_reach_the_others(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    open_node = simulated()
    with trio.fail_after(15):
        async with open_node(tmp_path / "a") as a, open_node(tmp_path / "b") as b:
            ra = await a.create_room("changes")
            rb = await b.join(ra.invite())
            kept = await ra.send("typo hree")
            gone = await ra.send("regrettable")
            await wait_until(lambda: len(rb.timeline()) == 2)
            await ra.edit(kept, "typo here")
            await ra.delete(gone)
            await rb.react(kept, "👍")
            await rb.react(kept, "🎉")
            await rb.unreact(kept, "🎉")
            await rb.set_topic("fixed")

            def settled() -> bool:
                message = ra.message(kept)
                return (
                    message is not None
                    and message.reactions == (("👍", (b.peer_id,)),)
                    and ra.topic == "fixed"
                    and same_room(ra, rb)
                )

            await wait_until(settled)
            kept_b, gone_b = rb.message(kept), rb.message(gone)
            assert kept_b is not None and kept_b.text == "typo here" and kept_b.edited
            assert gone_b is not None and gone_b.deleted and gone_b.text == ""


async def test_events_yield_the_changes(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    open_node = simulated()
    with trio.fail_after(15):
        async with open_node(tmp_path / "a") as a, open_node(tmp_path / "b") as b:
            ra = await a.create_room("events")
            seen: list[object] = []
            async with ra.events() as events:
                rb = await b.join(ra.invite())
                await b.set_nick("bob")
                message_id = await rb.send("hi a")
                await rb.set_topic("news")
                await rb.edit(message_id, "hi alice")
                async for change in events:
                    seen.append(change)
                    if isinstance(change, MessageChanged):
                        break
            assert MemberJoined(b.peer_id) in seen
            assert NickChanged(b.peer_id, "bob") in seen
            assert MessageAdded(message_id) in seen
            assert TopicChanged("news", b.peer_id) in seen
            assert seen.index(MessageAdded(message_id)) < seen.index(MessageChanged(message_id))
            # Our own writes show up too.
            async with ra.events() as events:
                mine = await ra.send("hello b")
                assert await events.__anext__() == MessageAdded(mine)


async def test_events_end_when_the_node_closes(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    open_node = simulated()
    with trio.fail_after(10):
        async with open_node(tmp_path / "a") as a:
            room: Room = await a.create_room("short")
            events = room.events()
        assert [change async for change in events] == []


@pytest.mark.parametrize("stop", ["closed", "cancelled"])
async def test_node_restarted_mid_sync_finishes(tmp_path: Path, stop: str) -> None:
    with trio.fail_after(30):
        # B takes one batch at a time, so it really is mid-sync when it stops (a batch
        # holds up to 512 of these short messages: the window would hold them all).
        slow = GossipConfig(window=1)
        await restarted_mid_sync(open_node, tmp_path, stop, total=1500, gossip_config=slow)


async def test_join_checks_invites_and_is_idempotent(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    open_node = simulated()
    with trio.fail_after(10):
        async with open_node(tmp_path / "a") as a, open_node(tmp_path / "b") as b:
            ra = await a.create_room("once")
            with pytest.raises(InviteError):
                await b.join("rumor://invite/nonsense")
            invite = ra.invite()
            rb = await b.join(invite)
            assert await b.join(invite) == rb  # the same room, joined once
            assert b.rooms() == [rb]
            real = parse_invite(invite)
            with pytest.raises(InviteError):
                await b.join(Invite(real.room, bytes(32), real.name, ()))
            assert await a.join(invite) == ra  # our own invite: nothing new
            await wait_until(lambda: set(ra.members()) == {a.peer_id, b.peer_id})
            assert len([m for m in ra.members() if m == b.peer_id]) == 1
            assert len(list((tmp_path / "b" / "rooms").glob("*.sqlite3"))) == 1


async def test_a_data_dir_is_open_in_one_node_at_a_time(tmp_path: Path) -> None:
    """Two nodes on one data dir would author one chain twice: a fork of our own."""
    async with open_node(tmp_path / "a"):
        with pytest.raises(DataDirError, match="already open in this process"):
            async with open_node(tmp_path / "a"):
                pass
    # Another process holding the lock (as `rumor run` does) keeps the node closed.
    with _take_lock(tmp_path / "a"), pytest.raises(DataDirError, match="in use by another"):
        async with open_node(tmp_path / "a"):
            pass
    async with open_node(tmp_path / "a") as a:  # free again
        assert a.rooms() == []


async def test_a_nick_no_op_could_carry_is_refused_before_it_is_saved(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    open_node = simulated()
    async with open_node(tmp_path / "a") as a:
        await a.set_nick("alice")
        with pytest.raises(ValueError, match="control character"):
            await a.set_nick("bad\x1b[2Jnick")
        assert a.nick == "alice"
        room = await a.create_room("still fine")
        assert room.nicknames() == {a.peer_id: "alice"}
    async with open_node(tmp_path / "a") as a:
        assert a.nick == "alice"


@pytest.mark.parametrize(
    "settings", ['{"nick": ', "[1, 2]", '{"nick": "x\\u001b]0;pwn\\u0007"}', '{"nick": 5}']
)
async def test_a_damaged_settings_file_is_ignored(
    tmp_path: Path,
    settings: str,
    caplog: pytest.LogCaptureFixture,
    autojump_clock: trio.testing.MockClock,
) -> None:
    open_node = simulated()
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "settings.json").write_text(settings, "utf-8")
    async with open_node(tmp_path / "a") as a:
        assert a.nick == ""
        room = await a.create_room("works")  # authors a JOIN, and no NICK
        assert room.nicknames() == {}
    assert "ignoring the nickname" in caplog.text


async def test_an_empty_room_file_is_skipped_untouched(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    open_node = simulated()
    (tmp_path / "a" / "rooms").mkdir(parents=True)
    empty = tmp_path / "a" / "rooms" / f"{'cd' * 32}.sqlite3"
    empty.touch()
    async with open_node(tmp_path / "a") as a:
        assert a.rooms() == []
        assert a.status().failed_rooms == ((empty.name, f"{empty} is empty"),)
    assert empty.stat().st_size == 0


async def test_the_api_after_the_node_closed(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    open_node = simulated()
    async with open_node(tmp_path / "a") as a:
        room = await a.create_room("closing")
        invite = room.invite()
    for call in (a.create_room("late"), a.join(invite), a.set_nick("late"), room.send("late")):
        with pytest.raises(trio.ClosedResourceError):
            await call
    async with room.events() as events:  # made after the close: ends at once
        assert [change async for change in events] == []


async def test_stored_peer_addresses_today_s_rules_refuse_are_dropped(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    open_node = simulated()
    async with open_node(tmp_path / "a") as a:
        room_id = (await a.create_room("old")).id
    path = tmp_path / "a" / "rooms" / f"{room_id.hex()}.sqlite3"
    async with Store.open(path) as store:  # as an older version may have kept them
        peers = ["ws://127.0.0.1:7001/", "..:17001", "127.0.0.1:7002"]
        await store.set_meta({"peers": msgpack.packb(peers)})
    async with open_node(tmp_path / "a") as a:
        assert parse_invite(a.room(room_id).invite()).peers == (a.address, "127.0.0.1:7002")


async def test_invites_name_the_bound_port_and_a_loopback_node_says_so(tmp_path: Path) -> None:
    with trio.fail_after(20):
        async with open_node(tmp_path / "a", listen="127.0.0.1:0") as a:
            room = await a.create_room("here")
            (address,) = parse_invite(room.invite()).peers
            assert address == a.address and not address.endswith(":0")
            problem = a.reachability_problem()
            assert problem is not None and "loopback" in problem and "\n" not in problem
