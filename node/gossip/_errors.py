"""Gossip error types, split by whose fault it was.

A :class:`GossipRemoteError` is anything a peer could have caused: bytes that are not a
room-protocol message, a message over the size limit, a field out of range. The core turns
it into a `Penalise` action (count, log once, close the link); it is never a bug here.

A :class:`GossipLocalError` is misuse by the caller: building a message with bad fields,
reporting an ingest result for a token the core never issued, announcing a peer twice. It
is a bug in our own code and is raised loudly.

This module must never import anything but the standard library.
"""

from __future__ import annotations

import enum

__all__ = ["Fault", "GossipError", "GossipLocalError", "GossipRemoteError"]


class Fault(enum.StrEnum):
    """Why a peer was penalised or its message refused. The values are stable: metric
    labels and log lines use them, never free text."""

    GARBAGE = "garbage"  # bytes that are not a room-protocol message
    OVERSIZED = "oversized"  # a message over the size limit
    BAD_OP = "bad_op"  # an op no honest peer would send (bad signature, malformed, ...)
    FLOW = "flow"  # more batches than our window, or an ack for no batch of ours
    PROTOCOL = "protocol"  # a message out of turn or an incompatible version


class GossipError(Exception):
    """Base class of every error this package raises on purpose."""


class GossipLocalError(GossipError, ValueError):
    """The caller misused the API or built an invalid message."""


class GossipRemoteError(GossipError):
    """A peer sent something we must reject; `reason` says why (a `Fault`), `detail` is
    free text for a log line only."""

    def __init__(self, reason: Fault, detail: str = "") -> None:
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)
        self.reason = reason
        self.detail = detail
