"""The Node: one identity, its rooms, its links and its DHT node, run on trio.

`Node.open(data_dir, ...)` loads (or creates) the identity and every stored room, listens
for links, dials the peers it knows and finds more through the DHT. The parts:

- `node._room_driver`: one task per room runs its sans-IO gossip core;
- `node._peers`: the links, the dials and the discovery rounds, as the pure peering core
  (`node._peering`) decides them;
- `node._discovery`: announcing and looking up room members in the DHT;
- `node._datadir`: every path of the data dir, and the file moves that change it;
- `node._env`: what the node runs on (streams, datagrams, blocking work, clock, rng),
  handed in: the real world's, or a `SimNetwork`'s for virtual time.

This module is the facade: it opens and closes the parts and keeps the room registry. It
must never decide what to gossip, whom to dial, what to accept or what an op means.
"""

from __future__ import annotations

import contextlib
import logging
import random
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Final

import msgpack
import trio

from crdt import History, Identity, Kind, StoreError, Verifier, check_body, format_peer_id
from dht import Address, DHTNode
from rumor_runtime import open_unwrapping_nursery

from ._addressbook import AddressRecord, decode_records
from ._addresses import join_host_port, split_host_port
from ._datadir import DataDir
from ._discovery import Discovery, resolve_bootstrap, room_dht_key
from ._env import Environment, real_environment
from ._invite import (
    MAX_DHT_CONTACTS,
    Invite,
    InviteError,
    check_address,
    check_dht_contact,
    check_room_name,
    parse_invite,
    reachability_problem,
)
from ._lock import DataDirError, hold_lock
from ._peering import Peering, PeeringConfig
from ._peers import Peers
from ._room import Room
from ._room_driver import RoomDriver, Stop
from ._status import DialState, NodeStatus
from .gossip import GossipConfig, Penalise, RoomGossip
from .link import Link, LinkConfig, LinkListener, serve_links
from .sim import SimNetwork

__all__ = ["Node", "room_dht_key"]

log = logging.getLogger("node")

STOP_TIMEOUT: Final = 10.0  # seconds the rooms may take to save and close on shutdown
FLUSH_TIMEOUT: Final = 2.0  # seconds what we wrote last may take to reach the links


class Node:
    """A rumor node. Open with ``async with Node.open(data_dir) as node``."""

    def __init__(
        self,
        data_dir: Path,
        identity: Identity,
        verifier: Verifier,
        nursery: trio.Nursery,
        env: Environment,
        *,
        gossip_config: GossipConfig | None,
        link_config: LinkConfig | None,
        peering_config: PeeringConfig,
    ) -> None:
        self.data_dir = data_dir
        self.identity = identity
        self.dht: DHTNode | None = None
        self._layout = DataDir(data_dir)
        self._verifier = verifier
        self._nursery = nursery
        self._env = env
        self._gossip_config = gossip_config
        self._link_config = link_config
        self._rooms: dict[bytes, RoomDriver] = {}
        self._failed_rooms: dict[str, str] = {}  # room file name -> why it stopped
        self._room_lock = trio.Lock()
        self._room_watchers: set[trio.MemorySendChannel[None]] = set()
        self._nick = ""
        self._listener: LinkListener | None = None
        self._peering = Peering(
            identity.peer_id,
            rng=random.Random(env.rng.getrandbits(64)),
            config=peering_config,
        )
        self._peers = Peers(
            identity, env, self._peering, self._rooms, nursery, link_config=link_config
        )

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
        environment: Environment | None = None,
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
        signatures are verified in-process and SQLite runs on the trio thread. Without
        `seed`, the node's random choices are seeded from the network's generator.
        `environment` hands the node a whole `Environment` instead (see `node._env`).
        """
        data_dir = Path(data_dir)
        host, port = split_host_port(listen) if listen is not None else (None, 0)
        if network is not None:
            sim_host = network.host(host)
            host = sim_host if listen is not None else None
            environment = network.environment(sim_host, seed)
        env = environment if environment is not None else real_environment(seed)
        if not env.processes:
            if verify_workers:
                raise ValueError("a simulated node verifies in-process: verify_workers=0")
            verify_workers = 0
        if env.host is not None:
            dht_host = env.host
        layout = DataDir(data_dir)
        identity = await env.blocking(layout.prepare, env.unpredictable().randbytes(32))
        # One node per data dir: two would author the same chain twice (a fork of our own).
        key = data_dir.resolve()
        if key in _OPEN_DIRS:
            raise DataDirError(f"data dir {data_dir} is already open in this process")
        peering_config = PeeringConfig(
            mesh_size=mesh_size, discovery_interval=discovery_interval, dial_backoff=dial_backoff
        )
        async with (
            _claim(key, data_dir),
            Verifier.open(verify_workers, check=env.check_signature) as verifier,
            open_unwrapping_nursery() as nursery,
        ):
            node = cls(
                data_dir,
                identity,
                verifier,
                nursery,
                env,
                gossip_config=gossip_config,
                link_config=link_config,
                peering_config=peering_config,
            )
            try:
                await node._start(host, port, advertise, dht_port, dht_host, bootstrap)
                yield node
            finally:
                await node._flush()
                await node._peers.close_all()
                await node._stop_rooms()
                nursery.cancel_scope.cancel()
                for driver in list(node._rooms.values()):
                    driver.gone = driver.gone or "closed with its node"
                    driver.close_subscribers()

    async def _flush(self) -> None:
        """On closing, hand what we wrote last to the links before they close: each room
        task handles what it was given, then each link writes what is queued (bounded:
        a peer that does not read is not waited for)."""
        self._peers.closing = True  # no new links from here on
        for driver in self._rooms.values():  # and no new writes: they could not go out
            driver.gone = driver.gone or "closed with its node"
        with trio.CancelScope(shield=True), trio.move_on_after(FLUSH_TIMEOUT):
            async with trio.open_nursery() as nursery:
                for driver in list(self._rooms.values()):
                    nursery.start_soon(driver.drain)
            await self._peers.flush_all()

    async def _stop_rooms(self) -> None:
        """Stop every room's task and let it close its history itself: cancelling a
        history's whole block would also stop its store's writer, and the history's last
        save on close would then wait forever (see the report on `crdt.History.open`)."""
        drivers = list(self._rooms.values())  # a room failing as it stops leaves the map
        with trio.CancelScope(shield=True), trio.move_on_after(STOP_TIMEOUT):
            for driver in drivers:
                driver.scope.cancel()
            for driver in drivers:
                await driver.stopped.wait()

    async def _start(
        self,
        host: str | None,
        port: int,
        advertise: str | None,
        dht_port: int | None,
        dht_host: str,
        bootstrap: Sequence[str | Address],
    ) -> None:
        self._nick = await self._env.blocking(self._layout.read_nick)
        if host is not None:
            listener = await self._nursery.start(
                partial(serve_links, config=self._link_config, transport=self._env.streams),
                self._peers.serve,
                host,
                port,
                self.identity,
            )
            self._listener = listener
            if advertise is None:
                advertise_host = "127.0.0.1" if host in ("", "0.0.0.0") else host
                advertise_host = "::1" if advertise_host == "::" else advertise_host
                advertise = join_host_port(advertise_host, listener.port)
        # With no listener (dial-out only) there is nothing to advertise, unless a relay or
        # port forward was given as `advertise`.
        address = check_address(advertise) if advertise is not None else ""
        self._peers.address = self._peering.own_address = address
        self._nursery.start_soon(self._peers.run_timers)
        self._nursery.start_soon(self._peers.run_records)
        if dht_port is not None:
            addresses = [split_host_port(b) if isinstance(b, str) else b for b in bootstrap]
            self.dht = await self._nursery.start(self._run_dht, dht_host, dht_port, addresses)
        paths, empty = await self._env.blocking(self._layout.room_files)
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
        env = self._env
        node = DHTNode(
            identity=self.identity.private_key,
            transport=await env.open_datagrams(host, port),
            rng=env.unpredictable(),
            data_dir=self.data_dir,
            blocking=env.blocking,
            wall_clock=lambda: env.wall_clock_ms() / 1000,
            check_signature=env.check_signature,
        )
        async with node as dht:
            task_status.started(dht)
            addresses = await resolve_bootstrap(bootstrap, env.resolve)
            if addresses:
                answered = await dht.bootstrap(addresses)
                log.debug("DHT bootstrap: %d of %d answered", answered, len(addresses))
            self._peers.dht_ready(Discovery(dht, self.identity, env.resolve))
            await trio.sleep_forever()

    # -- rooms -------------------------------------------------------------------------

    async def _run_room(
        self,
        path: Path,
        room_id: bytes | None,
        new_meta: dict[str, bytes] | None,
        task_status: trio.TaskStatus[RoomDriver | None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Open a room's history (storing `new_meta` in a new one) and run its driver
        until the node closes; the history is closed with this task.

        A room whose file cannot be opened or written stops alone: the node goes on
        serving its other rooms, and the file is left as it is for its owner to look at.
        A new room (`room_id` given) that cannot be created fails its caller instead."""
        driver: RoomDriver | None = None
        try:
            # Shielded: only `driver.scope` stops a room (see `_stop_rooms`), even when the
            # node's block is cancelled from outside.
            with trio.CancelScope(shield=True):
                async with History.open(
                    path,
                    room=room_id,
                    identity=self.identity,
                    verifier=self._verifier,
                    wall_clock=self._env.wall_clock_ms,
                    blocking=self._env.blocking,
                ) as history:
                    if new_meta is not None:
                        await history.store.set_meta(new_meta)
                    meta = await history.store.meta()
                    if "secret" not in meta:  # created, but the node stopped before storing it
                        log.warning("room file %s holds no secret; skipped", path)
                        task_status.started(None)
                        return
                    name, peers = _room_settings(meta)
                    records = decode_records(
                        meta.get("addresses", b"\x90"),
                        history.room,
                        self._env.wall_clock_ms() / 1000,
                        self._env.check_signature,
                    )
                    driver = self._start_room(history, meta["secret"], name, peers, records)
                    task_status.started(driver)
                    if new_meta is None and not history.replica.version_vector().get(self.peer_id):
                        # Joined before, but the node stopped before our JOIN could be said.
                        driver.join_unsaid = True
                        self._nursery.start_soon(driver.say_joined)
                    with driver.scope:
                        if self._peers.closing:  # opened while the node was closing: stop
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

    def _start_room(
        self,
        history: History,
        secret: bytes,
        name: str,
        peers: list[str],
        records: list[AddressRecord],
    ) -> RoomDriver:
        core = RoomGossip(
            history.replica,
            rng=random.Random(self._env.rng.getrandbits(64)),
            config=self._gossip_config,
            peer_id=self.peer_id,
            decode=self._env.decode_op,
        )
        settles_at = self._peering.settles_at(trio.current_time())
        driver = RoomDriver(self, history, secret, name, peers, core, settles_at=settles_at)
        now = self._env.wall_clock_ms() / 1000
        for record in records:
            driver.book.add(record, now)
        self._rooms[driver.room_id] = driver
        self._rooms_changed()
        self._peers.room_started(driver)
        return driver

    async def leave(self, room: RoomDriver) -> None:
        """Say goodbye in the room (a leave op, pushed to the linked members), stop serving
        it, and move its file to rooms/left/: kept, and taken back if we join again, so our
        chain of ops goes on where it stopped instead of forking. (`Room.leave`.)"""
        async with self._room_lock:
            if self._rooms.get(room.room_id) is not room:
                raise trio.ClosedResourceError(f"room {room.room_id.hex()[:8]} {room.gone}")
            if room.may_author() and not room.join_unsaid:  # else nothing to take back
                await room.author(Kind.LEAVE, ())
            room.gone = "left"
            del self._rooms[room.room_id]
            self._rooms_changed()
            self._peers.room_stopped(room)
            await room.post(Stop())  # after the leave op has gone to the links
            await room.stopped.wait()
            room.close_subscribers()
            # Leaving is rare; the other rooms on those links lose a few round trips.
            self._peers.close_links_of(room.room_id)

    async def _shelve(self, path: Path) -> None:
        try:
            await self._env.blocking(self._layout.shelve, path)
        except OSError as exc:
            log.error("left room file %s could not be moved to %s/: %s", path, "left", exc)

    def _room_failed(self, path: Path, driver: RoomDriver | None, reason: str) -> None:
        """Take a room whose store failed out of the node; its file stays as it is."""
        self._failed_rooms[path.name] = reason
        if driver is None:
            # The store's errors name the file already.
            log.error("room skipped, its file left as it is: %s", reason)
            self._rooms_changed()
            return
        log.error("room %s stopped: %s", driver.room_id.hex()[:8], reason)
        driver.gone = f"stopped: {reason}"
        if self._rooms.get(driver.room_id) is driver:
            del self._rooms[driver.room_id]
        self._rooms_changed()
        driver.close_subscribers()
        self._peers.room_stopped(driver)

    def penalise(self, room: RoomDriver, action: Penalise, link: Link | None) -> None:
        """Cut a peer off that misbehaved in a room (`RoomHost`)."""
        self._peers.penalise(room, action, link)

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
    def address(self) -> str:
        """The host:port peers dial, put in invites; empty when the node only dials out."""
        return self._peers.address

    @property
    def listen_address(self) -> str:
        """The host:port links are accepted on, as bound (a wildcard host stays one, unlike
        `address`); empty when the node only dials out."""
        if self._listener is None:
            return ""
        return join_host_port(self._listener.host, self._listener.port)

    @property
    def nick(self) -> str:
        return self._nick

    def reachability_problem(self) -> str | None:
        """One line saying why other machines cannot dial the address this node puts in
        invites (none: it accepts no links; a loopback one), or None. For a warning."""
        return reachability_problem(None, self.address or None)

    def wall_clock(self) -> float:
        """Wall-clock seconds, as the node's environment keeps them (`RoomHost`)."""
        return self._env.wall_clock_ms() / 1000

    def dht_contacts(self) -> list[str]:
        """A few DHT nodes an invitee can bootstrap from: ours, then some of our routing
        table's ("ip:port"); none without a DHT (`RoomHost`, for invites)."""
        dht = self.dht
        if dht is None:
            return []
        found: list[tuple[str, int]] = []
        host, port = dht.address
        if host in ("0.0.0.0", "::") and self.address:  # bound everywhere: say where
            host = split_host_port(self.address)[0]
        found.append((host, port))
        found += [(c.host, c.port) for c in dht.contacts()]
        contacts: list[str] = []
        for host, port in found:
            text = join_host_port(host, port)
            with contextlib.suppress(InviteError):  # a wildcard or a name: not for invites
                check_dht_contact(text)
                if host not in ("0.0.0.0", "::") and text not in contacts:
                    contacts.append(text)
        return contacts[:MAX_DHT_CONTACTS]

    def rooms(self) -> list[Room]:
        """Every room this node holds."""
        return [Room(driver) for driver in self._rooms.values()]

    def room(self, room_id: bytes) -> Room:
        """The room with this id; KeyError if the node does not hold it."""
        return Room(self._rooms[room_id])

    async def set_nick(self, nick: str) -> None:
        """Set our nickname in every room (and in rooms created or joined later); ValueError
        for an empty or blank one, or one no op could carry (too long, control characters)."""
        self._check_open()
        if not isinstance(nick, str) or not nick.strip():
            raise ValueError("a nickname cannot be empty or blank")
        check_body(Kind.NICK, (nick,))
        self._nick = nick
        await self._env.blocking(self._layout.write_nick, nick)
        for driver in list(self._rooms.values()):
            if driver.may_author():
                await driver.author(Kind.NICK, (nick,))
            elif not driver.join_unsaid:  # (an unsaid JOIN brings the nick along)
                self._nursery.start_soon(driver.say_nick, nick)

    async def create_room(
        self, name: str, *, room_id: bytes | None = None, secret: bytes | None = None
    ) -> Room:
        """A new room with a random id and secret, with us as its first member; `InviteError`
        (a ValueError) for an empty or blank name, or one an invite cannot carry.

        `room_id` and `secret` take the place of random ones when the invite was made first
        (the command line prints it before a running node stores the room); the node must
        hold no other room of that id. Creating again returns the room."""
        self._check_open()
        check_room_name(name)
        if room_id is None or secret is None:
            draw = self._env.unpredictable()
            room_id, secret = draw.randbytes(32), draw.randbytes(32)
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
        self._peers.want(list(invite.peers))
        if invite.dht and self.dht is not None:
            # The inviter's DHT contacts: the way in for a node with no bootstrap of its own.
            contacts = [split_host_port(c) for c in invite.dht]
            self._nursery.start_soon(self._bootstrap_from_invite, self.dht, contacts)
        return Room(driver)

    async def _bootstrap_from_invite(self, dht: DHTNode, contacts: list[Address]) -> None:
        with contextlib.suppress(trio.ClosedResourceError):  # the node closed first
            answered = await dht.bootstrap(contacts)
            log.info("DHT: %d of %d contacts from the invite answered", answered, len(contacts))

    async def _add_room(
        self, room_id: bytes, secret: bytes, name: str, peers: Iterable[str], *, new: bool = False
    ) -> RoomDriver:
        """Store a room (`new`: one we create) and say we joined it: at once in a new room,
        else once our own chain in it is known (see `RoomDriver.author`)."""
        async with self._room_lock:
            existing = self._rooms.get(room_id)
            if existing is not None:
                return existing
            # Joining a room we left takes its history back, and with it our own chain.
            await self._env.blocking(self._layout.unshelve, room_id)
            addresses = [p for p in dict.fromkeys(peers) if p != self.address]
            meta = {
                "secret": secret,
                "name": name.encode("utf-8"),
                "peers": msgpack.packb(addresses),
            }
            path = self._layout.room_file(room_id)
            started = await self._nursery.start(self._run_room, path, room_id, meta)
            assert isinstance(started, RoomDriver)
            driver = started
        driver.new_chain = new
        driver.join_unsaid = True
        if driver.may_author():
            await driver.say_joined()
        else:
            self._nursery.start_soon(driver.say_joined)
        return driver

    def _check_open(self) -> None:
        if self._peers.closing:
            raise trio.ClosedResourceError("the node is closed")

    def status(self) -> NodeStatus:
        """Links, DHT contacts and each room's sync progress, now."""
        gate = self._listener.gate if self._listener is not None else None
        return NodeStatus(
            peer_id=self.peer_id,
            address=self.address,
            links=tuple(self._peers.links),
            dht_contacts=len(self.dht.contacts()) if self.dht is not None else None,
            refusals=self._peers.refusals,
            failed_rooms=tuple(sorted({**self._failed_rooms, **self._failing_stores()}.items())),
            dht_counters=tuple(sorted(self.dht.counters().items())) if self.dht else (),
            dht_bootstrap_failed=self.dht.bootstrap_failed if self.dht else False,
            records_dropped=tuple(sorted(self._peers.record_drops.items())),
            handshakes_refused=gate.refused if gate is not None else 0,
            handshakes_pushed_out=gate.evicted if gate is not None else 0,
            rooms=tuple(driver.status() for driver in self._rooms.values()),
        )

    def _failing_stores(self) -> dict[str, str]:
        """Rooms still served whose file stopped taking writes (a background check found
        it damaged, say): listed with the failed rooms, so status and metrics show them."""
        return {
            driver.history.store.path.name: driver.history.store.failed
            for driver in self._rooms.values()
            if driver.history.store.failed is not None
        }

    def dial_states(self) -> dict[str, DialState]:
        """Each address this node keeps dialing, and how that goes."""
        return self._peers.dial_states()

    def announced(self, room_id: bytes) -> bool:
        """Whether our address is in the DHT under the room's key now."""
        return room_id in self._peers.announced

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


def _usable_address(address: str) -> bool:
    try:
        check_address(address)
    except InviteError:
        return False
    return True
