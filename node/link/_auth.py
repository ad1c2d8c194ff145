"""What the handshake proves: identity bindings and room proofs. Pure functions, no state.

*Identity binding.* Noise XX authenticates each side's X25519 static key; rumor's peers are
named by Ed25519 keys. The handshake payloads (XX messages 2 and 3) carry
``[ed25519_public, signature]`` where the signature covers ``IDENTITY_CONTEXT`` plus the
sender's Noise static public key, so whoever completes the handshake with that static key
is proven to be the peer id. A man in the middle with its own static key cannot reuse a
genuine signature, which covers the genuine key.

*Room proofs.* ``BLAKE2b(key=secret, data=ROOM_PROOF_CONTEXT + role + handshake_hash +
room_id)``: keyed by the room secret, bound to this session by the handshake hash (Noise
§11.2 channel binding) and to the sender's role, so a proof cannot be replayed on another
link or reflected back at its sender.

This module must never do IO or keep state.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Final

import msgpack

from crdt import Identity, verify_signature

from ._errors import LinkRemoteError
from ._frames import ROOM_ID_BYTES, ROOM_PROOF_BYTES

__all__ = [
    "IDENTITY_CONTEXT",
    "ROOM_PROOF_CONTEXT",
    "ROOM_SECRET_BYTES",
    "check_room_proof",
    "identity_payload",
    "read_identity_payload",
    "room_proof",
]

IDENTITY_CONTEXT: Final = b"rumor link identity v1\0"
ROOM_PROOF_CONTEXT: Final = b"rumor room proof v1\0"
ROOM_SECRET_BYTES: Final = 32
_PEER_ID_BYTES: Final = 32
_SIGNATURE_BYTES: Final = 64
_ROLE: Final = {True: b"I", False: b"R"}


def identity_payload(identity: Identity, static_public: bytes) -> bytes:
    """The handshake payload binding ``identity`` to this side's Noise static key."""
    signature = identity.sign(IDENTITY_CONTEXT + static_public)
    packed: bytes = msgpack.packb([identity.peer_id, signature], use_bin_type=True)
    return packed


def read_identity_payload(payload: bytes, remote_static: bytes) -> bytes:
    """The peer id proven by ``payload`` for ``remote_static``; raises LinkRemoteError."""
    try:
        fields = msgpack.unpackb(payload, use_list=True, raw=False, max_ext_len=0)
    except (ValueError, TypeError, msgpack.UnpackException):
        raise LinkRemoteError("identity", "the identity payload is not msgpack") from None
    if (
        not isinstance(fields, list)
        or len(fields) != 2
        or not isinstance(fields[0], bytes)
        or len(fields[0]) != _PEER_ID_BYTES
        or not isinstance(fields[1], bytes)
        or len(fields[1]) != _SIGNATURE_BYTES
    ):
        raise LinkRemoteError("identity", "the identity payload is not [peer id, signature]")
    peer_id, signature = fields
    if not verify_signature(peer_id, signature, IDENTITY_CONTEXT + remote_static):
        raise LinkRemoteError("identity", "the signature does not bind the peer id to its key")
    return bytes(peer_id)


def room_proof(secret: bytes, *, initiator: bool, handshake_hash: bytes, room_id: bytes) -> bytes:
    """The proof that the side in role ``initiator`` holds ``room_id``'s ``secret``."""
    assert len(secret) == ROOM_SECRET_BYTES and len(room_id) == ROOM_ID_BYTES
    mac = hashlib.blake2b(
        ROOM_PROOF_CONTEXT + _ROLE[initiator] + handshake_hash + room_id,
        key=secret,
        digest_size=ROOM_PROOF_BYTES,
    )
    return mac.digest()


def check_room_proof(
    proof: bytes, secret: bytes, *, initiator: bool, handshake_hash: bytes, room_id: bytes
) -> bool:
    """Whether ``proof`` is the proof of the side in role ``initiator`` (constant time)."""
    expected = room_proof(
        secret, initiator=initiator, handshake_hash=handshake_hash, room_id=room_id
    )
    return hmac.compare_digest(proof, expected)
