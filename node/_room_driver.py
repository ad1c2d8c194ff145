"""The room driver: one task per room feeding its sans-IO gossip core.

`RoomDriver.run` takes link events, received messages, ops we authored and ingest
results from its inbox, hands them to the room's `node.gossip.RoomGossip` with `now`,
and performs the actions the core returns (send on a link, ingest a batch, penalise a
peer). It talks to the rest of the node only through `RoomHost`, a narrow interface.

This module is a driver: it must never decide what to gossip, what to accept or what an
op means. Those decisions belong to `node.gossip`, `node.link`, `node._peering` and `crdt`.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Protocol

import msgpack
import trio

from crdt import Change, History, IngestReport, Kind, Op, StoreError

from ._addressbook import AddressBook, encode_records
from ._events import RoomEvents
from ._invite import MAX_PEERS, Invite
from ._status import RoomStatus
from .gossip import Action as GossipAction
from .gossip import Ingest, Penalise, RoomGossip, Send
from .link import Link, LinkError

__all__ = ["RoomDriver", "RoomHost"]

log = logging.getLogger("node")

INBOX: Final = 256  # room-task queue; a full one pushes back on the links feeding it
MAX_KNOWN_PEERS: Final = 32  # link addresses remembered per room
RECORDS_SAVE_GAP: Final = 1.0  # seconds of address record changes gathered into one write


class RoomHost(Protocol):
    """What a room driver may ask of its node."""

    @property
    def peer_id(self) -> bytes: ...

    @property
    def nick(self) -> str: ...

    @property
    def address(self) -> str: ...

    def wall_clock(self) -> float:
        """Wall-clock seconds (the environment's: virtual in a simulation)."""
        ...

    def dht_contacts(self) -> list[str]:
        """A few DHT contacts ("ip:port") to put in invites."""
        ...

    def penalise(self, room: RoomDriver, action: Penalise, link: Link | None) -> None:
        """Cut a misbehaving peer off (the core has already forgotten it)."""
        ...

    async def leave(self, room: RoomDriver) -> None:
        """Leave the room for good (see `Room.leave`)."""
        ...


# What the link readers and the API post to a room task.
@dataclass(frozen=True, slots=True)
class Up:
    link: Link


@dataclass(frozen=True, slots=True)
class Down:
    link: Link


@dataclass(frozen=True, slots=True)
class Received:
    link: Link
    data: bytes


@dataclass(frozen=True, slots=True)
class _Authored:
    op: Op


@dataclass(frozen=True, slots=True)
class _Ingested:
    token: int
    report: IngestReport


@dataclass(frozen=True, slots=True)
class Stop:
    """Stop the room task once everything posted before is handled (leaving a room)."""


@dataclass(frozen=True, slots=True)
class _Handled:
    """Set `done` once everything posted before is handled (see `RoomDriver.drain`)."""

    done: trio.Event


_Event = Up | Down | Received | _Authored | _Ingested
_Item = _Event | Stop | _Handled


class RoomDriver:
    """Runs one room's gossip core: events in, actions performed, timers kept."""

    def __init__(
        self,
        host: RoomHost,
        history: History,
        secret: bytes,
        name: str,
        peers: list[str],
        core: RoomGossip,
        *,
        settles_at: float,
    ) -> None:
        self.host = host
        self.history = history
        self.room_id = history.room
        self.secret = secret
        self.name = name
        self.peers = peers  # link addresses of members we have reached or were given
        # Members' signed address records (ours too), passed around on the room's record
        # channel and kept in the room file's meta (see `node._addressbook`).
        self.book = AddressBook(history.room, host.peer_id)
        self.core = core
        self.links: dict[bytes, Link] = {}  # peers up in the core
        self.ingesting = 0
        self.rejected: dict[str, int] = {}  # received ops refused by crdt/, by reason
        self.added = 0  # received ops new to us, now stored
        # Cancelled to stop the room's task before its history closes, so that the
        # store's writer still runs while the history saves what ingests left unsaved.
        self.scope = trio.CancelScope()
        self.stopped = trio.Event()
        self.gone: str | None = None  # why the room is no longer served ("left", ...)
        # A room we created here: our chain in it starts now, no peer can hold any of it.
        self.new_chain = False
        # We joined, but have not said so yet: the JOIN (and NICK) precede our next op.
        self.join_unsaid = False
        # After this (the peering policy's grace), our writes need not wait for a member
        # to tell us what it holds of our own chain (see `author`).
        self.settles_at = settles_at
        self._author_lock = trio.Lock()  # fair: ops are authored in the order asked
        self._progress = trio.Event()  # set (and replaced) after each event the task handles
        self._subscribers: set[RoomEvents] = set()
        self._inbox_in, self._inbox_out = trio.open_memory_channel[_Item](INBOX)
        self._nursery: trio.Nursery | None = None  # the room task's, while it runs
        self._records_dirty = False  # the book changed since the room file last got it
        self._records_saving = False

    # -- called by the API and the link readers ----------------------------------------

    async def post(self, item: _Item) -> None:
        """Queue `item` for the room task, waiting only while its inbox is full. Not a
        schedule point when there is room: the link readers post once a received message,
        and a yield there cost a task step each (their own receive is the checkpoint)."""
        try:
            self._inbox_in.send_nowait(item)
        except trio.WouldBlock:
            await self._inbox_in.send(item)

    def post_nowait(self, item: _Item) -> None:
        self._inbox_in.send_nowait(item)

    def may_author(self) -> bool:
        # A chain of ours already here (not a room we created) could still be behind what
        # the members hold (a file restored from a backup): for a while after the room
        # starts, wait to hear from a member, then go ahead even if none answered.
        settled = trio.current_time() >= self.settles_at
        return self.core.may_author(self.host.peer_id, new_chain=self.new_chain, settled=settled)

    async def author(self, kind: Kind, body: tuple[object, ...]) -> Op:
        """Author an op once it cannot fork our own chain: while a peer shows ops of ours
        we lack, or (holding none) before any peer has told us what it holds, wait. A
        JOIN not yet said goes first."""
        async with self._author_lock:
            await self._until_may_author()
            await self._say_join_if_unsaid()
            return await self._author_now(kind, body)

    async def say_joined(self) -> None:
        """Author the JOIN not yet said, once we may (nothing if the room stops first)."""
        with contextlib.suppress(trio.ClosedResourceError, StoreError):
            async with self._author_lock:
                await self._until_may_author()
                await self._say_join_if_unsaid()

    async def say_nick(self, nick: str) -> None:
        """Author a NICK once our own chain in the room is known (nothing if the room
        stops first)."""
        with contextlib.suppress(trio.ClosedResourceError, StoreError):
            await self.author(Kind.NICK, (nick,))

    async def _say_join_if_unsaid(self) -> None:
        if self.join_unsaid:
            await self._author_now(Kind.JOIN, ())
            if self.host.nick:
                await self._author_now(Kind.NICK, (self.host.nick,))
            self.join_unsaid = False

    async def _until_may_author(self) -> None:
        while True:
            if self.gone is not None:
                raise trio.ClosedResourceError(f"room {self.room_id.hex()[:8]} {self.gone}")
            if self.may_author():
                return
            # Look again when the grace ends (if still ahead); otherwise at the next event.
            ahead = trio.current_time() < self.settles_at
            with trio.move_on_at(self.settles_at if ahead else math.inf):
                await self._progress.wait()

    async def _author_now(self, kind: Kind, body: tuple[object, ...]) -> Op:
        op, result = await self.history.author(kind, body)
        self._publish(list(result.changes))
        await self.post(_Authored(op))
        return op

    async def drain(self) -> None:
        """Return once everything posted to the room task so far is handled: the ops we
        authored are then queued on the links (the node closing flushes them)."""
        done = trio.Event()
        await self.post(_Handled(done))
        await done.wait()

    def subscribe(self) -> RoomEvents:
        stream = RoomEvents(self._subscribers.discard)
        if self.gone is not None:
            stream._end()  # nothing will change in a room no longer served
        else:
            self._subscribers.add(stream)
        return stream

    def close_subscribers(self) -> None:
        for stream in self._subscribers:
            stream._end()
        self._subscribers.clear()

    async def remember_peers(self, addresses: Iterable[str]) -> None:
        new = [a for a in addresses if a not in self.peers and a != self.host.address]
        if not new:
            return
        self.peers[:] = [*self.peers, *new][-MAX_KNOWN_PEERS:]
        try:
            await self.history.store.set_meta({"peers": msgpack.packb(self.peers)})
        except (StoreError, trio.ClosedResourceError) as exc:
            # Only a hint for the next start; the room's own task reports a failing store.
            log.debug("room %s: peers not saved: %s", self.room_id.hex()[:8], exc)

    def invite(self) -> Invite:
        """The room's invite as this node would give it (see `Room.invite`)."""
        host = self.host
        own = [host.address] if host.address else []  # none when dial-out only
        signed = [a for r in self.book.others(host.wall_clock()) for a in r.addresses]
        peers = list(dict.fromkeys([*own, *signed, *self.peers]))[:MAX_PEERS]
        contacts = tuple(host.dht_contacts())
        return Invite(self.room_id, self.secret, self.name, tuple(peers), contacts)

    def records_changed(self) -> None:
        """The members' address records changed: keep them in the room file for the next
        start, gathering the changes of RECORDS_SAVE_GAP seconds into one write (a room
        forming hears a record from every member, each passed on by every link)."""
        self._records_dirty = True
        if self._nursery is not None and not self._records_saving:
            self._records_saving = True
            self._nursery.start_soon(self._save_records_later)

    async def _save_records_later(self) -> None:
        try:
            await trio.sleep(RECORDS_SAVE_GAP)
            await self.save_records()
        finally:
            self._records_saving = False

    async def save_records(self) -> None:
        """Write the address records if they changed. Not durably: they are hints for the
        next start, and members send theirs again."""
        if not self._records_dirty:
            return
        self._records_dirty = False
        data = encode_records(self.book.others(self.host.wall_clock()))
        try:
            await self.history.store.set_meta({"addresses": data}, durable=False)
        except (StoreError, trio.ClosedResourceError) as exc:
            log.debug("room %s: address records not saved: %s", self.room_id.hex()[:8], exc)

    def status(self) -> RoomStatus:
        replica = self.history.replica
        return RoomStatus(
            room_id=self.room_id,
            name=self.name,
            peers=tuple(self.links),
            ops=len(replica),
            held=replica.held_count,
            behind=self.core.behind(),
            authors=len(replica.version_vector()),
            ingesting=self.ingesting,
            received=self.core.stats.ops_received,
            penalties=self.core.stats.penalties,
            sent=self.core.stats.ops_sent,
            duplicates=self.core.stats.duplicates,
            rejected=tuple(sorted(self.rejected.items())),
            acked_seq=self.core.peer_seq(self.host.peer_id),
            damaged=self.history.damaged,
            added=self.added,
        )

    # -- the room task -----------------------------------------------------------------

    def _publish(self, changes: list[Change]) -> None:
        for stream in self._subscribers:
            stream._push(changes)

    async def run(self) -> None:
        try:
            await self._run()
        finally:
            self._nursery = None
            # Records not yet saved go to the room file before it closes, however the
            # room's task ends (a bounded wait: the store may be closing too).
            with trio.CancelScope(shield=True), trio.move_on_after(RECORDS_SAVE_GAP):
                await self.save_records()

    async def _run(self) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            if self._records_dirty:
                self.records_changed()
            while True:
                deadline = self.core.next_timer()
                with trio.move_on_at(math.inf if deadline is None else deadline):
                    item = await self._inbox_out.receive()
                    if isinstance(item, Stop):
                        nursery.cancel_scope.cancel()
                        return
                    if isinstance(item, _Handled):
                        item.done.set()
                        continue
                    self._perform(self._handle(item), nursery)
                    self._progressed()
                    continue
                self._perform(self.core.handle_timer(trio.current_time()), nursery)

    def _progressed(self) -> None:
        """Wake writers waiting for our own chain to be known (see `author`)."""
        self._progress.set()
        self._progress = trio.Event()

    def _handle(self, item: _Event) -> list[GossipAction]:
        core, now = self.core, trio.current_time()
        if isinstance(item, Received):
            if self.links.get(item.link.peer_id) is not item.link:
                return []
            return core.receive(item.link.peer_id, item.data, now)
        if isinstance(item, _Authored):
            return core.authored(item.op, now)
        if isinstance(item, _Ingested):
            self.ingesting -= 1
            self.added += len(item.report.added)
            for reason, count in item.report.rejected.items():
                self.rejected[reason.value] = self.rejected.get(reason.value, 0) + count
            self._publish(item.report.changes)
            return core.ingested(item.token, item.report, now)
        peer = item.link.peer_id
        if isinstance(item, Up):
            actions: list[GossipAction] = []
            if peer in self.links:  # a newer link replaced the old one
                actions += core.peer_down(peer, now)
            self.links[peer] = item.link
            return actions + core.peer_up(peer, now)
        if self.links.get(peer) is item.link:
            del self.links[peer]
            return core.peer_down(peer, now)
        return []

    def _perform(self, actions: list[GossipAction], nursery: trio.Nursery) -> None:
        for action in actions:
            if isinstance(action, Send):
                link = self.links.get(action.peer)
                if link is not None:
                    # A closed link: the core hears peer_down soon.
                    with contextlib.suppress(LinkError):
                        link.send_nowait(self.room_id, action.data)
            elif isinstance(action, Ingest):
                self.ingesting += 1
                nursery.start_soon(self._ingest, action)
            elif isinstance(action, Penalise):
                self.host.penalise(self, action, self.links.pop(action.peer, None))

    async def _ingest(self, action: Ingest) -> None:
        report = await self.history.ingest(action.decoded or action.ops)
        await self.post(_Ingested(action.token, report))
