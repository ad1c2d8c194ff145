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

__all__ = ["GossipError", "GossipLocalError", "GossipRemoteError"]


class GossipError(Exception):
    """Base class of every error this package raises on purpose."""


class GossipLocalError(GossipError, ValueError):
    """The caller misused the API or built an invalid message."""


class GossipRemoteError(GossipError):
    """A peer sent something we must reject; `reason` is a short machine-readable tag."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
