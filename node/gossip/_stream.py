"""Sending ops to one peer: the push queue, then catch-up, in batches within its window.

Pushed and pulled ops wait in the peer's queue and go out first; once the queue is
empty, catch-up streams what the peer's version vector (as far as we know it) lacks, in
batches of at most `batch_ops`, never more than the window the peer granted in its
HELLO unacknowledged. A peer that cannot keep up with the pushes falls back to catch-up,
which sends everything it lacks, in order. Version vectors are sent in chunks here too.

Pure: it fills a list of actions and never reads a clock or touches IO.
"""

from __future__ import annotations

from collections import deque

from crdt import Op

from ._actions import Action, Send
from ._config import GossipConfig, GossipStats, OpSource
from ._peer import Peer
from ._wire import (
    MAX_IDS,
    MAX_OPS_PER_BATCH,
    MAX_VECTOR_ENTRIES,
    IHave,
    Mode,
    Ops,
    Vector,
    encode_message,
    ops_overhead,
)

__all__ = ["Streamer"]

READ_AHEAD = 4  # ops read for a catch-up batch beyond what its budget should hold


class Streamer:
    """Batches, flow control and catch-up for the peers of one room."""

    def __init__(self, source: OpSource, config: GossipConfig, stats: GossipStats) -> None:
        self.source = source
        self.config = config
        self.stats = stats
        self._stamps: dict[bytes, tuple[int, int]] = {}  # author -> (seq, stamp it changed)
        self._clock = 0  # counts our vectors

    def enqueue(self, state: Peer, op: Op, mode: Mode, *, asked: bool = False) -> None:
        if asked:
            # Answers to WANTs are bounded apart: a peer asking for more can ask again.
            if len(state.queue) < self.config.push_queue + MAX_IDS:
                state.queue.append((op, mode, True))
            return
        if state.overflowed:
            return  # catch-up will send it, in order
        if len(state.queue) >= self.config.push_queue:
            # The peer is not keeping up: stop queueing and let catch-up send it all
            # (once its vector is in; until then the first swap will).
            state.queue = deque(item for item in state.queue if item[2])
            state.overflowed = state.syncing = state.swapped
            return
        state.queue.append((op, mode, False))

    def pump(self, state: Peer, out: list[Action]) -> None:
        """Send batches while the peer's window has room: queued ops first, then catch-up."""
        hello = state.hello
        if hello is None:
            return
        budget = min(hello.max_bytes, self.config.max_message_bytes)
        while len(state.outstanding) < hello.window:
            mode, ops = self._next_batch(state, budget)
            if not ops:
                return
            batch = state.next_batch
            state.next_batch = (batch + 1) & 0xFFFFFFFF
            state.outstanding.add(batch)
            for author, seq, _ in ops:
                state.holds(author, seq)  # what we sent it
            self.stats.batches_sent += 1
            self.stats.ops_sent += len(ops)
            message = Ops(batch, mode, tuple(data for _, _, data in ops))
            out.append(Send(state.id, encode_message(message)))

    def _next_batch(self, state: Peer, budget: int) -> tuple[Mode, list[tuple[bytes, int, bytes]]]:
        """The next batch for `state`: its mode and (author, seq, wire form) of its ops."""
        ops: list[tuple[bytes, int, bytes]] = []
        size = ops_overhead(0)
        batch_mode = Mode.PUSH
        queue = state.queue
        while queue:
            op, mode, asked = queue[0]
            if ops and (mode is not batch_mode or len(ops) >= MAX_OPS_PER_BATCH):
                break
            if not asked and state.have.get(op.author, 0) >= op.seq and not self.is_twin(op):
                queue.popleft()  # it got this one some other way meanwhile
                continue
            cost = len(op.data) + 5
            if ops and size + cost > budget:
                break
            queue.popleft()
            batch_mode = mode
            ops.append((op.author, op.seq, op.data))
            size += cost
        if ops:
            return batch_mode, ops
        if not state.syncing:
            return Mode.SYNC, []
        limit = self.config.batch_ops
        if state.op_bytes:
            # Read about as many ops as fit the budget, at the last batch's mean size: an op
            # read beyond it is read (and hashed) again for the next batch.
            limit = min(limit, (budget - size) // state.op_bytes + READ_AHEAD)
        for item in self.source.missing_wire(state.have, limit=limit):
            cost = len(item[2]) + 5
            if ops and size + cost > budget:
                break
            ops.append(item)
            size += cost
        if not ops:
            state.syncing = state.overflowed = False
        else:
            state.op_bytes = -(-(size - ops_overhead(0)) // len(ops))
        return Mode.SYNC, ops

    def send_vector(self, state: Peer, *, reply: bool, out: list[Action]) -> None:
        """Our version vector: whole on a new link, then only the entries that changed
        since the last one it was sent on this link. Within a link a peer keeps what our
        vectors told it (seqs only grow), so an unchanged entry tells it nothing, and a
        room of N members would otherwise swap N entries with every peer every
        `sync_interval`, most of them unchanged."""
        state.paused = False
        # Each entry is stamped when it is first seen changed: one dict for the room, not
        # one per peer of what it was told.
        self._clock += 1
        clock, stamps = self._clock, self._stamps
        for author, seq in self.source.version_vector().items():
            held = stamps.get(author)
            if held is None or held[0] != seq:
                stamps[author] = (seq, clock)
        since = state.told_at
        entries = sorted((a, seq) for a, (seq, stamp) in stamps.items() if stamp > since)
        state.told_at = clock
        chunks = [
            tuple(entries[i : i + MAX_VECTOR_ENTRIES])
            for i in range(0, len(entries), MAX_VECTOR_ENTRIES)
        ] or [()]
        for n, chunk in enumerate(chunks):
            message = Vector(reply, n < len(chunks) - 1, chunk)
            out.append(Send(state.id, encode_message(message)))

    def announce_twins(self, state: Peer, out: list[Action]) -> None:
        """Twins of a fork hide behind equal seqs in a version vector: announce the forked
        stretches (at most MAX_IDS ops) whenever they have changed since we last told this
        peer, and it pulls the ops it lacks."""
        twins = self.source.fork_ops(limit=MAX_IDS)
        if twins and len(twins) != state.twins_told:
            state.twins_told = len(twins)
            ids = tuple(op.id for op in twins)
            self.stats.ihave_sent += len(ids)
            out.append(Send(state.id, encode_message(IHave(ids))))

    def catch_up(self, state: Peer, out: list[Action]) -> None:
        """A whole vector from `state` is in: send what it lacks. A short list is announced
        rather than sent: a later swap mostly finds ops still on their way along the
        trees, and a member back from a short absence links to all its peers at once,
        each of which would stream it the same ops. The peer pulls each op once, from
        the first peer that announced it, once its timeout has given the trees their
        chance. A long list (`catch_up_ids` on a link's first swap) is streamed."""
        self.announce_twins(state, out)
        if not state.resume:
            limit = MAX_IDS if state.swapped else self.config.catch_up_ids
            lacking = self.source.missing_for(state.have, limit=limit + 1)
            if len(lacking) <= limit:
                state.swapped = True
                if lacking:
                    ids = tuple(op.id for op in lacking)
                    self.stats.ihave_sent += len(ids)
                    out.append(Send(state.id, encode_message(IHave(ids))))
                return
        state.swapped = True
        state.resume = False
        state.syncing = True
        self.pump(state, out)

    def is_twin(self, op: Op) -> bool:
        """Whether `op` lies on a forked stretch of its author's chain, where a peer's
        version vector says nothing about which of the twins it holds."""
        fork = self.source.fork_seq(op.author)
        return fork is not None and op.seq >= fork
