"""`LocalClient`: the `ChatClient` interface over a `Node` running in this process."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import TypeVar

import trio

from crdt import Message

from .._invite import InviteError
from .._node import Node
from .._room import Room
from .._status import NodeStatus, RoomStatus
from ._api import (
    ClientError,
    ClientEvent,
    HistoryPage,
    Me,
    MemberInfo,
    PeerDiagnostics,
    RoomChanged,
    RoomDiagnostics,
    RoomInfo,
    RoomsChanged,
)

__all__ = ["LocalClient"]

T = TypeVar("T")

MAX_PAGE = 1000  # messages per history page


class LocalClient:
    """A `ChatClient` over an open `Node` (``LocalClient(node)``); it owns nothing."""

    def __init__(self, node: Node) -> None:
        self.node = node

    # -- helpers ------------------------------------------------------------------------

    def _room(self, room_id: bytes) -> Room:
        try:
            return self.node.room(room_id)
        except KeyError:
            raise ClientError(f"no room {room_id.hex()[:8]} on this node") from None

    @staticmethod
    async def _refusing(call: Awaitable[T]) -> T:
        """Await a write; what the node refuses becomes a ClientError."""
        try:
            return await call
        except (ValueError, InviteError, trio.ClosedResourceError) as exc:
            raise ClientError(str(exc) or type(exc).__name__) from None

    def _info(self, room: Room, status: RoomStatus | None) -> RoomInfo:
        return RoomInfo(
            id=room.id,
            name=room.name,
            topic=room.topic,
            members=len(room.members()),
            synced=status.synced if status is not None else True,
            behind=status.behind if status is not None else 0,
            peers=len(status.peers) if status is not None else 0,
            messages=room.message_count(),
            acked_seq=status.acked_seq if status is not None else 0,
        )

    def _statuses(self) -> dict[bytes, RoomStatus]:
        return {status.room_id: status for status in self.node.status().rooms}

    # -- the interface ------------------------------------------------------------------

    async def me(self) -> Me:
        return Me(self.node.peer_id, self.node.nick, self.node.address)

    async def rooms(self) -> list[RoomInfo]:
        statuses = self._statuses()
        return [self._info(room, statuses.get(room.id)) for room in self.node.rooms()]

    async def room(self, room_id: bytes) -> RoomInfo:
        return self._info(self._room(room_id), self._statuses().get(room_id))

    async def create_room(self, name: str) -> RoomInfo:
        room = await self._refusing(self.node.create_room(name))
        return await self.room(room.id)

    async def join(self, invite: str) -> RoomInfo:
        room = await self._refusing(self.node.join(invite))
        return await self.room(room.id)

    async def leave(self, room_id: bytes) -> None:
        await self._refusing(self._room(room_id).leave())

    async def set_nick(self, nick: str) -> None:
        await self._refusing(self.node.set_nick(nick))

    async def set_topic(self, room_id: bytes, topic: str) -> None:
        await self._refusing(self._room(room_id).set_topic(topic))

    async def send(self, room_id: bytes, text: str, *, reply_to: bytes | None = None) -> bytes:
        return await self._refusing(self._room(room_id).send(text, reply_to=reply_to))

    async def edit(self, room_id: bytes, message_id: bytes, text: str) -> None:
        await self._refusing(self._room(room_id).edit(message_id, text))

    async def delete(self, room_id: bytes, message_id: bytes) -> None:
        await self._refusing(self._room(room_id).delete(message_id))

    async def react(self, room_id: bytes, message_id: bytes, emoji: str) -> None:
        await self._refusing(self._room(room_id).react(message_id, emoji))

    async def unreact(self, room_id: bytes, message_id: bytes, emoji: str) -> None:
        await self._refusing(self._room(room_id).unreact(message_id, emoji))

    async def history(
        self,
        room_id: bytes,
        *,
        before: bytes | None = None,
        before_ms: int | None = None,
        limit: int = 100,
    ) -> HistoryPage:
        if not 0 < limit <= MAX_PAGE:
            raise ClientError(f"a page holds 1 to {MAX_PAGE} messages, not {limit}")
        messages = self._room(room_id).history(before=before, before_ms=before_ms, limit=limit + 1)
        more = len(messages) > limit
        return HistoryPage(room_id, tuple(messages[-limit:]), more)

    async def message(self, room_id: bytes, message_id: bytes) -> Message | None:
        return self._room(room_id).message(message_id)

    async def members(self, room_id: bytes) -> list[MemberInfo]:
        room = self._room(room_id)
        nicks = room.nicknames()
        linked = set(self._statuses()[room_id].peers) if room_id in self._statuses() else set()
        forked = set(room.forked_authors())
        return [
            MemberInfo(peer, nicks.get(peer), peer in linked, peer in forked)
            for peer in room.members()
        ]

    async def invite(self, room_id: bytes) -> str:
        return self._room(room_id).invite()

    async def status(self) -> NodeStatus:
        return self.node.status()

    async def diagnostics(self, room_id: bytes) -> RoomDiagnostics:
        room = self._room(room_id)
        status = self.node.status()
        dials = self.node.dial_states()
        peers = []
        for address in room.known_addresses():
            dial = dials.get(address)
            peer_id = dial.peer_id if dial is not None else None
            peers.append(
                PeerDiagnostics(
                    address=address,
                    peer_id=peer_id,
                    linked=peer_id is not None and peer_id in status.links,
                    failures=dial.failures if dial is not None else 0,
                    breaker_open=dial.breaker_open if dial is not None else False,
                    last_contact_ms=dial.last_contact_ms if dial is not None else None,
                )
            )
        notes: list[str] = []
        if status.dht_contacts == 0:
            notes.append("the DHT has no contacts: only known addresses can be dialed")
        if not status.address:
            notes.append("this node accepts no links: it only dials out")
        if not peers:
            notes.append("no member address known yet")
        return RoomDiagnostics(
            room_id=room.id,
            peers=tuple(peers),
            dht_contacts=status.dht_contacts,
            announced=self.node.announced(room_id),
            notes=tuple(notes),
        )

    @asynccontextmanager
    async def events(self) -> AsyncIterator[AsyncIterator[ClientEvent]]:
        send, receive = trio.open_memory_channel[ClientEvent](1024)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._pump, send)
            try:
                async with receive:
                    yield receive
            finally:
                nursery.cancel_scope.cancel()

    async def _pump(self, send: trio.MemorySendChannel[ClientEvent]) -> None:
        """Forward every room's events, and follow the room list as it changes."""
        async with send, trio.open_nursery() as nursery:
            watched: dict[bytes, trio.CancelScope] = {}
            async with self.node.watch_rooms() as changes:
                while True:
                    current = {room.id: room for room in self.node.rooms()}
                    for room_id in set(watched) - set(current):
                        watched.pop(room_id).cancel()
                    for room_id, room in current.items():
                        if room_id not in watched:
                            watched[room_id] = await nursery.start(self._follow, room, send)
                    await changes.receive()
                    await send.send(RoomsChanged())

    @staticmethod
    async def _follow(
        room: Room,
        send: trio.MemorySendChannel[ClientEvent],
        task_status: trio.TaskStatus[trio.CancelScope] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        with trio.CancelScope() as scope:
            async with room.events() as events:
                task_status.started(scope)
                async for change in events:
                    await send.send(RoomChanged(room.id, change))
