"""What the gossip core asks its driver to do: send, ingest, penalise.

Actions are frozen dataclasses returned by every `RoomGossip` call, in the order the
driver should perform them. This module must never import trio or touch IO.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from crdt import Op

__all__ = ["Action", "Fault", "Ingest", "Penalise", "Send"]


class Fault(enum.StrEnum):
    """Why a peer was penalised. The values are stable: metrics and logs use them."""

    GARBAGE = "garbage"  # bytes that are not a room-protocol message
    OVERSIZED = "oversized"  # a message over the size limit
    BAD_OP = "bad_op"  # an op no honest peer would send (bad signature, malformed, ...)
    FLOW = "flow"  # more batches than our window, or an ack for no batch of ours
    PROTOCOL = "protocol"  # a message out of turn or an incompatible version


@dataclass(frozen=True, slots=True)
class Send:
    """Send `data` to `peer` as one link message tagged with this room."""

    peer: bytes
    data: bytes


@dataclass(frozen=True, slots=True)
class Ingest:
    """Verify and store these op wire forms, received from `peer` (`History.ingest`), then
    report the result with `RoomGossip.ingested(token, report, now)`."""

    peer: bytes
    token: int
    ops: tuple[bytes, ...]
    # The same ops as the core decoded them, so the driver can hand them to
    # `History.ingest` without decoding every op a second time.
    decoded: tuple[Op, ...] = field(default=(), compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Penalise:
    """`peer` misbehaved: count it, log it once per peer and fault, close its link.

    The core has already forgotten the peer; it ignores anything further from it.
    """

    peer: bytes
    fault: Fault
    detail: str = ""


Action = Send | Ingest | Penalise
