"""The gossip and sync core of one room: who gets which op, when, and how much at a time.

Pure: events in (`peer_up`, `peer_down`, `receive`, `authored`, `ingested`,
`handle_timer`), actions out (`Send`, `Ingest`, `Penalise`). It never reads a clock (every
call takes `now`, in seconds), never draws randomness except from the `random.Random` it is
given, and never verifies or stores an op: it hands ops to the driver's ingest (crdt/) and
forwards only those the ingest result says were added.

Dissemination is Plumtree (Leitão, Pereira, Rodrigues, "Epidemic Broadcast Trees", 2007)
with one tree per author (§3.8), grown by the receivers (`_trees.py`): a new op is pushed
to the peers that grafted its author and announced by id (IHAVE) at once to a few of the
others (`lazy_peers`, as GossipSub gossips); an op announced but not pushed in time is
pulled (`_pulls.py`), and its announcer may become the author's parent. An author's first
op has no tree yet: it goes along a thin eager core (each node asks `eager_peers` peers to
push it such ops), and the first copy to arrive picks the parent. Catch-up is
by version vectors (as Secure Scuttlebutt's EBT does; `_stream.py`): when a link opens,
periodically, and after catching up from someone, the two sides swap vectors and each
streams what the other lacks, in bounded batches, with at most the receiver's window of
unacknowledged batches in flight. A vector counts seqs, so it cannot show which of two
twins (a forked chain: one author, one seq, two ops) a peer holds: ops on a forked
stretch are pushed on whatever the peer's vector says, and each vector swap announces
them by id whenever they have changed.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from crdt import IngestReport, InvalidOp, Op, decode_op

from ._actions import Action, Fault, Ingest, Penalise, Send
from ._config import MAX_VECTOR_AUTHORS, PEER_FAULT_REASONS, GossipConfig, GossipStats, OpSource
from ._errors import GossipLocalError, GossipRemoteError
from ._peer import Authors, Ingesting, Peer, Seqs
from ._pulls import Pulls
from ._routes import Routes
from ._stream import Streamer
from ._trees import Reshape, Trees
from ._wire import (
    MAX_IDS,
    PROTOCOL_VERSION,
    Ack,
    Dist,
    Hello,
    IHave,
    Message,
    Mode,
    Ops,
    Pause,
    Ping,
    Pong,
    Prune,
    Vector,
    Want,
    decode_message,
    encode_message,
)

__all__ = ["RoomGossip"]

RECENT_GRAFT = 1.0  # a graft brings IHAVEs of the author's ops we forwarded this recently


class RoomGossip:
    """Gossip and sync for one room over the links of the peers allowed in it."""

    def __init__(
        self,
        source: OpSource,
        *,
        rng: random.Random,
        config: GossipConfig | None = None,
        peer_id: bytes = b"",
        decode: Callable[[bytes], Op] = decode_op,
    ) -> None:
        self.source = source
        # Our own peer id: of two peers whose grafts crossed, the one with the lower id
        # gives way if it has another peer to graft on (unknown, b"": we always try).
        self.peer_id = peer_id
        self.rng = rng
        # How op wire forms become ops: `crdt.decode_op`, or one that gives the same op
        # (a simulated network shares decoded ops among its nodes).
        self._decode = decode
        self.config = config if config is not None else GossipConfig()
        self.stats = GossipStats()
        self._peers: dict[bytes, Peer] = {}
        self._inflight: dict[bytes, Op] = {}  # op id -> the op, while an ingest carries it
        self._ingests: dict[int, Ingesting] = {}
        self._next_token = 0
        self._pulls = Pulls(self.config, rng)
        self._trees = Trees(
            self.config.reroute_margin,
            self.config.graft_window,
            self.config.graft_timeout,
            self._is_child,
        )
        self._stream = Streamer(source, self.config, self.stats)
        # Distance-vector repair of the trees between their authors' ops (`_routes.py`).
        self._routes: Routes | None = None
        if not self.config.flood and self.config.distances:
            self._routes = Routes(rng, self._trees.parent, self._is_child)
            routes = self._routes
            self._trees.route = lambda author, old: routes.best(author, old, self._peers)
        self._flush_at: float | None = None  # when queued IHAVEs go out
        self._announce_at: float | None = None
        self._feeder: bytes | None = None  # the peer whose catch-up last brought news
        self._feeder_at = 0.0  # and when
        # The authors of the ops we forwarded, numbered, each key kept as one object:
        # every peer's `have` (a `Seqs` over these numbers), `eager_for` and `lazy_for`
        # names most of the room's authors, in each node one copy a key, not one per link.
        self._authors = Authors()

    # -- introspection ------------------------------------------------------------------

    @property
    def peers(self) -> list[bytes]:
        return list(self._peers)

    @property
    def eager_peers(self) -> list[bytes]:
        """The thin eager core: the peers an author's first op is pushed to."""
        return [p.id for p in self._peers.values() if p.eager]

    @property
    def lazy_peers(self) -> list[bytes]:
        return [p.id for p in self._peers.values() if not p.eager]

    def parent(self, author: bytes) -> bytes | None:
        """The peer we asked to push us `author`'s ops (its tree's edge to us), if any."""
        return self._trees.parent(author)

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
        pull = self._pulls.next_deadline()
        if pull is not None:
            times.append(pull)
        route = self._routes.next_deadline() if self._routes is not None else None
        if route is not None:
            times.append(route)
        return min(times, default=None)

    # -- events -------------------------------------------------------------------------

    def peer_up(self, peer: bytes, now: float) -> list[Action]:
        """A link to `peer`, authorised for this room, has opened."""
        if peer in self._peers:
            raise GossipLocalError("peer_up for a peer that is already up")
        state = Peer(peer, self.config.flood, now + self._sync_delay(), have=Seqs(self._authors))
        self._peers[peer] = state
        out: list[Action] = []
        hello = Hello(PROTOCOL_VERSION, self.config.window, self.config.max_message_bytes)
        out.append(Send(peer, encode_message(hello)))
        self._stream.send_vector(state, reply=False, out=out)
        self._feed(out)
        if not self.config.flood:
            self._reshape(self._trees.adopt_orphans(peer, self._peers, now), out)
        if self._routes is not None:
            self._send_routes(self._routes.peer_up(peer, now), out)
        return out

    def _feed(self, out: list[Action]) -> None:
        """Keep `eager_peers` peers pushing us authors' first ops (the thin eager core, as
        each receiver picks its own feeders): graft the whole link on more if short."""
        if self.config.flood:
            return
        feeders = sum(p.feeds for p in self._peers.values())
        for state in self._peers.values():
            if feeders >= self.config.eager_peers:
                return
            if not state.feeds:
                state.feeds = True
                feeders += 1
                out.append(Send(state.id, encode_message(Want(True, ()))))

    def peer_down(self, peer: bytes, now: float) -> list[Action]:
        """The link to `peer` has closed (for whatever reason). Unknown peers are ignored."""
        out: list[Action] = []
        self._forget(peer, out)
        return out

    def authored(self, op: Op, now: float) -> list[Action]:
        """The local identity authored `op`, which is now durable and in the source."""
        if op.id not in self.source:
            raise GossipLocalError("apply an authored op to the source before gossiping it")
        out: list[Action] = []
        self._forward(op, None, now, out)
        self._flush_due(now, out)
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
            announced = self._pulls.arrived(op.id)
            holders = announced.holders if announced is not None else set()
            if announced is not None and announced.first != source.id:
                self._trees.runner_up(op.author, announced.first)
            if ingesting.mode is Mode.SYNC:
                # Catch-up data is not pushed on: once the catch-up has gone quiet for
                # `announce_delay`, we swap vectors with every peer, and they fetch only
                # what they lack (and resume any catch-up we paused).
                self._announce_at = now + self.config.announce_delay
            else:
                self._forward(op, source.id, now, out, holders)
        if self._peers.get(source.id) is source:
            source.unacked -= 1
            out.append(Send(source.id, encode_message(Ack(ingesting.batch))))
        self._flush_due(now, out)
        return out

    def handle_timer(self, now: float) -> list[Action]:
        """Do what is due at `now`: announcements, pulls, periodic vector swaps."""
        out: list[Action] = []
        self._pull_due(now, out)
        self._flush_due(now, out)
        if self._routes is not None:
            messages, moves = self._routes.due(now, self._peers)
            self._reshape(self._trees.prefer(moves, now), out)
            self._send_routes(messages, out)
        if self._announce_at is not None and now >= self._announce_at:
            self._announce_at = None
            for state in self._peers.values():
                self._stream.send_vector(state, reply=True, out=out)
                state.next_sync = now + self._sync_delay()
        for state in self._peers.values():
            if now >= state.next_sync:
                self._stream.send_vector(state, reply=True, out=out)
                state.next_sync = now + self._sync_delay()
        return out

    # -- messages -----------------------------------------------------------------------

    def _dispatch(self, state: Peer, message: Message, now: float, out: list[Action]) -> None:
        if isinstance(message, Hello):
            if state.hello is not None:
                raise GossipRemoteError(Fault.PROTOCOL, "second HELLO")
            if message.version != PROTOCOL_VERSION:
                raise GossipRemoteError(Fault.PROTOCOL, f"version {message.version}")
            state.hello = message
            self._stream.pump(state, out)
            return
        if state.hello is None:
            raise GossipRemoteError(Fault.PROTOCOL, "message before HELLO")
        if isinstance(message, Ops):
            self._on_ops(state, message, now, out)
        elif isinstance(message, Ack):
            if message.batch not in state.outstanding:
                raise GossipRemoteError(Fault.FLOW, f"ack for batch {message.batch}")
            state.outstanding.discard(message.batch)
            self._stream.pump(state, out)
        elif isinstance(message, Vector):
            self._on_vector(state, message, out)
        elif isinstance(message, IHave):
            at_once, state.catching_up = state.catching_up, False
            for op_id in message.ids:
                ingesting = self._inflight.get(op_id)
                if ingesting is not None:
                    self._trees.runner_up(ingesting.author, state.id)
                elif op_id in self.source:
                    self._trees.announced_late(state.id, op_id)
                else:
                    self._pulls.announced(state.id, op_id, now, at_once=at_once)
            if at_once:
                self._pull_due(now, out)
        elif isinstance(message, Want):
            self._on_want(state, message, now, out)
        elif isinstance(message, Pause):
            state.syncing = state.overflowed = False
            state.resume = True
        elif isinstance(message, Ping):
            out.append(Send(state.id, encode_message(Pong(message.nonce))))
        elif isinstance(message, Pong | Dist):
            if self._routes is not None:
                if isinstance(message, Pong):
                    moves = self._routes.pong(state.id, message.nonce, now, self._peers)
                else:
                    moves = self._routes.dist(state.id, message, now, self._peers)
                self._reshape(self._trees.prefer(moves, now), out)
        elif not self.config.flood:  # Prune
            if not message.authors:
                state.eager = False
                state.told_lazy = True
                state.eager_for.clear()
            key = self._authors.key
            for author in message.authors:
                state.eager_for.discard(author)
                if len(state.lazy_for) < MAX_VECTOR_AUTHORS:
                    state.lazy_for.add(key(author))

    def _on_want(self, state: Peer, message: Want, now: float, out: list[Action]) -> None:
        """A pull, a graft, or both: send the ops asked for; push the authors named (and,
        with the link-wide `graft`, the authors of the ops asked for) from now on."""
        if message.graft:
            state.eager = True
        authors = message.authors
        if not self.config.flood and self.peer_id < state.id:
            spares = self._spares()
            for author in authors:
                if self._trees.parent(author) == state.id:
                    self._reshape(self._trees.crossed(state.id, author, self._peers, spares), out)
        self._graft_authors(state, authors)
        # An op we forwarded just before the graft came may have missed the peer: its
        # old parent, pruned meanwhile, did not push it either. Announce it again.
        recent = [
            op_id
            for author in authors
            for op_id, seq in self._trees.latest(author, now - RECENT_GRAFT)
            if state.have.get(author, 0) < seq
        ]
        if recent:
            self.stats.ihave_sent += len(recent)
            out.append(Send(state.id, encode_message(IHave(tuple(recent[:MAX_IDS])))))
        # In chain order: a catch-up list is pulled whole, and what we believe the peer
        # holds (`Peer.have`, which our acks of its ops read) grows only along each chain.
        asked = [op for op in map(self.source.get, message.ids) if op is not None]
        for op in sorted(asked, key=lambda op: (op.author, op.seq)):
            if message.graft:
                self._graft_authors(state, (op.author,))
            self._stream.enqueue(state, op, Mode.PULLED, asked=True)
        self._stream.pump(state, out)

    def _graft_authors(self, state: Peer, authors: tuple[bytes, ...]) -> None:
        key = self._authors.key
        for author in authors:
            state.lazy_for.discard(author)
            if len(state.eager_for) < MAX_VECTOR_AUTHORS:
                state.eager_for.add(key(author))

    def _on_ops(self, state: Peer, message: Ops, now: float, out: list[Action]) -> None:
        state.unacked += 1
        if state.unacked > self.config.window:
            raise GossipRemoteError(Fault.FLOW, f"more than {self.config.window} batches")
        fresh: list[Op] = []
        seen: set[bytes] = set()
        repeated: list[Op] = []  # the duplicates
        decoded: list[Op] = []
        decode, inflight = self._decode, self._inflight
        for data in message.ops:
            try:
                op = decode(data)
            except InvalidOp as exc:
                self.stats.ops_received += len(message.ops)
                self._penalise(state.id, Fault.BAD_OP, exc.reason.value, out)
                return
            state.holds(op.author, op.seq)  # what it sent us
            decoded.append(op)
        # One question to the source for the whole batch (a stored room looks up only the
        # ops its chains could hold, with one indexed query, not one per op).
        held = self.source.known_ops([op for op in decoded if op.id not in inflight])
        for op in decoded:
            op_id = op.id
            if op_id in seen or op_id in inflight or op_id in held:
                repeated.append(op)
                continue
            seen.add(op_id)
            fresh.append(op)
        self.stats.ops_received += len(message.ops)
        self.stats.duplicates += len(message.ops) - len(fresh)
        if not self.config.flood and message.mode is Mode.PUSH:
            live = self._peers
            change = self._trees.pushed(state.id, fresh, repeated, now, self._pulls.get, live)
            self._reshape(change, out)
        elif not self.config.flood and message.mode is Mode.PULLED:
            self._reshape(self._trees.pulled(state.id, fresh, now, self._peers), out)
        elif not self.config.flood:
            self._reshape(self._trees.synced(state.id, fresh, self._peers), out)
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
            inflight[op.id] = op
        self._ingests[token] = Ingesting(state, message.batch, message.mode, tuple(fresh))
        out.append(Ingest(state.id, token, tuple(op.data for op in fresh), tuple(fresh)))

    def _send_routes(
        self, messages: list[tuple[bytes, Ping | Pong | Dist]], out: list[Action]
    ) -> None:
        for peer, message in messages:
            out.append(Send(peer, encode_message(message)))

    def _reshape(self, change: Reshape, out: list[Action]) -> None:
        """Send the per-author PRUNEs and GRAFTs the trees decided on."""
        if self._routes is not None:
            for authors in change.grafts.values():
                self._routes.moved(authors)
        for peer, authors in change.prunes.items():
            self.stats.prunes_sent += 1
            out.append(Send(peer, encode_message(Prune(tuple(authors[:MAX_IDS])))))
        for peer, authors in change.grafts.items():
            self.stats.grafts_sent += 1
            out.append(Send(peer, encode_message(Want(False, (), tuple(authors[:MAX_IDS])))))

    def _on_vector(self, state: Peer, message: Vector, out: list[Action]) -> None:
        state.vector.extend(message.entries)
        if len(state.vector) > MAX_VECTOR_AUTHORS:
            raise GossipRemoteError(Fault.PROTOCOL, "version vector too long")
        if message.more:
            return
        have = state.have
        for author, seq in state.vector:
            if seq > have.get(author, 0):
                have[author] = seq
        ours = self.source.version_vector()
        ahead = [author for author, seq in state.vector if seq > ours.get(author, 0)]
        state.catching_up = bool(ahead)
        if not self.config.flood:
            # The authors it holds more of than we do are grafted on it if they have no
            # parent here: their missing ops are announced (catch-up), not streamed, and
            # their next ops should be pushed to us, not pulled one by one meanwhile.
            self._reshape(self._trees.ahead(state.id, ahead, self._peers), out)
        state.vector = []
        if message.reply:
            self._stream.send_vector(state, reply=False, out=out)
        self._stream.catch_up(state, out)

    # -- sending ------------------------------------------------------------------------

    def _forward(
        self,
        op: Op,
        source: bytes | None,
        now: float,
        out: list[Action],
        holders: set[bytes] | frozenset[bytes] = frozenset(),
    ) -> None:
        """Push `op` to the peers that grafted its author (an author new to us: to the
        thin eager core) and announce it to the others, except `source` and the peers
        that announced it to us (`holders`)."""
        twin = self._stream.is_twin(op)
        author = self._authors.add(op.author)
        new = self._trees.is_new(author, now)
        self._trees.forwarded(op, now, own=source is None)
        if self._routes is not None:
            self._routes.learn(author, own=source is None)
        lazy: list[Peer] = []
        for state in self._peers.values():
            if state.id == source or state.id in holders:
                continue
            if state.have.get(author, 0) >= op.seq and not twin:
                continue
            if self.config.flood or author in state.eager_for:
                eager = True
            elif author in state.lazy_for:
                eager = False
            elif source is None:
                # Our own ops go to every peer that has not pruned them: the first hop
                # from the author is the root of its tree, a copy costs the room one
                # reception per peer, not per member, and a burst of ops needs no grafts.
                eager = not state.told_lazy
            else:
                eager = new and state.eager
            if eager:
                self._stream.enqueue(state, op, Mode.PUSH)
                self._stream.pump(state, out)
            else:
                lazy.append(state)
        cap = self.config.lazy_peers
        if cap is not None and len(lazy) > cap:
            lazy = self.rng.sample(lazy, cap)
        for state in lazy:
            state.ihave.append(op.id)
            if len(state.ihave) >= MAX_IDS:
                self._flush(state, out)
            elif self._flush_at is None:
                self._flush_at = now + self.config.ihave_interval

    def _flush_due(self, now: float, out: list[Action]) -> None:
        """Send the IHAVEs gathered, once `ihave_interval` has passed (at once if it is 0)."""
        if self._flush_at is not None and now >= self._flush_at:
            self._flush_at = None
            for state in self._peers.values():
                self._flush(state, out)

    def _flush(self, state: Peer, out: list[Action]) -> None:
        ihave, state.ihave = state.ihave, []
        for start in range(0, len(ihave), MAX_IDS):
            ids = tuple(ihave[start : start + MAX_IDS])
            self.stats.ihave_sent += len(ids)
            out.append(Send(state.id, encode_message(IHave(ids))))

    def _pull_due(self, now: float, out: list[Action]) -> None:
        """Plumtree's GRAFT, per author: pull each announced op not pushed in time from
        its announcer (whose answer makes it the author's parent)."""
        holds = self._holds
        asked: list[Peer] = []
        for peer, op_id in self._pulls.due(now, holds, self._peers, list(self._peers)):
            state = self._peers[peer]
            if not state.want:
                asked.append(state)
            state.want.append(op_id)
        for state in asked:
            want, state.want = state.want, []
            for start in range(0, len(want), MAX_IDS):
                ids = tuple(want[start : start + MAX_IDS])
                self.stats.wants_sent += len(ids)
                out.append(Send(state.id, encode_message(Want(False, ids))))

    # -- bookkeeping --------------------------------------------------------------------

    def _is_child(self, peer: bytes, author: bytes) -> bool:
        state = self._peers.get(peer)
        return state is not None and author in state.eager_for

    def _spares(self) -> list[bytes]:
        """The peers an author with no runner-up may be grafted on, best first: those
        feeding us first ops (the thin eager core), then the rest, so that an author
        whose parent went is grafted on someone rather than left to pulls."""
        peers = self._peers.values()
        return [p.id for p in peers if p.feeds] + [p.id for p in peers if not p.feeds]

    def _holds(self, op_id: bytes) -> bool:
        return op_id in self.source or op_id in self._inflight

    def _sync_delay(self) -> float:
        return self.config.sync_interval * self.rng.uniform(0.75, 1.25)

    def _penalise(self, peer: bytes, fault: Fault, detail: str, out: list[Action]) -> None:
        if peer in self._peers:
            self.stats.penalties += 1
            out.append(Penalise(peer, fault, detail))
            self._forget(peer, out)

    def _forget(self, peer: bytes, out: list[Action]) -> bool:
        """Drop `peer`'s state; its authors move to their runner-ups, and another peer is
        asked for first ops if it was one of ours."""
        if self._peers.pop(peer, None) is None:
            return False
        if self._routes is not None:
            self._routes.peer_down(peer)
        self._feed(out)
        # Peers with a lower id give way when our grafts cross (`_on_want`).
        last = [p for p in self._peers if p < self.peer_id]
        change = self._trees.peer_down(peer, self._peers, self._spares(), last)
        self._reshape(change, out)
        return True
