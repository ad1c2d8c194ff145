"""A hostile member: the payloads it sends once in a room, and the whole scenario the
hostile tests run on loopback and on the simulator alike."""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import msgpack

from crdt import Identity, Kind, Replica
from node import Node, Room, parse_invite
from node.gossip import PROTOCOL_VERSION, GossipConfig, Hello, Mode, Ops, encode_message
from node.link import StreamTransport, TCPTransport, connect_link

from ._helpers import same_room, wait_until

LIMIT = 20 * 1024  # the receive limit the attacked node advertises in its HELLO


def garbage(room: bytes, author: Identity) -> bytes:
    return b"\xc1 is no msgpack at all"


def bad_signature(room: bytes, author: Identity) -> bytes:
    op = Replica(room, identity=author).create(Kind.MESSAGE, ("forged", None), now_ms=1)
    tampered = op.data[:-1] + bytes([op.data[-1] ^ 1])
    return encode_message(Ops(0, Mode.PUSH, (tampered,)))


def oversized(room: bytes, author: Identity) -> bytes:
    replica = Replica(room, identity=author)
    ops = []
    for n in range(30):  # each ~1 KiB, valid and signed: only the size is wrong
        op = replica.create(Kind.MESSAGE, (f"{n} " + "x" * 1000, None), now_ms=1 + n)
        replica.admit(op)
        ops.append(op.data)
    payload: bytes = msgpack.packb([2, 0, int(Mode.PUSH), ops])
    assert len(payload) > LIMIT
    return payload


ATTACKS = [garbage, bad_signature, oversized]


Attack = Callable[[bytes, Identity], bytes]
NodeOpener = Callable[..., AbstractAsyncContextManager[Node]]


async def member_turns_hostile(
    open_node: NodeOpener,
    data_dir: Path,
    attack: Attack,
    transport: StreamTransport | None = None,
) -> None:
    """Mallory joins a room with the secret, then sends `attack`: A cuts it off, loses
    nothing, and keeps serving (an honest member then joins and gets everything)."""
    config = GossipConfig(max_message_bytes=LIMIT)
    options: dict[str, Any] = {"gossip_config": config}
    async with open_node(data_dir / "a", **options) as a:
        ra = await a.create_room("target")
        for n in range(10):
            await ra.send(f"kept {n}")
        before, ops_before = ra.timeline(), a.status().rooms[0].ops
        invite = parse_invite(ra.invite())
        mallory = Identity.generate()
        streams = transport or TCPTransport()
        async with connect_link(f"ws://{a.address}/", mallory, transport=streams) as link:
            assert await link.join_room(invite.room, invite.secret)  # a member...
            await link.send(invite.room, encode_message(Hello(PROTOCOL_VERSION, 4, LIMIT)))
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
        async with open_node(data_dir / "b") as b:  # and A keeps serving
            rb = await b.join(ra.invite())
            await rb.send("still here?")
            await wait_until(lambda: len(ra.timeline()) == 11 and same_room(ra, rb))


def holds(room: Room, op_id: bytes) -> bool:
    return room.message(op_id) is not None


async def member_equivocates(
    open_node: NodeOpener, data_dir: Path, transport: StreamTransport | None = None
) -> None:
    """Mallory signs two different messages with the same seq and tells A one, B the
    other. A and B are linked and their version vectors look equal, yet both end up with
    both twins and see Mallory as forked."""
    async with open_node(data_dir / "a") as a, open_node(data_dir / "b") as b:
        ra = await a.create_room("equivocation")
        rb = await b.join(ra.invite())
        await rb.send("linked")
        await wait_until(lambda: len(ra.timeline()) == 1 and same_room(ra, rb))
        invite = parse_invite(ra.invite())
        mallory = Identity.generate()
        twins = [
            Replica(invite.room, identity=mallory).create(Kind.MESSAGE, (text, None), now_ms=1)
            for text in ("to a", "to b")
        ]
        assert twins[0].seq == twins[1].seq and twins[0].id != twins[1].id
        streams = transport or TCPTransport()
        for node, room, twin in ((a, ra, twins[0]), (b, rb, twins[1])):
            async with connect_link(f"ws://{node.address}/", mallory, transport=streams) as link:
                assert await link.join_room(invite.room, invite.secret)
                await link.send(invite.room, encode_message(Hello(PROTOCOL_VERSION, 4, LIMIT)))
                await link.send(invite.room, encode_message(Ops(0, Mode.PUSH, (twin.data,))))
                await wait_until(functools.partial(holds, room, twin.id))
        await wait_until(lambda: all(holds(r, t.id) for r in (ra, rb) for t in twins))
        assert ra.forked_authors() == rb.forked_authors() == [mallory.peer_id]
        assert same_room(ra, rb)
