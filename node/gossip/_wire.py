"""The room protocol's wire format: what two peers say to each other about one room.

Every message is a msgpack array `[type, ...]` carried as the payload of a link message
tagged with the room id (the link, not this format, names the room and has already
checked that the peer may see it). Fields are positional, never maps:

    [0, version, window, max_bytes]      HELLO   first message on a link, each way
    [1, reply, more, [[author, seq]...]] VECTOR  version vector (chunked: `more` until last)
    [2, batch, mode, [op bytes...]]      OPS     ops; `batch` is acked; mode push/pulled/sync
    [3, batch]                           ACK     a batch of ours was ingested: one credit back
    [4, [op id...]]                      IHAVE   ids of new ops, for lazy peers (Plumtree §3.2)
    [5, graft, [op id...]]               WANT    send me these ops; `graft`: and push to me
    [5, graft, [op id...], [author...]]          and push me these authors' new ops
    [6]                                  PRUNE   stop pushing to me; announce instead
    [6, [author...]]                             the same, for these authors' ops only
    [7]                                  PAUSE   stop catch-up: someone else is sending it
    [8, nonce]                           PING    echo this (a link's latency, `_routes.py`)
    [9, nonce]                           PONG    the echo of a PING
    [10, tags, [ms...]]                  DIST    our distance from these authors (`_routes.py`):
                                                 `tags` the authors' first 8 bytes, joined

Decoding any bytes gives a valid message or raises `GossipRemoteError`, nothing else.
Building a message with fields out of range raises `GossipLocalError`. This module
never decides anything; the decisions are in `_room.py`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

import msgpack

from crdt import MAX_OP_BYTES

from ._errors import Fault, GossipLocalError, GossipRemoteError

__all__ = [
    "MAX_ADVERTISED_BYTES",
    "MAX_IDS",
    "MAX_MESSAGE_BYTES",
    "MAX_OPS_PER_BATCH",
    "MAX_VECTOR_ENTRIES",
    "MAX_WINDOW",
    "MIN_MESSAGE_BYTES",
    "PROTOCOL_VERSION",
    "TAG_BYTES",
    "UNREACHABLE",
    "Ack",
    "Dist",
    "Hello",
    "IHave",
    "Message",
    "Mode",
    "MsgType",
    "Ops",
    "Pause",
    "Ping",
    "Pong",
    "Prune",
    "Vector",
    "Want",
    "decode_message",
    "encode_message",
    "ops_overhead",
]

PROTOCOL_VERSION = 1
# The link carries payloads of at most ~60 KiB; room messages stay below that.
MAX_MESSAGE_BYTES = 60 * 1024
# A batch must always have room for one op of the largest size.
MIN_MESSAGE_BYTES = MAX_OP_BYTES + 1024
MAX_ADVERTISED_BYTES = 1 << 20  # the largest receive limit a HELLO may state
MAX_OPS_PER_BATCH = 512
MAX_IDS = 1024  # ids in one IHAVE or WANT: 1024 x 34 bytes fits the limit
MAX_VECTOR_ENTRIES = 1024  # entries in one VECTOR chunk: 1024 x 45 bytes fits the limit
MAX_WINDOW = 256
MAX_BATCH = (1 << 32) - 1
MAX_SEQ = (1 << 63) - 1
ID_BYTES = 32
MIN_OP_BYTES = 65  # a signature and at least one byte of payload
TAG_BYTES = 8  # an author named in a DIST by its first bytes (ids are 32): 4 x fewer bytes
UNREACHABLE = 0xFFFF  # a DIST distance, in ms, at most this; this one: no path
MAX_NONCE = (1 << 32) - 1


class MsgType(enum.IntEnum):
    HELLO = 0
    VECTOR = 1
    OPS = 2
    ACK = 3
    IHAVE = 4
    WANT = 5
    PRUNE = 6
    PAUSE = 7
    PING = 8
    PONG = 9
    DIST = 10


class Mode(enum.IntEnum):
    """Why a batch of ops was sent; it decides what the receiver does with them."""

    PUSH = 0  # eager push of a new op: forwarded on; a duplicate prunes the sender
    PULLED = 1  # answer to a WANT: forwarded on like a push, never prunes
    SYNC = 2  # catch-up from a version-vector comparison: stored, not forwarded


def _check(condition: bool, what: str) -> None:
    if not condition:
        raise GossipLocalError(what)


def _is_int(value: object, low: int, high: int) -> bool:
    return type(value) is int and low <= value <= high


def _is_id(value: object) -> bool:
    return type(value) is bytes and len(value) == ID_BYTES


@dataclass(frozen=True, slots=True)
class Hello:
    """Opens the room protocol on a link: our version, receive window and size limit."""

    version: int
    window: int  # OPS batches the sender of this HELLO accepts before it acks
    max_bytes: int  # the largest message the sender of this HELLO accepts

    def __post_init__(self) -> None:
        _check(_is_int(self.version, 0, 0xFFFF), "version out of range")
        _check(_is_int(self.window, 1, MAX_WINDOW), "window out of range")
        _check(
            _is_int(self.max_bytes, MIN_MESSAGE_BYTES, MAX_ADVERTISED_BYTES),
            "max_bytes out of range",
        )

    def fields(self) -> list[Any]:
        return [MsgType.HELLO, self.version, self.window, self.max_bytes]


@dataclass(frozen=True, slots=True)
class Vector:
    """A chunk of the sender's version vector: per author, the highest seq in effect."""

    reply: bool  # the sender wants our vector back
    more: bool  # further chunks follow; the vector is complete at the first `more=False`
    entries: tuple[tuple[bytes, int], ...]

    def __post_init__(self) -> None:
        _check(type(self.reply) is bool and type(self.more) is bool, "flags are not bools")
        _check(type(self.entries) is tuple, "entries is not a tuple")
        _check(len(self.entries) <= MAX_VECTOR_ENTRIES, "too many vector entries")
        for entry in self.entries:
            _check(
                type(entry) is tuple
                and len(entry) == 2
                and _is_id(entry[0])
                and _is_int(entry[1], 1, MAX_SEQ),
                "bad vector entry",
            )

    def fields(self) -> list[Any]:
        return [MsgType.VECTOR, self.reply, self.more, [list(e) for e in self.entries]]


@dataclass(frozen=True, slots=True)
class Ops:
    """A batch of op wire forms (each checked by crdt/ on arrival, not here)."""

    batch: int  # the sender's number for this batch, echoed by ACK
    mode: Mode
    ops: tuple[bytes, ...]

    def __post_init__(self) -> None:
        _check(_is_int(self.batch, 0, MAX_BATCH), "batch number out of range")
        _check(type(self.mode) is Mode, "mode is not a Mode")
        _check(type(self.ops) is tuple, "ops is not a tuple")
        _check(1 <= len(self.ops) <= MAX_OPS_PER_BATCH, "batch size out of range")
        # Passes over the whole batch in C, rather than a Python call per op.
        _check(set(map(type, self.ops)) == {bytes}, "op size out of range")
        sizes = list(map(len, self.ops))
        _check(min(sizes) >= MIN_OP_BYTES and max(sizes) <= MAX_OP_BYTES, "op size out of range")

    def fields(self) -> list[Any]:
        return [MsgType.OPS, self.batch, int(self.mode), list(self.ops)]


@dataclass(frozen=True, slots=True)
class Ack:
    """The receiver has ingested batch `batch`: the sender may send one more."""

    batch: int

    def __post_init__(self) -> None:
        _check(_is_int(self.batch, 0, MAX_BATCH), "batch number out of range")

    def fields(self) -> list[Any]:
        return [MsgType.ACK, self.batch]


@dataclass(frozen=True, slots=True)
class IHave:
    """Ids of ops the sender holds and the receiver may lack (the lazy half of Plumtree)."""

    ids: tuple[bytes, ...]

    def __post_init__(self) -> None:
        _check(type(self.ids) is tuple and 1 <= len(self.ids) <= MAX_IDS, "id count")
        _check(all(_is_id(i) for i in self.ids), "an id is not 32 bytes")

    def fields(self) -> list[Any]:
        return [MsgType.IHAVE, list(self.ids)]


@dataclass(frozen=True, slots=True)
class Want:
    """Send me these ops; with `graft`, also push new ops to me eagerly from now on.

    `authors` grafts one tree per author (Plumtree §3.8: one tree per source): push me
    new ops of these authors, whatever `graft` says about the others. A `graft` also
    grafts the authors of the ops in `ids`.
    """

    graft: bool
    ids: tuple[bytes, ...]
    authors: tuple[bytes, ...] = ()

    def __post_init__(self) -> None:
        _check(type(self.graft) is bool, "graft is not a bool")
        _check(type(self.ids) is tuple and len(self.ids) <= MAX_IDS, "id count")
        _check(all(_is_id(i) for i in self.ids), "an id is not 32 bytes")
        _check(type(self.authors) is tuple and len(self.authors) <= MAX_IDS, "author count")
        _check(all(_is_id(a) for a in self.authors), "an author is not 32 bytes")

    def fields(self) -> list[Any]:
        if self.authors:
            return [MsgType.WANT, self.graft, list(self.ids), list(self.authors)]
        return [MsgType.WANT, self.graft, list(self.ids)]


@dataclass(frozen=True, slots=True)
class Prune:
    """Stop pushing ops to me; send IHAVE instead (Plumtree §3.2). With `authors`, only
    these authors' ops (their trees), without one: the link's default for every author."""

    authors: tuple[bytes, ...] = ()

    def __post_init__(self) -> None:
        _check(type(self.authors) is tuple and len(self.authors) <= MAX_IDS, "author count")
        _check(all(_is_id(a) for a in self.authors), "an author is not 32 bytes")

    def fields(self) -> list[Any]:
        if self.authors:
            return [MsgType.PRUNE, list(self.authors)]
        return [MsgType.PRUNE]


@dataclass(frozen=True, slots=True)
class Pause:
    """Stop catch-up to me: another peer is sending me the same ops. My next VECTOR
    resumes it, with whatever I still lack then."""

    def fields(self) -> list[Any]:
        return [MsgType.PAUSE]


@dataclass(frozen=True, slots=True)
class Ping:
    """Echo `nonce` back (PONG): the round trip measures the link's latency."""

    nonce: int

    def __post_init__(self) -> None:
        _check(_is_int(self.nonce, 0, MAX_NONCE), "nonce out of range")

    def fields(self) -> list[Any]:
        return [MsgType.PING, self.nonce]


@dataclass(frozen=True, slots=True)
class Pong:
    """The echo of a PING."""

    nonce: int

    def __post_init__(self) -> None:
        _check(_is_int(self.nonce, 0, MAX_NONCE), "nonce out of range")

    def fields(self) -> list[Any]:
        return [MsgType.PONG, self.nonce]


@dataclass(frozen=True, slots=True)
class Dist:
    """The sender's distance (ms along its tree) from each of these authors: `tags`
    joins the authors' first `TAG_BYTES` bytes, `ms` holds one distance each
    (`UNREACHABLE`: it has no path from that author now)."""

    tags: bytes
    ms: tuple[int, ...]

    def __post_init__(self) -> None:
        _check(type(self.tags) is bytes and type(self.ms) is tuple, "bad DIST fields")
        _check(1 <= len(self.ms) <= MAX_IDS, "DIST entry count")
        _check(len(self.tags) == TAG_BYTES * len(self.ms), "DIST tags do not match")
        _check(all(_is_int(d, 0, UNREACHABLE) for d in self.ms), "DIST distance out of range")

    def fields(self) -> list[Any]:
        return [MsgType.DIST, self.tags, list(self.ms)]


Message = Hello | Vector | Ops | Ack | IHave | Want | Prune | Pause | Ping | Pong | Dist

_pack = msgpack.Packer().pack


def encode_message(message: Message) -> bytes:
    """The wire form of a message."""
    data: bytes = _pack(message.fields())
    return data


def ops_overhead(count: int) -> int:
    """Upper bound on an OPS message's bytes beyond its ops' own: for packing batches."""
    return 16 + 5 * count


def decode_message(data: bytes, *, max_bytes: int = MAX_MESSAGE_BYTES) -> Message:
    """Parse one message. Raises only `GossipRemoteError` (reason `Fault.OVERSIZED` or
    `Fault.GARBAGE`), whatever the bytes."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise GossipRemoteError(Fault.GARBAGE, "not bytes")
    if len(data) > max_bytes:
        raise GossipRemoteError(Fault.OVERSIZED, f"{len(data)} bytes, limit {max_bytes}")
    try:
        fields = msgpack.unpackb(
            data,
            use_list=False,
            raw=False,
            strict_map_key=True,
            max_str_len=0,
            max_bin_len=max_bytes,
            max_array_len=max_bytes,
            max_map_len=0,
            max_ext_len=0,
        )
    except Exception as exc:  # msgpack raises a zoo of types on bad input
        raise GossipRemoteError(Fault.GARBAGE, type(exc).__name__) from None
    if type(fields) is not tuple or not fields or type(fields[0]) is not int:
        raise GossipRemoteError(Fault.GARBAGE, "not a [type, ...] array")
    try:
        return _build(fields)
    except GossipLocalError as exc:  # a field out of range: the peer's fault here
        raise GossipRemoteError(Fault.GARBAGE, str(exc)) from None


def _arity(fields: tuple[Any, ...], count: int) -> tuple[Any, ...]:
    if len(fields) != count:
        raise GossipRemoteError(Fault.GARBAGE, f"{len(fields)} fields, wants {count}")
    return fields[1:]


def _op_too_large(ops: tuple[Any, ...]) -> bool:
    """Whether any of `ops` is bytes over MAX_OP_BYTES (what is not bytes is GARBAGE, later).
    A batch of bytes, as every honest one is, is checked in C passes, not a call per op."""
    if set(map(type, ops)) == {bytes}:
        return max(map(len, ops)) > MAX_OP_BYTES
    return any(type(op) is bytes and len(op) > MAX_OP_BYTES for op in ops)


def _build(fields: tuple[Any, ...]) -> Message:
    kind = fields[0]
    if kind == MsgType.HELLO:
        version, window, max_bytes = _arity(fields, 4)
        return Hello(version, window, max_bytes)
    if kind == MsgType.VECTOR:
        reply, more, entries = _arity(fields, 4)
        if type(entries) is not tuple:
            raise GossipRemoteError(Fault.GARBAGE, "vector entries not an array")
        return Vector(reply, more, entries)
    if kind == MsgType.OPS:
        batch, mode, ops = _arity(fields, 4)
        if type(ops) is tuple and (len(ops) > MAX_OPS_PER_BATCH or _op_too_large(ops)):
            raise GossipRemoteError(Fault.OVERSIZED, "batch over its op count or an op too large")
        if type(mode) is not int or mode not in Mode._value2member_map_:
            raise GossipRemoteError(Fault.GARBAGE, f"unknown mode {mode!r}")
        return Ops(batch, Mode(mode), ops)
    if kind == MsgType.ACK:
        (batch,) = _arity(fields, 2)
        return Ack(batch)
    if kind == MsgType.IHAVE:
        (ids,) = _arity(fields, 2)
        return IHave(ids)
    if kind == MsgType.WANT:
        graft, ids, *authors = _arity(fields, 4 if len(fields) == 4 else 3)
        return Want(graft, ids, *authors)
    if kind == MsgType.PRUNE:
        return Prune(*_arity(fields, 2 if len(fields) == 2 else 1))
    if kind == MsgType.PAUSE:
        _arity(fields, 1)
        return Pause()
    if kind == MsgType.PING:
        return Ping(*_arity(fields, 2))
    if kind == MsgType.PONG:
        return Pong(*_arity(fields, 2))
    if kind == MsgType.DIST:
        tags, ms = _arity(fields, 3)
        return Dist(tags, ms)
    raise GossipRemoteError(Fault.GARBAGE, f"unknown message type {kind}")
