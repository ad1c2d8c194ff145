"""`ChatClient`, the interface between a node and the people's tools, and its data types.

Every type here is a frozen dataclass of plain values (bytes, str, int, bool, tuples and
crdt's frozen views), so the control API can carry it as msgpack and a remote client can
rebuild it exactly. Room ids and message ids are bytes; times are milliseconds.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol

from crdt import Change, Message

from .._status import NodeStatus

__all__ = [
    "ChatClient",
    "ClientError",
    "ClientEvent",
    "HistoryPage",
    "Me",
    "MemberInfo",
    "PeerDiagnostics",
    "RoomChanged",
    "RoomDiagnostics",
    "RoomInfo",
    "RoomsChanged",
]


class ClientError(Exception):
    """A request the node refused (an unknown room, someone else's message, a bad invite,
    an empty name): the message is one line for people."""


@dataclass(frozen=True, slots=True)
class Me:
    peer_id: bytes
    nick: str
    address: str  # host:port peers dial; empty when the node accepts no links


@dataclass(frozen=True, slots=True)
class RoomInfo:
    id: bytes
    name: str
    topic: str
    members: int
    synced: bool  # nothing held, nothing being ingested, nothing a peer has that we lack
    behind: int  # ops linked peers hold that we lack (the sync lag)
    peers: int  # members linked now
    messages: int  # messages in the timeline
    # Our own ops in this room that some linked peer is known to hold (the highest seq of
    # ours in any peer's version vector): our messages up to it have reached a peer.
    acked_seq: int = 0


@dataclass(frozen=True, slots=True)
class MemberInfo:
    peer_id: bytes
    nick: str | None
    linked: bool  # a link to this member is up now
    forked: bool = False  # seen signing two different ops at one place in its chain


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """Messages of one room, oldest first, and whether older ones exist before them."""

    room_id: bytes
    messages: tuple[Message, ...]
    more_before: bool


@dataclass(frozen=True, slots=True)
class PeerDiagnostics:
    address: str
    peer_id: bytes | None  # known once a link to the address has been up
    linked: bool
    failures: int  # dial failures in a row
    breaker_open: bool  # dials paused after too many failures
    last_contact_ms: int | None  # wall-clock ms of the last frame heard, None if never


@dataclass(frozen=True, slots=True)
class RoomDiagnostics:
    """Why messages may not be arriving: what the node knows of reaching the room."""

    room_id: bytes
    peers: tuple[PeerDiagnostics, ...]
    dht_contacts: int | None
    announced: bool  # our address is in the DHT under the room's key
    notes: tuple[str, ...]  # one line each: "no bootstrap contacts", ...


@dataclass(frozen=True, slots=True)
class RoomChanged:
    """Something changed in a room's views (a crdt change event)."""

    room_id: bytes
    change: Change


@dataclass(frozen=True, slots=True)
class RoomsChanged:
    """The list of rooms changed: one was created, joined, left, or failed."""


ClientEvent = RoomChanged | RoomsChanged


class ChatClient(Protocol):
    """What the UI and the shell commands may ask of a node, local or remote.

    Every method raises `ClientError` for a request the node refuses; room ids may be
    given in full (32 bytes). Writes return once the op is durable and on its way.
    """

    async def me(self) -> Me: ...

    async def rooms(self) -> list[RoomInfo]: ...

    async def room(self, room_id: bytes) -> RoomInfo: ...

    async def create_room(self, name: str) -> RoomInfo: ...

    async def join(self, invite: str) -> RoomInfo: ...

    async def leave(self, room_id: bytes) -> None: ...

    async def set_nick(self, nick: str) -> None: ...

    async def set_topic(self, room_id: bytes, topic: str) -> None: ...

    async def send(self, room_id: bytes, text: str, *, reply_to: bytes | None = None) -> bytes:
        """Post a message; returns its id."""
        ...

    async def edit(self, room_id: bytes, message_id: bytes, text: str) -> None: ...

    async def delete(self, room_id: bytes, message_id: bytes) -> None: ...

    async def react(self, room_id: bytes, message_id: bytes, emoji: str) -> None: ...

    async def unreact(self, room_id: bytes, message_id: bytes, emoji: str) -> None: ...

    async def history(
        self,
        room_id: bytes,
        *,
        before: bytes | None = None,
        before_ms: int | None = None,
        limit: int = 100,
    ) -> HistoryPage:
        """The newest `limit` messages older than message `before` (or than wall-clock time
        `before_ms`), or the newest of all when neither is given."""
        ...

    async def message(self, room_id: bytes, message_id: bytes) -> Message | None: ...

    async def members(self, room_id: bytes) -> list[MemberInfo]: ...

    async def invite(self, room_id: bytes) -> str: ...

    async def status(self) -> NodeStatus: ...

    async def diagnostics(self, room_id: bytes) -> RoomDiagnostics: ...

    def events(self) -> AbstractAsyncContextManager[AsyncIterator[ClientEvent]]:
        """``async with client.events() as stream: async for event in stream``: every
        change in every room from now on, and changes to the list of rooms."""
        ...
