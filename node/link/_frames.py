"""The link's application frames: what one Noise transport message carries after the handshake.

Every frame is a msgpack array whose first element is the frame type (never a map, so the
bytes are canonical):

- ``[0]``: :class:`Ping`, the keepalive; nothing answers it;
- ``[1, room, payload]``: :class:`Data`, one application message for an authorized room;
- ``[2, room, proof]``: :class:`RoomProof`, "I hold this room's secret";
- ``[3, room]``: :class:`RoomUnknown`, "unknown room" (also the answer to a wrong proof).

``room`` is the 32-byte room id, ``proof`` a 32-byte MAC (see ``_auth``), ``payload`` bytes.
A frame's plaintext is at most :data:`MAX_FRAME` bytes. This module only encodes and
decodes: anything that is not exactly one of these frames is a :class:`LinkRemoteError`,
and no exception of msgpack's may escape :func:`decode_frame`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import msgpack

from ._errors import LinkLocalError, LinkRemoteError

__all__ = [
    "MAX_FRAME",
    "MAX_PAYLOAD",
    "ROOM_ID_BYTES",
    "ROOM_PROOF_BYTES",
    "Data",
    "Frame",
    "Ping",
    "RoomProof",
    "RoomUnknown",
    "decode_frame",
    "encode_frame",
]

MAX_FRAME: Final = 60 * 1024
"""Hard limit on a frame's plaintext; with the 16-byte tag it stays under Noise's 65535 (§3)."""

_DATA_OVERHEAD: Final = 1 + 1 + 2 + 32 + 3  # fixarray, type, bin8 room, bin16/bin32 header
MAX_PAYLOAD: Final = MAX_FRAME - _DATA_OVERHEAD
"""The largest ``Data.payload``, exactly what fits in a frame; bigger ones the caller splits."""

ROOM_ID_BYTES: Final = 32
ROOM_PROOF_BYTES: Final = 32

_PING, _DATA, _PROOF, _DENIED = 0, 1, 2, 3


def _check_bytes(what: str, value: object, size: int | None = None) -> None:
    if not isinstance(value, bytes):
        raise LinkLocalError(f"{what} must be bytes")
    if size is not None and len(value) != size:
        raise LinkLocalError(f"{what} must be {size} bytes, not {len(value)}")


@dataclass(frozen=True, slots=True)
class Ping:
    """Keepalive: sent after ``keepalive`` seconds without sending anything else."""


@dataclass(frozen=True, slots=True)
class Data:
    """One application message for an authorized room."""

    room_id: bytes
    payload: bytes

    def __post_init__(self) -> None:
        _check_bytes("room_id", self.room_id, ROOM_ID_BYTES)
        _check_bytes("payload", self.payload)
        if len(self.payload) > MAX_PAYLOAD:
            raise LinkLocalError(
                f"payload of {len(self.payload)} bytes is over the {MAX_PAYLOAD}-byte limit"
            )


@dataclass(frozen=True, slots=True)
class RoomProof:
    """This side holds ``room_id``'s secret: a MAC over the handshake hash (``_auth``)."""

    room_id: bytes
    proof: bytes

    def __post_init__(self) -> None:
        _check_bytes("room_id", self.room_id, ROOM_ID_BYTES)
        _check_bytes("proof", self.proof, ROOM_PROOF_BYTES)


@dataclass(frozen=True, slots=True)
class RoomUnknown:
    """The answer to a proof for a room the peer does not hold, or whose proof failed.

    Both cases get the same bytes on purpose: a peer without the secret must not learn
    whether we hold the room.
    """

    room_id: bytes

    def __post_init__(self) -> None:
        _check_bytes("room_id", self.room_id, ROOM_ID_BYTES)


Frame = Ping | Data | RoomProof | RoomUnknown


def encode_frame(frame: Frame) -> bytes:
    """The plaintext of ``frame`` (at most :data:`MAX_FRAME` bytes)."""
    fields: list[object]
    if isinstance(frame, Ping):
        fields = [_PING]
    elif isinstance(frame, Data):
        fields = [_DATA, frame.room_id, frame.payload]
    elif isinstance(frame, RoomProof):
        fields = [_PROOF, frame.room_id, frame.proof]
    elif isinstance(frame, RoomUnknown):
        fields = [_DENIED, frame.room_id]
    else:
        raise LinkLocalError(f"not a frame: {frame!r}")
    packed: bytes = msgpack.packb(fields, use_bin_type=True)
    assert len(packed) <= MAX_FRAME  # the dataclasses' limits guarantee it
    return packed


def _remote_bytes(value: object, size: int, what: str) -> bytes:
    if not isinstance(value, bytes) or len(value) != size:
        raise LinkRemoteError("malformed", f"{what} is not {size} bytes")
    return value


def decode_frame(plaintext: bytes) -> Frame:
    """The frame in ``plaintext``; raises :class:`LinkRemoteError` for anything else."""
    if len(plaintext) > MAX_FRAME:
        raise LinkRemoteError("oversized", f"frame of {len(plaintext)} bytes > {MAX_FRAME}")
    try:
        # msgpack raises ValueError subclasses (ExtraData, FormatError, StackError,
        # UnicodeDecodeError) or TypeError for unhashable map keys; all are the peer's doing.
        fields = msgpack.unpackb(
            plaintext, use_list=True, raw=False, strict_map_key=True, max_ext_len=0
        )
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise LinkRemoteError("malformed", f"not msgpack: {exc}") from None
    if not isinstance(fields, list) or not fields or type(fields[0]) is not int:
        raise LinkRemoteError("malformed", "a frame is a msgpack array starting with its type")
    kind, rest = fields[0], fields[1:]
    arity = {_PING: 0, _DATA: 2, _PROOF: 2, _DENIED: 1}.get(kind)
    if arity is None:
        raise LinkRemoteError("malformed", f"unknown frame type {kind}")
    if len(rest) != arity:
        raise LinkRemoteError("malformed", f"frame type {kind} has {len(rest)} fields")
    if kind == _PING:
        return Ping()
    room_id = _remote_bytes(rest[0], ROOM_ID_BYTES, "room id")
    if kind == _DATA:
        if not isinstance(rest[1], bytes):
            raise LinkRemoteError("malformed", "payload is not bytes")
        # MAX_FRAME bounds the payload already: MAX_PAYLOAD is what fits after the header.
        return Data(room_id, rest[1])
    if kind == _PROOF:
        return RoomProof(room_id, _remote_bytes(rest[1], ROOM_PROOF_BYTES, "proof"))
    return RoomUnknown(room_id)
