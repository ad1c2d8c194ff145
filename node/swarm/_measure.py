"""What a swarm run measures: sends, arrivals, and the figures a report is made of.

`Recorder` is fed by the swarm as ops are sent and arrive (in virtual time) and keeps
only aggregates that stay small for a thousand nodes: latencies in one float array,
deliveries per time bucket. `room_digest` condenses a node's views of a room to a short
hex string; a swarm has converged when every live node's digest is the same.

Nothing here reads a clock, a generator or the file system: the caller hands `now` in,
so a seeded run records the same figures every time.
"""

from __future__ import annotations

import hashlib
import math
from array import array
from dataclasses import dataclass, field

import msgpack

from crdt import message_row

from .._room import Room
from ..client import ChatClient

__all__ = ["Recorder", "percentile", "room_digest", "room_digest_remote"]

LATENCY_EDGES_MS = tuple(round(10 ** (k / 8), 3) for k in range(0, 41))  # 1 ms .. 100 s


def percentile(ordered: array[float] | list[float], q: float) -> float:
    """The `q` quantile of sorted values (nearest rank); 0.0 for none."""
    if not ordered:
        return 0.0
    return float(ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))])


def _digest(parts: list[object]) -> str:
    return hashlib.blake2b(msgpack.packb(parts), digest_size=12).hexdigest()


def room_digest(room: Room) -> str:
    """A digest of everything a person sees of `room` on one node: the timeline (with
    edits, deletes and reactions), the topic, nicknames, members and forked authors.
    Two nodes with equal digests show the same room."""
    timeline = [message_row(m) for m in room.timeline()]
    return _digest(
        [
            room.id,
            timeline,
            room.topic,
            sorted(room.nicknames().items()),
            room.members(),
            room.forked_authors(),
        ]
    )


async def room_digest_remote(client: ChatClient, room_id: bytes) -> str:
    """`room_digest` through a `ChatClient` (a node in another process): the same views,
    read as pages of history and the member list."""
    messages: list[object] = []
    before: bytes | None = None
    while True:
        page = await client.history(room_id, before=before, limit=500)
        messages[:0] = [message_row(m) for m in page.messages]
        if not page.more_before or not page.messages:
            break
        before = page.messages[0].id
    info = await client.room(room_id)
    members = await client.members(room_id)
    nicks = sorted((m.peer_id, m.nick) for m in members if m.nick)
    forked = sorted(m.peer_id for m in members if m.forked)
    return _digest(
        [room_id, messages, info.topic, nicks, sorted(m.peer_id for m in members), forked]
    )


@dataclass(slots=True)
class _Sent:
    author: int
    at: float
    expected: int  # nodes other than the author up when it was sent
    n: int = 0  # how many ops were sent before it


@dataclass
class Recorder:
    """Sends and arrivals of the swarm's messages, in virtual seconds."""

    bucket: float = 1.0  # seconds per point of the delivery-over-time series
    sent: dict[bytes, _Sent] = field(default_factory=dict)
    latencies: array[float] = field(default_factory=lambda: array("d"))
    delivered: dict[int, int] = field(default_factory=dict)  # bucket -> arrivals
    expected: dict[int, int] = field(default_factory=dict)  # bucket -> pairs due then
    arrivals: int = 0
    catch_ups: int = 0  # arrivals at nodes that were down (or not yet there) when it was sent
    events: list[tuple[float, str]] = field(default_factory=list)
    progress: list[tuple[float, int, int]] = field(default_factory=list)  # (t, arrivals, up)
    # Arrivals of an op at a node that was a member when it was sent: these, and only
    # these, are what `expected` counts (catch-ups of ops sent while away are not).
    delivered_due: int = 0
    # Per node, its spans of membership in ops sent: [first op due, op after its last).
    _member: dict[int, list[list[int | None]]] = field(default_factory=dict)

    def joined(self, node: int) -> None:
        """`node` is in the room from now on: ops sent from now are due to it."""
        spans = self._member.setdefault(node, [])
        if not spans or spans[-1][1] is not None:
            spans.append([len(self.sent), None])

    def left(self, node: int) -> None:
        """`node` left the room (stopped): ops sent from now are not due to it."""
        spans = self._member.get(node)
        if spans and spans[-1][1] is None:
            spans[-1][1] = len(self.sent)

    def _was_member(self, node: int, n: int) -> bool:
        for first, end in reversed(self._member.get(node, ())):
            if first is not None and first <= n and (end is None or n < end):
                return True
        return False

    def on_sent(self, op_id: bytes, author: int, now: float, up: int) -> None:
        self.sent[op_id] = _Sent(author, now, max(0, up - 1), len(self.sent))
        key = int(now // self.bucket)
        self.expected[key] = self.expected.get(key, 0) + max(0, up - 1)

    def on_arrived(self, node: int, op_id: bytes, now: float, since: float = 0.0) -> None:
        """Op `op_id` arrived at `node`, which has been up since `since`: an op sent before
        that is a catch-up, counted apart from the delivery latencies."""
        sent = self.sent.get(op_id)
        if sent is None or sent.author == node:
            return
        self.arrivals += 1
        if self._was_member(node, sent.n):
            self.delivered_due += 1
        if sent.at < since:
            self.catch_ups += 1
            return
        self.latencies.append(now - sent.at)
        key = int(now // self.bucket)
        self.delivered[key] = self.delivered.get(key, 0) + 1

    def note(self, now: float, what: str) -> None:
        """A fault or phase, for the report's timeline."""
        self.events.append((round(now, 3), what))

    # -- figures -----------------------------------------------------------------------

    def latency_figures(self) -> dict[str, object]:
        ordered = array("d", sorted(self.latencies))
        ms = [1000 * v for v in ordered]
        counts = [0] * (len(LATENCY_EDGES_MS) + 1)
        edge = 0
        for value in ms:  # sorted: one pass
            while edge < len(LATENCY_EDGES_MS) and value >= LATENCY_EDGES_MS[edge]:
                edge += 1
            counts[edge] += 1
        return {
            "count": len(ms),
            "catch_ups": self.catch_ups,
            "p50": round(percentile(ms, 0.5), 3),
            "p90": round(percentile(ms, 0.9), 3),
            "p99": round(percentile(ms, 0.99), 3),
            "max": round(ms[-1], 3) if ms else 0.0,
            "mean": round(sum(ms) / len(ms), 3) if ms else 0.0,
            "histogram": {"edges_ms": list(LATENCY_EDGES_MS), "counts": counts},
        }

    def delivery_series(self, end: float) -> list[list[float]]:
        """[[t, arrivals so far, pairs due so far], ...] per bucket up to `end`."""
        series: list[list[float]] = []
        arrived = due = 0
        for key in range(int(end // self.bucket) + 1):
            arrived += self.delivered.get(key, 0)
            due += self.expected.get(key, 0)
            series.append([round((key + 1) * self.bucket, 3), arrived, due])
        return series
