"""`Inbox`: the message ids the client's events named that the UI has yet to fetch.

Events say only that a message was added or changed; the UI fetches the messages in
bursts (`ChatClient.messages`), so ids wait here, per room and in arrival order. Pure
state: it never calls the node, reads a clock or touches the screen.
"""

from __future__ import annotations

import itertools

__all__ = ["Inbox"]


class Inbox:
    """Message ids the events named and the UI has not fetched yet, per room, in order;
    an id named twice (added, then edited) is fetched once."""

    def __init__(self) -> None:
        self._rooms: dict[bytes, dict[bytes, bool]] = {}  # room -> id -> added

    def __bool__(self) -> bool:
        return bool(self._rooms)

    def add(self, room_id: bytes, message_id: bytes, *, added: bool) -> None:
        ids = self._rooms.setdefault(room_id, {})
        ids[message_id] = ids.get(message_id, False) or added

    def take(self, limit: int) -> tuple[bytes, list[bytes], set[bytes]]:
        """Up to `limit` ids of the room whose turn it is, and which of them are new."""
        room_id = next(iter(self._rooms))
        ids = self._rooms[room_id]
        taken = list(itertools.islice(ids, limit))
        added = {message_id for message_id in taken if ids[message_id]}
        for message_id in taken:
            del ids[message_id]
        del self._rooms[room_id]
        if ids:
            self._rooms[room_id] = ids  # to the back: rooms take turns
        return room_id, taken, added
