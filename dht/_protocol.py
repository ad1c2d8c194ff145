"""The sans-IO DHT node: datagrams and `now` in; datagrams, timers and events out.

Shape (after aioquic): the driver feeds `receive_datagram(data, address, now)` and
`handle_timer(now)`, sends whatever `datagrams_to_send()` returns, sleeps until
`get_timer()`, and reads `next_event()` for finished operations and dropped input.
Operations (`start_get`, `start_announce`, ...) return an id; an `OperationDone` event
with that id carries the result.

What this class must never do: touch a socket, read a clock, or use any randomness but
the `random.Random` it was given.  Hostile input ends in a counter and at most one
`DatagramDropped` event per (host, reason); it never raises out of `receive_datagram`.
"""

from __future__ import annotations

import functools
import hashlib
import heapq
import hmac
import random
import re
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import msgpack

from ._errors import LocalProtocolError, RemoteProtocolError
from ._ids import (
    Address,
    Contact,
    canonical_host,
    check_node_id,
    distance,
    is_ipv6,
)
from ._lookup import Lookup, LookupStats
from ._records import PeerRecord
from ._routing import RoutingTable
from ._storage import LOCAL_SOURCE, StorageLimits, StoreRefused, ValueStore
from ._wire import (
    MAX_DATAGRAM,
    Announce,
    FindNode,
    FindValue,
    FoundValue,
    GetPeers,
    PeersReply,
    Ping,
    Request,
    Response,
    Store,
    Stun,
    UnknownRpc,
    Value,
    decode_datagram,
    encode_request,
    encode_request_body,
    encode_response,
    parse_announce_reply,
    parse_contacts,
    parse_find_value_reply,
    parse_get_peers_reply,
    parse_ping_reply,
    parse_request,
    parse_store_reply,
    parse_stun_reply,
    request_datagram,
)

__all__ = [
    "AnnounceResult",
    "BootstrapResult",
    "DHTConfig",
    "DHTProtocol",
    "DatagramDropped",
    "Event",
    "GetPeersResult",
    "GetResult",
    "LookupResult",
    "OperationDone",
    "SetResult",
]


@dataclass(frozen=True, slots=True)
class DHTConfig:
    """Tunables of one node.  k and alpha are the paper's; the rest are operator limits."""

    k: int = 20
    alpha: int = 3
    # Each RPC is sent up to `rpc_attempts` times, `rpc_timeout` apart, before the peer
    # counts as failed: 6 x 0.8 s is within the package's single 5 s wait, and with 10%
    # datagram loss a live peer still fails only once in ~20,000 RPCs (0.19 ** 6).
    rpc_timeout: float = 0.8
    rpc_attempts: int = 6
    refresh_interval: float = 3600.0
    maintenance_interval: float = 60.0
    token_rotation: float = 300.0
    announce_interval: float = 600.0
    max_fails: int = 2
    # Seconds a contact counts as alive after we last heard from it: a full bucket pings
    # its least-recently seen contact for a newcomer only once that is older than this.
    fresh_for: float = 60.0
    # Routing-table contacts per IP address (loopback exempt); None for no limit.
    max_contacts_per_host: int | None = 8
    # Per source host: sustained requests per second and burst.
    rate_limit: float = 50.0
    rate_burst: float = 200.0
    max_pending: int = 4096
    # Announced records must name only the announcer's own IP (see `_on_announce`).
    require_address_match: bool = True
    limits: StorageLimits = field(default_factory=StorageLimits)

    def __post_init__(self) -> None:
        if self.k < 1 or self.alpha < 1 or self.rpc_timeout <= 0 or self.rpc_attempts < 1:
            raise LocalProtocolError("k, alpha, rpc_timeout and rpc_attempts must be positive")


# -- events and results ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LookupResult:
    contacts: tuple[Contact, ...]
    stats: LookupStats


@dataclass(frozen=True, slots=True)
class GetResult:
    value: Value | None
    stats: LookupStats | None


@dataclass(frozen=True, slots=True)
class SetResult:
    stored: int
    stats: LookupStats | None


@dataclass(frozen=True, slots=True)
class AnnounceResult:
    stored: int
    stats: LookupStats | None


@dataclass(frozen=True, slots=True)
class GetPeersResult:
    records: tuple[PeerRecord, ...]
    stats: LookupStats | None


@dataclass(frozen=True, slots=True)
class BootstrapResult:
    answered: int
    contacts: int


@dataclass(frozen=True, slots=True)
class OperationDone:
    """Operation `op_id` finished with `result` (type depends on the operation)."""

    op_id: int
    result: object


@dataclass(frozen=True, slots=True)
class DatagramDropped:
    """Input from `address` was dropped; reported once per (host, reason)."""

    address: Address
    reason: str


Event = OperationDone | DatagramDropped

_NO_STATS = LookupStats(0, 0, 0)
_EMPTY_LOOKUP = LookupResult((), _NO_STATS)


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
    # The lookup this request serves, if any: once it has reported, replies are not read.
    lookup: _LookupRun | None = None


# -- iterative lookups -------------------------------------------------------------------


_RPCS = ("ping", "stun", "store", "find_node", "find_value", "get_peers", "announce")
# Counter keys, built once: the hot path does no string concatenation.
_SERVED = {name: "served " + name for name in _RPCS}
_SENT = {name: "rpc " + name for name in _RPCS}
_EXTENSIONS = frozenset({"get_peers", "announce"})
# How long a node that ignored get_peers is left out of get_peers lookups.
_PLAIN_FOR = 3600.0
_PLAIN_MAX = 4096
# Stored keys looked at when a new contact appears (Kademlia §2.5 hand-over).
_WELCOME_KEYS = 16
# Message ids drawn from the random source at once.
_MSG_ID_POOL = 64
# Hosts whose request rate is tracked at once.
_RATE_HOSTS = 65536

_DIGITS = re.compile(r"\d+")

_REPLY_PARSERS: dict[str, Callable[[Any], Any]] = {
    "find_node": parse_contacts,
    "find_value": parse_find_value_reply,
    "get_peers": parse_get_peers_reply,
}


class _LookupRun:
    """One iterative lookup driven through the protocol's RPC machinery."""

    def __init__(
        self,
        proto: DHTProtocol,
        rpc: str,
        target: bytes,
        on_done: Callable[[_LookupRun, float], None],
        now: float,
    ) -> None:
        cfg = proto.config
        self.proto = proto
        self.rpc = rpc
        self.target = target
        self.on_done = on_done
        seeds = proto.routing.closest(target, cfg.k)
        if rpc == "get_peers":
            seeds = [c for c in seeds if not proto._is_plain(c.node_id, now)]
        self.lookup = Lookup(target, seeds, k=cfg.k, alpha=cfg.alpha, own_id=proto.node_id)
        self.value: Value | None = None
        self.tokens: dict[bytes, bytes] = {}
        self.records: dict[bytes, PeerRecord] = {}
        self.without_value: list[Contact] = []
        self.reported = False
        self._body = b""  # every request of the lookup says the same after its id

    def step(self, now: float) -> None:
        if self.reported:
            return
        queries = self.lookup.advance()
        if queries is None:
            self.reported = True
            self.proto.routing.touch(self.target, now)
            self.on_done(self, now)
            return
        parse = _REPLY_PARSERS[self.rpc]
        if queries and not self._body:
            self._body = encode_request_body(self.rpc, (self.proto.node_id, self.target))
        for contact in queries:
            self.proto._request(
                contact.address,
                self.rpc,
                (),
                parse,
                now,
                body=self._body,
                node_id=contact.node_id,
                on_reply=functools.partial(self._reply, contact),
                on_timeout=functools.partial(self._fail, contact),
                on_stall=functools.partial(self._stall, contact),
                lookup=self,
            )

    def _reply(self, contact: Contact, result: Any, now: float) -> None:
        contacts: tuple[Contact, ...]
        if isinstance(result, FoundValue):
            if self.value is None:
                self.value = result.value
            self.lookup.on_response(contact.node_id)
            self.lookup.finish()
            self.step(now)
            return
        if isinstance(result, PeersReply):
            self.proto._plain.pop(contact.node_id, None)
            self.tokens[contact.node_id] = result.token
            self._take_records(contact, result.records, now)
            contacts = tuple(c for c in result.nodes if not self.proto._is_plain(c.node_id, now))
        else:
            contacts = result
        if self.rpc == "find_value":
            self.without_value.append(contact)
        self.lookup.on_response(contact.node_id, contacts)
        self.step(now)

    def _take_records(self, contact: Contact, encoded: Iterable[bytes], now: float) -> None:
        wall = self.proto.wall(now)
        for data in encoded:
            try:
                record = PeerRecord.decode(data)
                record.verify(self.target, wall)
            except RemoteProtocolError as exc:
                # Records that do not verify are never stored or returned.
                self.proto._dropped(contact.address, f"bad record: {exc}")
                continue
            old = self.records.get(record.peer_id)
            if old is None or old.expires < record.expires:
                self.records[record.peer_id] = record

    def _fail(self, contact: Contact, now: float) -> None:
        if self.rpc == "get_peers":
            self.proto._mark_plain(contact.node_id, now)
        self.lookup.on_failure(contact.node_id)
        self.step(now)

    def _stall(self, contact: Contact, now: float) -> None:
        self.lookup.on_stall(contact.node_id)
        self.step(now)


# -- the node ----------------------------------------------------------------------------


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
    ) -> None:
        self.node_id = check_node_id(node_id)
        self.config = config or DHTConfig()
        self.rng = rng
        # Wall-clock time is `now + wall_offset`; records carry Unix expiry times.
        self.wall_offset = wall_offset
        self.routing = RoutingTable(
            node_id,
            k=self.config.k,
            max_fails=self.config.max_fails,
            max_per_host=self.config.max_contacts_per_host,
            fresh_for=self.config.fresh_for,
            now=now,
        )
        self.storage = ValueStore(self.config.limits)
        self.counters: Counter[str] = Counter()
        self._out: deque[tuple[bytes, Address]] = deque()
        self._events: deque[Event] = deque()
        self._pending: dict[bytes, _Pending] = {}
        self._deadlines: list[tuple[float, bytes]] = []
        self._next_op = 1
        self._msg_ids: list[bytes] = []
        self._secret = rng.randbytes(32)
        self._old_secret = self._secret
        self._next_rotation = now + self.config.token_rotation
        self._next_maintenance = now + self.config.maintenance_interval
        self._rate: dict[str, tuple[float, float]] = {}
        self._reported: set[tuple[str, str]] = set()
        # Nodes that ignored get_peers (likely `kademlia` package nodes): id -> when.
        self._plain: OrderedDict[bytes, float] = OrderedDict()
        # Our own records, re-announced until they expire: key -> (record, next time).
        self._own_records: dict[bytes, tuple[PeerRecord, float]] = {}

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
        while self._deadlines and self._deadlines[0][1] not in self._pending:
            heapq.heappop(self._deadlines)
        timer = self._next_maintenance
        if self._deadlines:
            timer = min(timer, self._deadlines[0][0])
        return timer

    def handle_timer(self, now: float) -> None:
        while self._deadlines and self._deadlines[0][0] <= now:
            _, msg_id = heapq.heappop(self._deadlines)
            pending = self._pending.get(msg_id)
            if pending is None:
                continue
            if pending.sent and pending.attempts_left > 0:
                # Retransmit with the same message id; a late answer to any try counts.
                pending.attempts_left -= 1
                heapq.heappush(self._deadlines, (now + self.config.rpc_timeout, msg_id))
                self._out.append((pending.datagram, pending.address))
                self.counters["rpc retry"] += 1
                if pending.on_stall is not None:
                    on_stall, pending.on_stall = pending.on_stall, None
                    on_stall(now)
                continue
            del self._pending[msg_id]
            if pending.sent:
                self.counters["rpc timeout"] += 1
                if pending.node_id is not None and pending.blame:
                    self.routing.failed(pending.node_id)
            pending.on_timeout(now)
        if now >= self._next_maintenance:
            self._maintain(now)

    def receive_datagram(self, data: bytes, address: Address, now: float) -> None:
        """Handle one datagram from `address` (canonical host, port).  Never raises."""
        self.counters["datagrams in"] += 1
        try:
            message = decode_datagram(data)
            if isinstance(message, Request):
                self._on_request(message, address, now)
            else:
                self._on_response(message, address, now)
        except RemoteProtocolError as exc:
            self._dropped(address, str(exc))

    # -- operations ------------------------------------------------------------------------

    def start_bootstrap(self, addresses: Iterable[Address], now: float) -> int:
        """Ping `addresses`, then look up our own id (Kademlia §2.3, joining)."""
        op_id = self._new_op()
        targets = list(dict.fromkeys(_checked_address(a) for a in addresses))
        state = {"left": len(targets), "answered": 0}

        def settle(answered: bool, t: float) -> None:
            state["left"] -= 1
            state["answered"] += answered
            if state["left"] == 0:
                self._lookup(
                    "find_node",
                    self.node_id,
                    now=t,
                    on_done=lambda run, t2: self._done(
                        op_id, BootstrapResult(state["answered"], len(self.routing))
                    ),
                )

        if not targets:
            state["left"] = 1
            settle(False, now)
        for address in targets:
            self._ping(address, now, lambda node_id, t: settle(node_id is not None, t))
        return op_id

    def start_ping(self, address: Address, now: float) -> int:
        """Ping `address`; the result is its node id or None."""
        op_id = self._new_op()
        self._ping(_checked_address(address), now, lambda node_id, t: self._done(op_id, node_id))
        return op_id

    def start_stun(self, address: Address, now: float) -> int:
        """Ask `address` where it sees us; the result is (host, port) or None."""
        op_id = self._new_op()
        self._request(
            _checked_address(address),
            "stun",
            (),
            parse_stun_reply,
            now,
            on_reply=lambda result, t: self._done(op_id, result),
            on_timeout=lambda t: self._done(op_id, None),
        )
        return op_id

    def start_find_node(self, target: bytes, now: float) -> int:
        """Iterative node lookup; the result is a LookupResult."""
        op_id = self._new_op()
        self._lookup(
            "find_node",
            check_node_id(target),
            now=now,
            on_done=lambda run, t: self._done(
                op_id, LookupResult(tuple(run.lookup.result()), run.lookup.stats())
            ),
        )
        return op_id

    def start_get(self, key: bytes, now: float) -> int:
        """Find the value under a hashed key; the result is a GetResult."""
        op_id = self._new_op()
        local = self.storage.get_value(check_node_id(key), now)
        if local is not None:
            self._done(op_id, GetResult(local, None))
            return op_id

        def done(run: _LookupRun, t: float) -> None:
            if run.value is not None and run.without_value:
                # Kademlia §2.3: cache the value at the closest node that lacked it.
                nearest = min(run.without_value, key=lambda c: distance(c.node_id, key))
                self._store_at(nearest, key, run.value, t, lambda ok, t2: None)
            self._done(op_id, GetResult(run.value, run.lookup.stats()))

        self._lookup("find_value", key, now=now, on_done=done)
        return op_id

    def start_set(self, key: bytes, value: Value, now: float) -> int:
        """Store under a hashed key at the k closest nodes; the result is a SetResult."""
        op_id = self._new_op()
        check_node_id(key)
        if not isinstance(value, int | float | str | bytes):
            raise LocalProtocolError("a value is an int, float, bool, str or bytes")
        try:
            self.storage.put_value(key, value, LOCAL_SOURCE, now, original=True)
        except StoreRefused as exc:
            raise LocalProtocolError(f"cannot store our own value: {exc.reason}") from None
        self._publish(
            key, value, now, lambda stored, stats: self._done(op_id, SetResult(stored, stats))
        )
        return op_id

    def start_announce(self, key: bytes, record: PeerRecord, now: float) -> int:
        """Announce a signed record under `key`; the result is an AnnounceResult.

        The record is re-announced every `announce_interval` until it expires.
        """
        op_id = self._new_op()
        check_node_id(key)
        try:
            record.verify(key, self.wall(now))
        except RemoteProtocolError as exc:
            raise LocalProtocolError(f"cannot announce a bad record: {exc}") from None
        self._own_records[key] = (record, now + self.config.announce_interval)
        try:
            self.storage.put_record(key, record, LOCAL_SOURCE, self.wall(now))
        except StoreRefused:
            self.counters["own record refused"] += 1
        self._announce(
            key, record, now, lambda stored, stats: self._done(op_id, AnnounceResult(stored, stats))
        )
        return op_id

    def stop_announcing(self, key: bytes) -> None:
        self._own_records.pop(key, None)

    def start_get_peers(self, key: bytes, now: float) -> int:
        """The verified records under `key`; the result is a GetPeersResult."""
        op_id = self._new_op()
        check_node_id(key)

        def done(run: _LookupRun, t: float) -> None:
            records = dict(run.records)
            for record in self.storage.get_records(key, self.wall(t)):
                old = records.get(record.peer_id)
                if old is None or old.expires < record.expires:
                    records[record.peer_id] = record
            ordered = sorted(records.values(), key=lambda r: (-r.expires, r.peer_id))
            self._done(op_id, GetPeersResult(tuple(ordered), run.lookup.stats()))

        self._lookup("get_peers", key, now=now, on_done=done)
        return op_id

    # -- composite steps -------------------------------------------------------------------

    def _publish(
        self,
        key: bytes,
        value: Value,
        now: float,
        on_done: Callable[[int, LookupStats], None],
    ) -> None:
        def stored_at_closest(run: _LookupRun, t: float) -> None:
            targets = run.lookup.result()
            stats = run.lookup.stats()
            if not targets:
                on_done(0, stats)
                return
            state = {"left": len(targets), "ok": 0}

            def one(ok: bool, t2: float) -> None:
                state["left"] -= 1
                state["ok"] += ok
                if state["left"] == 0:
                    on_done(state["ok"], stats)

            for contact in targets:
                self._store_at(contact, key, value, t, one)

        self._lookup("find_node", key, now=now, on_done=stored_at_closest)

    def _announce(
        self,
        key: bytes,
        record: PeerRecord,
        now: float,
        on_done: Callable[[int, LookupStats], None],
    ) -> None:
        encoded = record.encode()

        def announce_to_closest(run: _LookupRun, t: float) -> None:
            targets = [c for c in run.lookup.result() if c.node_id in run.tokens]
            stats = run.lookup.stats()
            if not targets:
                on_done(0, stats)
                return
            state = {"left": len(targets), "ok": 0}

            def one(ok: bool, t2: float) -> None:
                state["left"] -= 1
                state["ok"] += ok
                if state["left"] == 0:
                    on_done(state["ok"], stats)

            for contact in targets:
                self._request(
                    contact.address,
                    "announce",
                    (self.node_id, key, run.tokens[contact.node_id], encoded),
                    parse_announce_reply,
                    t,
                    node_id=contact.node_id,
                    on_reply=lambda ok, t2: one(bool(ok), t2),
                    on_timeout=lambda t2: one(False, t2),
                )

        self._lookup("get_peers", key, now=now, on_done=announce_to_closest)

    def _store_at(
        self,
        contact: Contact,
        key: bytes,
        value: Value,
        now: float,
        on_done: Callable[[bool, float], None],
    ) -> None:
        self._request(
            contact.address,
            "store",
            (self.node_id, key, value),
            parse_store_reply,
            now,
            node_id=contact.node_id,
            on_reply=lambda ok, t: on_done(bool(ok), t),
            on_timeout=lambda t: on_done(False, t),
        )

    def _ping(
        self, address: Address, now: float, on_done: Callable[[bytes | None, float], None]
    ) -> None:
        def reply(node_id: bytes, t: float) -> None:
            self._observe(Contact(node_id, *address), t)
            on_done(node_id, t)

        self._request(
            address,
            "ping",
            (self.node_id,),
            parse_ping_reply,
            now,
            on_reply=reply,
            on_timeout=lambda t: on_done(None, t),
        )

    def _lookup(
        self,
        rpc: str,
        target: bytes,
        *,
        now: float,
        on_done: Callable[[_LookupRun, float], None],
    ) -> None:
        _LookupRun(self, rpc, target, on_done, now).step(now)

    # -- RPC plumbing ----------------------------------------------------------------------

    def _new_op(self) -> int:
        op_id = self._next_op
        self._next_op += 1
        return op_id

    def _done(self, op_id: int, result: object) -> None:
        self._events.append(OperationDone(op_id, result))

    def _request(
        self,
        address: Address,
        name: str,
        args: tuple[Any, ...],
        parse: Callable[[Any], Any],
        now: float,
        *,
        on_reply: Callable[[Any, float], None],
        on_timeout: Callable[[float], None],
        node_id: bytes | None = None,
        on_stall: Callable[[float], None] | None = None,
        body: bytes = b"",
        lookup: _LookupRun | None = None,
    ) -> None:
        """Send `name(*args)` (or the pre-encoded `body`) and track it until it settles."""
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
            self.config.rpc_attempts - 1,
            blame,
            lookup=lookup,
        )
        if len(self._pending) >= self.config.max_pending:
            # Too much in flight: fail this one at the next timer, without blaming the peer.
            pending.sent = False
            self.counters["rpc not sent: too many pending"] += 1
            self._pending[msg_id] = pending
            heapq.heappush(self._deadlines, (now, msg_id))
            return
        self._pending[msg_id] = pending
        heapq.heappush(self._deadlines, (now + self.config.rpc_timeout, msg_id))
        self._out.append((datagram, address))
        self.counters[_SENT.get(name, "rpc ?")] += 1

    def _new_msg_id(self) -> bytes:
        # Drawn 64 at a time: one system call, not one per request (a third of a
        # value lookup's request cost); still unpredictable to anyone who sees them.
        if not self._msg_ids:
            pool = self.rng.randbytes(20 * _MSG_ID_POOL)
            self._msg_ids = [pool[i : i + 20] for i in range(0, len(pool), 20)]
        return self._msg_ids.pop()

    def _reply(self, msg_id: bytes, result: Any, address: Address) -> None:
        self._out.append((encode_response(msg_id, result), address))

    def _on_response(self, response: Response, address: Address, now: float) -> None:
        pending = self._pending.get(response.msg_id)
        if pending is None or not pending.sent:
            self.counters["unexpected response"] += 1
            return
        if pending.address != address:
            # A reply must come from where we sent the request.
            raise RemoteProtocolError("response from the wrong address")
        del self._pending[response.msg_id]
        node_id = pending.node_id
        lookup = pending.lookup
        if lookup is not None and lookup.reported:
            # Too late to matter (the value was found): the answer only shows it is alive.
            if node_id is not None and not self.routing.seen(node_id, address, now):
                self._observe(Contact.trusted(node_id, *address), now)
            return
        try:
            result = pending.parse(response.result)
        except RemoteProtocolError:
            if pending.node_id is not None:
                self.routing.failed(pending.node_id)
            pending.on_timeout(now)
            raise
        if node_id is not None and not self.routing.seen(node_id, address, now):
            self._observe(Contact.trusted(node_id, *address), now)
        pending.on_reply(result, now)

    def _observe(self, contact: Contact, now: float, *, welcome: bool = False) -> None:
        # Newcomers show up by asking us things (their joining lookup); contacts we
        # find through our own lookups are old members, with the values already.
        is_new = welcome and contact.node_id not in self.routing
        to_ping = self.routing.observe(contact, now)
        if is_new and contact.node_id in self.routing:
            self._welcome(contact, now)
        if to_ping is None:
            return

        def reply(node_id: bytes, t: float) -> None:
            if node_id != to_ping.node_id:
                self.routing.failed(to_ping.node_id)

        # Kademlia §2.2: ping the least-recently seen before evicting it.  A timeout
        # reaches routing.failed through the pending entry's node id.
        self._request(
            to_ping.address,
            "ping",
            (self.node_id,),
            parse_ping_reply,
            now,
            node_id=to_ping.node_id,
            on_reply=reply,
            on_timeout=lambda t: None,
        )

    def _welcome(self, newcomer: Contact, now: float) -> None:
        """Kademlia §2.5: hand a newcomer the values it should now hold.

        For each value whose key is near the newcomer (a bounded candidate list): if the
        newcomer is among the k closest nodes we know to the key, and we are closer to it
        than every other node we know (so one node, not k, hands it over), store it there.
        """
        k = self.config.k
        for key in self.storage.keys_near(newcomer.node_id, _WELCOME_KEYS):
            value = self.storage.get_value(key, now)
            if value is None:
                continue
            closest = self.routing.closest(key, k)
            if all(c.node_id != newcomer.node_id for c in closest):
                continue
            others = [c for c in closest if c.node_id != newcomer.node_id]
            if others and distance(self.node_id, key) > distance(others[0].node_id, key):
                continue
            self.counters["welcome store"] += 1
            self._store_at(newcomer, key, value, now, lambda ok, t: None)

    # -- serving requests ------------------------------------------------------------------

    def _allow(self, host: str, now: float) -> bool:
        """Token bucket per source host, so one host cannot flood us."""
        cfg = self.config
        rate = self._rate
        tokens, last = rate.pop(host, (cfg.rate_burst, now))
        tokens = min(cfg.rate_burst, tokens + (now - last) * cfg.rate_limit)
        # Re-inserted at the end, so the dict is in least-recently-seen order and a flood
        # of spoofed sources only pushes out the oldest entries (memory stays bounded).
        allowed = tokens >= 1.0
        rate[host] = (tokens - 1.0 if allowed else tokens, now)
        if len(rate) > _RATE_HOSTS:
            del rate[next(iter(rate))]
        return allowed

    def _on_request(self, request: Request, address: Address, now: float) -> None:
        if not self._allow(_source(address), now):
            self.counters["rate limited"] += 1
            return
        rpc = parse_request(request)
        msg_id = request.msg_id
        if isinstance(rpc, UnknownRpc):
            # The package ignores requests for RPCs it lacks; so do we.
            self.counters["unknown rpc"] += 1
            return
        if isinstance(rpc, Stun):
            self._reply(msg_id, [address[0], address[1]], address)
            return
        # The id was checked by parse_request, the address comes from our socket.
        if not self.routing.seen(rpc.sender_id, address, now):
            self._observe(Contact.trusted(rpc.sender_id, *address), now, welcome=True)
        self.counters[_SERVED.get(request.name, "served ?")] += 1
        if isinstance(rpc, Ping):
            self._reply(msg_id, self.node_id, address)
        elif isinstance(rpc, FindNode):
            self._reply(msg_id, self._neighbours(rpc.target, address), address)
        elif isinstance(rpc, FindValue):
            value = self.storage.get_value(rpc.key, now)
            if value is None:
                self._reply(msg_id, self._neighbours(rpc.key, address), address)
            else:
                self._reply(msg_id, {"value": value}, address)
        elif isinstance(rpc, Store):
            try:
                self.storage.put_value(rpc.key, rpc.value, _source(address), now)
            except StoreRefused as exc:
                self._dropped(address, "store refused: " + exc.reason)
                self._reply(msg_id, False, address)
                return
            self._reply(msg_id, True, address)
        elif isinstance(rpc, GetPeers):
            self._on_get_peers(msg_id, rpc, address, now)
        elif isinstance(rpc, Announce):
            self._reply(msg_id, self._on_announce(rpc, address, now), address)

    def _neighbours(self, target: bytes, address: Address) -> list[tuple[bytes, str, int]]:
        # Only contacts the requester can reach: an IPv4 node gets IPv4 contacts.
        k = self.config.k
        v6 = is_ipv6(address[0])
        closest = self.routing.closest(target, k, exclude=address)
        mixed = self.routing.ipv6_contacts not in (0, len(self.routing))
        if mixed and any(is_ipv6(c.host) != v6 for c in closest):
            closest = self.routing.closest(target, 3 * k, exclude=address)
            closest = [c for c in closest if is_ipv6(c.host) == v6][:k]
        return [(c.node_id, c.host, c.port) for c in closest]

    def _token(self, secret: bytes, address: Address, key: bytes) -> bytes:
        message = msgpack.packb([address[0], address[1], key], use_bin_type=True)
        return hmac.new(secret, message, hashlib.sha256).digest()[:16]

    def _on_get_peers(self, msg_id: bytes, rpc: GetPeers, address: Address, now: float) -> None:
        nodes = self._neighbours(rpc.key, address)
        token = self._token(self._secret, address, rpc.key)
        records = self.storage.get_records(rpc.key, self.wall(now))
        self.rng.shuffle(records)
        # Keep the reply in one datagram: records fill what the nodes leave over.
        budget = MAX_DATAGRAM - 64 - len(msgpack.packb(nodes, use_bin_type=True))
        peers = []
        for record in records:
            encoded = record.encode()
            if len(encoded) + 3 > budget:
                break
            budget -= len(encoded) + 3
            peers.append(encoded)
        self._reply(msg_id, {"nodes": nodes, "token": token, "peers": peers}, address)

    def _on_announce(self, rpc: Announce, address: Address, now: float) -> bool:
        # The token proves the announcer receives datagrams at `address` (it got the
        # token there from get_peers); current or previous secret (BEP 5's scheme).
        valid = any(
            hmac.compare_digest(rpc.token, self._token(s, address, rpc.key))
            for s in (self._secret, self._old_secret)
        )
        if not valid:
            self._dropped(address, "bad token")
            return False
        record = PeerRecord.decode(rpc.record)
        record.verify(rpc.key, self.wall(now))
        if self.config.require_address_match and any(
            host != address[0] for host, _ in record.addresses
        ):
            # Nobody can announce an address that is not theirs.
            self._dropped(address, "record names another host")
            return False
        try:
            self.storage.put_record(rpc.key, record, _source(address), self.wall(now))
        except StoreRefused as exc:
            self._dropped(address, "announce refused: " + exc.reason)
            return False
        return True

    # -- upkeep ----------------------------------------------------------------------------

    def _maintain(self, now: float) -> None:
        cfg = self.config
        self._next_maintenance = now + cfg.maintenance_interval
        if now >= self._next_rotation:
            self._old_secret, self._secret = self._secret, self.rng.randbytes(32)
            self._next_rotation = now + cfg.token_rotation
        self.storage.expire(now, self.wall(now))
        for target in self.routing.refresh_targets(now, cfg.refresh_interval, self.rng):
            self._lookup("find_node", target, now=now, on_done=lambda run, t: None)
        for key, value in self.storage.values_to_republish(now):
            self._publish(key, value, now, lambda stored, stats: None)
        for key, (record, due) in list(self._own_records.items()):
            if record.expires <= self.wall(now):
                del self._own_records[key]
            elif now >= due:
                self._own_records[key] = (record, now + cfg.announce_interval)
                self._announce(key, record, now, lambda stored, stats: None)
        # Forget rate state of hosts whose bucket has refilled.
        full = [
            h
            for h, (tok, last) in self._rate.items()
            if tok + (now - last) * cfg.rate_limit >= cfg.rate_burst
        ]
        for host in full:
            del self._rate[host]

    def _mark_plain(self, node_id: bytes, now: float) -> None:
        self._plain[node_id] = now
        self._plain.move_to_end(node_id)
        while len(self._plain) > _PLAIN_MAX:
            self._plain.popitem(last=False)

    def _is_plain(self, node_id: bytes, now: float) -> bool:
        since = self._plain.get(node_id)
        return since is not None and now - since < _PLAIN_FOR

    def _dropped(self, address: Address, reason: str) -> None:
        # Counted by kind, numbers left out, so the metric has a bounded set of labels.
        self.counters["dropped: " + _DIGITS.sub("N", reason.split(":")[0])] += 1
        key = (address[0], reason)
        if key not in self._reported and len(self._reported) < 65536:
            self._reported.add(key)
            self._events.append(DatagramDropped(address, reason))


def _source(address: Address) -> str:
    """Whom rate limits and storage quotas are counted against: the source host.

    On loopback every peer shares one host (a local swarm, a benchmark), and the kernel
    vouches for the port, so there the whole address counts as the source.
    """
    host = address[0]
    if host == "::1" or host.startswith("127."):
        return f"{host}:{address[1]}"
    return host


def _checked_address(address: Address) -> Address:
    host, port = address
    canonical = canonical_host(host)
    if canonical is None or not isinstance(port, int) or not 0 < port < 65536:
        raise LocalProtocolError(f"{address!r} is not an (ip, port) address")
    return (canonical, port)
