"""The verification worker process, run as `python _verify_worker.py CONTEXT_HEX`.

Reads requests from stdin, each a 4-byte big-endian length and a msgpack array of
authors and op bytes, flat (author, op bytes, author, op bytes, ...); answers each on
stdout with a 4-byte length and one byte per op (1 = its last 64 bytes are its author's
Ed25519 signature of CONTEXT + the rest).
Exits at end of input. It imports nothing of rumor, so a worker costs only the
interpreter, msgpack and cryptography.
"""

from __future__ import annotations

import contextlib
import struct
import sys
from collections.abc import Sequence
from typing import Any, BinaryIO

import msgpack
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

LENGTH = struct.Struct(">I")
KEY_CACHE_SIZE = 4096
_UNSEEN: Any = object()


def verify_signatures(
    items: Sequence[bytes],
    context: bytes,
    keys: dict[bytes, Ed25519PublicKey | None],
) -> bytes:
    """One byte per op of `items` (author, op bytes, author, op bytes, ...: flat, so that
    a batch makes no tuple per op): 1 if the op's signature is valid, else 0.

    `keys` caches parsed public keys across calls.
    """
    if len(keys) > KEY_CACHE_SIZE:
        keys.clear()
    verdicts = bytearray(len(items) // 2)
    for i in range(len(verdicts)):
        author, data = items[2 * i], items[2 * i + 1]
        key = keys.get(author, _UNSEEN)
        if key is _UNSEEN:
            try:
                key = Ed25519PublicKey.from_public_bytes(author)
            except ValueError:
                key = None
            keys[author] = key
        if key is None:
            continue
        try:
            key.verify(data[-64:], context + data[:-64])
        except InvalidSignature:
            continue
        verdicts[i] = 1
    return bytes(verdicts)


def _read_exactly(stream: BinaryIO, count: int) -> bytes | None:
    data = stream.read(count)
    return data if data is not None and len(data) == count else None


def main(context: bytes) -> None:
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    keys: dict[bytes, Ed25519PublicKey | None] = {}
    while True:
        header = _read_exactly(stdin, LENGTH.size)
        if header is None:
            return
        (length,) = LENGTH.unpack(header)
        body = _read_exactly(stdin, length)
        if body is None:
            return
        verdicts = verify_signatures(msgpack.unpackb(body), context, keys)
        stdout.write(LENGTH.pack(len(verdicts)) + verdicts)
        stdout.flush()


if __name__ == "__main__":
    # If the parent went away (or was killed) there is nobody left to answer.
    with contextlib.suppress(BrokenPipeError, KeyboardInterrupt):
        main(bytes.fromhex(sys.argv[1]))
