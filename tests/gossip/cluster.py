"""An in-memory network of gossip cores, for tests and the propagation benchmark.

Each node is a `RoomGossip` over a real `crdt.Replica`; the harness plays the driver:
it carries `Send`s over links with a seeded latency per link and a little jitter per
message (in order per direction, dropped when the link closes), performs `Ingest` by
applying the ops to the replica after a short delay and reporting back, closes links on
`Penalise`, and calls `handle_timer` when due. With `loss`, a link message is lost with
that probability and sent again, as a stream does: later messages on that direction wait
behind it (head-of-line blocking). When it is sent again depends on `loss_model`:

- `"rto"`: after a retransmission timeout, max(`rto`, twice the link's latency), doubling
  for each loss of the same message: every loss waits as long as a TCP tail loss does.
- `"tcp"`: as Linux TCP recovers (RACK-TLP, RFC 8985, Linux's default loss detection
  since 4.18; `net/ipv4/tcp_recovery.c`, `tcp_output.c`). With L the link's one-way
  latency (RTT 2L): a later message on the same direction, sent at t1, is SACKed at
  t1 + 2L, and RACK marks the lost one lost once RTT + reo_wnd (min_rtt / 4) has
  passed since it was sent, so it is sent again at max(t1 + 2L, t0 + 2.5L) (fast
  recovery); with no later message, the tail loss probe fires 2 x SRTT after it was
  sent (`tcp_schedule_loss_probe`: 2 x SRTT + 2 ms, or + TCP_RTO_MIN 200 ms when it was
  the only packet in flight), never later than the RTO. The retransmission is lost with
  the same probability, and then waits for the RTO (doubling).
Time is virtual: an event queue ordered by (time, sequence), so a seed fixes every run.
"""

from __future__ import annotations

import heapq
import random
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack

from crdt import (
    ApplyResult,
    Identity,
    IngestReport,
    InvalidOp,
    Op,
    Outcome,
    Reason,
    Replica,
    decode_op,
)
from node.gossip import (
    Action,
    GossipConfig,
    Ingest,
    MsgType,
    Penalise,
    RoomGossip,
    Send,
)

T0_MS = 1_780_000_000_000  # virtual time 0 on the wall clock (2026)
ROOM = bytes(range(32))
# Message names by type, for `bytes_by_type` (the class names of node.gossip's messages).
_NAMES = {
    MsgType.HELLO: "Hello",
    MsgType.VECTOR: "Vector",
    MsgType.OPS: "Ops",
    MsgType.ACK: "Ack",
    MsgType.IHAVE: "IHave",
    MsgType.WANT: "Want",
    MsgType.PRUNE: "Prune",
    MsgType.PAUSE: "Pause",
    MsgType.PING: "Ping",
    MsgType.PONG: "Pong",
    MsgType.DIST: "Dist",
}


def _peek(data: bytes) -> int | None:
    """The type of a well-formed message (`[type, ...]`, a short msgpack array), without
    decoding it: the harness only counts; the cores decode and check what they receive."""
    if len(data) >= 2 and 0x91 <= data[0] <= 0x9F and data[1] in _NAMES:
        return data[1]
    return None


def identity(n: int) -> Identity:
    """The n-th fixed test identity."""
    return Identity.from_seed(n.to_bytes(4, "big") * 8)


@dataclass(eq=False)
class _Segment:
    """A message on its way along a stream, under the "tcp" loss model."""

    payload: Any  # what `_on_deliver` takes
    sent: float
    arrival: float  # when it reaches the receiver's socket (read in order)
    transit: float  # one way, including any retransmission timeouts of lost copies
    delivered: bool = False


@dataclass
class SimNode:
    index: int
    identity: Identity
    replica: Replica
    core: RoomGossip
    hops: dict[bytes, int] = field(default_factory=dict)  # op id -> hops from its author
    arrived: dict[bytes, float] = field(default_factory=dict)  # op id -> virtual time
    receptions: int = 0  # op wire forms received in OPS batches (full bytes)
    ingested: int = 0  # op wire forms the core handed to ingest
    penalties: list[Penalise] = field(default_factory=list)  # ones this node issued
    timer_at: float | None = None

    @property
    def peer_id(self) -> bytes:
        return self.identity.peer_id


class Cluster:
    """N nodes of one room; link them, author ops, run virtual time, inspect."""

    def __init__(
        self,
        n: int,
        *,
        seed: int = 1,
        config: GossipConfig | None = None,
        latency: tuple[float, float] = (0.01, 0.05),
        jitter: float = 0.1,
        ingest_delay: float = 0.002,
        cache_signatures: bool = False,
        loss: float = 0.0,
        rto: float = 0.2,
        loss_model: str = "rto",
    ) -> None:
        if loss_model not in ("rto", "tcp"):
            raise ValueError(f"loss_model must be 'rto' or 'tcp', not {loss_model!r}")
        self.rng = random.Random(seed)
        self.latency = latency
        self.jitter = jitter
        self._base_latency: dict[frozenset[int], float] = {}
        self.ingest_delay = ingest_delay
        self.now = 0.0
        self.nodes: list[SimNode] = []
        self.by_id: dict[bytes, int] = {}
        for i in range(n):
            ident = identity(i)
            replica = Replica(ROOM, identity=ident)
            core = RoomGossip(
                replica,
                rng=random.Random(seed * 1_000_003 + i),
                config=config,
                peer_id=ident.peer_id,
            )
            self.nodes.append(SimNode(i, ident, replica, core))
            self.by_id[ident.peer_id] = i
        self.links: set[frozenset[int]] = set()
        self.outstanding: dict[tuple[int, int], int] = {}  # (sender, receiver) -> batches
        self.max_outstanding = 0
        self.messages = 0
        self.loss = loss
        self.rto = rto  # the first retransmission timeout (Linux's minimum RTO)
        self.loss_model = loss_model
        # "tcp": per direction, the messages on their way in order (the receiver reads
        # them in order), the lost ones whose fast recovery awaits a later message, and
        # when the last message was sent (a packet still unacked, for the loss probe).
        self._stream: dict[tuple[int, int], deque[_Segment]] = {}
        self._unrecovered: dict[tuple[int, int], list[_Segment]] = {}
        self._last_sent: dict[tuple[int, int], float] = {}
        self.bytes_by_type: dict[str, int] = {}  # link message bytes, by message type
        self._queue: list[tuple[float, int, str, Any]] = []
        self._seq = 0
        self._link_free: dict[tuple[int, int], float] = {}
        self._signatures: dict[bytes, bool] | None = {} if cache_signatures else None

    # -- topology ---------------------------------------------------------------------------

    def link(self, a: int, b: int) -> None:
        """Open a link between nodes a and b (both cores see the peer come up)."""
        assert a != b and frozenset((a, b)) not in self.links
        self.links.add(frozenset((a, b)))
        self._base_latency[frozenset((a, b))] = self.rng.uniform(*self.latency)
        for x, y in ((a, b), (b, a)):
            self.outstanding[(x, y)] = 0
            self._link_free[(x, y)] = self.now
            self._stream[(x, y)] = deque()  # a new stream: what was on the old one is lost
            self._unrecovered[(x, y)] = []
            self._last_sent[(x, y)] = -1.0
        self._perform(a, self.nodes[a].core.peer_up(self.nodes[b].peer_id, self.now))
        self._perform(b, self.nodes[b].core.peer_up(self.nodes[a].peer_id, self.now))

    def unlink(self, a: int, b: int) -> None:
        """Close the link between a and b; messages still on it are lost."""
        if frozenset((a, b)) not in self.links:
            return
        self.links.discard(frozenset((a, b)))
        self._perform(a, self.nodes[a].core.peer_down(self.nodes[b].peer_id, self.now))
        self._perform(b, self.nodes[b].core.peer_down(self.nodes[a].peer_id, self.now))

    def neighbours(self, a: int) -> list[int]:
        return sorted(b for link in self.links if a in link for b in link if b != a)

    # -- events -----------------------------------------------------------------------------

    def author(self, i: int, text: str) -> Op:
        """Node i writes a message now."""
        node = self.nodes[i]
        op = node.replica.new_message(text, now_ms=self._now_ms())
        assert node.replica.admit(op).added
        node.hops[op.id] = 0
        node.arrived[op.id] = self.now
        self._perform(i, node.core.authored(op, self.now))
        return op

    def author_at(self, when: float, i: int, text: str) -> None:
        self._push(when, "author", (i, text))

    def inject(self, src: int, dst: int, data: bytes) -> None:
        """Deliver raw bytes to dst as if src had sent them, now."""
        kind = _peek(data)
        try:
            count = len(msgpack.unpackb(data)[3]) if kind == MsgType.OPS else 0
        except Exception:
            count = 0  # garbage: the core penalises it
        self._push(self.now, "deliver", (src, dst, data, kind, count))

    def run(self, duration: float, *, max_events: int = 5_000_000) -> None:
        """Process events for `duration` seconds of virtual time."""
        end = self.now + duration
        for _ in range(max_events):
            if not self._queue or self._queue[0][0] > end:
                self.now = end
                return
            when, _, kind, payload = heapq.heappop(self._queue)
            self.now = when
            getattr(self, "_on_" + kind)(*payload)
        raise AssertionError("the cluster did not go quiet within max_events")

    # -- inspection -------------------------------------------------------------------------

    def converged(self, nodes: Sequence[int] | None = None) -> bool:
        picked = [self.nodes[i] for i in (nodes if nodes is not None else range(len(self.nodes)))]
        first = picked[0].replica
        return all(
            len(n.replica) == len(first) and n.replica.render() == first.render()
            for n in picked[1:]
        )

    # -- the driver's part ------------------------------------------------------------------

    def _now_ms(self) -> int:
        return T0_MS + int(self.now * 1000)

    def _push(self, when: float, kind: str, payload: Any) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (when, self._seq, kind, payload))

    def _perform(self, i: int, actions: list[Action]) -> None:
        node = self.nodes[i]
        for action in actions:
            if isinstance(action, Send):
                j = self.by_id[action.peer]
                if frozenset((i, j)) not in self.links:
                    continue
                kind = _peek(action.data)
                name = _NAMES.get(kind, "garbage") if kind is not None else "garbage"  # type: ignore[call-overload]
                self.bytes_by_type[name] = self.bytes_by_type.get(name, 0) + len(action.data)
                count = 0
                if kind == MsgType.OPS:
                    count = len(msgpack.unpackb(action.data)[3])
                    self.outstanding[(i, j)] += 1
                    self.max_outstanding = max(self.max_outstanding, self.outstanding[(i, j)])
                base = self._base_latency[frozenset((i, j))]
                delay = base * self.rng.uniform(1 - self.jitter, 1 + self.jitter)
                if self.loss and self.loss_model == "tcp":
                    self.messages += 1
                    self._send_tcp(i, j, base, delay, (i, j, action.data, kind, count))
                    continue
                rto = max(self.rto, 2 * base)
                while self.loss and self.rng.random() < self.loss:
                    delay += rto  # lost: the stream sends it again after its timeout
                    rto *= 2
                when = max(self.now + delay, self._link_free[(i, j)])
                self._link_free[(i, j)] = when
                self.messages += 1
                self._push(when, "deliver", (i, j, action.data, kind, count))
            elif isinstance(action, Ingest):
                self._push(self.now + self.ingest_delay, "ingest", (i, action))
            else:
                node.penalties.append(action)
                self.unlink(i, self.by_id[action.peer])
        self._schedule_timer(i)

    def _send_tcp(self, i: int, j: int, base: float, delay: float, payload: Any) -> None:
        """One message on the stream i -> j under the "tcp" loss model (module docstring)."""
        key, now = (i, j), self.now
        for segment in self._unrecovered[key]:
            # This message's SACK shows the earlier loss to RACK: sent again at once if
            # RTT + reo_wnd has passed since, else when it has.
            again = max(now + 2 * base, segment.sent + 2.5 * base)
            arrival = again + segment.transit
            if arrival < segment.arrival:
                segment.arrival = arrival
                self._push(arrival, "arrive", (key, segment))
        self._unrecovered[key] = []
        segment = _Segment(payload, now, now + delay, delay)
        if self.rng.random() < self.loss:
            rto = max(self.rto, 2 * base)
            # Another packet unacked (sent within the last RTT, or still on its way):
            # the probe waits 2 x SRTT (+ 2 ms); alone, 2 x SRTT + 200 ms; never past the RTO.
            busy = self._stream[key] or now - self._last_sent[key] < 2 * base
            probe = min(4 * base + (0.002 if busy else self.rto), rto)
            while self.rng.random() < self.loss:
                segment.transit += rto  # the retransmission was lost too: the RTO, doubling
                rto *= 2
            segment.arrival = now + probe + segment.transit
            self._unrecovered[key].append(segment)
        self._last_sent[key] = now
        self._stream[key].append(segment)
        self._push(segment.arrival, "arrive", (key, segment))

    def _on_arrive(self, key: tuple[int, int], segment: _Segment) -> None:
        stream = self._stream.get(key)
        if stream is None or segment.arrival > self.now or segment.delivered:
            return  # a stale event: it arrives earlier or later than this one said
        segment.delivered = True
        while stream and stream[0].delivered:
            self._on_deliver(*stream.popleft().payload)

    def _schedule_timer(self, i: int) -> None:
        node = self.nodes[i]
        when = node.core.next_timer()
        if when is not None and (node.timer_at is None or when < node.timer_at):
            node.timer_at = when
            self._push(max(when, self.now), "timer", (i, when))

    def _on_timer(self, i: int, when: float) -> None:
        node = self.nodes[i]
        if node.timer_at != when:
            return  # superseded by an earlier timer
        node.timer_at = None
        self._perform(i, node.core.handle_timer(self.now))

    def _on_author(self, i: int, text: str) -> None:
        self.author(i, text)

    def _on_deliver(self, src: int, dst: int, data: bytes, kind: int | None, count: int) -> None:
        if frozenset((src, dst)) not in self.links:
            return
        if kind == MsgType.OPS:
            self.nodes[dst].receptions += count
        elif kind == MsgType.ACK:
            self.outstanding[(dst, src)] -= 1
        node = self.nodes[dst]
        self._perform(dst, node.core.receive(self.nodes[src].peer_id, data, self.now))

    def _on_ingest(self, i: int, action: Ingest) -> None:
        node = self.nodes[i]
        node.ingested += len(action.ops)
        sender = self.nodes[self.by_id[action.peer]] if action.peer in self.by_id else None
        outcomes: list[Outcome] = []
        reasons: dict[int, Reason] = {}
        added: list[Op] = []
        decoded = action.decoded or (None,) * len(action.ops)
        for n, (data, known) in enumerate(zip(action.ops, decoded, strict=True)):
            result = self._apply(node.replica, data, known)
            outcomes.append(result.outcome)
            if result.reason is not None:
                reasons[n] = result.reason
            if result.added and result.id is not None:
                op = node.replica.get(result.id)
                assert op is not None
                added.append(op)
                hops = sender.hops.get(op.id, 0) if sender is not None else 0
                node.hops[op.id] = hops + 1
                node.arrived[op.id] = self.now
        report = IngestReport(outcomes, reasons, added, [])
        self._perform(i, node.core.ingested(action.token, report, self.now))

    def _apply(self, replica: Replica, data: bytes, op: Op | None) -> ApplyResult:
        if self._signatures is None:
            return replica.apply(data, now_ms=self._now_ms())
        # The benchmark verifies each distinct wire form once for the whole network, and
        # takes the core's decoding of it (the driver hands `Ingest.decoded` on likewise).
        if op is None:
            try:
                op = decode_op(data)
            except InvalidOp as exc:
                return ApplyResult(Outcome.REJECTED, None, exc.reason)
        early = replica.check(op, now_ms=self._now_ms())
        if early is not None:
            return early
        ok = self._signatures.get(data)
        if ok is None:
            ok = self._signatures[data] = op.signature_ok()
        if not ok:
            return ApplyResult(Outcome.REJECTED, op.id, Reason.BAD_SIGNATURE)
        return replica.admit(op)
