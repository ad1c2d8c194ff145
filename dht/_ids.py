"""160-bit node ids, the XOR metric and the key hashing of the `kademlia` package.

Ids are plain 20-byte `bytes` on the wire and in the API; the routing code works on
their big-endian integer value.  This module never touches the network or the clock.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import random
from typing import NamedTuple

from ._errors import LocalProtocolError

__all__ = [
    "ID_BITS",
    "ID_BYTES",
    "Address",
    "Contact",
    "canonical_host",
    "check_node_id",
    "distance",
    "id_to_int",
    "int_to_id",
    "is_ipv6",
    "key_digest",
    "node_id_from_public_key",
    "random_id",
]

ID_BYTES = 20
ID_BITS = ID_BYTES * 8


def check_node_id(node_id: bytes) -> bytes:
    """Return `node_id` if it is 20 bytes, else raise LocalProtocolError."""
    if not isinstance(node_id, bytes) or len(node_id) != ID_BYTES:
        raise LocalProtocolError(f"a node id is {ID_BYTES} bytes, got {node_id!r}")
    return node_id


def id_to_int(node_id: bytes) -> int:
    """The big-endian integer value of an id."""
    return int.from_bytes(node_id, "big")


def int_to_id(value: int) -> bytes:
    """The 20-byte id of an integer in [0, 2**160)."""
    return value.to_bytes(ID_BYTES, "big")


def distance(a: bytes, b: bytes) -> int:
    """Kademlia §2.1: the distance between two ids is their bitwise XOR as an integer."""
    return id_to_int(a) ^ id_to_int(b)


def node_id_from_public_key(public_key: bytes) -> bytes:
    """DESIGN.md: the DHT node id is the first 20 bytes of BLAKE2b(Ed25519 public key)."""
    if not isinstance(public_key, bytes) or len(public_key) != 32:
        raise LocalProtocolError("an Ed25519 public key is 32 bytes")
    return hashlib.blake2b(public_key).digest()[:ID_BYTES]


def key_digest(key: bytes | str | int | float) -> bytes:
    """Hash a user key exactly as `kademlia.utils.digest` does, so both find the same value.

    The package hashes bytes as they are and anything else as `str(key)` in UTF-8.
    """
    if isinstance(key, bytes):
        return hashlib.sha1(key).digest()
    return hashlib.sha1(str(key).encode("utf8")).digest()


def random_id(rng: random.Random, low: int = 0, high: int = 1 << ID_BITS) -> bytes:
    """A uniformly random id in [low, high), drawn from the caller's generator."""
    if not 0 <= low < high <= 1 << ID_BITS:
        raise LocalProtocolError(f"bad id range [{low}, {high})")
    return int_to_id(low + rng.randrange(high - low))


Address = tuple[str, int]
"""A UDP address as the core sees it: a canonical IP literal and a port."""


@functools.lru_cache(maxsize=65536)
def canonical_host(host: str) -> str | None:
    """The canonical text of an IP literal, or None if `host` is not one.

    IPv4-mapped IPv6 addresses become plain IPv4, so a dual-stack socket and an IPv4
    socket name the same peer the same way (tokens and the routing table rely on it).
    """
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def is_ipv6(host: str) -> bool:
    """True if the canonical host `host` is an IPv6 literal."""
    return ":" in host


class _ContactFields(NamedTuple):
    node_id: bytes
    host: str
    port: int
    # The integer id, cached: every routing decision XORs it.
    distance_key: int


class Contact(_ContactFields):
    """A node as the routing table knows it: its id and where it answers.

    A tuple, not a dataclass: replies carry up to 20 contacts each and a lookup parses
    hundreds, so building one must be cheap (`trusted` is a bare tuple construction).
    """

    __slots__ = ()

    def __new__(cls, node_id: bytes, host: str, port: int) -> Contact:
        check_node_id(node_id)
        if canonical_host(host) != host:
            raise LocalProtocolError(f"{host!r} is not a canonical IP literal")
        if not isinstance(port, int) or not 0 < port < 65536:
            raise LocalProtocolError(f"bad port {port!r}")
        return tuple.__new__(cls, (node_id, host, port, id_to_int(node_id)))

    @classmethod
    def trusted(cls, node_id: bytes, host: str, port: int) -> Contact:
        """Build without validation: only for parts already checked (a parsed id, an
        address from our own socket).  Hot path: every datagram observes its sender."""
        return tuple.__new__(cls, (node_id, host, port, int.from_bytes(node_id, "big")))

    def __repr__(self) -> str:
        return f"Contact({self.node_id.hex()[:12]}..., {self.host!r}, {self.port})"

    @property
    def address(self) -> Address:
        return (self.host, self.port)

    def to_wire(self) -> tuple[bytes, str, int]:
        """The `(id, ip, port)` triple that `kademlia`'s find_node answers with."""
        return (self.node_id, self.host, self.port)
