"""The op: the signed atom of a room's history, its wire form and its checks.

Wire form: `payload || signature`, where `payload` is the msgpack array
`[version, room, author, seq, prev, hlc, kind, body]` and `signature` is the author's
64-byte Ed25519 signature of `SIGNING_CONTEXT + payload`. The op id is BLAKE2b-256 of
`payload`, so a signature cannot be altered to give the same op a second id.

`decode_op` checks everything that can be checked on the op alone (size, types, canonical
encoding, body shape) and raises `InvalidOp` with a reason on any input bytes, never
anything else. The signature is checked separately (`Op.signature_ok`) so that bulk ingest
can verify on several threads.
"""

from __future__ import annotations

import enum
import hashlib
import re
from collections.abc import Callable
from typing import Any, NamedTuple

import msgpack
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ._identity import SIGNATURE_BYTES, Identity

__all__ = [
    "ID_BYTES",
    "MAX_BODY_BYTES",
    "MAX_OP_BYTES",
    "OP_VERSION",
    "InvalidOp",
    "Kind",
    "Op",
    "Reason",
    "decode_op",
    "encode_op",
    "op_id",
]

OP_VERSION = 1
ID_BYTES = 32
KEY_BYTES = 32
MAX_OP_BYTES = 16 * 1024
MAX_BODY_BYTES = 12 * 1024
MAX_SEQ = (1 << 63) - 1
MAX_HLC = (1 << 64) - 1
MAX_NICK_BYTES = 64
MAX_TOPIC_BYTES = 1024
MAX_EMOJI_BYTES = 32
# Signatures of ops must never be valid as anything else the same key signs (peer
# records, handshake bindings), so the signed message starts with this context.
SIGNING_CONTEXT = b"rumor op v1\x00"


class Kind(enum.IntEnum):
    MESSAGE = 1
    EDIT = 2
    DELETE = 3
    REACT = 4
    UNREACT = 5
    TOPIC = 6
    NICK = 7
    JOIN = 8
    LEAVE = 9


# Kinds whose body names another op (its target) as the first field.
TARGETED_KINDS = frozenset({Kind.EDIT, Kind.DELETE, Kind.REACT, Kind.UNREACT})


class Reason(enum.StrEnum):
    """Why an op was refused. The values are stable: metrics and logs use them."""

    MALFORMED = "malformed"  # not a msgpack op array, truncated, trailing bytes
    TOO_LARGE = "too_large"  # op or body over its size limit
    NOT_CANONICAL = "not_canonical"  # decodes, but is not the canonical encoding
    BAD_VERSION = "bad_version"
    BAD_FIELD = "bad_field"  # a header field of the wrong type or out of range
    UNKNOWN_KIND = "unknown_kind"
    BAD_BODY = "bad_body"  # the body does not fit its kind
    BAD_SEQ = "bad_seq"  # seq below 1
    BAD_PREV = "bad_prev"  # prev missing, present at seq 1, or naming the wrong op
    BAD_SIGNATURE = "bad_signature"
    WRONG_ROOM = "wrong_room"
    CLOCK_SKEW = "clock_skew"  # timestamp too far in the future
    NOT_AUTHOR = "not_author"  # edit or delete of another author's message
    BAD_TARGET = "bad_target"  # edit, delete or reaction aimed at something not a message
    TOO_MANY_PENDING = "too_many_pending"  # too many ops waiting for missing ones


class InvalidOp(Exception):
    """Bytes from the network that are not an acceptable op (a remote error)."""

    def __init__(self, reason: Reason, detail: str = "") -> None:
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)
        self.reason = reason
        self.detail = detail


class Op(NamedTuple):
    """A decoded op, made only by `decode_op`. Two ops are equal when their ids are.

    A NamedTuple rather than a frozen dataclass: ingest builds one per op received, and a
    frozen dataclass takes five times as long to construct.
    """

    id: bytes
    data: bytes  # the wire form, payload || signature
    room: bytes
    author: bytes
    seq: int
    prev: bytes | None
    hlc: int
    kind: int  # a Kind value; a plain int keeps the tuple free of GC-tracked objects
    body: tuple[Any, ...]

    @property
    def payload(self) -> bytes:
        return self.data[:-SIGNATURE_BYTES]

    @property
    def signature(self) -> bytes:
        return self.data[-SIGNATURE_BYTES:]

    @property
    def target(self) -> bytes | None:
        """The op an edit, delete or reaction is aimed at."""
        return self.body[0] if self.kind in TARGETED_KINDS else None

    @property
    def sort_key(self) -> tuple[int, bytes, int, bytes]:
        """Timeline order: (hlc, author, seq), with the id breaking ties between forks."""
        return (self.hlc, self.author, self.seq, self.id)

    def signature_ok(self, public_key: Ed25519PublicKey | None = None) -> bool:
        """Whether the author's signature is valid. Pass a cached key to save its parsing."""
        try:
            key = public_key or Ed25519PublicKey.from_public_bytes(self.author)
            key.verify(self.signature, SIGNING_CONTEXT + self.payload)
        except (InvalidSignature, ValueError):
            return False
        return True

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Op) and other.id == self.id

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        return (
            f"Op({Kind(self.kind).name.lower()} {self.author.hex()[:8]}#{self.seq} "
            f"id={self.id.hex()[:8]})"
        )


# Copying a keyed-up hash object is cheaper than building one with keyword arguments (a
# third of the hashing of a 300-byte payload), and every op received or read is hashed.
_BLAKE2B = hashlib.blake2b(digest_size=ID_BYTES)


def op_id(payload: bytes) -> bytes:
    h = _BLAKE2B.copy()
    h.update(payload)
    return h.digest()


# -- body checks ------------------------------------------------------------------------

# C0 and C1 control characters reach terminals as escape sequences; only newline and tab
# are allowed, and only in message text.
_CONTROL_MULTILINE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_CONTROL_ONE_LINE = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _text(value: object, max_bytes: int, min_chars: int, multiline: bool) -> str:
    if type(value) is not str:
        raise InvalidOp(Reason.BAD_BODY, "text is not a string")
    if len(value) < min_chars:
        raise InvalidOp(Reason.BAD_BODY, "text is empty")
    # A str of n characters encodes to at least n bytes, so this bounds the encoding cost.
    if len(value) * 4 > max_bytes and len(value.encode("utf-8")) > max_bytes:
        raise InvalidOp(Reason.TOO_LARGE, f"text over {max_bytes} bytes")
    pattern = _CONTROL_MULTILINE if multiline else _CONTROL_ONE_LINE
    if pattern.search(value):
        raise InvalidOp(Reason.BAD_BODY, "control character in text")
    return value


def _op_ref(value: object) -> bytes:
    if type(value) is not bytes or len(value) != ID_BYTES:
        raise InvalidOp(Reason.BAD_BODY, "op reference is not a 32-byte id")
    return value


def _message(body: tuple[Any, ...]) -> None:
    # Most ops are messages: the checks of `_fields` and `_text` in line, the same order.
    if len(body) != 2:
        raise InvalidOp(Reason.BAD_BODY, f"body has {len(body)} fields, wants 2")
    text, reply_to = body
    if type(text) is not str or not text or len(text) * 4 > MAX_BODY_BYTES:
        _text(text, MAX_BODY_BYTES, 1, True)
    elif _CONTROL_MULTILINE.search(text):
        raise InvalidOp(Reason.BAD_BODY, "control character in text")
    if reply_to is not None:
        _op_ref(reply_to)


def _edit(body: tuple[Any, ...]) -> None:
    target, text = _fields(body, 2)
    _op_ref(target)
    _text(text, MAX_BODY_BYTES, 1, True)


def _delete(body: tuple[Any, ...]) -> None:
    (target,) = _fields(body, 1)
    _op_ref(target)


def _reaction(body: tuple[Any, ...]) -> None:
    target, emoji = _fields(body, 2)
    _op_ref(target)
    _text(emoji, MAX_EMOJI_BYTES, 1, False)
    if emoji.strip() != emoji:
        raise InvalidOp(Reason.BAD_BODY, "reaction with surrounding whitespace")


def _topic(body: tuple[Any, ...]) -> None:
    (text,) = _fields(body, 1)
    _text(text, MAX_TOPIC_BYTES, 0, False)


def _nick(body: tuple[Any, ...]) -> None:
    (text,) = _fields(body, 1)
    _text(text, MAX_NICK_BYTES, 0, False)


def _empty(body: tuple[Any, ...]) -> None:
    _fields(body, 0)


def _fields(body: tuple[Any, ...], count: int) -> tuple[Any, ...]:
    if len(body) != count:
        raise InvalidOp(Reason.BAD_BODY, f"body has {len(body)} fields, wants {count}")
    return body


BODY_CHECKS: dict[int, Callable[[tuple[Any, ...]], None]] = {
    Kind.MESSAGE: _message,
    Kind.EDIT: _edit,
    Kind.DELETE: _delete,
    Kind.REACT: _reaction,
    Kind.UNREACT: _reaction,
    Kind.TOPIC: _topic,
    Kind.NICK: _nick,
    Kind.JOIN: _empty,
    Kind.LEAVE: _empty,
}
_KINDS = frozenset(kind.value for kind in Kind)
_pack = msgpack.Packer().pack
_SHARED_MAX = 65_536
_shared_ids: dict[bytes, bytes] = {}


def _shared(value: bytes) -> bytes:
    """One interned copy of a room id or author key (bounded: cleared when full)."""
    if len(_shared_ids) >= _SHARED_MAX:
        _shared_ids.clear()
    return _shared_ids.setdefault(value, value)


# -- decoding -----------------------------------------------------------------------------


def decode_op(data: bytes) -> Op:
    """Parse and check an op's wire form (not its signature). Raises only InvalidOp."""
    if type(data) is not bytes:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise InvalidOp(Reason.MALFORMED, "not bytes")
        data = bytes(data)
    if len(data) > MAX_OP_BYTES:
        raise InvalidOp(Reason.TOO_LARGE, f"op of {len(data)} bytes")
    if len(data) <= SIGNATURE_BYTES:
        raise InvalidOp(Reason.MALFORMED, "truncated")
    payload = data[:-SIGNATURE_BYTES]
    try:
        # msgpack's defaults (>= 1.0) are raw=False and strings and bins no longer than the
        # input (here under MAX_OP_BYTES): only the limits that differ are passed, since
        # each keyword argument costs as much as a field of the decoding.
        fields = msgpack.unpackb(
            payload, use_list=False, max_array_len=64, max_map_len=0, max_ext_len=0
        )
    except Exception as exc:  # msgpack raises a zoo of types on bad input
        raise InvalidOp(Reason.MALFORMED, type(exc).__name__) from None
    if type(fields) is not tuple or len(fields) != 8:
        raise InvalidOp(Reason.MALFORMED, "not an 8-field array")
    version, room, author, seq, prev, hlc, kind_value, body = fields
    if type(version) is not int or version != OP_VERSION:
        raise InvalidOp(Reason.BAD_VERSION, f"version {version!r}")
    if type(room) is not bytes or len(room) != ID_BYTES:
        raise InvalidOp(Reason.BAD_FIELD, "room is not 32 bytes")
    if type(author) is not bytes or len(author) != KEY_BYTES:
        raise InvalidOp(Reason.BAD_FIELD, "author is not 32 bytes")
    if type(seq) is not int or seq > MAX_SEQ:
        raise InvalidOp(Reason.BAD_FIELD, "seq is not an int64")
    if seq < 1:
        raise InvalidOp(Reason.BAD_SEQ, f"seq {seq}")
    if seq == 1:
        if prev is not None:
            raise InvalidOp(Reason.BAD_PREV, "seq 1 with a prev")
    elif type(prev) is not bytes or len(prev) != ID_BYTES:
        raise InvalidOp(Reason.BAD_PREV, "prev is not a 32-byte id")
    if type(hlc) is not int or not 0 < hlc <= MAX_HLC:
        raise InvalidOp(Reason.BAD_FIELD, "hlc is not a positive uint64")
    if type(kind_value) is not int:
        raise InvalidOp(Reason.BAD_FIELD, "kind is not an int")
    if kind_value not in _KINDS:
        raise InvalidOp(Reason.UNKNOWN_KIND, f"kind {kind_value}")
    if type(body) is not tuple:
        raise InvalidOp(Reason.BAD_BODY, "body is not an array")
    BODY_CHECKS[kind_value](body)
    # One op, one encoding: anything else would give the same content a second id.
    if _pack(fields) != payload:
        raise InvalidOp(Reason.NOT_CANONICAL)
    if len(payload) > MAX_BODY_BYTES and len(msgpack.packb(body)) > MAX_BODY_BYTES:
        raise InvalidOp(Reason.TOO_LARGE, "body over the limit")
    # A room's ops share a handful of room ids and authors: keep one copy of each.
    room, author = _shared(room), _shared(author)
    return Op(op_id(payload), data, room, author, seq, prev, hlc, kind_value, body)


def stored_intact(expected_id: object, data: object) -> bool:
    """Whether stored op bytes still hash to their id: all a scrub needs to know (the
    bytes that were stored had passed `decode_op`)."""
    return (
        isinstance(expected_id, bytes)
        and isinstance(data, bytes)
        and len(data) > SIGNATURE_BYTES
        and op_id(data[:-SIGNATURE_BYTES]) == expected_id
    )


def decode_stored(expected_id: bytes, data: bytes) -> Op | None:
    """An op read back from storage, where it was put only after `decode_op` accepted it:
    None unless its payload still hashes to `expected_id`. Bytes that hash to the id are
    the bytes that were checked, so the checks are not run again (reading a stored room
    back costs a third of decoding it afresh)."""
    if len(data) <= SIGNATURE_BYTES:
        return None
    payload = data[:-SIGNATURE_BYTES]
    if op_id(payload) != expected_id:
        return None
    try:
        fields = msgpack.unpackb(payload, use_list=False)
    except Exception:  # cannot happen to bytes that hash to a checked op's id
        return None
    if type(fields) is not tuple or len(fields) != 8:
        return None
    _, room, author, seq, prev, hlc, kind_value, body = fields
    return Op(expected_id, data, _shared(room), _shared(author), seq, prev, hlc, kind_value, body)


def check_body(kind: Kind, body: tuple[Any, ...]) -> None:
    """Raise ValueError (as authoring would) if `body` is no valid body for `kind`: to check
    what a person typed before storing it anywhere."""
    try:
        BODY_CHECKS[kind](body)
    except InvalidOp as exc:
        raise ValueError(f"cannot author this op: {exc}") from None


def encode_op(
    identity: Identity,
    *,
    room: bytes,
    seq: int,
    prev: bytes | None,
    hlc: int,
    kind: Kind,
    body: tuple[Any, ...],
) -> Op:
    """Build and sign an op. Raises ValueError if the result would not decode."""
    payload = msgpack.packb(
        [OP_VERSION, room, identity.peer_id, seq, prev, hlc, int(kind), list(body)]
    )
    data = payload + identity.sign(SIGNING_CONTEXT + payload)
    try:
        return decode_op(data)
    except InvalidOp as exc:
        raise ValueError(f"cannot author this op: {exc}") from None
