"""What the gossip core asks its driver to do: send, ingest, penalise.

Actions are frozen dataclasses returned by every `RoomGossip` call, in the order the
driver should perform them. This module must never import trio or touch IO.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from crdt import Op

from ._errors import Fault

__all__ = ["Action", "Fault", "Ingest", "Penalise", "Send"]


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
