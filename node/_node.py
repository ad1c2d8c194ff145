"""The Node: one identity, its rooms, its links and its DHT node, run on trio.

`Node.open(data_dir, ...)` loads (or creates) the identity and every stored room, listens
for links, dials the peers it knows and finds more through the DHT. Per room, one task
(`_RoomDriver.run`) feeds the room's sans-IO gossip core (`node.gossip.RoomGossip`) with
link events, received messages, ingest results and timers, and performs the actions it
returns. Per link, one reader task dispatches events by room and one writer task sends.

This module is a driver: it must never decide what to gossip, what to accept or what an
op means. Those decisions belong to `node.gossip`, `node.link` and `crdt`.

On a `SimNetwork` (`Node.open(..., network=sim)`) the same node runs in virtual time: its
links and DHT go over the simulator, and nothing waits on a thread or a process (SQLite
calls and file reads run inline, signatures are verified in-process), since an
autojumping clock would skip ahead while a thread worked.

Data dir layout::

    identity.pem                the node's Ed25519 key (0600)
    settings.json               the nickname
    rooms/<room id hex>.sqlite3 one room's history; its secret, name and peers in the meta
    rooms/left/                 rooms we left, kept (joining again takes the file back)
    dht-state.msgpack           DHT node id and contacts (written by the DHT node)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import random
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Final, TypeVar

import msgpack
import trio

from crdt import (
    Change,
    History,
    Identity,
    IngestReport,
    Kind,
    Op,
    StoreError,
    Verifier,
    check_body,
    format_peer_id,
)
from dht import Address, DHTError, DHTNode, PeerRecord, canonical_host
from rumor_runtime import INLINE, THREADED, open_unwrapping_nursery

from ._addresses import join_host_port, short_peer_id, split_host_port
from ._backoff import Backoff, Breaker
from ._invite import Invite, InviteError, check_address, parse_invite
from ._lock import DataDirError, hold_lock
from ._room import Room, RoomEvents
from ._status import DialState, NodeStatus, RoomStatus
from .gossip import Action as GossipAction
from .gossip import GossipConfig, Ingest, Penalise, RoomGossip, Send
from .link import (
    Link,
    LinkClosed,
    LinkConfig,
    LinkError,
    Message,
    RoomAuthorized,
    RoomDenied,
    RoomRefused,
    StreamTransport,
    TCPTransport,
    connect_link,
    serve_links,
)
from .sim import SimNetwork

__all__ = ["Node", "NodeStatus", "RoomStatus", "room_dht_key"]

log = logging.getLogger("node")

T = TypeVar("T")

ROOMS_DIR: Final = "rooms"
LEFT_DIR: Final = "left"  # under rooms/: rooms we left, kept
IDENTITY_FILE: Final = "identity.pem"
SETTINGS_FILE: Final = "settings.json"
RECORD_TTL: Final = 3600  # seconds a DHT record of ours stays valid
INBOX: Final = 256  # room-task queue; a full one pushes back on the links feeding it
MAX_KNOWN_PEERS: Final = 32  # link addresses remembered per room
OUTBOX_BYTES: Final = 16 * 1024 * 1024  # bytes queued for a peer before it counts as gone
LEAVE_FLUSH_TIMEOUT: Final = 5.0  # seconds a leave op may take to be written to the links
STOP_TIMEOUT: Final = 10.0
# Seconds after a room starts during which our writes there wait to hear a member's
# vector (our own chain may be behind theirs: a restored file); see `_RoomDriver.author`.
OWN_CHAIN_GRACE: Final = 10.0  # seconds the rooms may take to save and close on shutdown


def room_dht_key(secret: bytes) -> bytes:
    """The DHT key under which a room's members announce themselves (DESIGN.md: derived
    from the secret, so the DHT never learns the room and only invite holders find it)."""
    return hashlib.blake2b(secret, digest_size=20, person=b"rumor-room-dht").digest()


def _link_url(address: str) -> str:
    return f"ws://{address}/"


async def _run_sync(fn: Callable[..., T], *args: object, inline: bool) -> T:
    """`fn(*args)` on a worker thread, or inline (in virtual time) with the same
    cancellation semantics: a checkpoint before it starts; once started, it finishes.
    (crdt's store keeps the same helper: crdt never imports node.)"""
    if not inline:
        return await trio.to_thread.run_sync(fn, *args)
    await trio.lowlevel.checkpoint_if_cancelled()
    result = fn(*args)
    await trio.lowlevel.cancel_shielded_checkpoint()
    return result


class _LinkHandle:
    """One open link: a writer task sends in order without blocking the room tasks.

    The outbox is bounded in bytes: a peer that stops reading while we keep queuing
    (the gossip window bounds catch-up batches, not pushes and announcements) is dropped
    rather than allowed to grow our memory without end."""

    def __init__(self, link: Link, outbox_bytes: int = OUTBOX_BYTES) -> None:
        self.link = link
        self.peer_id = link.peer_id
        self.done = trio.Event()
        self.rooms: set[bytes] = set()  # rooms whose core was told this link is up
        self.overflowed = False
        self._budget = outbox_bytes
        self._queued = 0
        self._written = trio.Event()  # set (and replaced) each time the writer sends
        self._writing = trio.CancelScope()
        self._out, self._in = trio.open_memory_channel[tuple[bytes, bytes]](math.inf)

    def send(self, room_id: bytes, data: bytes) -> None:
        if self.overflowed:
            return
        self._queued += len(data)
        if self._queued > self._budget:
            self.overflowed = True
            log.warning(
                "link to %s: peer not reading (%d bytes waiting); closing it",
                short_peer_id(self.peer_id),
                self._queued,
            )
            self._writing.cancel()
            return
        # A closed outbox: the link is gone, and the core hears peer_down soon.
        with contextlib.suppress(trio.ClosedResourceError, trio.BrokenResourceError):
            self._out.send_nowait((room_id, data))

    async def writer(self) -> None:
        with self._writing:
            async with self._in:
                async for room_id, data in self._in:
                    try:
                        await self.link.send(room_id, data)
                    except LinkError:
                        return
                    self._queued -= len(data)
                    self._written.set()
                    self._written = trio.Event()
        if self.overflowed:
            await self.link.aclose()  # ends the reader too, which cleans up

    def close(self) -> None:
        self._out.close()
        self.done.set()

    async def close_when_sent(self) -> None:
        """Close the link once everything queued so far is written (or after a while)."""
        with trio.move_on_after(LEAVE_FLUSH_TIMEOUT):
            while self._queued > 0 and not self.done.is_set() and not self.overflowed:
                await self._written.wait()
        await self.link.aclose()


# What the link readers and the API post to a room task.
@dataclass(frozen=True, slots=True)
class _Up:
    handle: _LinkHandle


@dataclass(frozen=True, slots=True)
class _Down:
    handle: _LinkHandle


@dataclass(frozen=True, slots=True)
class _Received:
    handle: _LinkHandle
    data: bytes


@dataclass(frozen=True, slots=True)
class _Authored:
    op: Op


@dataclass(frozen=True, slots=True)
class _Ingested:
    token: int
    report: IngestReport


@dataclass(frozen=True, slots=True)
class _Stop:
    """Stop the room task once everything posted before is handled (leaving a room)."""


_Event = _Up | _Down | _Received | _Authored | _Ingested
_Item = _Event | _Stop


class _RoomDriver:
    """Runs one room's gossip core: events in, actions performed, timers kept."""

    def __init__(
        self,
        node: Node,
        history: History,
        secret: bytes,
        name: str,
        peers: list[str],
        core: RoomGossip,
    ) -> None:
        self.node = node
        self.history = history
        self.room_id = history.room
        self.secret = secret
        self.name = name
        self.peers = peers  # link addresses of members we have reached or were given
        self.core = core
        self.links: dict[bytes, _LinkHandle] = {}  # peers up in the core
        self.dialed: set[bytes] = set()  # members discovery decided to keep a link to
        self.ingesting = 0
        self.rejected: dict[str, int] = {}  # received ops refused by crdt/, by reason
        # Cancelled to stop the room's task before its history closes, so that the
        # store's writer still runs while the history saves what ingests left unsaved.
        self.scope = trio.CancelScope()
        self.stopped = trio.Event()
        self.gone: str | None = None  # why the room is no longer served ("left", ...)
        # A room we created here: our chain in it starts now, no peer can hold any of it.
        self.new_chain = False
        # We joined, but have not said so yet: the JOIN (and NICK) precede our next op.
        self.join_unsaid = False
        self.started_at = trio.current_time()
        self._author_lock = trio.Lock()  # fair: ops are authored in the order asked
        self._progress = trio.Event()  # set (and replaced) after each event the task handles
        self._subscribers: set[RoomEvents] = set()
        self._inbox_in, self._inbox_out = trio.open_memory_channel[_Item](INBOX)

    # -- called by the API and the link readers ----------------------------------------

    async def post(self, item: _Item) -> None:
        await self._inbox_in.send(item)

    def post_nowait(self, item: _Item) -> None:
        self._inbox_in.send_nowait(item)

    def may_author(self) -> bool:
        # A chain of ours already here (not a room we created) could still be behind what
        # the members hold (a file restored from a backup): for a while after the room
        # starts, wait to hear from a member, then go ahead even if none answered.
        settled = trio.current_time() >= self.started_at + OWN_CHAIN_GRACE
        return self.core.may_author(self.node.peer_id, new_chain=self.new_chain, settled=settled)

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

    async def _say_join_if_unsaid(self) -> None:
        if self.join_unsaid:
            await self._author_now(Kind.JOIN, ())
            if self.node.nick:
                await self._author_now(Kind.NICK, (self.node.nick,))
            self.join_unsaid = False

    async def _until_may_author(self) -> None:
        while True:
            if self.gone is not None:
                raise trio.ClosedResourceError(f"room {self.room_id.hex()[:8]} {self.gone}")
            if self.may_author():
                return
            # Look again when the grace ends (if still ahead); otherwise at the next event.
            settles_at = self.started_at + OWN_CHAIN_GRACE
            with trio.move_on_at(settles_at if trio.current_time() < settles_at else math.inf):
                await self._progress.wait()

    async def _author_now(self, kind: Kind, body: tuple[object, ...]) -> Op:
        op, result = await self.history.author(kind, body)
        self._publish(list(result.changes))
        await self.post(_Authored(op))
        return op

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
        new = [a for a in addresses if a not in self.peers and a != self.node.address]
        if not new:
            return
        self.peers[:] = [*self.peers, *new][-MAX_KNOWN_PEERS:]
        try:
            await self.history.store.set_meta({"peers": msgpack.packb(self.peers)})
        except (StoreError, trio.ClosedResourceError) as exc:
            # Only a hint for the next start; the room's own task reports a failing store.
            log.debug("room %s: peers not saved: %s", self.room_id.hex()[:8], exc)

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
            acked_seq=self.core.peer_seq(self.node.peer_id),
        )

    # -- the room task -----------------------------------------------------------------

    def _publish(self, changes: list[Change]) -> None:
        for stream in self._subscribers:
            stream._push(changes)

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            while True:
                deadline = self.core.next_timer()
                with trio.move_on_at(math.inf if deadline is None else deadline):
                    item = await self._inbox_out.receive()
                    if isinstance(item, _Stop):
                        nursery.cancel_scope.cancel()
                        return
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
        if isinstance(item, _Received):
            if self.links.get(item.handle.peer_id) is not item.handle:
                return []
            return core.receive(item.handle.peer_id, item.data, now)
        if isinstance(item, _Authored):
            return core.authored(item.op, now)
        if isinstance(item, _Ingested):
            self.ingesting -= 1
            for reason, count in item.report.rejected.items():
                self.rejected[reason.value] = self.rejected.get(reason.value, 0) + count
            self._publish(item.report.changes)
            return core.ingested(item.token, item.report, now)
        peer = item.handle.peer_id
        if isinstance(item, _Up):
            actions: list[GossipAction] = []
            if peer in self.links:  # a newer link replaced the old one
                actions += core.peer_down(peer, now)
            self.links[peer] = item.handle
            return actions + core.peer_up(peer, now)
        if self.links.get(peer) is item.handle:
            del self.links[peer]
            return core.peer_down(peer, now)
        return []

    def _perform(self, actions: list[GossipAction], nursery: trio.Nursery) -> None:
        for action in actions:
            if isinstance(action, Send):
                handle = self.links.get(action.peer)
                if handle is not None:
                    handle.send(self.room_id, action.data)
            elif isinstance(action, Ingest):
                self.ingesting += 1
                nursery.start_soon(self._ingest, action)
            elif isinstance(action, Penalise):
                handle = self.links.pop(action.peer, None)
                self.node._penalise(self, action, handle)

    async def _ingest(self, action: Ingest) -> None:
        report = await self.history.ingest(action.decoded or action.ops)
        await self.post(_Ingested(action.token, report))


class Node:
    """A rumor node. Open with ``async with Node.open(data_dir) as node``."""

    def __init__(
        self,
        data_dir: Path,
        identity: Identity,
        verifier: Verifier,
        nursery: trio.Nursery,
        *,
        rng: random.Random,
        gossip_config: GossipConfig | None,
        link_config: LinkConfig | None,
        discovery_interval: float,
        dial_backoff: float,
        mesh_size: int = 6,
        network: SimNetwork | None = None,
        sim_host: str | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.identity = identity
        self.address = ""  # host:port peers dial; set once listening
        self._unannounced: set[str] = set()  # why our address could not go in the DHT
        self.dht: DHTNode | None = None
        self._verifier = verifier
        self._nursery = nursery
        self._rng = rng
        self._gossip_config = gossip_config
        self._link_config = link_config
        self._discovery_interval = discovery_interval
        self._dial_backoff = dial_backoff
        self._mesh_size = mesh_size
        self._network = network
        self._sim_host = sim_host  # our host on the simulated network
        self._streams: StreamTransport = (
            network.transport(sim_host)
            if network is not None and sim_host is not None
            else TCPTransport()
        )
        self._inline = network is not None  # virtual time: no threads
        self._rooms: dict[bytes, _RoomDriver] = {}
        self._failed_rooms: dict[str, str] = {}  # room file name -> why it stopped
        self._links: dict[bytes, _LinkHandle] = {}
        self._dialing: set[str] = set()
        self._dht_ready = trio.Event()
        self._room_lock = trio.Lock()
        self._penalties_logged: set[tuple[bytes, str]] = set()
        self._refusals = 0
        self._nick = ""
        self._closing = False  # no new links once set
        self._dial_states: dict[str, DialState] = {}
        self._announced: set[bytes] = set()  # rooms whose DHT record of ours is current
        self._room_watchers: set[trio.MemorySendChannel[None]] = set()

    # -- opening -----------------------------------------------------------------------

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        data_dir: str | Path,
        *,
        listen: str | None = "127.0.0.1:0",
        advertise: str | None = None,
        dht_port: int | None = 0,
        dht_host: str = "127.0.0.1",
        bootstrap: Sequence[str | Address] = (),
        verify_workers: int | None = None,
        gossip_config: GossipConfig | None = None,
        link_config: LinkConfig | None = None,
        discovery_interval: float = 60.0,
        dial_backoff: float = 1.0,
        mesh_size: int = 6,
        seed: int | None = None,
        network: SimNetwork | None = None,
    ) -> AsyncIterator[Node]:
        """Open the node stored in `data_dir` (created if new) and run it until the block
        exits.

        `listen` is where links are accepted (port 0: any free port; None: accept none, and
        take part by dialing out only); `advertise` is the
        host:port put in invites and DHT records (default: the listening address, with a
        wildcard host replaced by loopback: set it when peers on other machines should
        dial in; DHT records need it to be an IP address).
        `dht_port=None` runs without a DHT; `bootstrap` lists DHT nodes ("host:port").
        `mesh_size` is how many members of a room discovery keeps links to (invite
        addresses are dialed anyway; links from others are always accepted).
        `verify_workers` is the number of signature-verification processes (default one
        per core; 0 verifies in this process).

        `network` runs the node on a simulated network, in virtual time: the host of
        `listen` names its simulated host (a wildcard or loopback host, or `listen=None`,
        gets a fresh one), its DHT socket sits on that same host (`dht_host` is not used),
        signatures are verified in-process and SQLite runs on the trio thread. The DHT's
        contacts are not saved in the data dir there (that would wait on a thread). Without
        `seed`, the node's random choices are seeded from the network's generator.
        """
        data_dir = Path(data_dir)
        host, port = split_host_port(listen) if listen is not None else (None, 0)
        sim_host: str | None = None
        if network is not None:
            if verify_workers:
                raise ValueError("a simulated node verifies in-process: verify_workers=0")
            verify_workers = 0
            sim_host = network.host(host)
            host = sim_host if listen is not None else None
            if seed is None:
                seed = network.rng.getrandbits(64)
        inline = network is not None
        identity = await _run_sync(_prepare_dir, data_dir, inline=inline)
        rng = random.Random(seed) if seed is not None else random.Random(secrets.randbits(64))
        # One node per data dir: two would author the same chain twice (a fork of our own).
        key = data_dir.resolve()
        if key in _OPEN_DIRS:
            raise DataDirError(f"data dir {data_dir} is already open in this process")
        async with (
            _claim(key, data_dir),
            Verifier.open(verify_workers) as verifier,
            open_unwrapping_nursery() as nursery,
        ):
            node = cls(
                data_dir,
                identity,
                verifier,
                nursery,
                rng=rng,
                gossip_config=gossip_config,
                link_config=link_config,
                discovery_interval=discovery_interval,
                dial_backoff=dial_backoff,
                mesh_size=mesh_size,
                network=network,
                sim_host=sim_host,
            )
            try:
                await node._start(host, port, advertise, dht_port, dht_host, bootstrap)
                yield node
            finally:
                node._closing = True
                await node._close_links()
                await node._stop_rooms()
                nursery.cancel_scope.cancel()
                for driver in node._rooms.values():
                    driver.gone = driver.gone or "closed with its node"
                    driver.close_subscribers()

    async def _stop_rooms(self) -> None:
        """Stop every room's task and let it close its history itself: cancelling a
        history's whole block would also stop its store's writer, and the history's last
        save on close would then wait forever (see the report on `crdt.History.open`)."""
        with trio.CancelScope(shield=True), trio.move_on_after(STOP_TIMEOUT):
            for driver in self._rooms.values():
                driver.scope.cancel()
            for driver in self._rooms.values():
                await driver.stopped.wait()

    async def _close_links(self) -> None:
        """Close every link while the tasks serving them still run, so each closing
        handshake is answered instead of timing out; shielded, since closing is cleanup."""
        with trio.CancelScope(shield=True):
            async with trio.open_nursery() as nursery:
                for handle in list(self._links.values()):
                    nursery.start_soon(handle.link.aclose)

    async def _start(
        self,
        host: str | None,
        port: int,
        advertise: str | None,
        dht_port: int | None,
        dht_host: str,
        bootstrap: Sequence[str | Address],
    ) -> None:
        self._nick = await _run_sync(_read_nick, self.data_dir, inline=self._inline)
        if host is not None:
            listener = await self._nursery.start(
                partial(serve_links, config=self._link_config, transport=self._streams),
                self._serve_link,
                host,
                port,
                self.identity,
            )
            if advertise is None:
                advertise_host = "127.0.0.1" if host in ("", "0.0.0.0") else host
                advertise_host = "::1" if advertise_host == "::" else advertise_host
                advertise = join_host_port(advertise_host, listener.port)
        # With no listener (dial-out only) there is nothing to advertise, unless a relay or
        # port forward was given as `advertise`.
        self.address = check_address(advertise) if advertise is not None else ""
        if dht_port is not None:
            addresses = [split_host_port(b) if isinstance(b, str) else b for b in bootstrap]
            self.dht = await self._nursery.start(self._run_dht, dht_host, dht_port, addresses)
        paths, empty = await _run_sync(_room_files, self.data_dir / ROOMS_DIR, inline=self._inline)
        for path in empty:  # opening one would write a schema into it: leave it alone
            self._room_failed(path, None, f"{path} is empty")
        for path in paths:
            await self._nursery.start(self._run_room, path, None, None)

    async def _run_dht(
        self,
        host: str,
        port: int,
        bootstrap: list[Address],
        task_status: trio.TaskStatus[DHTNode] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run the DHT node until the node closes (it saves its contacts then)."""
        key = self.identity.private_key
        if self._network is not None and self._sim_host is not None:
            # Contacts saved inline: in virtual time nothing may wait on a thread.
            socket = self._network.datagram_socket(self._sim_host, port)
            rng = random.Random(self._rng.getrandbits(64))
            node = DHTNode(
                identity=key, transport=socket, rng=rng, data_dir=self.data_dir, inline=True
            )
        else:
            node = DHTNode(host, port, identity=key, data_dir=self.data_dir)
        async with node as dht:
            task_status.started(dht)
            addresses = await self._resolve(bootstrap)
            if addresses:
                answered = await dht.bootstrap(addresses)
                log.debug("DHT bootstrap: %d of %d answered", answered, len(addresses))
            self._dht_ready.set()
            await trio.sleep_forever()

    async def _resolve(self, addresses: list[Address]) -> list[Address]:
        """Bootstrap addresses as the DHT takes them (IP literals): names are looked up,
        and one that cannot be is logged and left out."""
        resolved: list[Address] = []
        for host, port in addresses:
            if canonical_host(host) is not None:
                resolved.append((host, port))
                continue
            if self._inline:  # a simulated network has no resolver
                log.warning("DHT bootstrap %s: not an IP address on a simulated network", host)
                continue
            try:
                infos = await trio.socket.getaddrinfo(host, port, type=trio.socket.SOCK_DGRAM)
            except (OSError, UnicodeError) as exc:
                log.warning("DHT bootstrap %s: cannot look it up: %s", host, exc)
                continue
            for info in infos:
                ip = canonical_host(str(info[4][0]))
                if ip is not None and (ip, port) not in resolved:
                    resolved.append((ip, port))
        return resolved

    async def _run_room(
        self,
        path: Path,
        room_id: bytes | None,
        new_meta: dict[str, bytes] | None,
        task_status: trio.TaskStatus[_RoomDriver | None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Open a room's history (storing `new_meta` in a new one) and run its driver
        until the node closes; the history is closed with this task.

        A room whose file cannot be opened or written stops alone: the node goes on
        serving its other rooms, and the file is left as it is for its owner to look at.
        A new room (`room_id` given) that cannot be created fails its caller instead."""
        driver: _RoomDriver | None = None
        try:
            # Shielded: only `driver.scope` stops a room (see `_stop_rooms`), even when the
            # node's block is cancelled from outside.
            with trio.CancelScope(shield=True):
                async with History.open(
                    path,
                    room=room_id,
                    identity=self.identity,
                    verifier=self._verifier,
                    blocking=INLINE if self._inline else THREADED,
                ) as history:
                    if new_meta is not None:
                        await history.store.set_meta(new_meta)
                    meta = await history.store.meta()
                    if "secret" not in meta:  # created, but the node stopped before storing it
                        log.warning("room file %s holds no secret; skipped", path)
                        task_status.started(None)
                        return
                    name, peers = _room_settings(meta)
                    driver = self._start_room(history, meta["secret"], name, peers)
                    task_status.started(driver)
                    if new_meta is None and not history.replica.version_vector().get(self.peer_id):
                        # Joined before, but the node stopped before our JOIN could be said.
                        driver.join_unsaid = True
                        self._nursery.start_soon(driver.say_joined)
                    with driver.scope:
                        if self._closing:  # opened while the node was closing: stop now
                            driver.scope.cancel()
                        await driver.run()
            if driver is not None and driver.gone == "left":
                await self._shelve(path)
        except* (StoreError, ValueError) as failure:
            if room_id is not None and driver is None:
                raise  # create_room or join: the caller hears why
            self._room_failed(path, driver, str(failure.exceptions[0]))
            if driver is None:
                task_status.started(None)
        finally:
            if driver is not None:
                driver.stopped.set()

    async def _leave(self, driver: _RoomDriver) -> None:
        """Say goodbye in the room (a leave op, pushed to the linked members), stop serving
        it, and move its file to rooms/left/: kept, and taken back if we join again, so our
        chain of ops goes on where it stopped instead of forking."""
        async with self._room_lock:
            if self._rooms.get(driver.room_id) is not driver:
                raise trio.ClosedResourceError(f"room {driver.room_id.hex()[:8]} {driver.gone}")
            if driver.may_author() and not driver.join_unsaid:  # else nothing to take back
                await driver.author(Kind.LEAVE, ())
            driver.gone = "left"
            del self._rooms[driver.room_id]
            self._rooms_changed()
            if self.dht is not None:
                self.dht.stop_announcing(room_dht_key(driver.secret))
            self._announced.discard(driver.room_id)
            await driver.post(_Stop())  # after the leave op has gone to the links
            await driver.stopped.wait()
            driver.close_subscribers()
            # A link cannot drop one of its rooms: the links that carried this one close
            # (their writers send what is queued, the leave op included) and are dialed
            # again without it, so each member's gossip forgets us there, and a later join
            # starts afresh. Leaving is rare; the other rooms lose a few round trips.
            for handle in list(self._links.values()):
                if driver.room_id in handle.rooms:
                    self._nursery.start_soon(handle.close_when_sent)

    async def _shelve(self, path: Path) -> None:
        try:
            await _run_sync(_move_room_file, path, path.parent / LEFT_DIR, inline=self._inline)
        except OSError as exc:
            log.error("left room file %s could not be moved to %s/: %s", path, LEFT_DIR, exc)

    def _room_failed(self, path: Path, driver: _RoomDriver | None, reason: str) -> None:
        """Take a room whose store failed out of the node; its file stays as it is."""
        self._failed_rooms[path.name] = reason
        if driver is None:
            # The store's errors name the file already.
            log.error("room skipped, its file left as it is: %s", reason)
            return
        log.error("room %s stopped: %s", driver.room_id.hex()[:8], reason)
        driver.gone = f"stopped: {reason}"
        if self._rooms.get(driver.room_id) is driver:
            del self._rooms[driver.room_id]
            self._rooms_changed()
        driver.close_subscribers()
        if self.dht is not None:
            self.dht.stop_announcing(room_dht_key(driver.secret))
        self._announced.discard(driver.room_id)

    def _start_room(
        self, history: History, secret: bytes, name: str, peers: list[str]
    ) -> _RoomDriver:
        core = RoomGossip(
            history.replica,
            rng=random.Random(self._rng.getrandbits(64)),
            config=self._gossip_config,
        )
        driver = _RoomDriver(self, history, secret, name, peers, core)
        self._rooms[driver.room_id] = driver
        self._rooms_changed()
        for handle in list(self._links.values()):
            self._nursery.start_soon(self._offer, handle, driver)
        for address in peers:
            self._dial(address)
        if self.dht is not None:
            self._nursery.start_soon(self._discover, driver)
        return driver

    # -- the API -----------------------------------------------------------------------

    @property
    def peer_id(self) -> bytes:
        """This node's 32-byte Ed25519 public key."""
        return self.identity.peer_id

    @property
    def peer_id_text(self) -> str:
        """The peer id as people see it (lowercase base32)."""
        return format_peer_id(self.peer_id)

    @property
    def nick(self) -> str:
        return self._nick

    def rooms(self) -> list[Room]:
        """Every room this node holds."""
        return [Room(driver) for driver in self._rooms.values()]

    def room(self, room_id: bytes) -> Room:
        """The room with this id; KeyError if the node does not hold it."""
        return Room(self._rooms[room_id])

    async def set_nick(self, nick: str) -> None:
        """Set our nickname in every room (and in rooms created or joined later); ValueError
        for one no op could carry (too long, control characters)."""
        self._check_open()
        check_body(Kind.NICK, (nick,))
        self._nick = nick
        await _run_sync(_write_nick, self.data_dir, nick, inline=self._inline)
        for driver in list(self._rooms.values()):
            if driver.may_author():
                await driver.author(Kind.NICK, (nick,))
            elif not driver.join_unsaid:  # (an unsaid JOIN brings the nick along)
                self._nursery.start_soon(self._say_nick, driver, nick)

    async def _say_nick(self, driver: _RoomDriver, nick: str) -> None:
        """Once our own chain in the room is known, unless the room stops first."""
        with contextlib.suppress(trio.ClosedResourceError, StoreError):
            await driver.author(Kind.NICK, (nick,))

    async def create_room(
        self, name: str = "", *, room_id: bytes | None = None, secret: bytes | None = None
    ) -> Room:
        """A new room with a random id and secret, with us as its first member.

        `room_id` and `secret` take the place of random ones when the invite was made first
        (the command line prints it before a running node stores the room); the node must
        hold no other room of that id. Creating again returns the room."""
        self._check_open()
        if room_id is None or secret is None:
            room_id, secret = secrets.token_bytes(32), secrets.token_bytes(32)
        invite = Invite(room_id, secret, name)  # checks them as an invite would
        existing = self._rooms.get(room_id)
        if existing is not None:
            if existing.secret != invite.secret:
                raise InviteError("this node holds that room with another secret")
            return Room(existing)
        driver = await self._add_room(room_id, secret, name, [], new=True)
        return Room(driver)

    async def join(self, invite: str | Invite) -> Room:
        """Join the room an invite names: store it, dial its peers, look for more members
        through the DHT. Raises `InviteError` for an invite that cannot be used."""
        self._check_open()
        if isinstance(invite, str):
            invite = parse_invite(invite)
        driver = self._rooms.get(invite.room) or await self._add_room(
            invite.room, invite.secret, invite.name, invite.peers
        )
        if driver.secret != invite.secret:
            raise InviteError("this node holds that room with another secret")
        await driver.remember_peers(invite.peers)
        for address in invite.peers:
            self._dial(address)
        return Room(driver)

    async def _add_room(
        self, room_id: bytes, secret: bytes, name: str, peers: Iterable[str], *, new: bool = False
    ) -> _RoomDriver:
        """Store a room (`new`: one we create) and say we joined it: at once in a new room,
        else once our own chain in it is known (see `_RoomDriver.author`)."""
        async with self._room_lock:
            existing = self._rooms.get(room_id)
            if existing is not None:
                return existing
            path = self.data_dir / ROOMS_DIR / f"{room_id.hex()}.sqlite3"
            shelved = path.parent / LEFT_DIR / path.name
            # Joining a room we left takes its history back, and with it our own chain.
            await _run_sync(_move_room_file, shelved, path.parent, inline=self._inline)
            addresses = [p for p in dict.fromkeys(peers) if p != self.address]
            meta = {
                "secret": secret,
                "name": name.encode("utf-8"),
                "peers": msgpack.packb(addresses),
            }
            started = await self._nursery.start(self._run_room, path, room_id, meta)
            assert isinstance(started, _RoomDriver)
            driver = started
        driver.new_chain = new
        driver.join_unsaid = True
        if driver.may_author():
            await driver.say_joined()
        else:
            self._nursery.start_soon(driver.say_joined)
        return driver

    def _check_open(self) -> None:
        if self._closing:
            raise trio.ClosedResourceError("the node is closed")

    def dial_states(self) -> dict[str, DialState]:
        """Each address this node keeps dialing, and how that goes."""
        return {address: replace(state) for address, state in self._dial_states.items()}

    def announced(self, room_id: bytes) -> bool:
        """Whether our address is in the DHT under the room's key now."""
        return room_id in self._announced

    @asynccontextmanager
    async def watch_rooms(self) -> AsyncIterator[trio.MemoryReceiveChannel[None]]:
        """A channel that receives None each time the list of rooms changes (a room
        created, joined, left or stopped); changes that come while one is unread merge."""
        send, receive = trio.open_memory_channel[None](1)
        self._room_watchers.add(send)
        try:
            async with receive:
                yield receive
        finally:
            self._room_watchers.discard(send)

    def _rooms_changed(self) -> None:
        for watcher in list(self._room_watchers):
            with contextlib.suppress(trio.WouldBlock, trio.BrokenResourceError):
                watcher.send_nowait(None)

    def status(self) -> NodeStatus:
        """Links, DHT contacts and each room's sync progress, now."""
        return NodeStatus(
            peer_id=self.peer_id,
            address=self.address,
            links=tuple(self._links),
            dht_contacts=len(self.dht.contacts()) if self.dht is not None else None,
            refusals=self._refusals,
            failed_rooms=tuple(sorted(self._failed_rooms.items())),
            dht_counters=tuple(sorted(self.dht.counters().items())) if self.dht else (),
            rooms=tuple(driver.status() for driver in self._rooms.values()),
        )

    # -- links -------------------------------------------------------------------------

    async def _serve_link(self, link: Link, dialed: str | None = None) -> None:
        """Run one link until it closes: offer our rooms, dispatch its events by room."""
        peer = link.peer_id
        if peer == self.peer_id or self._closing:
            return  # we dialed ourselves (our own address came back in an invite)
        existing = self._links.get(peer)
        if existing is not None:
            # Both sides dialed at once: both keep the link the lower peer id dialed.
            def dialer(handle_link: Link) -> bytes:
                return self.peer_id if handle_link.initiator else handle_link.peer_id

            if dialer(existing.link) <= dialer(link):
                return
        handle = _LinkHandle(link)
        self._links[peer] = handle  # before the old one closes: never a moment without
        try:
            if existing is not None:
                await existing.link.aclose()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(handle.writer)
                for driver in list(self._rooms.values()):
                    nursery.start_soon(self._offer, handle, driver)
                await self._read(handle, dialed)
                nursery.cancel_scope.cancel()
        finally:
            if self._links.get(peer) is handle:
                del self._links[peer]
            handle.close()
            for room_id in handle.rooms:
                room = self._rooms.get(room_id)
                if room is not None:
                    try:
                        room.post_nowait(_Down(handle))
                    except trio.WouldBlock:
                        self._nursery.start_soon(room.post, _Down(handle))

    async def _read(self, handle: _LinkHandle, dialed: str | None) -> None:
        async for event in handle.link:
            driver = self._rooms.get(event.room_id)
            if driver is None:
                continue
            if isinstance(event, Message):
                await driver.post(_Received(handle, event.payload))
            elif isinstance(event, RoomAuthorized):
                handle.rooms.add(event.room_id)
                await driver.post(_Up(handle))
                if dialed is not None:
                    await driver.remember_peers([dialed])
            elif isinstance(event, RoomRefused):
                self._refusals += 1
                log.warning(
                    "peer %s does not hold room %s's secret",
                    short_peer_id(handle.peer_id),
                    event.room_id.hex()[:8],
                )
            elif isinstance(event, RoomDenied):
                log.debug(
                    "peer %s does not hold room %s",
                    short_peer_id(handle.peer_id),
                    event.room_id.hex()[:8],
                )

    async def _offer(self, handle: _LinkHandle, driver: _RoomDriver) -> None:
        with contextlib.suppress(LinkError):  # the link closed; its reader cleans up
            await handle.link.join_room(driver.room_id, driver.secret)

    def _penalise(self, driver: _RoomDriver, action: Penalise, handle: _LinkHandle | None) -> None:
        key = (action.peer, action.fault.value)
        if key not in self._penalties_logged:
            self._penalties_logged.add(key)
            log.warning(
                "closing the link to %s: %s in room %s (%s)",
                short_peer_id(action.peer),
                action.fault.value,
                driver.room_id.hex()[:8],
                action.detail,
            )
        if handle is not None:
            self._nursery.start_soon(handle.link.aclose)

    def _dial(self, address: str, peer_id: bytes | None = None) -> None:
        """Keep a link open to `address` (with backoff and a circuit breaker)."""
        if address in self._dialing or address == self.address:
            return
        self._dialing.add(address)
        self._nursery.start_soon(self._dial_loop, address, peer_id)

    async def _dial_loop(self, address: str, peer_id: bytes | None) -> None:
        backoff, breaker = Backoff(base=self._dial_backoff, cap=300.0), Breaker()
        url = _link_url(address)
        state = self._dial_states.setdefault(address, DialState(address, peer_id))
        while not self._closing:
            existing = self._links.get(peer_id) if peer_id is not None else None
            if existing is not None:
                await existing.done.wait()
                continue
            now = trio.current_time()
            if not breaker.allow(now):
                await trio.sleep_until(breaker.reopens_at() or now)
                continue
            try:
                async with connect_link(
                    url, self.identity, config=self._link_config, transport=self._streams
                ) as link:
                    breaker.succeeded()
                    backoff.reset()
                    peer_id = link.peer_id
                    state.peer_id, state.failures, state.breaker_open = peer_id, 0, False
                    state.last_contact_ms = int(time.time() * 1000)
                    if peer_id == self.peer_id:
                        return
                    await self._serve_link(link, address)
            except LinkClosed as exc:
                breaker.failed(now)
                state.failures += 1
                state.breaker_open = not breaker.allow(trio.current_time())
                log.debug("dial %s: %s", address, exc)
            except LinkError as exc:  # a bad address: our caller's mistake, not the peer's
                log.warning("cannot dial %s: %s", address, exc)
                return
            await trio.sleep(backoff.next_delay(self._rng))

    # -- the DHT -----------------------------------------------------------------------

    async def _record_address(self) -> Address | None:
        """The (ip, port) our DHT records name: the advertised address, a host name in it
        looked up each time (a dynamic DNS name may move); None if it cannot be.

        A record names IP literals only, and DHT nodes take it only if its IP is the one
        the announce came from: IPv4 first, as most of the DHT is.
        """
        host, port = split_host_port(self.address)
        literal = canonical_host(host)
        if literal is not None:
            return (literal, port)
        try:
            found = await trio.socket.getaddrinfo(host, port, type=trio.socket.SOCK_STREAM)
        except OSError as exc:
            self._warn_unannounced(f"cannot look up the advertised host {host!r}: {exc}")
            return None
        ips = [ip for info in found if (ip := canonical_host(str(info[4][0]))) is not None]
        ips.sort(key=lambda ip: ":" in ip)  # IPv4 first; stable otherwise
        if not ips:
            self._warn_unannounced(f"the advertised host {host!r} has no IP address")
            return None
        return (ips[0], port)

    def _warn_unannounced(self, why: str) -> None:
        # Once per reason: discovery retries every few seconds.
        if why not in self._unannounced:
            self._unannounced.add(why)
            log.warning("not announcing this node in the DHT: %s", why)

    async def _discover(self, driver: _RoomDriver) -> None:
        """Announce ourselves under the room's DHT key and dial whoever else is there."""
        dht = self.dht
        assert dht is not None
        await self._dht_ready.wait()
        key = room_dht_key(driver.secret)
        announced_until = 0.0
        while self._rooms.get(driver.room_id) is driver:  # until the room stops
            # The DHT's wall clock, which moves with trio's: in virtual time too, records
            # are announced again as they near expiry.
            now = dht.protocol.wall(trio.current_time())
            if self.address and now > announced_until - RECORD_TTL / 2:
                # A failed announce must not keep us from finding the others below.
                where = await self._record_address()
                try:
                    if where is not None:
                        expires = int(now) + RECORD_TTL
                        record = PeerRecord.create(self.identity.private_key, key, [where], expires)
                        await dht.announce(key, record)
                        announced_until = expires
                        self._announced.add(driver.room_id)
                except DHTError as exc:
                    log.debug("DHT announce for room %s: %s", driver.room_id.hex()[:8], exc)
            try:
                found = [r for r in await dht.get_peers(key) if r.peer_id != self.peer_id]
                self._rng.shuffle(found)  # a random mesh, not the same few for everyone
                for record in found:
                    addresses = [join_host_port(ip, p) for ip, p in record.addresses]
                    # Only holders of the secret know the key: these are members' addresses.
                    await driver.remember_peers(addresses)
                    if record.peer_id in self._links:
                        continue
                    # Keep a handful of links per room: dial until the mesh is full (links
                    # peers dial to us are always accepted, and count towards it).
                    if len(driver.dialed | set(driver.links)) >= self._mesh_size:
                        continue
                    driver.dialed.add(record.peer_id)
                    for address in addresses:
                        self._dial(address, record.peer_id)
            except DHTError as exc:
                log.debug("DHT discovery for room %s: %s", driver.room_id.hex()[:8], exc)
            await trio.sleep(self._discovery_interval)


# Data dirs a Node of this process has open.
_OPEN_DIRS: set[Path] = set()


@asynccontextmanager
async def _claim(key: Path, data_dir: Path) -> AsyncIterator[None]:
    """Hold the data dir's lock (LockHeld if another process does) while a node is open."""
    with hold_lock(data_dir):
        _OPEN_DIRS.add(key)
        try:
            yield
        finally:
            _OPEN_DIRS.discard(key)


def _room_settings(meta: dict[str, bytes]) -> tuple[str, list[str]]:
    """The name and known peer addresses kept in a room file's meta; ValueError if damaged."""
    try:
        stored_peers = msgpack.unpackb(meta.get("peers", b"\x90"))
    except Exception as exc:  # msgpack raises several types for damaged input
        raise ValueError(f"damaged peer list in the room file: {exc}") from None
    if not isinstance(stored_peers, list):
        raise ValueError("damaged peer list in the room file")
    # Kept by an older version, an address today's stricter rules refuse is dropped.
    peers = [p for p in stored_peers if isinstance(p, str) and _usable_address(p)]
    return meta.get("name", b"").decode("utf-8", "replace"), peers


def _room_files(rooms: Path) -> tuple[list[Path], list[Path]]:
    """The room files in `rooms`, sorted: those with content, and the empty ones."""
    paths = sorted(rooms.glob("*.sqlite3"))
    sizes = [path.stat().st_size for path in paths]
    return [p for p, n in zip(paths, sizes, strict=True) if n], [
        p for p, n in zip(paths, sizes, strict=True) if not n
    ]


def _usable_address(address: str) -> bool:
    try:
        check_address(address)
    except InviteError:
        return False
    return True


def _move_room_file(path: Path, directory: Path) -> None:
    """Move a room's SQLite file (and any WAL files beside it) into `directory`."""
    if not path.exists():
        return
    directory.mkdir(exist_ok=True)
    for suffix in ("-wal", "-shm", ""):  # the main file last: it is what marks a room
        source = path.with_name(path.name + suffix)
        if source.exists():
            source.replace(directory / source.name)


def _prepare_dir(data_dir: Path) -> Identity:
    (data_dir / ROOMS_DIR).mkdir(parents=True, exist_ok=True)
    return Identity.load_or_create(data_dir / IDENTITY_FILE)


def _read_nick(data_dir: Path) -> str:
    """The saved nickname; a damaged settings file or an unusable nick is logged and
    ignored (the node runs without a nick rather than not at all)."""
    path = data_dir / SETTINGS_FILE
    try:
        if not path.exists():
            return ""
        nick = json.loads(path.read_text("utf-8")).get("nick", "")
        check_body(Kind.NICK, (nick,))
    except (OSError, ValueError, AttributeError) as exc:  # ValueError: JSON or the nick
        log.warning("ignoring the nickname in %s: %s", path, exc)
        return ""
    return str(nick)


def _write_nick(data_dir: Path, nick: str) -> None:
    path = data_dir / SETTINGS_FILE
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps({"nick": nick}), "utf-8")
    temporary.replace(path)
