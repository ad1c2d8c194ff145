"""Room invites: a URI that carries a room's id and secret, its name, a few peer addresses
and a few DHT contacts.

    rumor://invite/<base32 of msgpack [1, room id, secret, name, [address, ...]] + checksum>
    rumor://invite/<base32 of msgpack [1, room id, secret, name, [address, ...],
                                       [dht contact, ...]] + checksum>

The second form carries DHT contacts (the inviter's DHT node and a few of its routing
table's, "ip:port" with IP literals): an invitee with no configured bootstrap reaches the
DHT through them. It is written only when there are contacts, so an invite without them
is the first form, byte for byte, and invites of either form stay valid.

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
import ipaddress
from dataclasses import dataclass

import msgpack

from ._addresses import is_ip_literal, parse_address, split_host_port

__all__ = [
    "Invite",
    "InviteError",
    "check_dht_contact",
    "check_room_name",
    "parse_invite",
    "reachability_problem",
]

PREFIX = "rumor://invite/"
VERSION = 1
CHECKSUM_BYTES = 4
MAX_NAME_BYTES = 64
MAX_PEERS = 8
MAX_DHT_CONTACTS = 4
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
    dht: tuple[str, ...] = ()  # DHT contacts, "ip:port"

    def __post_init__(self) -> None:
        if len(self.room) != 32 or len(self.secret) != 32:
            raise InviteError("an invite's room id and secret are 32 bytes each")
        if len(self.name.encode("utf-8")) > MAX_NAME_BYTES or not self.name.isprintable():
            raise InviteError(f"a room name is printable and at most {MAX_NAME_BYTES} bytes")
        if len(self.peers) > MAX_PEERS:
            raise InviteError(f"an invite lists at most {MAX_PEERS} peer addresses")
        for address in self.peers:
            check_address(address)
        if len(self.dht) > MAX_DHT_CONTACTS:
            raise InviteError(f"an invite lists at most {MAX_DHT_CONTACTS} DHT contacts")
        for contact in self.dht:
            check_dht_contact(contact)

    def to_uri(self) -> str:
        fields: list[object] = [VERSION, self.room, self.secret, self.name, list(self.peers)]
        if self.dht:
            fields.append(list(self.dht))
        body = msgpack.packb(fields)
        data = body + _checksum(body)
        return PREFIX + base64.b32encode(data).decode("ascii").rstrip("=").lower()

    def __str__(self) -> str:
        return self.to_uri()

    def __repr__(self) -> str:  # never print the secret by accident
        return (
            f"Invite(room={self.room.hex()[:8]}, name={self.name!r}, peers={self.peers!r}, "
            f"dht={self.dht!r})"
        )


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


def check_room_name(name: str) -> str:
    """`name` if a new room may be called so: printable, at most `MAX_NAME_BYTES` bytes,
    and not empty or blank; InviteError (one line) otherwise. (An invite may carry no
    name: rooms named by older versions are joined as they are.)"""
    if not isinstance(name, str) or not name.strip():
        raise InviteError("a room needs a name that is not empty or blank")
    if len(name.encode("utf-8")) > MAX_NAME_BYTES or not name.isprintable():
        raise InviteError(f"a room name is printable and at most {MAX_NAME_BYTES} bytes")
    return name


def reachability_problem(listen: str | None, advertise: str | None) -> str | None:
    """One line saying why invites made by a node with these settings cannot be dialed
    from another machine, or None. `listen` is where the node accepts links (None: it
    accepts none; port 0: any free port), `advertise` what its invites name (None: the
    listening address). Pass a running node's own `Node.address` as `advertise` for what
    it really puts in invites (`Node.reachability_problem` does).

    For the command line: `rumor create` warns with it when the invite it prints has no
    address or a loopback one."""
    if advertise:
        host = split_host_port(advertise)[0]
        if _is_loopback(host):
            return (
                f"invites name the loopback address {advertise}: only this machine can "
                "dial it; set --advertise to an address other machines reach"
            )
        return None
    if listen is None:
        return (
            "this node accepts no links (no --listen): invites carry no address of it, so "
            "invitees can only reach it through other members"
        )
    host, port = split_host_port(listen)
    if port == 0:
        return (
            f"the node listens on {listen}, any free port, and none is running to say "
            "which: the invite carries no address; start `rumor run` or set a fixed port"
        )
    if host in ("", "0.0.0.0", "::"):
        return (
            f"the node listens on every interface ({listen}) but advertises nothing: "
            "invites name loopback only; set --advertise to an address other machines reach"
        )
    if _is_loopback(host):
        return (
            f"the node listens on loopback only ({listen}): no other machine can dial "
            "it; listen on a public interface and set --advertise"
        )
    return None


def _is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost."):
        return True
    if not is_ip_literal(host):
        return False
    return ipaddress.ip_address(host).is_loopback


def check_dht_contact(contact: str) -> tuple[str, int]:
    """(ip, port) of a DHT contact "ip:port" (an IP literal, IPv6 in brackets, port
    1-65535); InviteError otherwise."""
    if len(contact) > MAX_ADDRESS_CHARS:
        raise InviteError(f"not a DHT contact: {contact[:60]!r}... (too long)")
    try:
        return parse_address(contact, ip_only=True, allow_zero=False)
    except ValueError as exc:
        raise InviteError(f"not a DHT contact: {exc}") from None


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
    if not isinstance(fields, list) or len(fields) not in (5, 6):
        raise InviteError("invite is damaged: wrong shape")
    version, room, secret, name, peers = fields[:5]
    dht = fields[5] if len(fields) == 6 else []
    # An int, exactly: msgpack's true and 1.0 equal 1 in Python, but no rumor writes them.
    if type(version) is not int or version != VERSION:
        raise InviteError(f"invite version {version!r} is not supported by this rumor")
    if not (isinstance(room, bytes) and isinstance(secret, bytes) and isinstance(name, str)):
        raise InviteError("invite is damaged: wrong field types")
    if not isinstance(peers, list) or not all(isinstance(p, str) for p in peers):
        raise InviteError("invite is damaged: wrong peer list")
    # Written only when there are contacts: an empty list is no invite of ours.
    if len(fields) == 6 and (
        not isinstance(dht, list) or not dht or not all(isinstance(c, str) for c in dht)
    ):
        raise InviteError("invite is damaged: wrong DHT contact list")
    return Invite(room, secret, name, tuple(peers), tuple(dht))


def _checksum(body: bytes) -> bytes:
    return hashlib.blake2b(body, digest_size=CHECKSUM_BYTES, person=b"rumor-invite").digest()
