"""Discovery: finding a room's members through the DHT, and being found.

`Discovery` announces our signed peer record under a room's DHT key, looks up the records
of the other members, works out the address our record names (the advertised one, a host
name looked up again each time), and resolves bootstrap names. What to announce when, and
whom to dial of those found, is `node._peering`'s to decide; this module only does it.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence

import trio

from crdt import Identity
from dht import Address, DHTError, DHTNode, PeerRecord, canonical_host

from ._addresses import join_host_port, split_host_port
from ._env import Resolver

__all__ = ["Discovery", "resolve_bootstrap", "room_dht_key"]

log = logging.getLogger("node")


def room_dht_key(secret: bytes) -> bytes:
    """The DHT key under which a room's members announce themselves (DESIGN.md: derived
    from the secret, so the DHT never learns the room and only invite holders find it)."""
    return hashlib.blake2b(secret, digest_size=20, person=b"rumor-room-dht").digest()


async def resolve_bootstrap(addresses: Sequence[Address], resolve: Resolver) -> list[Address]:
    """Bootstrap addresses as the DHT takes them (IP literals): names are looked up, and
    one that cannot be is logged and left out."""
    resolved: list[Address] = []
    for host, port in addresses:
        if canonical_host(host) is not None:
            resolved.append((host, port))
            continue
        try:
            ips = await resolve(host, port, trio.socket.SOCK_DGRAM)
        except (OSError, UnicodeError) as exc:
            log.warning("DHT bootstrap %s: cannot look it up: %s", host, exc)
            continue
        resolved += [(ip, port) for ip in ips if (ip, port) not in resolved]
    return resolved


class Discovery:
    """Announce and look up room members on one DHT node."""

    def __init__(self, dht: DHTNode, identity: Identity, resolve: Resolver) -> None:
        self.dht = dht
        self.identity = identity
        self.resolve = resolve
        self._warned: set[str] = set()  # why our address could not go in the DHT

    async def announce(self, secret: bytes, address: str, ttl: float) -> bool:
        """Store our record, naming `address`, under the room's key; False if it could
        not be (logged: once per reason for an address that cannot be put in a record)."""
        where = await self.record_address(address)
        if where is None:
            return False
        dht = self.dht
        # The DHT's wall clock, which moves with trio's: in virtual time too, records
        # are announced again as they near expiry.
        expires = int(dht.protocol.wall(trio.current_time()) + ttl)
        key = room_dht_key(secret)
        record = PeerRecord.create(self.identity.private_key, key, [where], expires)
        try:
            await dht.announce(key, record)
        except DHTError as exc:
            log.debug("DHT announce: %s", exc)
            return False
        return True

    def stop_announcing(self, secret: bytes) -> None:
        self.dht.stop_announcing(room_dht_key(secret))

    async def lookup(self, secret: bytes) -> list[tuple[bytes, list[str]]]:
        """(peer id, link addresses) of the room's other members the DHT knows; none if
        the lookup failed. Only holders of the secret know the key, so these are members'
        addresses."""
        try:
            records = await self.dht.get_peers(room_dht_key(secret))
        except DHTError as exc:
            log.debug("DHT lookup: %s", exc)
            return []
        return [
            (r.peer_id, [join_host_port(ip, port) for ip, port in r.addresses])
            for r in records
            if r.peer_id != self.identity.peer_id
        ]

    async def record_address(self, address: str) -> Address | None:
        """The (ip, port) our DHT records name: the advertised address, a host name in it
        looked up each time (a dynamic DNS name may move); None if it cannot be.

        A record names IP literals only, and DHT nodes take it only if its IP is the one
        the announce came from: IPv4 first, as most of the DHT is.
        """
        host, port = split_host_port(address)
        literal = canonical_host(host)
        if literal is not None:
            return (literal, port)
        try:
            ips = await self.resolve(host, port, trio.socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            self._warn(f"cannot look up the advertised host {host!r}: {exc}")
            return None
        ips = sorted(ips, key=lambda ip: ":" in ip)  # IPv4 first; stable otherwise
        if not ips:
            self._warn(f"the advertised host {host!r} has no IP address")
            return None
        return (ips[0], port)

    def _warn(self, why: str) -> None:
        # Once per reason: discovery retries every few seconds.
        if why not in self._warned:
            self._warned.add(why)
            log.warning("not announcing this node in the DHT: %s", why)
