"""Driving one `RoomGossip` core by hand: fixed peers, ops, ingest reports, and the
messages it sends, for the exact-action tests."""

from __future__ import annotations

import random
from typing import TypeVar

from crdt import IngestReport, Op, Replica
from node.gossip import (
    MAX_MESSAGE_BYTES,
    Action,
    GossipConfig,
    Hello,
    Message,
    Mode,
    Ops,
    RoomGossip,
    Send,
    Vector,
    Want,
    decode_message,
    encode_message,
)
from tests.gossip.cluster import ROOM, T0_MS, identity

A, B, C = (bytes([n]) * 32 for n in (0xA, 0xB, 0xC))
M = TypeVar("M", bound=Message)


def authored(count: int, who: int = 5) -> list[Op]:
    """`count` chained messages of one author, not applied anywhere we test."""
    replica = Replica(ROOM, identity=identity(who))
    ops = []
    for n in range(count):
        op = replica.new_message(f"m{n}", now_ms=T0_MS + n)
        replica.admit(op)
        ops.append(op)
    return ops


def sent(actions: list[Action]) -> list[tuple[bytes, Message]]:
    return [(a.peer, decode_message(a.data)) for a in actions if isinstance(a, Send)]


def of_type(actions: list[Action], kind: type[M]) -> list[tuple[bytes, M]]:
    return [(peer, m) for peer, m in sent(actions) if isinstance(m, kind)]


def report_for(replica: Replica, ops: tuple[bytes, ...]) -> IngestReport:
    report = IngestReport([], {}, [], [])
    for n, data in enumerate(ops):
        result = replica.apply(data, now_ms=T0_MS + 10_000)
        report.outcomes.append(result.outcome)
        if result.reason is not None:
            report.reasons[n] = result.reason
        if result.added:
            op = replica.get(result.id or b"")
            assert op is not None
            report.added.append(op)
    return report


def make(peer_id: bytes = b"", **config: object) -> tuple[RoomGossip, Replica]:
    replica = Replica(ROOM)
    settings = {**config}
    core = RoomGossip(
        replica,
        rng=random.Random(0),
        config=GossipConfig(**settings),  # type: ignore[arg-type]
        peer_id=peer_id,
    )
    return core, replica


def connect(
    core: RoomGossip, peer: bytes, *, window: int = 4, feeds: bool = True, now: float = 0.0
) -> list[Action]:
    """Open a link to `peer` at `now`; with `feeds`, the peer asks us to push it authors'
    first ops (the link-wide GRAFT a node sends the first `eager_peers` peers it links to)."""
    actions = core.peer_up(peer, now)
    actions += core.receive(peer, encode_message(Hello(1, window, MAX_MESSAGE_BYTES)), now)
    actions += core.receive(peer, encode_message(Vector(False, False, ())), now)
    if feeds:
        actions += core.receive(peer, encode_message(Want(True, ())), now)
    return actions


def graft(author: bytes) -> Want:
    """Push me this author's ops (a per-author GRAFT)."""
    return Want(False, (), (author,))


def push(core: RoomGossip, peer: bytes, op: Op, now: float, batch: int = 0) -> list[Action]:
    return core.receive(peer, encode_message(Ops(batch, Mode.PUSH, (op.data,))), now)


def deliver(core: RoomGossip, replica: Replica, peer: bytes, op: Op, now: float) -> list[Action]:
    """`peer` pushes `op` (our first batch from it) at `now`, and it is ingested 10 ms
    later: the actions that ingest brings."""
    push(core, peer, op, now)
    return core.ingested(0, report_for(replica, (op.data,)), now + 0.01)
