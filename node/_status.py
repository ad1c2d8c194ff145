"""Status snapshots of a node and its rooms: what `Node.status()` returns.

Plain frozen dataclasses, so the metrics, the UI and the control API can read (and send)
them without touching the node's internals.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DialState", "NodeStatus", "RoomStatus", "caught_up_line"]


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
    # Stored ops found damaged and set aside (never deleted), to be fetched again by sync.
    damaged: int = 0
    added: int = 0  # received ops that were new to us and are stored now

    @property
    def refused(self) -> int:
        """Received ops refused by crdt/, all reasons."""
        return sum(count for _, count in self.rejected)

    @property
    def synced(self) -> bool:
        """Nothing held, nothing being ingested, nothing a peer has that we lack."""
        return self.held == 0 and self.ingesting == 0 and self.behind == 0


def caught_up_line(room: RoomStatus, last: RoomStatus | None = None) -> str:
    """The operator's one line for a room that caught up, counting what came from peers
    since `last` (the status of that room when the previous line was made; None: since
    the start). Its figures add up: received = new + already held + refused.

        room 1a2b3c4d caught up: 5922 ops, 7 received (5 new, 2 already held), 3 authors,
        2 peers
    """
    received = room.received - (last.received if last else 0)
    new = room.added - (last.added if last else 0)
    refused = room.refused - (last.refused if last else 0)
    held = received - new - refused  # duplicates, whether caught by gossip or the store
    parts = [f"{new} new", f"{held} already held"] + ([f"{refused} refused"] if refused else [])
    return (
        f"room {room.room_id.hex()[:8]} caught up: {room.ops} ops, {received} received "
        f"({', '.join(parts)}), {room.authors} authors, {len(room.peers)} peers"
    )


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
    # Members' address records refused (bad signature, expired, malformed...), by reason.
    records_dropped: tuple[tuple[str, int], ...] = ()
    # Connections closed in their handshake by the cap: (refused at once as their source
    # was at its cap, pushed out to make room when the whole gate was full).
    handshakes_refused: int = 0
    handshakes_pushed_out: int = 0


@dataclass(slots=True)
class DialState:
    """How dialing one address goes (kept by the node, copied out for diagnostics)."""

    address: str
    peer_id: bytes | None = None  # known once a link to it has been up
    failures: int = 0  # failed dials in a row
    breaker_open: bool = False  # dials paused after too many failures
    last_contact_ms: int | None = None  # wall-clock ms a link to it last came up
