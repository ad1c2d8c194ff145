"""The verification worker process: `python -m crdt._verify_worker`.

Reads requests from stdin, each a 4-byte big-endian length and a msgpack array of
`[author, op bytes]` pairs; answers each on stdout with a 4-byte length and one byte per
pair (1 = signature valid). Exits at end of input. It only ever reads its parent's pipe.
"""

from __future__ import annotations

import contextlib
import struct
import sys

import msgpack
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from crdt._verify import verify_signatures

_LENGTH = struct.Struct(">I")


def _read_exactly(stream: object, count: int) -> bytes | None:
    data = stream.read(count)  # type: ignore[attr-defined]
    return data if data is not None and len(data) == count else None


def main() -> None:
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    keys: dict[bytes, Ed25519PublicKey | None] = {}
    while True:
        header = _read_exactly(stdin, _LENGTH.size)
        if header is None:
            return
        (length,) = _LENGTH.unpack(header)
        body = _read_exactly(stdin, length)
        if body is None:
            return
        verdicts = verify_signatures(msgpack.unpackb(body), keys)
        stdout.write(_LENGTH.pack(len(verdicts)) + verdicts)
        stdout.flush()


if __name__ == "__main__":
    # If the parent went away (or was killed) there is nobody left to answer.
    with contextlib.suppress(BrokenPipeError, KeyboardInterrupt):
        main()
