"""Signed peer records: "peer P is reachable at these link addresses until T".

A record is announced under a DHT key (derived from a room secret by node/).  Its
signature covers a domain-separation prefix, the key, the peer id (the 32-byte Ed25519
public key), the link addresses and the expiry, as one msgpack array in fixed field order
(DESIGN.md: signed structures are arrays, never maps, so the bytes are canonical).  A
record signed for one key does not verify under another.

This module only builds, encodes and checks records; it never stores them or reads the
clock (callers pass the wall-clock time in).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgpack
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from rumor_runtime import SignatureCheck

from ._errors import LocalProtocolError, RecordError
from ._ids import ID_BYTES, Address, canonical_host

__all__ = ["MAX_RECORD_ADDRESSES", "MAX_RECORD_BYTES", "RECORD_DOMAIN", "PeerRecord"]

RECORD_VERSION = 1
# Domain separation: a signature over a record can never be mistaken for a signature
# over an op, a handshake payload or anything else the same key signs.
RECORD_DOMAIN = b"rumor/dht/peer-record/v1\x00"
MAX_RECORD_ADDRESSES = 8
MAX_RECORD_BYTES = 512


def _check_addresses(addresses: Any) -> tuple[Address, ...]:
    if not isinstance(addresses, list | tuple) or len(addresses) > MAX_RECORD_ADDRESSES:
        raise RecordError(f"a record has at most {MAX_RECORD_ADDRESSES} addresses")
    checked = []
    for item in addresses:
        if not isinstance(item, list | tuple) or len(item) != 2:
            raise RecordError("an address is [ip, port]")
        host, port = item
        if not isinstance(host, str) or canonical_host(host) != host:
            raise RecordError("an address host is a canonical IP literal")
        if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
            raise RecordError("an address port is in 1..65535")
        checked.append((host, port))
    return tuple(checked)


@dataclass(frozen=True, slots=True)
class PeerRecord:
    """A peer's signed statement of where it can be reached, and until when.

    `expires` is a Unix time in whole seconds.  Building a record does not verify its
    signature: call `verify(key, now_wall)` before trusting it.
    """

    peer_id: bytes
    addresses: tuple[Address, ...]
    expires: int
    signature: bytes
    # The wire form, made on the first `encode`: a stored record goes out in every
    # get_peers reply for its key, dozens of times a lookup round.
    _wire: bytes | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.peer_id, bytes) or len(self.peer_id) != 32:
            raise RecordError("a peer id is a 32-byte Ed25519 public key")
        object.__setattr__(self, "addresses", _check_addresses(self.addresses))
        if not isinstance(self.expires, int) or isinstance(self.expires, bool):
            raise RecordError("expires is an integer Unix time")
        if not 0 <= self.expires < 1 << 63:
            raise RecordError("expires is out of range")
        if not isinstance(self.signature, bytes) or len(self.signature) != 64:
            raise RecordError("a signature is 64 bytes")

    @staticmethod
    def signed_bytes(
        key: bytes, peer_id: bytes, addresses: tuple[Address, ...], expires: int
    ) -> bytes:
        """The exact bytes the signature covers."""
        body = [RECORD_VERSION, key, peer_id, [list(a) for a in addresses], expires]
        packed: bytes = msgpack.packb(body, use_bin_type=True)
        return RECORD_DOMAIN + packed

    @classmethod
    def create(
        cls,
        private_key: Ed25519PrivateKey,
        key: bytes,
        addresses: tuple[Address, ...] | list[Address],
        expires: int,
    ) -> PeerRecord:
        """Sign a record for `key`.  Bad arguments are our own bug: LocalProtocolError."""
        if not isinstance(key, bytes) or len(key) != ID_BYTES:
            raise LocalProtocolError("a DHT key is 20 bytes")
        peer_id = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        try:
            checked = _check_addresses(addresses)
        except RecordError as exc:
            raise LocalProtocolError(str(exc)) from None
        signature = private_key.sign(cls.signed_bytes(key, peer_id, checked, expires))
        record = cls(peer_id, checked, expires, signature)
        if len(record.encode()) > MAX_RECORD_BYTES:
            raise LocalProtocolError(f"a record is at most {MAX_RECORD_BYTES} bytes")
        return record

    def verify(self, key: bytes, now_wall: float, check: SignatureCheck | None = None) -> None:
        """Raise RecordError unless the signature holds for `key` and it has not expired.
        `check`, if given, checks the signature instead of Ed25519 here (see the node's
        `Environment.check_signature`)."""
        if self.expires <= now_wall:
            raise RecordError("record has expired")
        if check is not None:
            signed = self.signed_bytes(key, self.peer_id, self.addresses, self.expires)
            if not check(self.peer_id, self.signature, signed):
                raise RecordError("record signature does not verify")
            return
        try:
            public = Ed25519PublicKey.from_public_bytes(self.peer_id)
            public.verify(
                self.signature,
                self.signed_bytes(key, self.peer_id, self.addresses, self.expires),
            )
        except (InvalidSignature, ValueError):
            raise RecordError("record signature does not verify") from None

    def encode(self) -> bytes:
        """The record on the wire: `[version, peer_id, [[ip, port], ...], expires, sig]`."""
        if self._wire is not None:
            return self._wire
        body = [
            RECORD_VERSION,
            self.peer_id,
            [list(a) for a in self.addresses],
            self.expires,
            self.signature,
        ]
        wire: bytes = msgpack.packb(body, use_bin_type=True)
        object.__setattr__(self, "_wire", wire)  # frozen: a cache of a pure function of it
        return wire

    @classmethod
    def decode(cls, data: bytes) -> PeerRecord:
        """Decode a record or raise RecordError (never anything else)."""
        if not isinstance(data, bytes) or len(data) > MAX_RECORD_BYTES:
            raise RecordError(f"a record is at most {MAX_RECORD_BYTES} bytes")
        try:
            body = msgpack.unpackb(data, raw=False, use_list=True, timestamp=0)
        except (ValueError, TypeError, OverflowError, msgpack.UnpackException):
            raise RecordError("record is not msgpack") from None
        if not isinstance(body, list) or len(body) != 5 or body[0] != RECORD_VERSION:
            raise RecordError("a record is [1, peer_id, addresses, expires, signature]")
        if isinstance(body[0], bool):
            raise RecordError("record version is an integer")
        return cls(body[1], body[2], body[3], body[4])
