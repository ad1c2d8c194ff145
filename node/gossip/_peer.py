"""What a room's gossip core remembers about one linked peer, for as long as the link
lasts: flow control, the push queue, what we believe the peer holds, pending
announcements and pulls, and which authors' ops it asked us to push or not to push.

Plain state; the decisions that change it live in `_room.py`, `_stream.py` and
`_trees.py`. This module must never import trio or touch IO.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from crdt import Op

from ._wire import Hello, Mode

__all__ = ["Ingesting", "Peer"]


@dataclass(slots=True)
class Peer:
    id: bytes
    eager: bool  # in the thin eager core: authors' first ops are pushed to it
    next_sync: float
    hello: Hello | None = None
    next_batch: int = 0
    outstanding: set[int] = field(default_factory=set)  # our batches it has not acked
    unacked: int = 0  # its batches we have not acked yet
    # ops to send before catch-up: (op, mode, asked for by a WANT)
    queue: deque[tuple[Op, Mode, bool]] = field(default_factory=deque)
    have: dict[bytes, int] = field(default_factory=dict)  # what we believe it has
    syncing: bool = False  # stream what `have` lacks once the queue is empty
    swapped: bool = False  # we have had a whole vector from it since the link opened
    overflowed: bool = False  # its queue overflowed: catch-up sends everything until done
    paused: bool = False  # we asked it to pause its catch-up (until our next vector)
    resume: bool = False  # it paused our catch-up: its next vector resumes the stream
    vector: list[tuple[bytes, int]] = field(default_factory=list)  # chunks so far
    told_at: int = 0  # the vector stamp of our last vector to it (`Streamer.send_vector`)
    ihave: list[bytes] = field(default_factory=list)  # ids to announce
    want: list[bytes] = field(default_factory=list)  # ids to pull
    # One tree per author (Plumtree §3.8): authors whose ops this peer asked us to push
    # (GRAFT) or to announce (PRUNE).
    eager_for: set[bytes] = field(default_factory=set)
    lazy_for: set[bytes] = field(default_factory=set)
    told_lazy: bool = False  # it pruned the whole link: no first ops, not even our own
    # Its vector showed ops we lack: its next IHAVE answers our vector (a catch-up list,
    # `_stream.py`), and as nothing pushes those ops, they are pulled at once.
    catching_up: bool = False
    feeds: bool = False  # we asked it (a link-wide GRAFT) to push us authors' first ops
    twins_told: int = 0  # ops of forked chains we last announced to it
    op_bytes: int = 0  # mean bytes per op of our last catch-up batch to it (0: none yet)

    def holds(self, author: bytes, seq: int) -> None:
        """It holds `author`'s op `seq` (it sent it, or we did): what we believe it holds
        grows along each chain."""
        if self.have.get(author, 0) == seq - 1:
            self.have[author] = seq


@dataclass(frozen=True, slots=True)
class Ingesting:
    peer: Peer  # the link's state, so a result never acks into a later link to the peer
    batch: int
    mode: Mode
    ops: tuple[Op, ...]
