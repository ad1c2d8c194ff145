"""Peering: which addresses a node keeps links to, and when it dials, announces and looks.

Pure, in the style of `node.gossip`: the driver (`node._links`) reports what happened —
an address worth a link, a dial that succeeded or failed, a link that closed, a room that
started, what a DHT lookup found — with `now`, and performs the actions returned: `Dial`,
`Announce`, `Lookup`. `next_timer()` says when to call `handle_timer(now)`. The policy
all lives here:

- **dialing**: every wanted address is dialed until a link to it is up; a failed dial, or
  a link that ended, is retried after an exponential backoff with full jitter; an address
  that keeps failing is put behind a circuit breaker; an address whose peer is already
  linked (it dialed us) waits until that link ends;
- **the tie-break** when both sides dial at once (`keep_existing`);
- **the mesh**: per room, dial the members a lookup finds until `mesh_size` are linked;
- **discovery**: per room, once the DHT is ready, announce our record (again when half its
  lifetime is gone) and look the room's members up every `discovery_interval` (four
  times as long while `mesh_size` of them are linked, and no longer once fewer are);
- **the own-chain grace**: how long a room waits to hear a member before we write in it.

Nothing here touches a socket, a clock or the DHT; randomness comes from the `rng` given.
"""

from __future__ import annotations

import enum
import heapq
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ._backoff import Backoff, Breaker

FULL_MESH_SLOWDOWN = 4  # discovery rounds of a room whose mesh is full: this much rarer

__all__ = [
    "Announce",
    "Dial",
    "Lookup",
    "Peering",
    "PeeringAction",
    "PeeringConfig",
    "keep_existing",
]


@dataclass(frozen=True, slots=True)
class PeeringConfig:
    """The policy's knobs, in seconds where they are times."""

    mesh_size: int = 6  # members per room that discovery keeps links to
    discovery_interval: float = 60.0  # between lookups of a room's members
    record_ttl: float = 3600.0  # how long a DHT record of ours stays valid
    dial_backoff: float = 1.0  # the first retry delay's ceiling
    backoff_cap: float = 300.0
    own_chain_grace: float = 10.0  # see `Peering.settled`

    def __post_init__(self) -> None:
        if self.mesh_size < 1:
            raise ValueError("mesh_size must be at least 1")
        for name in ("discovery_interval", "record_ttl", "dial_backoff", "backoff_cap"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")


# -- actions ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Dial:
    """Open a link to `address`; report `dialed`, `dial_failed` and later `link_ended`.

    `peer_id`, when set, is who signed the address (a room's address record, a DHT
    record): the link must prove that peer, and anyone else answering is a failed dial."""

    address: str
    peer_id: bytes | None = None


@dataclass(frozen=True, slots=True)
class Announce:
    """Put our record, valid for `ttl` seconds, under the room's DHT key; report
    `announced` when it is stored."""

    room_id: bytes
    ttl: float


@dataclass(frozen=True, slots=True)
class Lookup:
    """Ask the DHT for the room's members; report `found` with what came back (also when
    the lookup failed: with nothing)."""

    room_id: bytes


PeeringAction = Dial | Announce | Lookup


def keep_existing(
    our_id: bytes,
    existing: tuple[bool, bytes],
    new: tuple[bool, bytes],
) -> bool:
    """Of two links to one peer, whether to keep the one we had: each is (we initiated it,
    the peer's id). Both sides keep the link the lower peer id dialed, so when two nodes
    dial each other at once they agree on the survivor without a word."""

    def dialer(initiated: bool, peer: bytes) -> bytes:
        return our_id if initiated else peer

    return dialer(*existing) <= dialer(*new)


# -- state --------------------------------------------------------------------------------


class _Phase(enum.Enum):
    WAITING = "waiting"  # dial at `due`
    DIALING = "dialing"
    LINKED = "linked"  # our dial's link is up
    COVERED = "covered"  # the peer is linked through another link: wait for it to end


@dataclass(slots=True)
class _Address:
    address: str
    peer_id: bytes | None
    backoff: Backoff
    expect: bytes | None = None  # the signer of the address: only it may answer there
    breaker: Breaker = field(default_factory=Breaker)
    phase: _Phase = _Phase.WAITING
    due: float = 0.0


@dataclass(slots=True)
class _Room:
    announce: bool
    due: float | None = None  # the next announce/lookup round; None while one runs
    announced_until: float = float("-inf")
    dialed: set[bytes] = field(default_factory=set)  # members discovery chose to link to
    remembered: set[str] = field(default_factory=set)  # addresses it remembered, dialed
    spares: list[str] = field(default_factory=list)  # the others, newest first


class Peering:
    """The peering policy of one node (see the module docstring)."""

    def __init__(
        self, our_id: bytes, *, rng: random.Random, config: PeeringConfig | None = None
    ) -> None:
        self.our_id = our_id
        self.rng = rng
        self.config = config if config is not None else PeeringConfig()
        self.own_address = ""  # never dialed
        self._addresses: dict[str, _Address] = {}
        self._rooms: dict[bytes, _Room] = {}
        self._linked: set[bytes] = set()  # peers with a link up, whoever dialed
        self._dht_ready = False
        self._timers: list[tuple[float, int, str | bytes]] = []  # (due, seq, address|room)
        self._seq = 0

    # -- introspection --------------------------------------------------------------------

    def dialing(self) -> list[str]:
        """Every address this node keeps a link to (or tries to)."""
        return list(self._addresses)

    def address_state(self, address: str) -> tuple[bytes | None, int, bool] | None:
        """(peer id, failures in a row, breaker open) of an address kept, else None."""
        state = self._addresses.get(address)
        if state is None:
            return None
        return state.peer_id, state.breaker.failures, state.breaker.opened_at is not None

    def dialed_in(self, room_id: bytes) -> set[bytes]:
        """The members of a room that discovery chose to link to."""
        room = self._rooms.get(room_id)
        return set(room.dialed) if room is not None else set()

    def settled(self, room_started_at: float, now: float) -> bool:
        """Whether a room started at `room_started_at` has waited long enough for a member
        to tell us what it holds of our own chain (a restored backup may be behind): our
        writes there may go ahead even if none answered."""
        return now >= self.settles_at(room_started_at)

    def settles_at(self, room_started_at: float) -> float:
        return room_started_at + self.config.own_chain_grace

    # -- dialing --------------------------------------------------------------------------

    def want(
        self, addresses: Iterable[str], now: float, peer_id: bytes | None = None
    ) -> list[PeeringAction]:
        """Keep links to `addresses` (from an invite, the room file, or a lookup that found
        `peer_id` there): the new ones are dialed now, unless their peer is linked."""
        out: list[PeeringAction] = []
        for address in addresses:
            if address == self.own_address or address in self._addresses:
                continue
            backoff = Backoff(base=self.config.dial_backoff, cap=self.config.backoff_cap)
            state = self._addresses[address] = _Address(
                address, peer_id, backoff, expect=peer_id, due=now
            )
            self._try_dial(state, now, out)
        return out

    def dialed(self, address: str, peer_id: bytes, now: float) -> list[PeeringAction]:
        """Our dial to `address` reached `peer_id` and its link is up."""
        state = self._addresses.get(address)
        if state is None:
            return []
        if peer_id == self.our_id:  # our own address came back to us: never again
            del self._addresses[address]
            return []
        state.breaker.succeeded()
        state.backoff.reset()
        state.peer_id, state.phase = peer_id, _Phase.LINKED
        return []

    def dial_failed(
        self, address: str, now: float, *, for_good: bool = False
    ) -> list[PeeringAction]:
        """Our dial to `address` failed; `for_good` when the address itself is unusable."""
        state = self._addresses.get(address)
        if state is None:
            return []
        if for_good:
            del self._addresses[address]
            return []
        state.breaker.failed(now)
        self._retry_later(state, now)
        return []

    def link_ended(self, address: str, now: float) -> list[PeeringAction]:
        """The link our dial to `address` opened has closed: dial again after a backoff."""
        state = self._addresses.get(address)
        if state is None:
            return []
        self._retry_later(state, now)
        return []

    def link_up(self, peer_id: bytes, now: float) -> list[PeeringAction]:
        """A link to `peer_id` is up (either side dialed it)."""
        self._linked.add(peer_id)
        return []

    def link_down(self, peer_id: bytes, now: float) -> list[PeeringAction]:
        """The last link to `peer_id` is down: addresses that waited on it are dialed."""
        self._linked.discard(peer_id)
        out: list[PeeringAction] = []
        for state in self._addresses.values():
            if state.peer_id == peer_id and state.phase is _Phase.COVERED:
                state.due = now
                self._try_dial(state, now, out)
        return out

    # -- discovery ------------------------------------------------------------------------

    def dht_ready(self, now: float) -> list[PeeringAction]:
        """The DHT has bootstrapped: discovery rounds start for every room."""
        self._dht_ready = True
        out: list[PeeringAction] = []
        for room_id, room in self._rooms.items():
            self._start_round(room_id, room, now, out)
        return out

    def room_started(self, room_id: bytes, now: float, *, announce: bool) -> list[PeeringAction]:
        """A room is served from now on; `announce` when peers can dial us."""
        room = self._rooms[room_id] = _Room(announce)
        out: list[PeeringAction] = []
        if self._dht_ready:
            self._start_round(room_id, room, now, out)
        return out

    def remembered(
        self, room_id: bytes, addresses: Sequence[str], now: float
    ) -> list[PeeringAction]:
        """Addresses a started room remembers (its invite's, its file's; newest last): the
        newest `mesh_size` are dialed now, the others kept as spares that `members` dials
        while the room is short of links. A member back from an absence links to its
        recent mesh, not to every address it ever heard of."""
        room = self._rooms.get(room_id)
        listed = [a for a in dict.fromkeys(addresses) if a != self.own_address]
        if room is None:
            return []
        keep = self.config.mesh_size
        fresh, room.spares = listed[-keep:], listed[:-keep][::-1]
        room.remembered.update(fresh)
        return self.want(fresh, now)

    def room_stopped(self, room_id: bytes) -> None:
        self._rooms.pop(room_id, None)

    def announced(self, room_id: bytes, now: float, ttl: float) -> list[PeeringAction]:
        """Our record for the room was stored, valid for `ttl` seconds from `now`."""
        room = self._rooms.get(room_id)
        if room is not None:
            room.announced_until = now + ttl
        return []

    def found(
        self,
        room_id: bytes,
        members: Sequence[tuple[bytes, Sequence[str]]],
        linked_in_room: Iterable[bytes],
        now: float,
    ) -> list[PeeringAction]:
        """A lookup's answer: (peer id, addresses) of members (ours left out by the
        caller). Members are dialed in random order until `mesh_size` of them are linked
        in the room (links others dialed to us count); the next round is scheduled."""
        linked = set(linked_in_room)
        out = self.members(room_id, members, linked, now)
        room = self._rooms.get(room_id)
        if room is not None:
            # A room whose mesh is full looks less often: its members' records (passed
            # around the room) find replacements, and `members` brings the round
            # forward once it runs short.
            full = len(linked) >= self.config.mesh_size
            interval = self.config.discovery_interval * (FULL_MESH_SLOWDOWN if full else 1)
            room.due = now + interval
            self._schedule(room.due, room_id)
        return out

    def members(
        self,
        room_id: bytes,
        members: Sequence[tuple[bytes, Sequence[str]]],
        linked_in_room: Iterable[bytes],
        now: float,
    ) -> list[PeeringAction]:
        """Members of a room and where they say they are (signed address records the room
        passed around, or a lookup's answer): dialed as `found` does, expecting each
        signer's peer id, without touching the discovery schedule. Called again when a
        link of the room goes down, so a member that leaves is replaced."""
        room = self._rooms.get(room_id)
        if room is None:
            return []
        out: list[PeeringAction] = []
        shuffled = list(members)
        self.rng.shuffle(shuffled)  # a random mesh, not the same few for everyone
        linked = set(linked_in_room)
        # A member dialed before counts while it is linked or still worth dialing: one
        # behind an open breaker (gone, maybe for good) leaves room for another.
        live = {p for p in room.dialed if p in self._linked or self._dialable(p)}
        # Remembered addresses still being dialed count too (once linked, as links).
        pending = sum(1 for a in room.remembered if self._pending(a))
        for peer_id, addresses in shuffled:
            if peer_id == self.our_id or peer_id in self._linked:
                continue
            if peer_id in room.dialed and peer_id not in live:
                continue  # behind its breaker: dialed again when it reopens, not counted
            if len(live | linked) + pending >= self.config.mesh_size:
                continue
            live.add(peer_id)
            room.dialed.add(peer_id)
            out += self.want(addresses, now, peer_id)
        while room.spares and len(live | linked) + pending < self.config.mesh_size:
            spare = room.spares.pop(0)
            room.remembered.add(spare)
            out += self.want([spare], now)
            pending += 1
        soon = now + self.config.discovery_interval
        if len(live | linked) < self.config.mesh_size and room.due is not None and room.due > soon:
            room.due = soon  # short of members: look again at the usual pace
            self._schedule(soon, room_id)
        return out

    # -- timers ---------------------------------------------------------------------------

    def next_timer(self) -> float | None:
        while self._timers and not self._live(self._timers[0]):
            heapq.heappop(self._timers)
        return self._timers[0][0] if self._timers else None

    def handle_timer(self, now: float) -> list[PeeringAction]:
        out: list[PeeringAction] = []
        while self._timers and self._timers[0][0] <= now:
            entry = heapq.heappop(self._timers)
            if not self._live(entry):
                continue
            key = entry[2]
            if isinstance(key, str):
                self._try_dial(self._addresses[key], now, out)
            else:
                room = self._rooms[key]
                self._start_round(key, room, now, out)
        return out

    # -- internals ------------------------------------------------------------------------

    def _dialable(self, peer_id: bytes) -> bool:
        """Whether an address of `peer_id` is kept and not behind an open breaker."""
        return any(
            s.peer_id == peer_id and s.breaker.opened_at is None for s in self._addresses.values()
        )

    def _pending(self, address: str) -> bool:
        """Whether a kept address is being dialed, or waits to be, its breaker closed."""
        state = self._addresses.get(address)
        return (
            state is not None
            and state.phase in (_Phase.DIALING, _Phase.WAITING)
            and state.breaker.opened_at is None
        )

    def _live(self, entry: tuple[float, int, str | bytes]) -> bool:
        due, _, key = entry
        if isinstance(key, str):
            state = self._addresses.get(key)
            return state is not None and state.phase is _Phase.WAITING and state.due == due
        room = self._rooms.get(key)
        return room is not None and room.due == due

    def _schedule(self, due: float, key: str | bytes) -> None:
        self._seq += 1
        heapq.heappush(self._timers, (due, self._seq, key))

    def _try_dial(self, state: _Address, now: float, out: list[PeeringAction]) -> None:
        if state.peer_id is not None and state.peer_id in self._linked:
            state.phase = _Phase.COVERED
            return
        if state.due > now:
            state.phase = _Phase.WAITING
            self._schedule(state.due, state.address)
            return
        if not state.breaker.allow(now):
            state.phase = _Phase.WAITING
            state.due = state.breaker.reopens_at() or now
            self._schedule(state.due, state.address)
            return
        state.phase = _Phase.DIALING
        out.append(Dial(state.address, state.expect))

    def _retry_later(self, state: _Address, now: float) -> None:
        state.phase = _Phase.WAITING
        state.due = now + state.backoff.next_delay(self.rng)
        self._schedule(state.due, state.address)

    def _start_round(
        self, room_id: bytes, room: _Room, now: float, out: list[PeeringAction]
    ) -> None:
        room.due = None  # until `found` schedules the next
        ttl = self.config.record_ttl
        if room.announce and now > room.announced_until - ttl / 2:
            out.append(Announce(room_id, ttl))
        out.append(Lookup(room_id))
