"""Status snapshots of a node and its rooms: what `Node.status()` returns.

Plain frozen dataclasses, so the metrics, the UI and the control API can read (and send)
them without touching the node's internals.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DialState", "NodeStatus", "RoomStatus"]


@dataclass(frozen=True, slots=True)
class RoomStatus:
    """One room as `Node.status()` sees it."""

    room_id: bytes
    name: str
    peers: tuple[bytes, ...]  # peers whose link is authorised for the room and up
    ops: int  # ops stored (in effect or held)
    held: int  # of those, waiting for an op we lack: still syncing
    behind: int  # ops our peers' version vectors show that we lack: the sync lag
    authors: int
    ingesting: int  # batches from peers being verified and stored right now
    received: int  # op wire forms received from peers so far
    penalties: int  # peers cut off for misbehaving in this room
    sent: int = 0  # op wire forms sent to peers
    duplicates: int = 0  # received ops we already had
    rejected: tuple[tuple[str, int], ...] = ()  # received ops refused, by reason, sorted
    # The highest seq of ours some linked peer is known to hold: our ops up to it reached one.
    acked_seq: int = 0

    @property
    def synced(self) -> bool:
        """Nothing held, nothing being ingested, nothing a peer has that we lack."""
        return self.held == 0 and self.ingesting == 0 and self.behind == 0


@dataclass(frozen=True, slots=True)
class NodeStatus:
    """A snapshot of a node: its links, its DHT contacts and each room's sync progress."""

    peer_id: bytes
    address: str
    links: tuple[bytes, ...]  # peer ids of open links
    dht_contacts: int | None  # None without a DHT
    refusals: int  # room proofs peers got wrong (a wrong secret)
    rooms: tuple[RoomStatus, ...]
    # Room files that could not be opened, or rooms whose store failed: (file name, why).
    failed_rooms: tuple[tuple[str, str], ...] = ()
    # The DHT node's counters (RPCs sent and served, timeouts, drops by kind), sorted.
    dht_counters: tuple[tuple[str, int], ...] = ()
    # Bootstrap addresses were given but none answered in time: the DHT has no contacts.
    dht_bootstrap_failed: bool = False


@dataclass(slots=True)
class DialState:
    """How dialing one address goes (kept by the node, copied out for diagnostics)."""

    address: str
    peer_id: bytes | None = None  # known once a link to it has been up
    failures: int = 0  # failed dials in a row
    breaker_open: bool = False  # dials paused after too many failures
    last_contact_ms: int | None = None  # wall-clock ms a link to it last came up
