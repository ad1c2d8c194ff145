"""Room invites: a URI that carries a room's id and secret, its name and a few peer addresses.

    rumor://invite/<base32 of msgpack [1, room id, secret, name, [address, ...]] + checksum>

An invite is a capability: whoever holds it can find the room's members (the DHT key is
derived from the secret) and prove membership on a link. The 4-byte BLAKE2b checksum
catches a mangled copy-paste before anyone dials anything. Parsing is strict and every
failure is one `InviteError` with a one-line message for people. Peer addresses are
host:port (`node._addresses`): an IP literal, IPv6 in brackets, or a DNS name that is
valid by its syntax (it is looked up only when dialed), and nothing else.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass

import msgpack

from ._addresses import parse_address

__all__ = ["Invite", "InviteError", "parse_invite"]

PREFIX = "rumor://invite/"
VERSION = 1
CHECKSUM_BYTES = 4
MAX_NAME_BYTES = 64
MAX_PEERS = 8
MAX_ADDRESS_CHARS = 300
MAX_URI_CHARS = 4096


class InviteError(ValueError):
    """An invite that cannot be used; the message is one line for people."""


@dataclass(frozen=True, slots=True)
class Invite:
    room: bytes
    secret: bytes
    name: str = ""
    peers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if len(self.room) != 32 or len(self.secret) != 32:
            raise InviteError("an invite's room id and secret are 32 bytes each")
        if len(self.name.encode("utf-8")) > MAX_NAME_BYTES or not self.name.isprintable():
            raise InviteError(f"a room name is printable and at most {MAX_NAME_BYTES} bytes")
        if len(self.peers) > MAX_PEERS:
            raise InviteError(f"an invite lists at most {MAX_PEERS} peer addresses")
        for address in self.peers:
            check_address(address)

    def to_uri(self) -> str:
        body = msgpack.packb([VERSION, self.room, self.secret, self.name, list(self.peers)])
        data = body + _checksum(body)
        return PREFIX + base64.b32encode(data).decode("ascii").rstrip("=").lower()

    def __str__(self) -> str:
        return self.to_uri()

    def __repr__(self) -> str:  # never print the secret by accident
        return f"Invite(room={self.room.hex()[:8]}, name={self.name!r}, peers={self.peers!r})"


def check_address(address: str) -> str:
    """`address` if a peer could be dialed there: host:port, the host an IP literal (IPv6
    in brackets) or a syntactically valid DNS name, port 1-65535; no scheme, no path.
    Raises InviteError otherwise."""
    if len(address) > MAX_ADDRESS_CHARS:
        raise InviteError(f"not a peer address: {address[:60]!r}... (too long)")
    try:
        parse_address(address, allow_zero=False)
    except ValueError as exc:
        raise InviteError(f"not a peer address: {exc}") from None
    return address


def parse_invite(text: str) -> Invite:
    """The invite in `text`; raises InviteError.

    Whitespace anywhere is ignored: around it, and the line breaks and spaces a mail
    client or a terminal puts inside a long line (base32 has none of its own)."""
    text = "".join(text.split())
    if len(text) > MAX_URI_CHARS:
        raise InviteError("invite too long")
    if not text.lower().startswith(PREFIX):
        raise InviteError(f"an invite starts with {PREFIX}")
    encoded = text[len(PREFIX) :].upper()
    try:
        data = base64.b32decode(encoded + "=" * (-len(encoded) % 8))
    except (binascii.Error, ValueError):
        raise InviteError("invite is damaged: not base32") from None
    body, checksum = data[:-CHECKSUM_BYTES], data[-CHECKSUM_BYTES:]
    if len(data) <= CHECKSUM_BYTES or _checksum(body) != checksum:
        raise InviteError("invite is damaged: checksum does not match (copied in full?)")
    try:
        fields = msgpack.unpackb(body, raw=False, max_array_len=16, max_map_len=0)
    except Exception:  # msgpack raises many types on bad input
        raise InviteError("invite is damaged: cannot decode") from None
    if not isinstance(fields, list) or len(fields) != 5:
        raise InviteError("invite is damaged: wrong shape")
    version, room, secret, name, peers = fields
    # An int, exactly: msgpack's true and 1.0 equal 1 in Python, but no rumor writes them.
    if type(version) is not int or version != VERSION:
        raise InviteError(f"invite version {version!r} is not supported by this rumor")
    if not (isinstance(room, bytes) and isinstance(secret, bytes) and isinstance(name, str)):
        raise InviteError("invite is damaged: wrong field types")
    if not isinstance(peers, list) or not all(isinstance(p, str) for p in peers):
        raise InviteError("invite is damaged: wrong peer list")
    return Invite(room, secret, name, tuple(peers))


def _checksum(body: bytes) -> bytes:
    return hashlib.blake2b(body, digest_size=CHECKSUM_BYTES, person=b"rumor-invite").digest()
