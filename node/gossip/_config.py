"""What a room's gossip core is given and what it counts: its tuning, its counters, and
the read access it needs to the room's verified ops.

Plain data and a protocol; no decisions. This module must never import trio or touch IO.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from crdt import Op, Reason

from ._errors import GossipLocalError
from ._wire import (
    MAX_ADVERTISED_BYTES,
    MAX_IDS,
    MAX_MESSAGE_BYTES,
    MAX_OPS_PER_BATCH,
    MAX_WINDOW,
    MIN_MESSAGE_BYTES,
)

__all__ = ["MAX_VECTOR_AUTHORS", "PEER_FAULT_REASONS", "GossipConfig", "GossipStats", "OpSource"]

# Refusals that only a faulty or hostile peer causes: an honest node forwards only ops
# that crdt/ accepted, so these can never be a race or a clock difference.
PEER_FAULT_REASONS = frozenset(
    {
        Reason.MALFORMED,
        Reason.TOO_LARGE,
        Reason.NOT_CANONICAL,
        Reason.BAD_VERSION,
        Reason.BAD_FIELD,
        Reason.UNKNOWN_KIND,
        Reason.BAD_BODY,
        Reason.BAD_SEQ,
        Reason.BAD_SIGNATURE,
        Reason.WRONG_ROOM,
    }
)
MAX_VECTOR_AUTHORS = 100_000  # a peer's whole vector, over all its chunks


class OpSource(Protocol):
    """Read access to the room's verified ops: `crdt.Replica` (a `History`'s `.replica`)."""

    def version_vector(self) -> dict[bytes, int]: ...

    def missing_for(
        self, version_vector: Mapping[bytes, int], limit: int | None = None
    ) -> list[Op]: ...

    def missing_wire(
        self, version_vector: Mapping[bytes, int], limit: int | None = None
    ) -> list[tuple[bytes, int, bytes]]:
        """`missing_for` as (author, seq, wire form): what a catch-up batch sends, without
        making ops of the bytes (a stored room checks them against their ids only)."""
        ...

    def get(self, op_id: bytes) -> Op | None: ...

    def __contains__(self, op_id: object) -> bool: ...

    def known_ops(self, ops: list[Op]) -> set[bytes]:
        """The ids of `ops` the source holds: one question for a whole batch."""
        ...

    def fork_seq(self, author: bytes) -> int | None: ...

    def fork_ops(self, limit: int | None = None) -> list[Op]: ...


@dataclass(frozen=True, slots=True)
class GossipConfig:
    """Tuning for one room. The defaults suit a chat room of up to a few hundred members."""

    # The thin eager core: each node asks this many peers (a link-wide GRAFT) to push it
    # the ops of authors new to them; later ops go only to the peers that grafted their
    # author (one tree per author, grown by the receivers).
    eager_peers: int = 3
    # An author stays new this long after the first op of it we forward: the grafts that
    # op brings back take a round trip, and a burst of ops should not wait for pulls.
    graft_window: float = 0.15
    window: int = 16  # OPS batches a peer may have outstanding with us (we advertise it)
    max_message_bytes: int = MAX_MESSAGE_BYTES  # the link's payload limit
    # Ops in one catch-up batch at most; the link's message size (max_message_bytes)
    # usually binds first, at 60 KiB: some 170 ops of 50-300 characters. Every batch costs
    # both sides a message, a Noise frame, an ingest and an ack, whatever it holds.
    batch_ops: int = 512
    ihave_interval: float = 0.0  # announcements to lazy peers are gathered this long
    # Each op is announced to at most this many of the peers it is not pushed to, drawn
    # at random (GossipSub's gossip to a few peers); None: to all of them.
    lazy_peers: int | None = 2
    graft_timeout: float = 0.06  # wait this long (x 1..1.5) for a push after an IHAVE, then pull
    retry_timeout: float = 0.25  # then ask the next announcer after this long
    # A peer whose IHAVE or push beat the parent's push by this much becomes the parent.
    reroute_margin: float = 0.01
    sync_interval: float = 60.0  # swap version vectors with each peer this often (±25%)
    announce_delay: float = 1.0  # after catching up, ask every peer for its vector
    # A peer that lacks at most this many ops when its link opens is told their ids
    # (IHAVE) and pulls them, rather than sent them (up to MAX_IDS).
    catch_up_ids: int = 256
    push_queue: int = 1024  # ops queued for one peer before we fall back to catch-up
    max_missing: int = 10_000  # announced ops we track before relying on catch-up
    flood: bool = False  # push to every peer and never prune (a baseline for benchmarks)
    # Mend the trees between their authors' ops from measured link latencies and the
    # distances peers advertise (`_routes.py`).
    distances: bool = False

    def __post_init__(self) -> None:
        if self.eager_peers < 0:
            raise GossipLocalError("eager_peers must be >= 0")
        if not 1 <= self.window <= MAX_WINDOW:
            raise GossipLocalError(f"window must be in 1..{MAX_WINDOW}")
        if not MIN_MESSAGE_BYTES <= self.max_message_bytes <= MAX_ADVERTISED_BYTES:
            raise GossipLocalError(
                f"max_message_bytes must be in {MIN_MESSAGE_BYTES}..{MAX_ADVERTISED_BYTES}"
            )
        if not 1 <= self.batch_ops <= MAX_OPS_PER_BATCH:
            raise GossipLocalError(f"batch_ops must be in 1..{MAX_OPS_PER_BATCH}")
        if min(self.ihave_interval, self.reroute_margin, self.graft_window) < 0:
            raise GossipLocalError("ihave_interval, reroute_margin, graft_window must be >= 0")
        timings = (self.graft_timeout, self.retry_timeout, self.sync_interval, self.announce_delay)
        if min(timings) <= 0:
            raise GossipLocalError("timeouts and the sync interval must be positive")
        if self.lazy_peers is not None and self.lazy_peers < 0:
            raise GossipLocalError("lazy_peers must be >= 0")
        if not 0 <= self.catch_up_ids <= MAX_IDS:
            raise GossipLocalError(f"catch_up_ids must be in 0..{MAX_IDS}")
        if self.push_queue < 1 or self.max_missing < 1:
            raise GossipLocalError("push_queue and max_missing must be positive")


@dataclass(slots=True)
class GossipStats:
    """Counters for metrics; the core only ever increments them."""

    ops_received: int = 0  # op wire forms received in OPS batches
    duplicates: int = 0  # of those, ones we already had or were already ingesting
    ops_sent: int = 0
    batches_sent: int = 0
    ihave_sent: int = 0  # ids announced
    wants_sent: int = 0  # ids pulled
    prunes_sent: int = 0
    grafts_sent: int = 0
    penalties: int = 0
