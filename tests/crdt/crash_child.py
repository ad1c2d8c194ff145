"""The process that test_crash.py kills: it writes to a History and reports each durable step.

    python crash_child.py ingest DB SPEC    # SPEC: msgpack map: room, now, workers, batches
    python crash_child.py author DB SPEC    # SPEC: msgpack map: room, now, seed, count

`ingest` feeds each batch of op bytes to `History.ingest`; `author` authors `count` ops of
the identity with that seed, following `plan`. After each call returns, the child prints
the batch number (from 1) or the op's seq on a line of its own and flushes stdout: its
claim that the step survives the process being killed. Anything else on stdout is an
error report.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import msgpack
import trio

from crdt import Identity, Kind, Outcome
from crdt._history import History
from crdt._verify import Verifier


def plan(seq: int) -> tuple[Kind, str]:
    """What the author child writes at `seq`: mostly messages, every fifth an edit of the
    message just before it."""
    if seq % 5 == 0:
        return Kind.EDIT, f"edit {seq}"
    return Kind.MESSAGE, f"message {seq}"


def report(value: int) -> None:
    sys.stdout.write(f"{value}\n")
    sys.stdout.flush()


async def ingest(path: Path, spec: dict[str, Any]) -> None:
    async with (
        Verifier.open(workers=spec["workers"]) as verifier,
        History.open(
            path, room=spec["room"], verifier=verifier, wall_clock=lambda: int(spec["now"])
        ) as history,
    ):
        for number, batch in enumerate(spec["batches"], 1):
            outcome = await history.ingest(batch)
            if outcome.outcomes != [Outcome.ADDED] * len(batch):
                raise SystemExit(f"batch {number}: not all added: {outcome}")
            report(number)


async def author(path: Path, spec: dict[str, Any]) -> None:
    identity = Identity.from_seed(spec["seed"])
    async with (
        Verifier.open(workers=0) as verifier,
        History.open(
            path,
            room=spec["room"],
            identity=identity,
            verifier=verifier,
            wall_clock=lambda: int(spec["now"]),
        ) as history,
    ):
        last_message = b""
        for seq in range(1, spec["count"] + 1):
            kind, text = plan(seq)
            body = (last_message, text) if kind == Kind.EDIT else (text, None)
            op, result = await history.author(kind, body)
            if op.seq != seq or not result.added:
                raise SystemExit(f"authored {op!r} as seq {seq}: {result}")
            if kind == Kind.MESSAGE:
                last_message = op.id
            report(seq)


def main() -> None:
    mode, path, spec_path = sys.argv[1:]
    spec = msgpack.unpackb(Path(spec_path).read_bytes())
    trio.run({"ingest": ingest, "author": author}[mode], Path(path), spec)


if __name__ == "__main__":
    main()
