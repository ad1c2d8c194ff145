"""Datagrams of the `kademlia` package's wire format, plus our two RPCs on the same framing.

rpcudp framing: one byte of kind (`0x00` request, `0x01` response), a 20-byte message
id, then msgpack.  A request's msgpack is `[name, args]`; a response's is the bare
result.  The package's RPCs put the sender's node id first in `args`:

    ping(sender_id)                 -> own node id
    stun()                          -> the sender's address as [ip, port]
    store(sender_id, key, value)    -> True
    find_node(sender_id, target)    -> [[id, ip, port], ...]
    find_value(sender_id, key)      -> {"value": v} or [[id, ip, port], ...]

and ours:

    get_peers(sender_id, key)       -> {"nodes": [...], "token": bytes, "peers": [record, ...]}
    announce(sender_id, key, token, record) -> True or False

The one rule of this module: any bytes either decode into the dataclasses below or
raise `RemoteProtocolError`; nothing else escapes.  It never touches a socket.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack

from ._errors import DropReason, LocalProtocolError, RemoteProtocolError
from ._ids import ID_BYTES, Contact, canonical_host

__all__ = [
    "MAX_CONTACTS_PER_REPLY",
    "MAX_DATAGRAM",
    "Announce",
    "FindNode",
    "FindValue",
    "FoundValue",
    "GetPeers",
    "PeersReply",
    "Ping",
    "Request",
    "Response",
    "RpcRequest",
    "Store",
    "Stun",
    "UnknownRpc",
    "Value",
    "decode_datagram",
    "encode_request",
    "encode_request_body",
    "encode_response",
    "parse_announce_reply",
    "parse_contacts",
    "parse_find_value_reply",
    "parse_get_peers_reply",
    "parse_ping_reply",
    "parse_request",
    "parse_store_reply",
    "parse_stun_reply",
    "request_datagram",
]

REQUEST = 0x00
RESPONSE = 0x01
HEADER = 1 + ID_BYTES
# The issue: datagrams over 8 KiB are refused.  rpcudp refuses to *send* a payload
# over 8192 bytes, so nothing a package node sends to us on purpose is larger.
MAX_DATAGRAM = 8192
# A reply names at most this many contacts; more is hostile (k is 20 by default).
MAX_CONTACTS_PER_REPLY = 64
MAX_PEERS_PER_REPLY = 64

Value = int | float | bool | str | bytes
"""What `kademlia.network.check_dht_value_type` accepts as a value."""

# The decoded messages below are built for every datagram, so they are plain slotted
# dataclasses: a frozen one costs twice as much to build.  Nothing changes them.


@dataclass(slots=True)
class Request:
    """A decoded request datagram: message id, RPC name and raw arguments."""

    msg_id: bytes
    name: str
    args: tuple[Any, ...]


@dataclass(slots=True)
class Response:
    """A decoded response datagram; the result is checked by the `parse_*_reply` helpers."""

    msg_id: bytes
    result: Any


@dataclass(slots=True)
class Ping:
    sender_id: bytes


@dataclass(slots=True)
class Stun:
    pass


@dataclass(slots=True)
class Store:
    sender_id: bytes
    key: bytes
    value: Value


@dataclass(slots=True)
class FindNode:
    sender_id: bytes
    target: bytes


@dataclass(slots=True)
class FindValue:
    sender_id: bytes
    key: bytes


@dataclass(slots=True)
class GetPeers:
    sender_id: bytes
    key: bytes


@dataclass(slots=True)
class Announce:
    sender_id: bytes
    key: bytes
    token: bytes
    record: bytes


@dataclass(slots=True)
class UnknownRpc:
    """A request for an RPC we do not serve; the package ignores these, so do we."""

    name: str


RpcRequest = Ping | Stun | Store | FindNode | FindValue | GetPeers | Announce | UnknownRpc


@dataclass(slots=True)
class FoundValue:
    """A find_value reply that carried the value."""

    value: Value


@dataclass(slots=True)
class PeersReply:
    """A get_peers reply: a write token, closer nodes and encoded peer records."""

    token: bytes
    nodes: tuple[Contact, ...]
    records: tuple[bytes, ...]


def _unpack(payload: bytes) -> Any:
    try:
        return msgpack.unpackb(
            payload,
            raw=False,
            strict_map_key=False,
            use_list=True,
            # Ext types (including msgpack timestamps) have no meaning here.
            ext_hook=_reject_ext,
            timestamp=0,
        )
    except RemoteProtocolError:
        raise
    except (ValueError, TypeError, OverflowError, msgpack.UnpackException) as exc:
        raise RemoteProtocolError(f"undecodable msgpack: {exc.__class__.__name__}") from None


def _reject_ext(code: int, data: bytes) -> Any:
    raise RemoteProtocolError(f"msgpack ext type {code} is not allowed")


def decode_datagram(data: bytes) -> Request | Response:
    """Decode one datagram or raise RemoteProtocolError."""
    if len(data) > MAX_DATAGRAM:
        raise RemoteProtocolError(
            f"datagram of {len(data)} bytes is over {MAX_DATAGRAM}", DropReason.OVERSIZE
        )
    # rpcudp drops anything shorter than 22 bytes: a header and one byte of msgpack.
    if len(data) < HEADER + 1:
        raise RemoteProtocolError("datagram too short")
    kind = data[0]
    msg_id = bytes(data[1:HEADER])
    if kind == REQUEST:
        body = _unpack(data[HEADER:])
        if not isinstance(body, list) or len(body) != 2:
            raise RemoteProtocolError("a request is [name, args]")
        name, args = body
        if not isinstance(name, str) or not isinstance(args, list):
            raise RemoteProtocolError("a request is [name: str, args: list]")
        return Request(msg_id, name, tuple(args))
    if kind == RESPONSE:
        return Response(msg_id, _unpack(data[HEADER:]))
    raise RemoteProtocolError(f"unknown datagram kind {kind:#04x}", DropReason.UNKNOWN_KIND)


# One packer, reused: `msgpack.packb` builds a new one per call.  `pack` runs in C with
# the GIL held throughout (no `default` hook), so sharing it across threads is safe.
_pack: Callable[[Any], bytes] = msgpack.Packer(use_bin_type=True).pack
_REQUEST_BYTE = bytes([REQUEST])
_RESPONSE_BYTE = bytes([RESPONSE])


def encode_request_body(name: str, args: tuple[Any, ...]) -> bytes:
    """The part of a request after its message id: a lookup's requests share it."""
    body = _pack([name, list(args)])
    if HEADER + len(body) > MAX_DATAGRAM:
        raise LocalProtocolError(f"request {name} of {HEADER + len(body)} bytes is too big")
    return body


def encode_request(msg_id: bytes, name: str, args: tuple[Any, ...]) -> bytes:
    """Encode a request; a datagram over the limit is our bug, not the peer's."""
    return request_datagram(msg_id, encode_request_body(name, args))


def request_datagram(msg_id: bytes, body: bytes) -> bytes:
    """A request from its message id and its `encode_request_body`."""
    if len(msg_id) != ID_BYTES:
        raise LocalProtocolError("a message id is 20 bytes")
    return _REQUEST_BYTE + msg_id + body


def encode_response(msg_id: bytes, result: Any) -> bytes:
    """Encode a response; callers keep replies under the datagram limit."""
    data = _RESPONSE_BYTE + msg_id + _pack(result)
    if len(data) > MAX_DATAGRAM:
        raise LocalProtocolError(f"response of {len(data)} bytes is over {MAX_DATAGRAM}")
    return data


def _node_id(obj: Any, what: str) -> bytes:
    if not isinstance(obj, bytes) or len(obj) != ID_BYTES:
        raise RemoteProtocolError(f"{what} is not a 20-byte id")
    return obj


def _value(obj: Any) -> Value:
    # bool is an int subclass; both are fine.  Anything else the package would refuse.
    if not isinstance(obj, int | float | str | bytes):
        raise RemoteProtocolError(f"a value cannot be a {type(obj).__name__}")
    return obj


def _args(request: Request, count: int) -> tuple[Any, ...]:
    if len(request.args) != count:
        raise RemoteProtocolError(f"{request.name} takes {count} arguments")
    return request.args


def parse_request(request: Request) -> RpcRequest:
    """Check a request's arguments and return the typed RPC."""
    name = request.name
    if name == "ping":
        (sender,) = _args(request, 1)
        return Ping(_node_id(sender, "sender id"))
    if name == "stun":
        _args(request, 0)
        return Stun()
    if name == "store":
        sender, key, value = _args(request, 3)
        return Store(_node_id(sender, "sender id"), _node_id(key, "key"), _value(value))
    if name == "find_node":
        sender, target = _args(request, 2)
        return FindNode(_node_id(sender, "sender id"), _node_id(target, "target"))
    if name == "find_value":
        sender, key = _args(request, 2)
        return FindValue(_node_id(sender, "sender id"), _node_id(key, "key"))
    if name == "get_peers":
        sender, key = _args(request, 2)
        return GetPeers(_node_id(sender, "sender id"), _node_id(key, "key"))
    if name == "announce":
        sender, key, token, record = _args(request, 4)
        if not isinstance(token, bytes) or not isinstance(record, bytes):
            raise RemoteProtocolError("announce takes a bytes token and a bytes record")
        return Announce(_node_id(sender, "sender id"), _node_id(key, "key"), token, record)
    return UnknownRpc(name)


def parse_ping_reply(result: Any) -> bytes:
    """A ping reply is the responder's node id."""
    return _node_id(result, "ping reply")


def parse_stun_reply(result: Any) -> tuple[str, int]:
    """A stun reply is the address the responder saw us at (asyncio gives 2 or 4 items)."""
    if not isinstance(result, list) or len(result) not in (2, 4):
        raise RemoteProtocolError("a stun reply is [ip, port]")
    host, port = result[0], result[1]
    if not isinstance(host, str) or not isinstance(port, int) or not 0 < port < 65536:
        raise RemoteProtocolError("a stun reply is [ip: str, port: int]")
    canonical = canonical_host(host)
    if canonical is None:
        raise RemoteProtocolError("a stun reply names no IP address")
    return (canonical, port)


def parse_store_reply(result: Any) -> bool:
    if not isinstance(result, bool):
        raise RemoteProtocolError("a store reply is a bool")
    return result


parse_announce_reply = parse_store_reply


def parse_contacts(result: Any) -> tuple[Contact, ...]:
    """A list of `[id, ip, port]` triples, as the package's find_node answers."""
    if not isinstance(result, list) or len(result) > MAX_CONTACTS_PER_REPLY:
        raise RemoteProtocolError("a node list is a list of at most 64 triples")
    contacts = []
    known = _KNOWN_CONTACTS
    for item in result:
        if type(item) is not list or len(item) != 3:
            raise RemoteProtocolError("a contact is [id, ip, port]")
        node_id, host, port = item
        if type(node_id) is not bytes:
            raise RemoteProtocolError("contact id is not a 20-byte id")
        contact = known.get(node_id)
        if contact is None or contact.host != host or contact.port != port or type(port) is not int:
            contact = _parse_contact(node_id, host, port)
        contacts.append(contact)
    return tuple(contacts)


# Contacts parsed before, by id: replies repeat the same few hundred nodes, and a known
# (id, host, port) triple needs no second check.  Bounded; it only ever holds valid ones.
_KNOWN_CONTACTS: dict[bytes, Contact] = {}
_KNOWN_LIMIT = 16384


def _parse_contact(node_id: bytes, host: object, port: object) -> Contact:
    if len(node_id) != ID_BYTES:
        raise RemoteProtocolError("contact id is not a 20-byte id")
    if type(host) is not str or type(port) is not int or not 0 < port < 65536:
        raise RemoteProtocolError("a contact is [id, ip: str, port: 1..65535]")
    canonical = canonical_host(host)
    if canonical is None:
        raise RemoteProtocolError("a contact has a bad address")
    # Every field is checked above: skip the constructor's second check.
    contact = Contact.trusted(node_id, canonical, port)
    if canonical == host:  # what the fast path compares against
        if len(_KNOWN_CONTACTS) >= _KNOWN_LIMIT:
            _KNOWN_CONTACTS.clear()
        _KNOWN_CONTACTS[node_id] = contact
    return contact


def parse_find_value_reply(result: Any) -> FoundValue | tuple[Contact, ...]:
    """Kademlia §2.3: find_value answers with the value, or like find_node."""
    if isinstance(result, dict):
        if len(result) != 1 or "value" not in result:
            raise RemoteProtocolError("a value reply is {'value': v}")
        return FoundValue(_value(result["value"]))
    return parse_contacts(result)


def parse_get_peers_reply(result: Any) -> PeersReply:
    if not isinstance(result, dict) or set(result) != {"nodes", "token", "peers"}:
        raise RemoteProtocolError("a get_peers reply is {nodes, token, peers}")
    token, peers = result["token"], result["peers"]
    if not isinstance(token, bytes) or len(token) > 64:
        raise RemoteProtocolError("a token is at most 64 bytes")
    if not isinstance(peers, list) or len(peers) > MAX_PEERS_PER_REPLY:
        raise RemoteProtocolError("peers is a list of at most 64 records")
    if not all(isinstance(p, bytes) for p in peers):
        raise RemoteProtocolError("a peer record is bytes")
    return PeersReply(token, parse_contacts(result["nodes"]), tuple(peers))
