"""What a room's gossip core remembers about one linked peer, for as long as the link
lasts: flow control, the push queue, what we believe the peer holds, pending
announcements and pulls, and which authors' ops it asked us to push or not to push.

Plain state; the decisions that change it live in `_room.py`, `_stream.py` and
`_trees.py`. This module must never import trio or touch IO.
"""

from __future__ import annotations

from array import array
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from crdt import Op

from ._wire import Hello, Mode

__all__ = ["Authors", "Ingesting", "Peer", "Seqs"]


class Authors:
    """The room's authors (of the ops we forwarded), numbered: one key object and one
    number each, shared by every peer's `Seqs`. Only authors we hold ops of are added,
    so a peer naming made-up authors cannot grow it."""

    __slots__ = ("_keys", "numbers")

    def __init__(self) -> None:
        self.numbers: dict[bytes, int] = {}
        self._keys: list[bytes] = []

    def add(self, author: bytes) -> bytes:
        """Number `author` if it is new; its key as the one object kept for it."""
        number = self.numbers.get(author)
        if number is None:
            self.numbers[author] = len(self._keys)
            self._keys.append(author)
            return author
        return self._keys[number]

    def key(self, author: bytes) -> bytes:
        """`author`'s key as the one object kept for it, or `author` if it has none: keys
        decoded from a message are new objects (65 bytes each), and every peer's state
        names most of the room's authors."""
        number = self.numbers.get(author)
        return author if number is None else self._keys[number]


class Seqs(Mapping[bytes, int]):
    """Per author, a peer's highest seq (what we believe it holds), as a dict would keep
    it, in 8 bytes an author: an array indexed by the room's author numbers (`Authors`),
    and a dict for authors without one. A seq is at least 1; 0 reads as absent. A dict
    took some 37 bytes an author, for every linked peer of every room."""

    __slots__ = ("_authors", "_other", "_seqs")

    def __init__(self, authors: Authors | None = None) -> None:
        self._authors = authors if authors is not None else Authors()
        self._seqs = array("Q")
        self._other: dict[bytes, int] | None = None  # authors with no number

    def get(self, author: bytes, default: int = 0) -> int:  # type: ignore[override]
        number = self._authors.numbers.get(author)
        seqs = self._seqs
        if number is not None and number < len(seqs) and seqs[number]:
            return seqs[number]
        other = self._other
        return default if other is None else other.get(author, default)

    def __getitem__(self, author: bytes) -> int:
        seq = self.get(author)
        if not seq:
            raise KeyError(author)
        return seq

    def __setitem__(self, author: bytes, seq: int) -> None:
        if seq < 1:
            raise ValueError(f"a seq is at least 1, not {seq}")
        number = self._authors.numbers.get(author)
        if number is None:
            if self._other is None:
                self._other = {}
            self._other[author] = seq
            return
        seqs = self._seqs
        if number >= len(seqs):
            seqs.frombytes(bytes(seqs.itemsize * (number + 1 - len(seqs))))
        seqs[number] = seq
        if self._other is not None:
            self._other.pop(author, None)

    def __iter__(self) -> Iterator[bytes]:
        # An author is in `_other` only while its array entry is 0 (a number given after
        # its seq was set): never in both.
        seqs, count = self._seqs, len(self._seqs)
        for author, number in self._authors.numbers.items():
            if number < count and seqs[number]:
                yield author
        if self._other is not None:
            yield from self._other

    def __len__(self) -> int:
        return sum(1 for _ in self)


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
    have: Seqs = field(default_factory=Seqs)  # what we believe it has
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
