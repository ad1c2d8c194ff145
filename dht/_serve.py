"""Serving peers' requests: rate limits, answers, storage and announce tokens.

`RateLimiter` is a token bucket per source host; `Server.handle` answers one request
that passed it (Kademlia's ping, store, find_node and find_value, our get_peers and
announce, and stun), queueing the reply datagram.  Refused input is counted through
`Drops` under a `DropReason`, never as free text.

Sans-IO: never touches a socket or a clock (`now` comes in), and draws randomness only
from the `random.Random` it is given.  It never sends a request of its own.
"""

from __future__ import annotations

import hashlib
import hmac
import random
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

import msgpack

from rumor_runtime import SignatureCheck

from ._config import DHTConfig
from ._drops import Drops
from ._errors import DropReason, RemoteProtocolError
from ._ids import Address, is_ipv6
from ._records import PeerRecord
from ._requests import RPCS
from ._routing import RoutingTable
from ._storage import StoreRefused, ValueStore
from ._wire import (
    MAX_DATAGRAM,
    Announce,
    FindNode,
    FindValue,
    GetPeers,
    Ping,
    Request,
    Store,
    Stun,
    UnknownRpc,
    encode_response,
    parse_request,
)

__all__ = ["RATE_HOSTS", "RateLimiter", "Server", "source_of"]

# Hosts whose request rate is tracked at once.
RATE_HOSTS = 65536
_SERVED = {name: "served " + name for name in RPCS}


def source_of(address: Address) -> str:
    """Whom rate limits and storage quotas are counted against: the source host.

    On loopback every peer shares one host (a local swarm, a benchmark), and the kernel
    vouches for the port, so there the whole address counts as the source.
    """
    host = address[0]
    if host == "::1" or host.startswith("127."):
        return f"{host}:{address[1]}"
    return host


class RateLimiter:
    """Token bucket per source host, so one host cannot flood us.  Bounded memory."""

    def __init__(self, rate: float, burst: float) -> None:
        self._rate = rate
        self._burst = burst
        self._hosts: dict[str, tuple[float, float]] = {}  # host -> (tokens, last)

    def __len__(self) -> int:
        return len(self._hosts)

    def allow(self, host: str, now: float) -> bool:
        hosts = self._hosts
        tokens, last = hosts.pop(host, (self._burst, now))
        tokens = min(self._burst, tokens + (now - last) * self._rate)
        # Re-inserted at the end, so the dict is in least-recently-seen order and a flood
        # of spoofed sources only pushes out the oldest entries (memory stays bounded).
        allowed = tokens >= 1.0
        hosts[host] = (tokens - 1.0 if allowed else tokens, now)
        if len(hosts) > RATE_HOSTS:
            del hosts[next(iter(hosts))]
        return allowed

    def forget_refilled(self, now: float) -> None:
        """Forget hosts whose bucket has refilled: they are as good as new."""
        rate, burst = self._rate, self._burst
        full = [h for h, (tok, last) in self._hosts.items() if tok + (now - last) * rate >= burst]
        for host in full:
            del self._hosts[host]


class Server:
    """Answers the requests of one node."""

    def __init__(
        self,
        node_id: bytes,
        config: DHTConfig,
        rng: random.Random,
        routing: RoutingTable,
        storage: ValueStore,
        out: deque[tuple[bytes, Address]],
        counters: Counter[str],
        drops: Drops,
        *,
        seen: Callable[[bytes, Address, float], None],
        wall_offset: float,
        now: float,
        check: SignatureCheck | None = None,
    ) -> None:
        self._node_id = node_id
        self._config = config
        self._rng = rng
        self._routing = routing
        self._storage = storage
        self._out = out
        self._counters = counters
        self._drops = drops
        # Called with (sender id, address, now) for every well-formed request.
        self._seen = seen
        self._wall_offset = wall_offset
        self._check = check
        self._secret = rng.randbytes(32)
        self._old_secret = self._secret
        self._next_rotation = now + config.token_rotation

    def rotate(self, now: float) -> None:
        """Rotate the token secret if due (the previous one stays valid one more period)."""
        if now >= self._next_rotation:
            self._old_secret, self._secret = self._secret, self._rng.randbytes(32)
            self._next_rotation = now + self._config.token_rotation

    def handle(self, request: Request, address: Address, now: float) -> None:
        """Answer one request; RemoteProtocolError if it breaks the protocol."""
        try:
            rpc = parse_request(request)
        except RemoteProtocolError as exc:
            self._drops.drop(address, DropReason.BAD_REQUEST, str(exc), now)
            return
        msg_id = request.msg_id
        if isinstance(rpc, UnknownRpc):
            # The package ignores requests for RPCs it lacks; so do we.
            self._drops.drop(address, DropReason.UNKNOWN_RPC, "no such rpc", now)
            return
        if isinstance(rpc, Stun):
            self._reply(msg_id, [address[0], address[1]], address)
            return
        # The id was checked by parse_request, the address comes from our socket.
        self._seen(rpc.sender_id, address, now)
        self._counters[_SERVED.get(request.name, "served ?")] += 1
        if isinstance(rpc, Ping):
            self._reply(msg_id, self._node_id, address)
        elif isinstance(rpc, FindNode):
            self._reply(msg_id, self._neighbours(rpc.target, address), address)
        elif isinstance(rpc, FindValue):
            value = self._storage.get_value(rpc.key, now)
            if value is None:
                self._reply(msg_id, self._neighbours(rpc.key, address), address)
            else:
                self._reply(msg_id, {"value": value}, address)
        elif isinstance(rpc, Store):
            try:
                self._storage.put_value(rpc.key, rpc.value, source_of(address), now)
            except StoreRefused as exc:
                self._drops.drop(address, DropReason.STORE_REFUSED, exc.reason, now)
                self._reply(msg_id, False, address)
                return
            self._reply(msg_id, True, address)
        elif isinstance(rpc, GetPeers):
            self._get_peers(msg_id, rpc, address, now)
        elif isinstance(rpc, Announce):
            self._reply(msg_id, self._announce(rpc, address, now), address)

    def _reply(self, msg_id: bytes, result: Any, address: Address) -> None:
        self._out.append((encode_response(msg_id, result), address))

    def _neighbours(self, target: bytes, address: Address) -> list[tuple[bytes, str, int]]:
        # Only contacts the requester can reach: an IPv4 node gets IPv4 contacts.
        k = self._config.k
        routing = self._routing
        v6 = is_ipv6(address[0])
        closest = routing.closest(target, k, exclude=address)
        mixed = routing.ipv6_contacts not in (0, len(routing))
        if mixed and any(is_ipv6(c.host) != v6 for c in closest):
            closest = routing.closest(target, 3 * k, exclude=address)
            closest = [c for c in closest if is_ipv6(c.host) == v6][:k]
        return [(c.node_id, c.host, c.port) for c in closest]

    def _token(self, secret: bytes, address: Address, key: bytes) -> bytes:
        message = msgpack.packb([address[0], address[1], key], use_bin_type=True)
        return hmac.new(secret, message, hashlib.sha256).digest()[:16]

    def _get_peers(self, msg_id: bytes, rpc: GetPeers, address: Address, now: float) -> None:
        nodes = self._neighbours(rpc.key, address)
        token = self._token(self._secret, address, rpc.key)
        records = self._storage.get_records(rpc.key, now + self._wall_offset)
        self._rng.shuffle(records)
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

    def _announce(self, rpc: Announce, address: Address, now: float) -> bool:
        # The token proves the announcer receives datagrams at `address` (it got the
        # token there from get_peers); current or previous secret (BEP 5's scheme).
        valid = any(
            hmac.compare_digest(rpc.token, self._token(s, address, rpc.key))
            for s in (self._secret, self._old_secret)
        )
        if not valid:
            self._drops.drop(address, DropReason.BAD_TOKEN, "token does not match", now)
            return False
        wall = now + self._wall_offset
        # A bad record raises RecordError: the datagram is dropped unanswered.
        record = PeerRecord.decode(rpc.record)
        record.verify(rpc.key, wall, self._check)
        if self._config.require_address_match and any(
            host != address[0] for host, _ in record.addresses
        ):
            # Nobody can announce an address that is not theirs.
            self._drops.drop(address, DropReason.FOREIGN_HOST, str(record.addresses), now)
            return False
        try:
            self._storage.put_record(rpc.key, record, source_of(address), wall)
        except StoreRefused as exc:
            self._drops.drop(address, DropReason.ANNOUNCE_REFUSED, exc.reason, now)
            return False
        return True
