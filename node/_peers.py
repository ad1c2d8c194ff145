"""The peering driver: a node's links, its dials and its discovery rounds, on trio.

`Peers` accepts links (`serve`), dials and announces as the pure `node._peering.Peering`
core says, reports back what happened, and hands each link's events to the room they
belong to. One task per link reads it; sending is the link's own (`Link.send_nowait`).

It also carries each room's address records (`node._addressbook`) on the room's record
channel: ours, signed again before they expire, and the verified records it holds, as
the address book's rules say (`greeting`, `spreads`, `pass_on_to`); the members' signed
addresses go to the core, which dials them expecting their signer.

This module is a driver: whom to dial, when to retry, which of two links to keep and how
many members to link to are the core's decisions, never taken here.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

import trio

from crdt import Identity

from ._addressbook import (
    RECORD_TTL,
    AddressRecord,
    RecordError,
    RecordFault,
    decode_record,
    pass_on_to,
    record_channel,
    sign_record,
)
from ._addresses import short_peer_id
from ._discovery import Discovery
from ._env import Environment
from ._peering import Announce, Dial, Lookup, Peering, PeeringAction, keep_existing
from ._room_driver import Down, Received, RoomDriver, Up
from ._status import DialState
from .gossip import Penalise
from .link import (
    Link,
    LinkClosed,
    LinkConfig,
    LinkError,
    LinkEvent,
    Message,
    RoomAuthorized,
    RoomDenied,
    RoomRefused,
    connect_link,
)

__all__ = ["Peers"]

log = logging.getLogger("node")

LEAVE_FLUSH_TIMEOUT: Final = 5.0  # seconds a leave op may take to be written to the links
RECORD_CHECK: Final = RECORD_TTL / 8  # seconds between looks at whether ours need signing
MAX_BAD_RECORDS: Final = 16  # bad address records one link may send before it is closed


@dataclass(slots=True)
class _Linked:
    """A link that is up, and the rooms whose cores were told so."""

    link: Link
    rooms: set[bytes] = field(default_factory=set)
    channels: set[bytes] = field(default_factory=set)  # rooms whose record channel is up
    busy: bool = False  # the reader is handling an event (see `Peers._take`)


class Peers:
    """Every link of one node, and the dials and lookups that make them."""

    def __init__(
        self,
        identity: Identity,
        env: Environment,
        peering: Peering,
        rooms: Mapping[bytes, RoomDriver],
        nursery: trio.Nursery,
        *,
        link_config: LinkConfig | None,
    ) -> None:
        self.identity = identity
        self.env = env
        self.peering = peering
        self.rooms = rooms
        self.links: dict[bytes, _Linked] = {}
        self.discovery: Discovery | None = None  # set once the DHT runs
        self.address = ""  # ours, announced in the DHT; set once listening
        self.announced: set[bytes] = set()  # rooms whose DHT record of ours is current
        self.refusals = 0  # room proofs peers got wrong
        self.closing = False  # no new links once set
        self._nursery = nursery
        self._link_config = link_config
        self._last_contact: dict[str, int] = {}  # address -> wall-clock ms a link came up
        self._penalties_logged: set[tuple[bytes, str]] = set()
        self._records_logged: set[tuple[bytes, str]] = set()
        self._bad_records: dict[bytes, int] = {}  # peer -> bad records it sent
        self._channels: dict[bytes, bytes] = {}  # record channel -> room id
        self.record_drops: dict[str, int] = {}  # address records refused, by reason
        self._wake = trio.Event()

    @property
    def peer_id(self) -> bytes:
        return self.identity.peer_id

    # -- the core's clock and actions ---------------------------------------------------

    async def run_timers(self) -> None:
        """Call the core when its timer is due, until the node closes."""
        while True:
            deadline = self.peering.next_timer()
            with trio.move_on_at(math.inf if deadline is None else deadline):
                await self._wake.wait()
                self._wake = trio.Event()
                continue
            self.perform(self.peering.handle_timer(trio.current_time()))

    def perform(self, actions: list[PeeringAction]) -> None:
        # An Announce comes with the Lookup of the same room: one round does both, in order.
        announces = {a.room_id: a for a in actions if isinstance(a, Announce)}
        for action in actions:
            if isinstance(action, Dial):
                self._nursery.start_soon(self._dial, action.address, action.peer_id)
            elif isinstance(action, Lookup):
                driver = self.rooms.get(action.room_id)
                if driver is not None:
                    announce = announces.get(action.room_id)
                    self._nursery.start_soon(self._discovery_round, driver, announce)
        self._wake.set()  # the core's next timer may have moved

    def want(self, addresses: list[str], peer_id: bytes | None = None) -> None:
        self.perform(self.peering.want(addresses, trio.current_time(), peer_id))

    def room_started(self, driver: RoomDriver) -> None:
        self._channels[record_channel(driver.room_id)] = driver.room_id
        self._sign_own(driver)
        for linked in list(self.links.values()):
            self._nursery.start_soon(self._offer, linked, driver)
        # Discovery rounds start once the DHT is ready (never without one).
        now = trio.current_time()
        self.perform(self.peering.room_started(driver.room_id, now, announce=bool(self.address)))
        self.perform(self.peering.remembered(driver.room_id, driver.peers, now))
        self._dial_members(driver)  # as the records kept from the last run say

    def room_stopped(self, driver: RoomDriver) -> None:
        self._channels.pop(record_channel(driver.room_id), None)
        self.peering.room_stopped(driver.room_id)
        self.announced.discard(driver.room_id)
        if self.discovery is not None:
            self.discovery.stop_announcing(driver.secret)

    def dht_ready(self, discovery: Discovery) -> None:
        self.discovery = discovery
        self.perform(self.peering.dht_ready(trio.current_time()))

    # -- dialing ------------------------------------------------------------------------

    async def _dial(self, address: str, expected: bytes | None = None) -> None:
        if self.closing:
            return
        try:
            # With `expected` (the address came signed), the handshake must prove that
            # peer: whoever else answers there is a failed dial, never a link.
            async with connect_link(
                f"ws://{address}/",
                self.identity,
                config=self._link_config,
                transport=self.env.streams,
                expected_peer_id=expected,
            ) as link:
                self._last_contact[address] = self.env.wall_clock_ms()
                self.perform(self.peering.dialed(address, link.peer_id, trio.current_time()))
                if link.peer_id != self.peer_id:
                    await self.serve(link, address)
        except LinkClosed as exc:
            log.debug("dial %s: %s", address, exc)
            self.perform(self.peering.dial_failed(address, trio.current_time()))
            return
        except LinkError as exc:  # a bad address: our caller's mistake, not the peer's
            log.warning("cannot dial %s: %s", address, exc)
            self.perform(self.peering.dial_failed(address, trio.current_time(), for_good=True))
            return
        if not self.closing:
            self.perform(self.peering.link_ended(address, trio.current_time()))

    def dial_states(self) -> dict[str, DialState]:
        states: dict[str, DialState] = {}
        for address in self.peering.dialing():
            known = self.peering.address_state(address)
            assert known is not None
            peer_id, failures, breaker_open = known
            states[address] = DialState(
                address, peer_id, failures, breaker_open, self._last_contact.get(address)
            )
        return states

    # -- discovery ----------------------------------------------------------------------

    async def _discovery_round(self, driver: RoomDriver, announce: Announce | None) -> None:
        discovery = self.discovery
        assert discovery is not None
        if announce is not None and await discovery.announce(
            driver.secret, self.address, announce.ttl
        ):
            self.announced.add(driver.room_id)
            self.peering.announced(driver.room_id, trio.current_time(), announce.ttl)
        found = await discovery.lookup(driver.secret)
        # One call, so the room file is written once a round, not once a member.
        await driver.remember_peers(list(dict.fromkeys(a for _, ads in found for a in ads)))
        if self.rooms.get(driver.room_id) is driver:
            now = trio.current_time()
            self.perform(self.peering.found(driver.room_id, found, driver.links, now))

    # -- links --------------------------------------------------------------------------

    async def serve(self, link: Link, dialed: str | None = None) -> None:
        """Run one link until it closes: offer our rooms, dispatch its events by room."""
        peer = link.peer_id
        if peer == self.peer_id or self.closing:
            return  # we dialed ourselves (our own address came back in an invite)
        existing = self.links.get(peer)
        if existing is not None:
            old = (existing.link.initiator, peer)
            if keep_existing(self.peer_id, old, (link.initiator, peer)):
                return
        linked = _Linked(link)
        self.links[peer] = linked  # before the old one closes: never a moment without
        self.peering.link_up(peer, trio.current_time())
        try:
            if existing is not None:
                await existing.link.aclose()
            async with trio.open_nursery() as nursery:
                for driver in list(self.rooms.values()):
                    nursery.start_soon(self._offer, linked, driver)
                await self._read(linked, dialed)
                nursery.cancel_scope.cancel()
        finally:
            if self.links.get(peer) is linked:
                del self.links[peer]
                self.perform(self.peering.link_down(peer, trio.current_time()))
            for room_id in linked.rooms:
                room = self.rooms.get(room_id)
                if room is not None:
                    try:
                        room.post_nowait(Down(link))
                    except trio.WouldBlock:
                        self._nursery.start_soon(room.post, Down(link))
                    if not self.closing:  # a member gone: link to another one
                        self._dial_members(room)

    async def _read(self, linked: _Linked, dialed: str | None) -> None:
        link = linked.link
        # A room's messages go to its queue from the link's reader task (`_take`) when
        # they can: the hop through this task cost a task step a message.
        link.deliver_to(lambda message: self._take(linked, message))
        try:
            async for event in link:
                linked.busy = True  # `_take` waits for us: events stay in order
                try:
                    await self._route(linked, event, dialed)
                finally:
                    linked.busy = False
        finally:
            link.deliver_to(None)

    def _take(self, linked: _Linked, message: Message) -> bool:
        """A room's message, offered by its link's reader task: posted to the room's queue
        if that takes no wait, as `_route` would; False leaves it to `_route` (a record
        channel's message, an earlier event still being handled, a full queue)."""
        if linked.busy or message.room_id in self._channels:
            return False
        driver = self.rooms.get(message.room_id)
        if driver is None:
            return True  # dropped, as `_route` drops it
        try:
            driver.post_nowait(Received(linked.link, message.payload))
        except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
            return False
        return True

    async def _route(self, linked: _Linked, event: LinkEvent, dialed: str | None) -> None:
        link = linked.link
        channel_of = self._channels.get(event.room_id)
        if channel_of is not None:
            channel_room = self.rooms.get(channel_of)
            if channel_room is not None:
                await self._channel_event(linked, channel_room, event)
            return
        driver = self.rooms.get(event.room_id)
        if driver is None:
            return
        if isinstance(event, Message):
            await driver.post(Received(link, event.payload))
        elif isinstance(event, RoomAuthorized):
            linked.rooms.add(event.room_id)
            await driver.post(Up(link))
            if dialed is not None:
                await driver.remember_peers([dialed])
        elif isinstance(event, RoomRefused):
            self.refusals += 1
            log.warning(
                "peer %s does not hold room %s's secret",
                short_peer_id(link.peer_id),
                event.room_id.hex()[:8],
            )
        elif isinstance(event, RoomDenied):
            log.debug(
                "peer %s does not hold room %s",
                short_peer_id(link.peer_id),
                event.room_id.hex()[:8],
            )

    async def _offer(self, linked: _Linked, driver: RoomDriver) -> None:
        """Join the room and its record channel on a link."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_join, linked.link, record_channel(driver.room_id), driver.secret)
            await _join(linked.link, driver.room_id, driver.secret)

    # -- address records ------------------------------------------------------------------

    def _wall(self) -> float:
        return self.env.wall_clock_ms() / 1000

    def _sign_own(self, driver: RoomDriver) -> bool:
        """Sign our record for the room if it needs it; whether it was."""
        addresses = (self.address,) if self.address else ()
        now = self._wall()
        if not driver.book.needs_signing(addresses, now):
            return False
        expires = int(now) + RECORD_TTL
        driver.book.set_own(sign_record(self.identity, driver.room_id, addresses, expires))
        return True

    async def run_records(self) -> None:
        """Sign our records again before they expire and pass the new ones on, until the
        node closes."""
        while True:
            await trio.sleep(RECORD_CHECK)
            for driver in list(self.rooms.values()):
                if self._sign_own(driver) and driver.book.own is not None:
                    self._pass_on(driver, driver.book.own, frm=None)

    async def _channel_event(self, linked: _Linked, driver: RoomDriver, event: object) -> None:
        """An event of a room's record channel (an older peer denies it: nothing to do)."""
        if isinstance(event, RoomAuthorized):
            linked.channels.add(driver.room_id)
            for record in driver.book.greeting(self._wall(), self.env.rng):
                self._send_record(linked, driver, record)
        elif isinstance(event, Message):
            await self._record_received(linked.link, driver, event.payload)

    async def _record_received(self, link: Link, driver: RoomDriver, data: bytes) -> None:
        now = self._wall()
        try:
            record = decode_record(data, driver.room_id, now, self.env.check_signature)
        except RecordError as exc:
            self.record_drops[exc.reason] = self.record_drops.get(exc.reason, 0) + 1
            # Expired or too long may be a clock apart, not a lie: only the rest count.
            timely = exc.fault in (RecordFault.EXPIRED, RecordFault.TOO_LONG)
            bad = self._bad_records.get(link.peer_id, 0) + (0 if timely else 1)
            self._bad_records[link.peer_id] = bad
            if bad >= MAX_BAD_RECORDS:  # an honest member passes on verified records only
                log.warning(
                    "closing the link to %s: %d bad address records",
                    short_peer_id(link.peer_id),
                    bad,
                )
                self._bad_records.pop(link.peer_id)
                self._nursery.start_soon(link.aclose)
                return
            key = (link.peer_id, exc.reason)
            if key not in self._records_logged:  # once per peer and reason
                self._records_logged.add(key)
                log.warning(
                    "room %s: address record from %s dropped: %s",
                    driver.room_id.hex()[:8],
                    short_peer_id(link.peer_id),
                    exc,
                )
            return
        spread = driver.book.spreads(record, now)
        if not driver.book.add(record, now):
            return
        log.debug(
            "room %s: %s is at %s",
            driver.room_id.hex()[:8],
            short_peer_id(record.peer_id),
            ", ".join(record.addresses),
        )
        if spread:
            self._pass_on(driver, record, frm=link.peer_id)
        self._dial_members(driver)
        driver.records_changed()

    def _pass_on(self, driver: RoomDriver, record: AddressRecord, frm: bytes | None) -> None:
        """Send a record that is news to our other linked members of the room: ours to
        all of them, another's to a few (`pass_on_to`)."""
        members = [
            peer
            for peer, linked in self.links.items()
            if peer not in (frm, record.peer_id) and driver.room_id in linked.channels
        ]
        if record.peer_id != self.peer_id:
            members = pass_on_to(members, self.env.rng)
        for peer in members:
            self._send_record(self.links[peer], driver, record)

    def _send_record(self, linked: _Linked, driver: RoomDriver, record: AddressRecord) -> None:
        with contextlib.suppress(LinkError):  # closed: its reader cleans up
            linked.link.send_nowait(record_channel(driver.room_id), record.data)

    def _dial_members(self, driver: RoomDriver) -> None:
        """Hand the members' signed addresses to the peering core, which dials (expecting
        each signer) those it wants a link to."""
        members = [(r.peer_id, r.addresses) for r in driver.book.others(self._wall())]
        if self.rooms.get(driver.room_id) is driver:  # none: it may still dial spares
            now = trio.current_time()
            self.perform(self.peering.members(driver.room_id, members, driver.links, now))

    def penalise(self, driver: RoomDriver, action: Penalise, link: Link | None) -> None:
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
        if link is not None:
            self._nursery.start_soon(link.aclose)

    def close_links_of(self, room_id: bytes) -> None:
        """Close the links that carried a room we left, once what is queued on them (the
        leave op) is written: a link cannot drop one of its rooms, so they are dialed
        again without it, and each member's gossip forgets us there."""
        for linked in list(self.links.values()):
            if room_id in linked.rooms:
                self._nursery.start_soon(_close_when_sent, linked.link)

    async def flush_all(self) -> None:
        """Return once every link has written what is queued on it (the caller bounds
        the wait)."""
        async with trio.open_nursery() as nursery:
            for linked in list(self.links.values()):
                nursery.start_soon(linked.link.flush)

    async def close_all(self) -> None:
        """Close every link while the tasks serving them still run, so each closing
        handshake is answered instead of timing out; shielded, since closing is cleanup."""
        self.closing = True
        with trio.CancelScope(shield=True):
            async with trio.open_nursery() as nursery:
                for linked in list(self.links.values()):
                    nursery.start_soon(linked.link.aclose)


async def _join(link: Link, room_id: bytes, secret: bytes) -> None:
    with contextlib.suppress(LinkError):  # the link closed; its reader cleans up
        await link.join_room(room_id, secret)


async def _close_when_sent(link: Link) -> None:
    with trio.move_on_after(LEAVE_FLUSH_TIMEOUT):
        await link.flush()
    await link.aclose()
