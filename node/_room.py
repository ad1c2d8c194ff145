"""The `Room` handle embedders use.

A `Room` is a thin view over one room of a running `Node`: writes author an op through
the room's history (durable before anyone sees it) and hand it to the room's gossip;
reads are views of the replica. It holds no state of its own and must never touch a
socket or the store directly.
"""

from __future__ import annotations

from crdt import Kind, Message

from ._events import RoomEvents
from ._invite import MAX_PEERS, Invite
from ._room_driver import RoomDriver

__all__ = ["Room", "RoomEvents"]  # RoomEvents lives in _events; re-exported


class Room:
    """One room of a running `Node`; get it from `create_room`, `join` or `rooms()`."""

    def __init__(self, driver: RoomDriver) -> None:
        self._driver = driver

    def __repr__(self) -> str:
        return f"<Room {self.id.hex()[:8]} {self.name!r}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Room) and other._driver is self._driver

    def __hash__(self) -> int:
        return hash(self.id)

    @property
    def id(self) -> bytes:
        """The room's 32-byte id."""
        return self._driver.room_id

    @property
    def name(self) -> str:
        """The name the room was created (or invited) with; local, not replicated."""
        return self._driver.name

    # -- writing --------------------------------------------------------------------------

    async def send(self, text: str, *, reply_to: bytes | None = None) -> bytes:
        """Post a message; returns its id once it is durable and on its way to peers."""
        op = await self._driver.author(Kind.MESSAGE, (text, reply_to))
        return op.id

    async def edit(self, message_id: bytes, text: str) -> None:
        """Replace the text of one of our messages (ValueError for anyone else's)."""
        await self._driver.author(Kind.EDIT, (message_id, text))

    async def delete(self, message_id: bytes) -> None:
        """Delete one of our messages (ValueError for anyone else's)."""
        await self._driver.author(Kind.DELETE, (message_id,))

    async def react(self, message_id: bytes, emoji: str) -> None:
        """Add our reaction `emoji` to a message."""
        await self._driver.author(Kind.REACT, (message_id, emoji))

    async def unreact(self, message_id: bytes, emoji: str) -> None:
        """Take back our reaction `emoji` on a message."""
        await self._driver.author(Kind.UNREACT, (message_id, emoji))

    async def set_topic(self, topic: str) -> None:
        """Set the room's topic (the last writer wins)."""
        await self._driver.author(Kind.TOPIC, (topic,))

    async def leave(self) -> None:
        """Leave the room: the members we are linked to hear it, the node stops serving it,
        and its history moves to the data dir's rooms/left/ (joining again takes it back).
        Afterwards writes raise `trio.ClosedResourceError` and `events()` streams end."""
        await self._driver.host.leave(self._driver)

    # -- reading --------------------------------------------------------------------------

    def timeline(self) -> list[Message]:
        """Every message in (hlc, author, seq) order, as it stands now."""
        return self._driver.history.replica.timeline()

    def history(
        self, *, before: bytes | None = None, before_ms: int | None = None, limit: int = 100
    ) -> list[Message]:
        """Up to `limit` messages, oldest first: the newest ones older than message `before`
        (or than wall-clock time `before_ms`), or the newest of all. A `before` we do not
        have gives an empty list."""
        return self._driver.history.replica.page(before=before, before_ms=before_ms, limit=limit)

    def message_count(self) -> int:
        """How many messages the timeline holds (deleted ones included)."""
        return self._driver.history.replica.message_count

    def known_addresses(self) -> list[str]:
        """Link addresses of members this node has reached or was given."""
        return list(self._driver.peers)

    def message(self, message_id: bytes) -> Message | None:
        """One message as it stands now, or None if we do not have it (yet)."""
        return self._driver.history.replica.message(message_id)

    def members(self) -> list[bytes]:
        """The peer ids of the members (latest join or leave of each author)."""
        return self._driver.history.replica.members()

    def forked_authors(self) -> list[bytes]:
        """Peer ids of authors who signed two different ops at one place in their chain:
        equivocation, which no honest node does. Both twins are kept and shown."""
        return self._driver.history.replica.forked_authors()

    @property
    def topic(self) -> str:
        return self._driver.history.replica.topic

    def nicknames(self) -> dict[bytes, str]:
        """Peer id -> nickname, for every author who set one in this room."""
        return self._driver.history.replica.nicknames()

    def invite(self) -> str:
        """An invite URI: the room's id and secret, its name, and addresses to dial
        (this node's first, then other members' this node has reached)."""
        driver = self._driver
        own = [driver.host.address] if driver.host.address else []  # none when dial-out only
        peers = [*own, *(p for p in driver.peers if p != driver.host.address)]
        return Invite(driver.room_id, driver.secret, driver.name, tuple(peers[:MAX_PEERS])).to_uri()

    def events(self) -> RoomEvents:
        """What changes in the room from now on, for messages from anyone."""
        return self._driver.subscribe()
