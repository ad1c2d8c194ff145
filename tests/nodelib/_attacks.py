"""What a hostile member sends once in a room: the payloads the hostile tests use, on
loopback and on the simulator alike."""

from __future__ import annotations

import msgpack

from crdt import Identity, Kind, Replica
from node.gossip import Mode, Ops, encode_message

LIMIT = 20 * 1024  # the receive limit the attacked node advertises in its HELLO


def garbage(room: bytes, author: Identity) -> bytes:
    return b"\xc1 is no msgpack at all"


def bad_signature(room: bytes, author: Identity) -> bytes:
    op = Replica(room, identity=author).create(Kind.MESSAGE, ("forged", None), now_ms=1)
    tampered = op.data[:-1] + bytes([op.data[-1] ^ 1])
    return encode_message(Ops(0, Mode.PUSH, (tampered,)))


def oversized(room: bytes, author: Identity) -> bytes:
    replica = Replica(room, identity=author)
    ops = []
    for n in range(30):  # each ~1 KiB, valid and signed: only the size is wrong
        op = replica.create(Kind.MESSAGE, (f"{n} " + "x" * 1000, None), now_ms=1 + n)
        replica.admit(op)
        ops.append(op.data)
    payload: bytes = msgpack.packb([2, 0, int(Mode.PUSH), ops])
    assert len(payload) > LIMIT
    return payload


ATTACKS = [garbage, bad_signature, oversized]
