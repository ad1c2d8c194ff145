"""Our own operations: iterative lookups (Kademlia §2.3) and what is built on them —
bootstrap, ping, stun, node and value lookups, store, announce, get_peers — plus the
routing-table upkeep that sends requests (eviction pings, hand-over to newcomers,
refresh, republish, re-announce).

Each operation ends by calling `done(op, result)` once with its typed result.
`LookupRun` sees its node only through a `LookupEnv`: the routing table, the request
tracker, the list of nodes that ignore get_peers, and drop accounting.

Sans-IO: never touches a socket or a clock (`now` comes in), and draws no randomness
of its own.  It never answers a peer's request: `_serve.py` does.
"""

from __future__ import annotations

import functools
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from rumor_runtime import SignatureCheck

from ._config import DHTConfig
from ._drops import Drops
from ._errors import DropReason, LocalProtocolError, RemoteProtocolError
from ._events import (
    AnnounceResult,
    BootstrapResult,
    GetPeersResult,
    GetResult,
    LookupResult,
    Op,
    SetResult,
)
from ._ids import Address, Contact, canonical_host, check_node_id, distance
from ._lookup import Lookup, LookupStats
from ._records import PeerRecord
from ._requests import Requests
from ._routing import RoutingTable
from ._storage import LOCAL_SOURCE, StoreRefused, ValueStore
from ._wire import (
    FoundValue,
    PeersReply,
    Value,
    encode_request_body,
    parse_announce_reply,
    parse_contacts,
    parse_find_value_reply,
    parse_get_peers_reply,
    parse_ping_reply,
    parse_store_reply,
    parse_stun_reply,
)

__all__ = ["LookupEnv", "LookupRun", "Operations", "PlainNodes", "checked_address"]

R = TypeVar("R")

# How long a node that ignored get_peers is left out of get_peers lookups.
_PLAIN_FOR = 3600.0
_PLAIN_MAX = 4096
# Stored keys looked at when a new contact appears (Kademlia §2.5 hand-over).
_WELCOME_KEYS = 16

_REPLY_PARSERS: dict[str, Callable[[Any], Any]] = {
    "find_node": parse_contacts,
    "find_value": parse_find_value_reply,
    "get_peers": parse_get_peers_reply,
}


def checked_address(address: Address) -> Address:
    """`address` with its host canonical; LocalProtocolError if it is no (ip, port)."""
    host, port = address
    canonical = canonical_host(host)
    if canonical is None or not isinstance(port, int) or not 0 < port < 65536:
        raise LocalProtocolError(f"{address!r} is not an (ip, port) address")
    return (canonical, port)


class PlainNodes:
    """Nodes that ignored get_peers (likely `kademlia` package nodes), for a while."""

    def __init__(self) -> None:
        self._since: OrderedDict[bytes, float] = OrderedDict()

    def mark(self, node_id: bytes, now: float) -> None:
        self._since[node_id] = now
        self._since.move_to_end(node_id)
        while len(self._since) > _PLAIN_MAX:
            self._since.popitem(last=False)

    def unmark(self, node_id: bytes) -> None:
        self._since.pop(node_id, None)

    def __call__(self, node_id: bytes, now: float) -> bool:
        """Whether `node_id` is plain (left out of get_peers lookups) at `now`."""
        since = self._since.get(node_id)
        return since is not None and now - since < _PLAIN_FOR


@dataclass(frozen=True, slots=True)
class LookupEnv:
    """All a lookup may use of its node."""

    own_id: bytes
    k: int
    alpha: int
    wall_offset: float
    check: SignatureCheck | None  # the record signature check, if not Ed25519 here
    routing: RoutingTable
    requests: Requests
    plain: PlainNodes
    drops: Drops


class LookupRun:
    """One iterative lookup driven through the node's request tracker."""

    def __init__(
        self,
        env: LookupEnv,
        rpc: str,
        target: bytes,
        on_done: Callable[[LookupRun, float], None],
        now: float,
    ) -> None:
        self.env = env
        self.rpc = rpc
        self.target = target
        self.on_done = on_done
        seeds = env.routing.closest(target, env.k)
        if rpc == "get_peers":
            seeds = [c for c in seeds if not env.plain(c.node_id, now)]
        self.lookup = Lookup(target, seeds, k=env.k, alpha=env.alpha, own_id=env.own_id)
        self.value: Value | None = None
        self.tokens: dict[bytes, bytes] = {}
        self.records: dict[bytes, PeerRecord] = {}
        # Wire forms of records already taken: the k closest nodes mostly answer with the
        # same records, and each is decoded and verified once per lookup, not per reply.
        self._taken: set[bytes] = set()
        self.without_value: list[Contact] = []
        self.reported = False
        self._body = b""  # every request of the lookup says the same after its id

    def step(self, now: float) -> None:
        if self.reported:
            return
        queries = self.lookup.advance()
        if queries is None:
            self.reported = True
            self.env.routing.touch(self.target, now)
            self.on_done(self, now)
            return
        parse = _REPLY_PARSERS[self.rpc]
        if queries and not self._body:
            self._body = encode_request_body(self.rpc, (self.env.own_id, self.target))
        send = self.env.requests.send
        for contact in queries:
            send(
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
                owner=self,
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
            plain = self.env.plain
            plain.unmark(contact.node_id)
            self.tokens[contact.node_id] = result.token
            self._take_records(contact, result.records, now)
            contacts = tuple(c for c in result.nodes if not plain(c.node_id, now))
        else:
            contacts = result
        if self.rpc == "find_value":
            self.without_value.append(contact)
        self.lookup.on_response(contact.node_id, contacts)
        self.step(now)

    def _take_records(self, contact: Contact, encoded: Iterable[bytes], now: float) -> None:
        wall = now + self.env.wall_offset
        taken = self._taken
        for data in encoded:
            if data in taken:
                continue
            try:
                record = PeerRecord.decode(data)
                record.verify(self.target, wall, self.env.check)
            except RemoteProtocolError as exc:
                # Records that do not verify are never stored or returned.
                self.env.drops.drop(contact.address, DropReason.BAD_RECORD, str(exc), now)
                continue
            taken.add(data)
            old = self.records.get(record.peer_id)
            if old is None or old.expires < record.expires:
                self.records[record.peer_id] = record

    def _fail(self, contact: Contact, now: float) -> None:
        if self.rpc == "get_peers":
            self.env.plain.mark(contact.node_id, now)
        self.lookup.on_failure(contact.node_id)
        self.step(now)

    def _stall(self, contact: Contact, now: float) -> None:
        self.lookup.on_stall(contact.node_id)
        self.step(now)


class _Tally:
    """Counts `left` outcomes down, then calls `on_done(successes)`."""

    __slots__ = ("left", "ok", "on_done")

    def __init__(self, left: int, on_done: Callable[[int, float], None]) -> None:
        self.left = left
        self.ok = 0
        self.on_done = on_done

    def __call__(self, ok: bool, now: float) -> None:
        self.left -= 1
        self.ok += ok
        if self.left == 0:
            self.on_done(self.ok, now)


class Operations:
    """The operations of one node, and the upkeep that sends requests."""

    def __init__(
        self,
        node_id: bytes,
        config: DHTConfig,
        routing: RoutingTable,
        storage: ValueStore,
        requests: Requests,
        counters: Counter[str],
        drops: Drops,
        *,
        done: Callable[[Op[Any], Any], None],
        wall_offset: float,
        check: SignatureCheck | None = None,
    ) -> None:
        self._node_id = node_id
        self._config = config
        self._routing = routing
        self._storage = storage
        self._requests = requests
        self._counters = counters
        self._done = done
        self._wall_offset = wall_offset
        self._check = check
        self._next_op = 1
        self._plain = PlainNodes()
        self._env = LookupEnv(
            node_id,
            config.k,
            config.alpha,
            wall_offset,
            check,
            routing,
            requests,
            self._plain,
            drops,
        )
        # Our own records, re-announced until they expire: key -> (record, next time).
        self._own_records: dict[bytes, tuple[PeerRecord, float]] = {}

    def _new_op(self) -> Op[Any]:
        op_id = self._next_op
        self._next_op += 1
        return Op(op_id)

    def _finish(self, op: Op[R], result: R) -> None:
        self._done(op, result)

    # -- operations ------------------------------------------------------------------------

    def bootstrap(self, addresses: Iterable[Address], now: float) -> Op[BootstrapResult]:
        """Ping `addresses`, then look up our own id (Kademlia §2.3, joining)."""
        op: Op[BootstrapResult] = self._new_op()
        targets = list(dict.fromkeys(checked_address(a) for a in addresses))

        def look_up_self(answered: int, t: float) -> None:
            self._lookup(
                "find_node",
                self._node_id,
                now=t,
                on_done=lambda run, t2: self._finish(
                    op, BootstrapResult(answered, len(self._routing))
                ),
            )

        if not targets:
            look_up_self(0, now)
        tally = _Tally(len(targets), look_up_self)
        for address in targets:
            self._ping(address, now, lambda node_id, t: tally(node_id is not None, t))
        return op

    def ping(self, address: Address, now: float) -> Op[bytes | None]:
        """Ping `address`; the result is its node id or None."""
        op: Op[bytes | None] = self._new_op()
        self._ping(checked_address(address), now, lambda node_id, t: self._finish(op, node_id))
        return op

    def stun(self, address: Address, now: float) -> Op[Address | None]:
        """Ask `address` where it sees us; the result is (host, port) or None."""
        op: Op[Address | None] = self._new_op()
        self._requests.send(
            checked_address(address),
            "stun",
            (),
            parse_stun_reply,
            now,
            on_reply=lambda result, t: self._finish(op, result),
            on_timeout=lambda t: self._finish(op, None),
        )
        return op

    def find_node(self, target: bytes, now: float) -> Op[LookupResult]:
        """Iterative node lookup."""
        op: Op[LookupResult] = self._new_op()
        self._lookup(
            "find_node",
            check_node_id(target),
            now=now,
            on_done=lambda run, t: self._finish(
                op, LookupResult(tuple(run.lookup.result()), run.lookup.stats())
            ),
        )
        return op

    def get(self, key: bytes, now: float) -> Op[GetResult]:
        """Find the value under a hashed key."""
        op: Op[GetResult] = self._new_op()
        local = self._storage.get_value(check_node_id(key), now)
        if local is not None:
            self._finish(op, GetResult(local, None))
            return op

        def done(run: LookupRun, t: float) -> None:
            if run.value is not None and run.without_value:
                # Kademlia §2.3: cache the value at the closest node that lacked it.
                nearest = min(run.without_value, key=lambda c: distance(c.node_id, key))
                self._store_at(nearest, key, run.value, t, lambda ok, t2: None)
            self._finish(op, GetResult(run.value, run.lookup.stats()))

        self._lookup("find_value", key, now=now, on_done=done)
        return op

    def set(self, key: bytes, value: Value, now: float) -> Op[SetResult]:
        """Store under a hashed key at the k closest nodes."""
        op: Op[SetResult] = self._new_op()
        check_node_id(key)
        if not isinstance(value, int | float | str | bytes):
            raise LocalProtocolError("a value is an int, float, bool, str or bytes")
        try:
            self._storage.put_value(key, value, LOCAL_SOURCE, now, original=True)
        except StoreRefused as exc:
            raise LocalProtocolError(f"cannot store our own value: {exc.reason}") from None
        self._publish(
            key, value, now, lambda stored, stats: self._finish(op, SetResult(stored, stats))
        )
        return op

    def announce(self, key: bytes, record: PeerRecord, now: float) -> Op[AnnounceResult]:
        """Announce a signed record under `key`, re-announced every `announce_interval`
        until it expires."""
        op: Op[AnnounceResult] = self._new_op()
        check_node_id(key)
        wall = now + self._wall_offset
        try:
            record.verify(key, wall, self._check)
        except RemoteProtocolError as exc:
            raise LocalProtocolError(f"cannot announce a bad record: {exc}") from None
        self._own_records[key] = (record, now + self._config.announce_interval)
        try:
            self._storage.put_record(key, record, LOCAL_SOURCE, wall)
        except StoreRefused:
            self._counters["own record refused"] += 1
        self._announce(
            key, record, now, lambda stored, stats: self._finish(op, AnnounceResult(stored, stats))
        )
        return op

    def stop_announcing(self, key: bytes) -> None:
        self._own_records.pop(key, None)

    def get_peers(self, key: bytes, now: float) -> Op[GetPeersResult]:
        """The verified records under `key`."""
        op: Op[GetPeersResult] = self._new_op()
        check_node_id(key)

        def done(run: LookupRun, t: float) -> None:
            records = dict(run.records)
            for record in self._storage.get_records(key, t + self._wall_offset):
                old = records.get(record.peer_id)
                if old is None or old.expires < record.expires:
                    records[record.peer_id] = record
            ordered = sorted(records.values(), key=lambda r: (-r.expires, r.peer_id))
            self._finish(op, GetPeersResult(tuple(ordered), run.lookup.stats()))

        self._lookup("get_peers", key, now=now, on_done=done)
        return op

    # -- upkeep ----------------------------------------------------------------------------

    def maintain(self, now: float, refresh_targets: Iterable[bytes]) -> None:
        """Refresh stale buckets, republish values, re-announce our records when due."""
        cfg = self._config
        for target in refresh_targets:
            self._lookup("find_node", target, now=now, on_done=lambda run, t: None)
        for key, value in self._storage.values_to_republish(now):
            self._publish(key, value, now, lambda stored, stats: None)
        wall = now + self._wall_offset
        for key, (record, due) in list(self._own_records.items()):
            if record.expires <= wall:
                del self._own_records[key]
            elif now >= due:
                self._own_records[key] = (record, now + cfg.announce_interval)
                self._announce(key, record, now, lambda stored, stats: None)

    def observe(self, contact: Contact, now: float, *, welcome: bool = False) -> None:
        """A contact was heard from: tell the routing table, and act on its answer."""
        routing = self._routing
        # Newcomers show up by asking us things (their joining lookup); contacts we
        # find through our own lookups are old members, with the values already.
        is_new = welcome and contact.node_id not in routing
        to_ping = routing.observe(contact, now)
        if is_new and contact.node_id in routing:
            self._welcome(contact, now)
        if to_ping is None:
            return

        def reply(node_id: bytes, t: float) -> None:
            if node_id != to_ping.node_id:
                routing.failed(to_ping.node_id)

        # Kademlia §2.2: ping the least-recently seen before evicting it.  A timeout
        # reaches routing.failed through the pending entry's node id.
        self._requests.send(
            to_ping.address,
            "ping",
            (self._node_id,),
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
        k = self._config.k
        for key in self._storage.keys_near(newcomer.node_id, _WELCOME_KEYS):
            value = self._storage.get_value(key, now)
            if value is None:
                continue
            closest = self._routing.closest(key, k)
            if all(c.node_id != newcomer.node_id for c in closest):
                continue
            others = [c for c in closest if c.node_id != newcomer.node_id]
            if others and distance(self._node_id, key) > distance(others[0].node_id, key):
                continue
            self._counters["welcome store"] += 1
            self._store_at(newcomer, key, value, now, lambda ok, t: None)

    # -- composite steps -------------------------------------------------------------------

    def _publish(
        self, key: bytes, value: Value, now: float, on_done: Callable[[int, LookupStats], None]
    ) -> None:
        def store_at_closest(run: LookupRun, t: float) -> None:
            targets = run.lookup.result()
            stats = run.lookup.stats()
            if not targets:
                on_done(0, stats)
                return
            tally = _Tally(len(targets), lambda ok, t2: on_done(ok, stats))
            for contact in targets:
                self._store_at(contact, key, value, t, tally)

        self._lookup("find_node", key, now=now, on_done=store_at_closest)

    def _announce(
        self,
        key: bytes,
        record: PeerRecord,
        now: float,
        on_done: Callable[[int, LookupStats], None],
    ) -> None:
        encoded = record.encode()

        def announce_to_closest(run: LookupRun, t: float) -> None:
            targets = [c for c in run.lookup.result() if c.node_id in run.tokens]
            stats = run.lookup.stats()
            if not targets:
                on_done(0, stats)
                return
            tally = _Tally(len(targets), lambda ok, t2: on_done(ok, stats))
            for contact in targets:
                self._requests.send(
                    contact.address,
                    "announce",
                    (self._node_id, key, run.tokens[contact.node_id], encoded),
                    parse_announce_reply,
                    t,
                    node_id=contact.node_id,
                    on_reply=lambda ok, t2: tally(bool(ok), t2),
                    on_timeout=lambda t2: tally(False, t2),
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
        self._requests.send(
            contact.address,
            "store",
            (self._node_id, key, value),
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
            self.observe(Contact(node_id, *address), t)
            on_done(node_id, t)

        self._requests.send(
            address,
            "ping",
            (self._node_id,),
            parse_ping_reply,
            now,
            on_reply=reply,
            on_timeout=lambda t: on_done(None, t),
        )

    def _lookup(
        self, rpc: str, target: bytes, *, now: float, on_done: Callable[[LookupRun, float], None]
    ) -> None:
        LookupRun(self._env, rpc, target, on_done, now).step(now)
