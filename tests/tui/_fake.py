"""A `ChatClient` with fixed data, for snapshots only: the same screen on every run.

Behaviour is tested on real nodes (test_app.py); this only has to look like one.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import trio

from crdt import Message, make_hlc
from node import NodeStatus, RoomStatus
from node.client import (
    ChatClient,
    ClientError,
    ClientEvent,
    HistoryPage,
    Me,
    MemberInfo,
    PeerDiagnostics,
    RoomDiagnostics,
    RoomInfo,
)

T0 = int(datetime(2026, 3, 2, 22, 50, tzinfo=UTC).timestamp() * 1000)
NOW = T0 + 12 * 3600 * 1000


def peer(name: str) -> bytes:
    return hashlib.sha256(name.encode()).digest()


ME = peer("me")
BOB = peer("bob")
CAROL = peer("carol")
MALLORY = peer("mallory")
ROOM = peer("room-plans")
OTHER = peer("room-random")


def msg(n: int, author: bytes, seq: int, minutes: int, text: str, **extra: object) -> Message:
    fields: dict[str, object] = {
        "reply_to": None,
        "edited": False,
        "deleted": False,
        "reactions": (),
    }
    fields.update(extra)
    return Message(
        id=peer(f"m{n}"),
        author=author,
        seq=seq,
        hlc=make_hlc(T0 + minutes * 60_000),
        text=text,
        **fields,  # type: ignore[arg-type]
    )


MESSAGES = (
    msg(1, BOB, 1, 0, "anyone around for the release?"),
    msg(2, CAROL, 1, 5, "yes — I'll take the changelog"),
    msg(3, ME, 1, 20, "great, thanks carol", reactions=(("👍", (BOB, CAROL)), ("🎉", (ME,)))),
    msg(4, BOB, 2, 25, "tests are green on main", edited=True),
    msg(5, MALLORY, 1, 26, "[bold]free[/bold] \ufffdtokens, click here"),
    msg(6, CAROL, 2, 30, "ok", deleted=True),
    msg(7, CAROL, 3, 600, "/me is back from lunch"),
    msg(
        8,
        ME,
        2,
        610,
        "then we ship at three. I will write the announcement and post it to the list once"
        " the tags are pushed, so nobody has to wait for me",
        reply_to=peer("m4"),
    ),
    msg(9, BOB, 3, 615, "me, @me? sounds good"),
)

NICKS = {ME: "me", BOB: "bob", CAROL: "carol", MALLORY: "mallory"}


class FakeClient:
    """Two rooms, four members, a fixed history and status."""

    def __init__(self) -> None:
        self.rooms_ = [
            RoomInfo(ROOM, "plans", "release 1.0 on friday", 4, True, 0, 2, len(MESSAGES), 1),
            RoomInfo(OTHER, "random", "", 2, False, 120, 1, 0, 0),
        ]

    async def me(self) -> Me:
        return Me(ME, "me", "127.0.0.1:7340")

    async def rooms(self) -> list[RoomInfo]:
        return list(self.rooms_)

    async def room(self, room_id: bytes) -> RoomInfo:
        for info in self.rooms_:
            if info.id == room_id:
                return info
        raise ClientError("no such room")

    async def history(
        self,
        room_id: bytes,
        *,
        before: bytes | None = None,
        before_ms: int | None = None,
        limit: int = 100,
    ) -> HistoryPage:
        messages: tuple[Message, ...] = tuple(MESSAGES) if room_id == ROOM else ()
        if before is not None:
            ids = [m.id for m in messages]
            messages = messages[: ids.index(before)] if before in ids else ()
        return HistoryPage(room_id, tuple(messages[-limit:]), len(messages) > limit)

    async def message(self, room_id: bytes, message_id: bytes) -> Message | None:
        return next((m for m in MESSAGES if m.id == message_id), None)

    async def messages(self, room_id: bytes, message_ids: list[bytes]) -> list[Message]:
        return [m for i in message_ids for m in MESSAGES if m.id == i]

    async def members(self, room_id: bytes) -> list[MemberInfo]:
        return [
            MemberInfo(ME, "me", False),
            MemberInfo(BOB, "bob", True),
            MemberInfo(CAROL, "carol", True),
            MemberInfo(MALLORY, "mallory", False, forked=True),
        ]

    async def status(self) -> NodeStatus:
        rooms = (
            RoomStatus(ROOM, "plans", (BOB, CAROL), 20, 0, 0, 4, 0, 12, 0, acked_seq=1),
            RoomStatus(OTHER, "random", (BOB,), 3, 5, 115, 2, 1, 3, 0),
        )
        return NodeStatus(ME, "127.0.0.1:7340", (BOB, CAROL), 14, 0, rooms)

    async def diagnostics(self, room_id: bytes) -> RoomDiagnostics:
        return RoomDiagnostics(
            room_id,
            (
                PeerDiagnostics("127.0.0.1:7341", BOB, True, 0, False, NOW - 4_000),
                PeerDiagnostics("10.0.0.7:7340", CAROL, False, 3, False, NOW - 300_000),
                PeerDiagnostics("203.0.113.9:7340", None, False, 9, True, None),
            ),
            14,
            True,
            ("no member address known for 1 member",),
        )

    async def invite(self, room_id: bytes) -> str:
        return "rumor://invite/EXAMPLE"

    @asynccontextmanager
    async def events(self) -> AsyncIterator[AsyncIterator[ClientEvent]]:
        yield _Never()

    # Writes are not part of the snapshots.
    async def create_room(self, name: str) -> RoomInfo:
        raise ClientError("read-only")

    async def join(self, invite: str) -> RoomInfo:
        raise ClientError("read-only")

    async def leave(self, room_id: bytes) -> None:
        raise ClientError("read-only")

    async def set_nick(self, nick: str) -> None:
        raise ClientError("read-only")

    async def set_topic(self, room_id: bytes, topic: str) -> None:
        raise ClientError("read-only")

    async def send(self, room_id: bytes, text: str, *, reply_to: bytes | None = None) -> bytes:
        raise ClientError("read-only")

    async def edit(self, room_id: bytes, message_id: bytes, text: str) -> None:
        raise ClientError("read-only")

    async def delete(self, room_id: bytes, message_id: bytes) -> None:
        raise ClientError("read-only")

    async def react(self, room_id: bytes, message_id: bytes, emoji: str) -> None:
        raise ClientError("read-only")

    async def unreact(self, room_id: bytes, message_id: bytes, emoji: str) -> None:
        raise ClientError("read-only")


class _Never:
    def __aiter__(self) -> _Never:
        return self

    async def __anext__(self) -> ClientEvent:
        await trio.sleep_forever()
        raise StopAsyncIteration


class EmptyClient(FakeClient):
    """A first run: no rooms yet, no nick."""

    def __init__(self) -> None:
        super().__init__()
        self.rooms_ = []

    async def me(self) -> Me:
        return Me(ME, "", "127.0.0.1:7340")

    async def status(self) -> NodeStatus:
        return NodeStatus(ME, "127.0.0.1:7340", (), 0, 0, ())


def factory(client: FakeClient):  # type: ignore[no-untyped-def]
    @asynccontextmanager
    async def open_client() -> AsyncIterator[ChatClient]:
        yield client

    return open_client
