"""The sans-IO DHT node: datagrams and `now` in; datagrams, timers and events out.

Shape (after aioquic): the driver feeds `receive_datagram(data, address, now)` and
`handle_timer(now)`, sends whatever `datagrams_to_send()` returns, sleeps until
`get_timer()`, and reads `next_event()` for finished operations, dropped input and the
bootstrap's health.  Operations (`start_get`, `start_announce`, ...) return an `Op[R]`;
an `OperationDone` event with that id carries the result, of type `R`.

`DHTProtocol` is a facade over the parts that do the work: `Requests` (our requests in
flight: retransmission, timeouts, replies), `Server` behind a `RateLimiter` (answering
peers), `Operations` (lookups and what is built on them) and `Drops` (dropped input,
counted by `DropReason`).  It routes datagrams and timers to them and owns the
bootstrap watch: with bootstrap addresses and no contact `bootstrap_grace` later, it
reports `BootstrapFailed` once, and `BootstrapRecovered` when contacts arrive.

What this module must never do: touch a socket, read a clock, or use any randomness but
the `random.Random` it was given.  Hostile input ends in a counter labelled by its
`DropReason` and a `DatagramDropped` event; it never raises out of `receive_datagram`.
"""

from __future__ import annotations

import math
import random
from collections import Counter, deque
from collections.abc import Iterable
from typing import Any

from rumor_runtime import SignatureCheck

from ._config import DHTConfig
from ._drops import Drops
from ._errors import DropReason, RemoteProtocolError
from ._events import (
    AnnounceResult,
    BootstrapFailed,
    BootstrapRecovered,
    BootstrapResult,
    Event,
    GetPeersResult,
    GetResult,
    LookupResult,
    Op,
    OperationDone,
    SetResult,
)
from ._ids import Address, Contact, check_node_id
from ._operations import Operations, checked_address
from ._records import PeerRecord
from ._requests import Requests
from ._routing import RoutingTable
from ._serve import RateLimiter, Server, source_of
from ._storage import ValueStore
from ._wire import Request, Value, decode_datagram

__all__ = ["DHTProtocol"]


class DHTProtocol:
    """A Kademlia node with no IO: see the module docstring for the calling contract."""

    def __init__(
        self,
        node_id: bytes,
        *,
        rng: random.Random,
        now: float,
        config: DHTConfig | None = None,
        wall_offset: float = 0.0,
        check_signature: SignatureCheck | None = None,
    ) -> None:
        self.node_id = check_node_id(node_id)
        self.config = config = config or DHTConfig()
        self.rng = rng
        # Wall-clock time is `now + wall_offset`; records carry Unix expiry times.
        self.wall_offset = wall_offset
        self.routing = RoutingTable(
            node_id,
            k=config.k,
            max_fails=config.max_fails,
            max_per_host=config.max_contacts_per_host,
            fresh_for=config.fresh_for,
            now=now,
        )
        self.storage = ValueStore(config.limits)
        self.counters: Counter[str] = Counter()
        self._out: deque[tuple[bytes, Address]] = deque()
        self._events: deque[Event] = deque()
        self._drops = Drops(
            self.counters, self._events, interval=config.drop_summary_interval, now=now
        )
        self._requests = Requests(
            config, rng, self.routing, self._out, self.counters, self._drops, self._seen
        )
        self._rate = RateLimiter(config.rate_limit, config.rate_burst)
        self._server = Server(
            self.node_id,
            config,
            rng,
            self.routing,
            self.storage,
            self._out,
            self.counters,
            self._drops,
            seen=self._seen_asking,
            wall_offset=wall_offset,
            now=now,
            check=check_signature,
        )
        self._ops = Operations(
            self.node_id,
            config,
            self.routing,
            self.storage,
            self._requests,
            self.counters,
            self._drops,
            done=self._done,
            wall_offset=wall_offset,
            check=check_signature,
        )
        self._next_maintenance = now + config.maintenance_interval
        # The bootstrap watch: addresses tried, when to check, whether it failed.
        self._bootstrap_addresses: dict[Address, None] = {}
        self._bootstrap_check = math.inf
        self._bootstrap_failed = False

    # -- the driver's side ---------------------------------------------------------------

    def wall(self, now: float) -> float:
        return now + self.wall_offset

    def datagrams_to_send(self) -> list[tuple[bytes, Address]]:
        out = list(self._out)
        self._out.clear()
        return out

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float:
        """When `handle_timer` must next be called (always finite: maintenance recurs)."""
        return min(
            self._next_maintenance,
            self._requests.timer,
            self._drops.timer,
            self._bootstrap_check,
        )

    def handle_timer(self, now: float) -> None:
        self._requests.handle_timer(now)
        self._drops.handle_timer(now)
        if now >= self._bootstrap_check:
            self._check_bootstrap()
        if now >= self._next_maintenance:
            self._maintain(now)

    def receive_datagram(self, data: bytes, address: Address, now: float) -> None:
        """Handle one datagram from `address` (canonical host, port).  Never raises."""
        self.counters["datagrams in"] += 1
        try:
            message = decode_datagram(data)
            if not isinstance(message, Request):
                self._requests.on_response(message, address, now)
            elif self._rate.allow(source_of(address), now):
                self._server.handle(message, address, now)
            else:
                self._drops.drop(address, DropReason.RATE_LIMITED, "over the rate", now)
        except RemoteProtocolError as exc:
            self._drops.drop(address, exc.reason, str(exc), now)
        if self._bootstrap_failed and len(self.routing):
            self._recovered()

    # -- health ----------------------------------------------------------------------------

    @property
    def bootstrap_failed(self) -> bool:
        """Bootstrap addresses were given, and `bootstrap_grace` later there is still no
        contact; cleared once one arrives."""
        return self._bootstrap_failed

    @property
    def bootstrap_addresses(self) -> tuple[Address, ...]:
        """Every bootstrap address tried so far, in the order first given."""
        return tuple(self._bootstrap_addresses)

    def _check_bootstrap(self) -> None:
        self._bootstrap_check = math.inf
        if len(self.routing) == 0 and not self._bootstrap_failed:
            self._bootstrap_failed = True
            self.counters["bootstrap failed"] += 1
            self._events.append(BootstrapFailed(self.bootstrap_addresses))

    def _recovered(self) -> None:
        self._bootstrap_failed = False
        self._events.append(BootstrapRecovered(len(self.routing)))

    # -- operations ------------------------------------------------------------------------

    def start_bootstrap(self, addresses: Iterable[Address], now: float) -> Op[BootstrapResult]:
        """Ping `addresses`, then look up our own id (Kademlia §2.3, joining)."""
        targets = [checked_address(a) for a in addresses]
        if targets:
            self._bootstrap_addresses.update(dict.fromkeys(targets))
            if self._bootstrap_check == math.inf and not self._bootstrap_failed:
                self._bootstrap_check = now + self.config.bootstrap_grace
        return self._ops.bootstrap(targets, now)

    def start_ping(self, address: Address, now: float) -> Op[bytes | None]:
        """Ping `address`; the result is its node id or None."""
        return self._ops.ping(address, now)

    def start_stun(self, address: Address, now: float) -> Op[Address | None]:
        """Ask `address` where it sees us; the result is (host, port) or None."""
        return self._ops.stun(address, now)

    def start_find_node(self, target: bytes, now: float) -> Op[LookupResult]:
        """Iterative node lookup."""
        return self._ops.find_node(target, now)

    def start_get(self, key: bytes, now: float) -> Op[GetResult]:
        """Find the value under a hashed key."""
        return self._ops.get(key, now)

    def start_set(self, key: bytes, value: Value, now: float) -> Op[SetResult]:
        """Store under a hashed key at the k closest nodes."""
        return self._ops.set(key, value, now)

    def start_announce(self, key: bytes, record: PeerRecord, now: float) -> Op[AnnounceResult]:
        """Announce a signed record under `key`; re-announced every `announce_interval`
        until it expires."""
        return self._ops.announce(key, record, now)

    def stop_announcing(self, key: bytes) -> None:
        self._ops.stop_announcing(key)

    def start_get_peers(self, key: bytes, now: float) -> Op[GetPeersResult]:
        """The verified records under `key`, newest first."""
        return self._ops.get_peers(key, now)

    # -- plumbing --------------------------------------------------------------------------

    def _done(self, op: Op[Any], result: Any) -> None:
        self._events.append(OperationDone(op, result))

    def _seen(self, node_id: bytes, address: Address, now: float) -> None:
        """A peer we asked answered from `address`."""
        if not self.routing.seen(node_id, address, now):
            self._ops.observe(Contact.trusted(node_id, *address), now)

    def _seen_asking(self, node_id: bytes, address: Address, now: float) -> None:
        """A peer asked us something from `address` (perhaps a newcomer, joining)."""
        if not self.routing.seen(node_id, address, now):
            self._ops.observe(Contact.trusted(node_id, *address), now, welcome=True)

    def _maintain(self, now: float) -> None:
        cfg = self.config
        self._next_maintenance = now + cfg.maintenance_interval
        self._server.rotate(now)
        self.storage.expire(now, self.wall(now))
        self._ops.maintain(now, self.routing.refresh_targets(now, cfg.refresh_interval, self.rng))
        self._rate.forget_refilled(now)
