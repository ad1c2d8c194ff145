"""Error types of dht/, split by whose fault the error is, and the reasons input is dropped.

A `RemoteProtocolError` means a peer sent something we cannot accept: the caller
drops it, counts it under its `DropReason` and carries on.  A `LocalProtocolError`
means our own code misused the API (a bug): it is raised loudly and never caught by
the core.

This module holds no logic: it never logs, counts or touches IO.
"""

from __future__ import annotations

import enum

__all__ = ["DHTError", "DropReason", "LocalProtocolError", "RecordError", "RemoteProtocolError"]


class DropReason(enum.Enum):
    """Why a datagram or request from a peer was dropped (or refused, or ignored).

    Each value is the counter label the node reports (`DHTNode.counters()`, the metric
    `rumor_dht_events`): labels come from this enum only, so they are a fixed set.
    Labels that existed before the enum keep their spelling, so dashboards survive.
    """

    # The datagram itself.
    OVERSIZE = "dropped: datagram of N bytes is over N"
    MALFORMED = "dropped: malformed datagram"
    UNKNOWN_KIND = "dropped: unknown datagram kind"
    # Requests.
    RATE_LIMITED = "rate limited"
    UNKNOWN_RPC = "unknown rpc"
    BAD_REQUEST = "dropped: bad request"
    BAD_TOKEN = "dropped: bad token"
    BAD_RECORD = "dropped: bad record"
    FOREIGN_HOST = "dropped: record names another host"
    STORE_REFUSED = "dropped: store refused"
    ANNOUNCE_REFUSED = "dropped: announce refused"
    # Responses.
    UNEXPECTED_RESPONSE = "unexpected response"
    WRONG_ADDRESS = "dropped: response from the wrong address"
    BAD_REPLY = "dropped: bad reply"

    @property
    def label(self) -> str:
        """The counter and metric label."""
        return self.value


class DHTError(Exception):
    """Base class of every error raised by dht/."""


class RemoteProtocolError(DHTError):
    """A peer sent bytes or values that break the protocol; drop them.

    `reason` is how the drop is counted; the message is detail for debug logs only.
    """

    default_reason = DropReason.MALFORMED

    def __init__(self, message: str, reason: DropReason | None = None) -> None:
        super().__init__(message)
        self.reason = reason if reason is not None else self.default_reason


class RecordError(RemoteProtocolError):
    """A signed peer record is malformed, expired or does not verify."""

    default_reason = DropReason.BAD_RECORD


class LocalProtocolError(DHTError):
    """Our own code misused the API (a bug in the caller, not the peer)."""
