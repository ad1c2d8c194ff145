"""Our outgoing requests: message ids, retransmission, timeouts, and matching replies.

`Requests.send` encodes a request, queues its datagram and tracks it; `handle_timer`
retransmits it (same message id, same bytes) every `rpc_timeout` until
`rpc_attempts` are spent, then reports the timeout; `on_response` matches a reply to
its request, parses it and hands the result on.  A timed-out peer is blamed in the
routing table, except for our own RPCs (the `kademlia` package ignores them).

Sans-IO: never touches a socket or a clock (`now` comes in), and draws randomness only
from the `random.Random` it is given.  It never decides what to ask: its callers do.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from ._config import DHTConfig
from ._drops import Drops
from ._errors import DropReason, RemoteProtocolError
from ._ids import Address
from ._routing import RoutingTable
from ._wire import Response, encode_request, request_datagram

__all__ = ["RPCS", "Requests", "Settled"]

T = TypeVar("T")

RPCS = ("ping", "stun", "store", "find_node", "find_value", "get_peers", "announce")
# Counter keys, built once: the hot path does no string concatenation.
_SENT = {name: "rpc " + name for name in RPCS}
_EXTENSIONS = frozenset({"get_peers", "announce"})
# Message ids drawn from the random source at once.
_MSG_ID_POOL = 64


class Settled(Protocol):
    """Whoever a request serves (a lookup): once it has `reported`, replies are not read."""

    @property
    def reported(self) -> bool: ...


@dataclass(slots=True)
class _Pending:
    msg_id: bytes
    address: Address
    node_id: bytes | None
    parse: Callable[[Any], Any]
    on_reply: Callable[[Any, float], None]
    on_timeout: Callable[[float], None]
    on_stall: Callable[[float], None] | None
    datagram: bytes
    attempts_left: int
    # Whether a timeout counts against the peer in the routing table.
    blame: bool = True
    sent: bool = True
    owner: Settled | None = None


class Requests:
    """The requests in flight of one node."""

    def __init__(
        self,
        config: DHTConfig,
        rng: random.Random,
        routing: RoutingTable,
        out: deque[tuple[bytes, Address]],
        counters: Counter[str],
        drops: Drops,
        seen: Callable[[bytes, Address, float], None],
    ) -> None:
        self._config = config
        self._rng = rng
        self._routing = routing
        self._out = out
        self._counters = counters
        self._drops = drops
        # Called with (node id, address, now) when a peer we asked answers.
        self._seen = seen
        self._pending: dict[bytes, _Pending] = {}
        self._deadlines: list[tuple[float, bytes]] = []
        self._msg_ids: list[bytes] = []

    def __len__(self) -> int:
        return len(self._pending)

    def send(
        self,
        address: Address,
        name: str,
        args: tuple[Any, ...],
        parse: Callable[[Any], T],
        now: float,
        *,
        on_reply: Callable[[T, float], None],
        on_timeout: Callable[[float], None],
        node_id: bytes | None = None,
        on_stall: Callable[[float], None] | None = None,
        body: bytes = b"",
        owner: Settled | None = None,
    ) -> None:
        """Send `name(*args)` (or the pre-encoded `body`) and track it until it settles.

        Exactly one of `on_reply(result, now)` and `on_timeout(now)` is called later
        (never from inside `send`); `on_stall(now)` once, if the first attempt times out.
        """
        # Nodes of the `kademlia` package ignore our own RPCs: silence there is no
        # sign of death, so it must not evict them from the routing table.
        blame = name not in _EXTENSIONS
        msg_id = self._new_msg_id()
        datagram = request_datagram(msg_id, body) if body else encode_request(msg_id, name, args)
        pending = _Pending(
            msg_id,
            address,
            node_id,
            parse,
            on_reply,
            on_timeout,
            on_stall,
            datagram,
            self._config.rpc_attempts - 1,
            blame,
            owner=owner,
        )
        if len(self._pending) >= self._config.max_pending:
            # Too much in flight: fail this one at the next timer, without blaming the peer.
            pending.sent = False
            self._counters["rpc not sent: too many pending"] += 1
            self._pending[msg_id] = pending
            heapq.heappush(self._deadlines, (now, msg_id))
            return
        self._pending[msg_id] = pending
        heapq.heappush(self._deadlines, (now + self._config.rpc_timeout, msg_id))
        self._out.append((datagram, address))
        self._counters[_SENT.get(name, "rpc ?")] += 1

    def _new_msg_id(self) -> bytes:
        # Drawn 64 at a time: one system call, not one per request (a third of a
        # value lookup's request cost); still unpredictable to anyone who sees them.
        if not self._msg_ids:
            pool = self._rng.randbytes(20 * _MSG_ID_POOL)
            self._msg_ids = [pool[i : i + 20] for i in range(0, len(pool), 20)]
        return self._msg_ids.pop()

    @property
    def timer(self) -> float:
        """The next retransmission or timeout (inf with nothing in flight)."""
        deadlines, pending = self._deadlines, self._pending
        while deadlines and deadlines[0][1] not in pending:
            heapq.heappop(deadlines)
        return deadlines[0][0] if deadlines else math.inf

    def handle_timer(self, now: float) -> None:
        deadlines = self._deadlines
        while deadlines and deadlines[0][0] <= now:
            _, msg_id = heapq.heappop(deadlines)
            pending = self._pending.get(msg_id)
            if pending is None:
                continue
            if pending.sent and pending.attempts_left > 0:
                # Retransmit with the same message id; a late answer to any try counts.
                pending.attempts_left -= 1
                heapq.heappush(deadlines, (now + self._config.rpc_timeout, msg_id))
                self._out.append((pending.datagram, pending.address))
                self._counters["rpc retry"] += 1
                if pending.on_stall is not None:
                    on_stall, pending.on_stall = pending.on_stall, None
                    on_stall(now)
                continue
            del self._pending[msg_id]
            if pending.sent:
                self._counters["rpc timeout"] += 1
                if pending.node_id is not None and pending.blame:
                    self._routing.failed(pending.node_id)
            pending.on_timeout(now)

    def on_response(self, response: Response, address: Address, now: float) -> None:
        """Settle the request `response` answers; RemoteProtocolError if it is bad."""
        pending = self._pending.get(response.msg_id)
        if pending is None or not pending.sent:
            self._drops.drop(address, DropReason.UNEXPECTED_RESPONSE, "no such request", now)
            return
        if pending.address != address:
            # A reply must come from where we sent the request.
            raise RemoteProtocolError("response from the wrong address", DropReason.WRONG_ADDRESS)
        del self._pending[response.msg_id]
        node_id = pending.node_id
        owner = pending.owner
        if owner is not None and owner.reported:
            # Too late to matter (the value was found): the answer only shows it is alive.
            if node_id is not None:
                self._seen(node_id, address, now)
            return
        try:
            result = pending.parse(response.result)
        except RemoteProtocolError as exc:
            if node_id is not None:
                self._routing.failed(node_id)
            pending.on_timeout(now)
            raise RemoteProtocolError(str(exc), DropReason.BAD_REPLY) from None
        if node_id is not None:
            self._seen(node_id, address, now)
        pending.on_reply(result, now)
