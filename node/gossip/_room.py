"""The gossip and sync core of one room: who gets which op, when, and how much at a time.

Pure: events in (`peer_up`, `peer_down`, `receive`, `authored`, `ingested`,
`handle_timer`), actions out (`Send`, `Ingest`, `Penalise`). It never reads a clock (every
call takes `now`, in seconds), never draws randomness except from the `random.Random` it is
given, and never verifies or stores an op: it hands ops to the driver's ingest (crdt/) and
forwards only those the ingest result says were added.

Dissemination is Plumtree (Leitão, Pereira, Rodrigues, "Epidemic Broadcast Trees", 2007):
a new op is pushed to the eager peers and announced by id (IHAVE) to the lazy ones; a
duplicate push demotes its sender to lazy (PRUNE); an op announced but not received in
time is pulled from an announcer, which becomes eager (GRAFT). Eager links converge to a
spanning tree, so each node receives each op about once. Two changes make it hold up with
many concurrent senders, where plain Plumtree keeps cutting cycles in two places at once
and regrafting: a duplicate prunes only with probability `prune_probability`, and graft
timeouts are jittered so one node repairs a split before the others pile in (an op that
was pulled travels on as pulled, and its echoes prune nothing). Catch-up is by version vectors
(as Secure Scuttlebutt's EBT does): when a link opens, periodically, and after catching up
from someone, the two sides swap vectors and each streams what the other lacks, in
bounded batches, with at most the receiver's window of unacknowledged batches in flight.
A vector counts seqs, so it cannot show which of two twins (a forked chain: one author,
one seq, two ops) a peer holds: ops on a forked stretch are pushed on whatever the peer's
vector says, and each vector swap announces them by id whenever they have changed.
"""

from __future__ import annotations

import heapq
import random
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from crdt import IngestReport, InvalidOp, Op, Reason, decode_op

from ._actions import Action, Fault, Ingest, Penalise, Send
from ._errors import GossipLocalError, GossipRemoteError
from ._wire import (
    MAX_ADVERTISED_BYTES,
    MAX_IDS,
    MAX_MESSAGE_BYTES,
    MAX_OPS_PER_BATCH,
    MAX_VECTOR_ENTRIES,
    MAX_WINDOW,
    MIN_MESSAGE_BYTES,
    PROTOCOL_VERSION,
    Ack,
    Hello,
    IHave,
    Message,
    Mode,
    Ops,
    Pause,
    Prune,
    Vector,
    Want,
    decode_message,
    encode_message,
    ops_overhead,
)

__all__ = ["PEER_FAULT_REASONS", "GossipConfig", "GossipStats", "OpSource", "RoomGossip"]

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
GRAFT_JITTER = 3.0  # the graft timeout is drawn from [1, GRAFT_JITTER] x graft_timeout


class OpSource(Protocol):
    """Read access to the room's verified ops: `crdt.Replica` (a `History`'s `.replica`)."""

    def version_vector(self) -> dict[bytes, int]: ...

    def missing_for(
        self, version_vector: Mapping[bytes, int], limit: int | None = None
    ) -> list[Op]: ...

    def get(self, op_id: bytes) -> Op | None: ...

    def __contains__(self, op_id: object) -> bool: ...

    def fork_seq(self, author: bytes) -> int | None: ...

    def fork_ops(self, limit: int | None = None) -> list[Op]: ...


@dataclass(frozen=True, slots=True)
class GossipConfig:
    """Tuning for one room. The defaults suit a chat room of up to a few hundred members."""

    eager_peers: int = 4  # eager (push) peers a node starts with; the rest are lazy
    window: int = 16  # OPS batches a peer may have outstanding with us (we advertise it)
    max_message_bytes: int = MAX_MESSAGE_BYTES  # the link's payload limit
    batch_ops: int = 128  # ops in one catch-up batch at most
    ihave_interval: float = 0.1  # announcements to lazy peers are gathered this long
    graft_timeout: float = 0.3  # wait this long for a push after an IHAVE, then pull
    retry_timeout: float = 0.25  # then ask the next announcer after this long
    sync_interval: float = 60.0  # swap version vectors with each peer this often (±25%)
    announce_delay: float = 1.0  # after catching up, ask every peer for its vector
    push_queue: int = 1024  # ops queued for one peer before we fall back to catch-up
    max_missing: int = 10_000  # announced ops we track before relying on catch-up
    # A pushed duplicate prunes its sender with this probability: when several ops race
    # around one cycle at once, each would cut it somewhere else and split the tree.
    prune_probability: float = 0.1
    flood: bool = False  # push to every peer and never prune (a baseline for benchmarks)

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
        timings = (
            self.ihave_interval,
            self.graft_timeout,
            self.retry_timeout,
            self.sync_interval,
            self.announce_delay,
        )
        if min(timings) <= 0:
            raise GossipLocalError("intervals and timeouts must be positive")
        if not 0 < self.prune_probability <= 1:
            raise GossipLocalError("prune_probability must be in (0, 1]")
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


@dataclass(slots=True)
class _Peer:
    id: bytes
    eager: bool
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
    ihave: list[bytes] = field(default_factory=list)  # ids to announce
    want: list[bytes] = field(default_factory=list)  # ids to pull
    graft: bool = False  # the next WANT also grafts
    # One tree per author (Plumtree §3.8): authors this peer asked us to push (GRAFT) or
    # to announce (PRUNE), whatever the link's default (`eager`) says.
    eager_for: set[bytes] = field(default_factory=set)
    lazy_for: set[bytes] = field(default_factory=set)
    told_lazy: bool = False  # it pruned the link's default: no pushes of our own ops either
    twins_told: int = 0  # ops of forked chains we last announced to it


@dataclass(slots=True)
class _Missing:
    deadline: float
    announcers: list[bytes]


@dataclass(frozen=True, slots=True)
class _Ingesting:
    peer: _Peer  # the link's state, so a result never acks into a later link to the peer
    batch: int
    mode: Mode
    ops: tuple[Op, ...]


class RoomGossip:
    """Gossip and sync for one room over the links of the peers allowed in it."""

    def __init__(
        self,
        source: OpSource,
        *,
        rng: random.Random,
        config: GossipConfig | None = None,
    ) -> None:
        self.source = source
        self.rng = rng
        self.config = config if config is not None else GossipConfig()
        self.stats = GossipStats()
        self._peers: dict[bytes, _Peer] = {}
        self._inflight: dict[bytes, int] = {}  # op id -> ingest token carrying it
        self._ingests: dict[int, _Ingesting] = {}
        self._next_token = 0
        self._missing: dict[bytes, _Missing] = {}
        self._missing_heap: list[tuple[float, bytes]] = []
        self._flush_at: float | None = None  # when queued IHAVEs and WANTs go out
        self._announce_at: float | None = None
        self._feeder: bytes | None = None  # the peer whose catch-up last brought news
        self._feeder_at = 0.0  # and when
        self._parent: dict[bytes, bytes] = {}  # author -> the peer that pushes us its ops
        self._cut: dict[bytes, set[bytes]] = {}  # author -> peers we pruned for its ops
        self._first: dict[bytes, tuple[int, bytes]] = {}  # author -> (seq, first pusher)

    # -- introspection ------------------------------------------------------------------

    @property
    def peers(self) -> list[bytes]:
        return list(self._peers)

    @property
    def eager_peers(self) -> list[bytes]:
        return [p.id for p in self._peers.values() if p.eager]

    @property
    def lazy_peers(self) -> list[bytes]:
        return [p.id for p in self._peers.values() if not p.eager]

    def outstanding(self, peer: bytes) -> int:
        """Our batches `peer` has not acknowledged yet."""
        return len(self._peers[peer].outstanding)

    def behind(self) -> int:
        """Sync lag: how many ops our linked peers' version vectors show that we lack."""
        ahead: dict[bytes, int] = {}
        for peer in self._peers.values():
            for author, seq in peer.have.items():
                if seq > ahead.get(author, 0):
                    ahead[author] = seq
        if not ahead:
            return 0
        ours = self.source.version_vector()
        return sum(max(0, seq - ours.get(author, 0)) for author, seq in ahead.items())

    def peer_seq(self, author: bytes) -> int:
        """The highest seq of `author` that some linked peer is known to hold."""
        return max((peer.have.get(author, 0) for peer in self._peers.values()), default=0)

    def may_author(self, author: bytes, *, new_chain: bool, settled: bool) -> bool:
        """Whether `author` (our identity) can write without forking its own chain.

        Not while a linked peer's vector shows more of our ops than we hold: we lost some
        (a restored backup, a room file made anew) and they are on their way back. Not
        before some peer has told us its whole vector either, unless `new_chain` (a room
        we just created: nobody can hold our ops in it) or, holding ops of ours already,
        `settled` (the driver has waited long enough for a peer to speak).
        """
        ours = self.source.version_vector().get(author, 0)
        heard = new_chain or (settled and ours > 0)
        for peer in self._peers.values():
            if peer.have.get(author, 0) > ours:
                return False
            heard = heard or peer.swapped
        return heard

    def next_timer(self) -> float | None:
        """When `handle_timer` must next be called (None: only after another event)."""
        times = [p.next_sync for p in self._peers.values()]
        if self._flush_at is not None:
            times.append(self._flush_at)
        if self._announce_at is not None:
            times.append(self._announce_at)
        self._trim_missing_heap()
        if self._missing_heap:
            times.append(self._missing_heap[0][0])
        return min(times, default=None)

    # -- events -------------------------------------------------------------------------

    def peer_up(self, peer: bytes, now: float) -> list[Action]:
        """A link to `peer`, authorised for this room, has opened."""
        if peer in self._peers:
            raise GossipLocalError("peer_up for a peer that is already up")
        eager = self.config.flood or len(self.eager_peers) < self.config.eager_peers
        state = _Peer(peer, eager, now + self._sync_delay())
        self._peers[peer] = state
        out: list[Action] = []
        hello = Hello(PROTOCOL_VERSION, self.config.window, self.config.max_message_bytes)
        out.append(Send(peer, encode_message(hello)))
        self._send_vector(state, reply=False, out=out)
        return out

    def peer_down(self, peer: bytes, now: float) -> list[Action]:
        """The link to `peer` has closed (for whatever reason). Unknown peers are ignored."""
        self._forget(peer)
        return []

    def authored(self, op: Op, now: float) -> list[Action]:
        """The local identity authored `op`, which is now durable and in the source."""
        if op.id not in self.source:
            raise GossipLocalError("apply an authored op to the source before gossiping it")
        out: list[Action] = []
        self._forward(op, None, Mode.PUSH, now, out)
        return out

    def receive(self, peer: bytes, data: bytes, now: float) -> list[Action]:
        """`peer` sent us `data` for this room."""
        state = self._peers.get(peer)
        if state is None:  # a message still on its way from a peer we dropped
            return []
        out: list[Action] = []
        try:
            message = decode_message(data, max_bytes=self.config.max_message_bytes)
            self._dispatch(state, message, now, out)
        except GossipRemoteError as exc:
            self._penalise(peer, exc.reason, exc.detail or exc.reason.value, out)
        return out

    def ingested(self, token: int, report: IngestReport, now: float) -> list[Action]:
        """The driver's ingest of `Ingest(token=token)` finished with `report`."""
        ingesting = self._ingests.pop(token, None)
        if ingesting is None:
            raise GossipLocalError(f"no ingest with token {token}")
        if len(report.outcomes) != len(ingesting.ops):
            raise GossipLocalError("the report does not match the batch")
        out: list[Action] = []
        for op in ingesting.ops:
            self._inflight.pop(op.id, None)
        source = ingesting.peer
        faults = sorted({r.value for r in report.reasons.values() if r in PEER_FAULT_REASONS})
        if faults:
            self._penalise(source.id, Fault.BAD_OP, ", ".join(faults), out)
        added = {op.id for op in report.added}
        for op in ingesting.ops:
            if op.id not in added:
                continue
            self._missing.pop(op.id, None)
            if ingesting.mode is Mode.SYNC:
                # Catch-up data is not pushed on: once the catch-up has gone quiet for
                # `announce_delay`, we swap vectors with every peer, and they fetch only
                # what they lack (and resume any catch-up we paused).
                self._announce_at = now + self.config.announce_delay
            else:
                # An op that had to be pulled travels on as pulled: copies of it meeting each
                # other are the repair's echo, not a cycle in the tree, so they prune nothing.
                self._forward(op, source.id, ingesting.mode, now, out)
        if self._peers.get(source.id) is source:
            source.unacked -= 1
            out.append(Send(source.id, encode_message(Ack(ingesting.batch))))
        return out

    def handle_timer(self, now: float) -> list[Action]:
        """Do what is due at `now`: announcements, pulls, periodic vector swaps."""
        out: list[Action] = []
        self._expire_missing(now, out)
        if self._flush_at is not None and now >= self._flush_at:
            self._flush_at = None
            for state in self._peers.values():
                self._flush(state, out)
        if self._announce_at is not None and now >= self._announce_at:
            self._announce_at = None
            for state in self._peers.values():
                self._send_vector(state, reply=True, out=out)
                state.next_sync = now + self._sync_delay()
        for state in self._peers.values():
            if now >= state.next_sync:
                self._send_vector(state, reply=True, out=out)
                state.next_sync = now + self._sync_delay()
        return out

    # -- messages -----------------------------------------------------------------------

    def _dispatch(self, state: _Peer, message: Message, now: float, out: list[Action]) -> None:
        if isinstance(message, Hello):
            if state.hello is not None:
                raise GossipRemoteError(Fault.PROTOCOL, "second HELLO")
            if message.version != PROTOCOL_VERSION:
                raise GossipRemoteError(Fault.PROTOCOL, f"version {message.version}")
            state.hello = message
            self._pump(state, out)
            return
        if state.hello is None:
            raise GossipRemoteError(Fault.PROTOCOL, "message before HELLO")
        if isinstance(message, Ops):
            self._on_ops(state, message, now, out)
        elif isinstance(message, Ack):
            if message.batch not in state.outstanding:
                raise GossipRemoteError(Fault.FLOW, f"ack for batch {message.batch}")
            state.outstanding.discard(message.batch)
            self._pump(state, out)
        elif isinstance(message, Vector):
            self._on_vector(state, message, out)
        elif isinstance(message, IHave):
            self._on_ihave(state, message, now)
        elif isinstance(message, Want):
            if message.graft:
                state.eager = True
            self._graft_authors(state, message.authors)
            for op_id in message.ids:
                op = self.source.get(op_id)
                if op is not None:
                    if message.graft:
                        self._graft_authors(state, (op.author,))
                    self._enqueue(state, op, Mode.PULLED, asked=True)
            self._pump(state, out)
        elif isinstance(message, Pause):
            state.syncing = state.overflowed = False
            state.resume = True
        elif not self.config.flood:  # Prune
            if not message.authors:
                state.eager = False
                state.told_lazy = True
                state.eager_for.clear()
            for author in message.authors:
                state.eager_for.discard(author)
                if len(state.lazy_for) < MAX_VECTOR_AUTHORS:
                    state.lazy_for.add(author)

    @staticmethod
    def _graft_authors(state: _Peer, authors: tuple[bytes, ...]) -> None:
        for author in authors:
            state.lazy_for.discard(author)
            if len(state.eager_for) < MAX_VECTOR_AUTHORS:
                state.eager_for.add(author)

    def _on_ops(self, state: _Peer, message: Ops, now: float, out: list[Action]) -> None:
        state.unacked += 1
        if state.unacked > self.config.window:
            raise GossipRemoteError(Fault.FLOW, f"more than {self.config.window} batches")
        fresh: list[Op] = []
        seen: set[bytes] = set()
        repeated: list[Op] = []  # the duplicates
        for data in message.ops:
            try:
                op = decode_op(data)
            except InvalidOp as exc:
                self.stats.ops_received += len(message.ops)
                self._penalise(state.id, Fault.BAD_OP, exc.reason.value, out)
                return
            self._learn(state, op)
            if op.id in seen or op.id in self._inflight or op.id in self.source:
                repeated.append(op)
                continue
            seen.add(op.id)
            fresh.append(op)
        self.stats.ops_received += len(message.ops)
        self.stats.duplicates += len(message.ops) - len(fresh)
        if message.mode is Mode.PUSH and not self.config.flood:
            self._shape_trees(state, fresh, repeated, out)
        if message.mode is Mode.SYNC:
            feeding = (
                self._feeder in self._peers and now - self._feeder_at < self.config.announce_delay
            )
            if self._feeder == state.id or not feeding:
                if fresh:
                    self._feeder, self._feeder_at = state.id, now
            elif not state.paused:
                # Several peers streaming us history at once (links opened together)
                # would send it several times: one stream at a time. Our vector swap
                # after the catch-up resumes this one for whatever is still missing.
                state.paused = True
                out.append(Send(state.id, encode_message(Pause())))
        if not fresh:
            state.unacked -= 1
            out.append(Send(state.id, encode_message(Ack(message.batch))))
            return
        token = self._next_token
        self._next_token += 1
        for op in fresh:
            self._inflight[op.id] = token
        self._ingests[token] = _Ingesting(state, message.batch, message.mode, tuple(fresh))
        out.append(Ingest(state.id, token, tuple(op.data for op in fresh), tuple(fresh)))

    def _on_vector(self, state: _Peer, message: Vector, out: list[Action]) -> None:
        state.vector.extend(message.entries)
        if len(state.vector) > MAX_VECTOR_AUTHORS:
            raise GossipRemoteError(Fault.PROTOCOL, "version vector too long")
        if message.more:
            return
        for author, seq in state.vector:
            if seq > state.have.get(author, 0):
                state.have[author] = seq
        state.vector = []
        if message.reply:
            self._send_vector(state, reply=False, out=out)
        self._announce_twins(state, out)
        if state.swapped and not state.resume:
            # A later swap mostly finds ops still on their way along the tree: announce a
            # short list rather than send it, and the peer pulls what is still missing
            # once its timeout has given the tree its chance.
            lacking = self.source.missing_for(state.have, limit=MAX_IDS + 1)
            if len(lacking) <= MAX_IDS:
                if lacking:
                    ids = tuple(op.id for op in lacking)
                    self.stats.ihave_sent += len(ids)
                    out.append(Send(state.id, encode_message(IHave(ids))))
                return
        state.swapped = True
        state.resume = False
        state.syncing = True
        self._pump(state, out)

    def _shape_trees(
        self, state: _Peer, fresh: list[Op], repeated: list[Op], out: list[Action]
    ) -> None:
        """Plumtree with one tree per author (§3.8: a tree per source): who should push us
        each author's ops, from the first copies and the duplicates `state` just pushed.

        Per author we keep the parent (the peer we rely on for its pushes) and the peers
        we pruned for it. A parent is never pruned; it is replaced only by a peer we have
        not pruned (a push from one may still be on its way): a peer whose IHAVE beat the
        parent's push, or whose push keeps beating the parent's.
        """
        prune: list[bytes] = []
        graft: dict[bytes, list[bytes]] = {}
        for op in fresh:
            author = op.author
            self._first[author] = (op.seq, state.id)
            parent = self._parent.get(author)
            missing = self._missing.get(op.id)
            cut = self._cut.get(author, ())
            faster = None
            if missing is not None:
                faster = next(
                    (
                        p
                        for p in missing.announcers
                        if p != state.id and p in self._peers and p not in cut
                    ),
                    None,
                )
            if faster is not None:
                # Its IHAVE, held back up to `ihave_interval`, still came first.
                graft.setdefault(faster, []).append(author)
                self._set_parent(author, faster)
                if state.id not in cut and author not in prune:
                    prune.append(author)
                    self._cut.setdefault(author, set()).add(state.id)
            elif parent is None or parent not in self._peers:
                self._set_parent(author, state.id)
        shared = False
        for op in repeated:
            author = op.author
            parent = self._parent.get(author)
            seq, first = self._first.get(author, (0, None))
            if seq != op.seq:
                first = None
            if parent == state.id:
                if first is None or first not in self._peers:
                    continue
                if first in self._cut.get(author, ()):
                    # Pruned already, yet still pushing: the PRUNE crossed a GRAFT or
                    # was undone by one; say it again rather than drop the parent.
                    self.stats.prunes_sent += 1
                    out.append(Send(first, encode_message(Prune((author,)))))
                    continue
                self._set_parent(author, first)  # its push keeps beating the parent's
            elif parent is None or parent not in self._peers:
                if first is None or first not in self._peers:
                    continue
                self._set_parent(author, first)
            if author not in prune:
                prune.append(author)
                self._cut.setdefault(author, set()).add(state.id)
            if self.rng.random() < self.config.prune_probability:
                shared = state.id not in self._parent.values()
        if shared:
            # The link's default carries authors no tree is known for yet: prune it too
            # (and every author with it: the peer is no parent of ours), but only with
            # `prune_probability`, as several authors' ops racing around one cycle would
            # each cut it somewhere else.
            state.eager = False
            self.stats.prunes_sent += 1
            out.append(Send(state.id, encode_message(Prune())))
        elif prune:
            self.stats.prunes_sent += 1
            out.append(Send(state.id, encode_message(Prune(tuple(prune[:MAX_IDS])))))
        for peer, authors in graft.items():
            self.stats.grafts_sent += 1
            out.append(Send(peer, encode_message(Want(False, (), tuple(authors[:MAX_IDS])))))

    def _set_parent(self, author: bytes, peer: bytes) -> None:
        self._parent[author] = peer
        cut = self._cut.get(author)
        if cut is not None:
            cut.discard(peer)

    def _announce_twins(self, state: _Peer, out: list[Action]) -> None:
        """Twins of a fork hide behind equal seqs in a version vector: announce the forked
        stretches (at most MAX_IDS ops) whenever they have changed since we last told this
        peer, and it pulls the ops it lacks."""
        twins = self.source.fork_ops(limit=MAX_IDS)
        if twins and len(twins) != state.twins_told:
            state.twins_told = len(twins)
            ids = tuple(op.id for op in twins)
            self.stats.ihave_sent += len(ids)
            out.append(Send(state.id, encode_message(IHave(ids))))

    def _on_ihave(self, state: _Peer, message: IHave, now: float) -> None:
        for op_id in message.ids:
            if op_id in self._inflight or op_id in self.source:
                continue
            missing = self._missing.get(op_id)
            if missing is not None:
                if state.id not in missing.announcers:
                    missing.announcers.append(state.id)
            elif len(self._missing) < self.config.max_missing:
                # Plumtree: give the eager path time to deliver it first. The jitter
                # spreads the nodes that lack it, so the first to pull it can push it to
                # the rest before they graft too (each graft beyond one makes a cycle).
                deadline = now + self.config.graft_timeout * self.rng.uniform(1.0, GRAFT_JITTER)
                self._missing[op_id] = _Missing(deadline, [state.id])
                heapq.heappush(self._missing_heap, (deadline, op_id))

    # -- sending ------------------------------------------------------------------------

    def _forward(
        self, op: Op, source: bytes | None, mode: Mode, now: float, out: list[Action]
    ) -> None:
        """Push `op` to the eager peers and announce it to the lazy ones, except `source`."""
        twin = self._is_twin(op)
        for state in self._peers.values():
            if state.id == source or (state.have.get(op.author, 0) >= op.seq and not twin):
                continue
            if op.author in state.eager_for:
                eager = True
            elif op.author in state.lazy_for:
                eager = False
            else:
                # Our own ops go to every peer that has not pruned them: the first hop
                # from the author is the root of its tree, and a copy costs the room
                # one reception per peer, not per member.
                eager = state.eager or (source is None and not state.told_lazy)
            if eager:
                self._enqueue(state, op, mode)
                self._pump(state, out)
            else:
                state.ihave.append(op.id)
                if len(state.ihave) >= MAX_IDS:
                    self._flush(state, out)
                elif self._flush_at is None:
                    self._flush_at = now + self.config.ihave_interval

    def _enqueue(self, state: _Peer, op: Op, mode: Mode, *, asked: bool = False) -> None:
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

    def _pump(self, state: _Peer, out: list[Action]) -> None:
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
            for op in ops:
                self._learn(state, op)
            self.stats.batches_sent += 1
            self.stats.ops_sent += len(ops)
            message = Ops(batch, mode, tuple(op.data for op in ops))
            out.append(Send(state.id, encode_message(message)))

    def _next_batch(self, state: _Peer, budget: int) -> tuple[Mode, list[Op]]:
        ops: list[Op] = []
        size = ops_overhead(0)
        batch_mode = Mode.PUSH
        queue = state.queue
        while queue:
            op, mode, asked = queue[0]
            if ops and (mode is not batch_mode or len(ops) >= MAX_OPS_PER_BATCH):
                break
            if not asked and state.have.get(op.author, 0) >= op.seq and not self._is_twin(op):
                queue.popleft()  # it got this one some other way meanwhile
                continue
            cost = len(op.data) + 5
            if ops and size + cost > budget:
                break
            queue.popleft()
            batch_mode = mode
            ops.append(op)
            size += cost
        if ops:
            return batch_mode, ops
        if not state.syncing:
            return Mode.SYNC, []
        for op in self.source.missing_for(state.have, limit=self.config.batch_ops):
            cost = len(op.data) + 5
            if ops and size + cost > budget:
                break
            ops.append(op)
            size += cost
        if not ops:
            state.syncing = state.overflowed = False
        return Mode.SYNC, ops

    def _send_vector(self, state: _Peer, *, reply: bool, out: list[Action]) -> None:
        state.paused = False
        entries = sorted(self.source.version_vector().items())
        chunks = [
            tuple(entries[i : i + MAX_VECTOR_ENTRIES])
            for i in range(0, len(entries), MAX_VECTOR_ENTRIES)
        ] or [()]
        for n, chunk in enumerate(chunks):
            message = Vector(reply, n < len(chunks) - 1, chunk)
            out.append(Send(state.id, encode_message(message)))

    def _flush(self, state: _Peer, out: list[Action]) -> None:
        """Send the IHAVEs and WANTs queued for `state`."""
        ihave, state.ihave = state.ihave, []
        for start in range(0, len(ihave), MAX_IDS):
            ids = tuple(ihave[start : start + MAX_IDS])
            self.stats.ihave_sent += len(ids)
            out.append(Send(state.id, encode_message(IHave(ids))))
        self._flush_wants(state, out)

    def _expire_missing(self, now: float, out: list[Action]) -> None:
        heap = self._missing_heap
        pulled_from: list[_Peer] = []
        while heap and heap[0][0] <= now:
            deadline, op_id = heapq.heappop(heap)
            missing = self._missing.get(op_id)
            if missing is None or missing.deadline != deadline:
                continue
            if op_id in self.source or op_id in self._inflight:
                del self._missing[op_id]
                continue
            while missing.announcers and missing.announcers[0] not in self._peers:
                missing.announcers.pop(0)
            if not missing.announcers:
                del self._missing[op_id]  # nobody left to ask: catch-up will bring it
                continue
            # Plumtree GRAFT: pull it from the first announcer and make that link eager,
            # then give it `retry_timeout` before asking the next one.
            state = self._peers[missing.announcers.pop(0)]
            state.want.append(op_id)
            if not state.eager:
                state.eager = True
                state.graft = True
            pulled_from.append(state)
            missing.deadline = now + self.config.retry_timeout
            heapq.heappush(heap, (missing.deadline, op_id))
        for state in pulled_from:
            if state.want:
                self._flush_wants(state, out)

    def _flush_wants(self, state: _Peer, out: list[Action]) -> None:
        want, state.want = state.want, []
        graft, state.graft = state.graft, False
        self.stats.grafts_sent += graft and bool(want)
        for start in range(0, len(want), MAX_IDS):
            ids = tuple(want[start : start + MAX_IDS])
            self.stats.wants_sent += len(ids)
            out.append(Send(state.id, encode_message(Want(graft, ids))))

    def _trim_missing_heap(self) -> None:
        heap = self._missing_heap
        while heap:
            deadline, op_id = heap[0]
            missing = self._missing.get(op_id)
            if missing is not None and missing.deadline == deadline:
                return
            heapq.heappop(heap)

    # -- bookkeeping --------------------------------------------------------------------

    def _is_twin(self, op: Op) -> bool:
        """Whether `op` lies on a forked stretch of its author's chain, where a peer's
        version vector says nothing about which of the twins it holds."""
        fork = self.source.fork_seq(op.author)
        return fork is not None and op.seq >= fork

    @staticmethod
    def _learn(state: _Peer, op: Op) -> None:
        """`state` has `op` (it sent it, or we did): extend what we believe it holds."""
        if state.have.get(op.author, 0) == op.seq - 1:
            state.have[op.author] = op.seq

    def _sync_delay(self) -> float:
        return self.config.sync_interval * self.rng.uniform(0.75, 1.25)

    def _penalise(self, peer: bytes, fault: Fault, detail: str, out: list[Action]) -> None:
        if self._forget(peer):
            self.stats.penalties += 1
            out.append(Penalise(peer, fault, detail))

    def _forget(self, peer: bytes) -> bool:
        return self._peers.pop(peer, None) is not None
