"""Error types of dht/, split by whose fault the error is.

A `RemoteProtocolError` means a peer sent something we cannot accept: the caller
drops it, counts it and carries on.  A `LocalProtocolError` means our own code
misused the API (a bug): it is raised loudly and never caught by the core.
"""

from __future__ import annotations

__all__ = ["DHTError", "LocalProtocolError", "RecordError", "RemoteProtocolError"]


class DHTError(Exception):
    """Base class of every error raised by dht/."""


class RemoteProtocolError(DHTError):
    """A peer sent bytes or values that break the protocol; drop them."""


class RecordError(RemoteProtocolError):
    """A signed peer record is malformed, expired or does not verify."""


class LocalProtocolError(DHTError):
    """Our own code misused the API (a bug in the caller, not the peer)."""
