"""`RoomsApp`: the rooms layer of the chat UI: the room list, unread and mention counts,
read markers, switching rooms, members, topic and the status bar.

It keeps what the user sees of every room (which is current, what is unread, how far
behind it is) and asks the node through the shell's `call`/`attempt`. It must never
handle the client's event stream (that is `_feed`) or parse what the user types (that is
`_app` and `_commands`), and never import the node's internals.
"""

from __future__ import annotations

import re
from typing import Final

from textual import on, work
from textual.widgets import Static

from crdt import Message
from node.client import RoomInfo

from ._layout import short_id
from ._panels import MemberList, RoomEntry, RoomList, StatusBar, TopicBar
from ._safe import inert_line
from ._screens import welcome_text
from ._shell import AppShell, ClientReady

__all__ = ["PAGE", "RoomsApp", "ordered"]

PAGE: Final = 200  # messages per history page the timeline asks for
UNREAD_SCAN: Final = 500  # messages read back per room at start to count unread ones


class RoomsApp(AppShell):
    """The shell, plus rooms: the list, unread marks, switching, members and status."""

    # -- starting ---------------------------------------------------------------------------

    @on(ClientReady)
    async def _client_ready(self, message: ClientReady) -> None:
        self.client = message.client
        self._load_start()

    @work(exclusive=True, group="start")
    async def _load_start(self) -> None:
        self.me = await self.call(self.api.me)
        self.rooms = ordered(await self.call(self.api.rooms))
        if self.rooms:
            last = [r.id for r in self.rooms if r.id.hex() == self.ui_state.last_room]
            await self._switch(last[0] if last else self.rooms[0].id)
        else:
            self._show_welcome()
        # After the first paint: the shown room counts as read, the others are read back.
        for info in self.rooms:
            if info.id != self.current:
                await self._count_unread(info)
        self._show_rooms()
        self.ready = True
        self._started()
        self._poll_status()

    async def _count_unread(self, info: RoomInfo) -> None:
        marker = self.ui_state.read_hlc(info.id)
        if marker is None:
            # A room seen for the first time: what is there now counts as read.
            page = await self.call(self.api.history, info.id, limit=1)
            if page.messages:
                self.ui_state.mark_read(info.id, page.messages[-1].hlc)
                self._state_dirty = True
            return
        page = await self.call(self.api.history, info.id, limit=UNREAD_SCAN)
        fresh = [m for m in page.messages if m.hlc > marker and m.author != self.me.peer_id]
        self.unread[info.id] = len(fresh)
        self.mentions[info.id] = sum(1 for m in fresh if self._mentions_me(m))

    def _mentions_me(self, message: Message) -> bool:
        nick = self.me.nick
        if not nick or message.deleted or message.author == self.me.peer_id:
            return False
        pattern = rf"(?<![\w]){re.escape(nick)}(?![\w])"
        return re.search(pattern, message.text, re.IGNORECASE) is not None

    @work(exclusive=True, group="rooms")
    async def _reload_rooms(self) -> None:
        rooms = await self.attempt(self.api.rooms)
        if rooms is None:
            return
        known = {info.id for info in self.rooms}
        self.rooms = ordered(rooms)
        for info in rooms:
            if info.id not in known:
                await self._count_unread(info)
        self._show_rooms()
        ids = [info.id for info in rooms]
        if self.current not in ids:
            if ids:
                await self._switch(ids[0])
            else:
                self.current = None
                self._show_welcome()

    @work(group="room")
    async def _reload_room(self, room_id: bytes) -> None:
        info = await self.attempt(self.api.room, room_id)
        if info is None:
            return
        self.rooms = [info if r.id == room_id else r for r in self.rooms]
        if room_id == self.current:
            self._part(TopicBar).show(info)

    @work(exclusive=True, group="members")
    async def _load_members(self, room_id: bytes) -> None:
        members = await self.attempt(self.api.members, room_id)
        if members is None:
            return
        self.members[room_id] = members
        if room_id != self.current:
            return
        self._part(MemberList).show(members, self.me.peer_id)
        nicks = {m.peer_id: m.nick for m in members if m.nick}
        if self.me.nick:
            nicks[self.me.peer_id] = self.me.nick
        forked = {m.peer_id for m in members if m.forked}
        self.timeline.set_people(nicks, forked, self.me.nick)
        self.input.nicks = [n for n in nicks.values() if n]

    def _poll_status(self) -> None:
        if self.client is not None:
            self._load_status()

    @work(exclusive=True, group="status")
    async def _load_status(self) -> None:
        try:
            status = await self.call(self.api.status)
        except Exception:
            return
        self.status = status
        by_room = {room.room_id: room for room in status.rooms}
        changed = False
        rooms = []
        for info in self.rooms:
            room = by_room.get(info.id)
            if room is not None:
                updated = RoomInfo(
                    id=info.id,
                    name=info.name,
                    topic=info.topic,
                    members=info.members,
                    synced=room.synced,
                    behind=room.behind,
                    peers=len(room.peers),
                    messages=info.messages,
                    acked_seq=room.acked_seq,
                    held=room.held,
                )
                changed = changed or updated != info
                info = updated
                lag = updated.behind + updated.held
                peak = self._behind_peak.get(info.id, 0)
                self._behind_peak[info.id] = max(peak, lag) if lag else 0
            rooms.append(info)
        self.rooms = rooms
        if changed:
            self._show_rooms()
        self._show_status()
        if self.current is not None and self.current in by_room:
            self.timeline.set_acked(by_room[self.current].acked_seq)

    # -- showing ------------------------------------------------------------------------------

    def _room_info(self, room_id: bytes | None) -> RoomInfo | None:
        for info in self.rooms:
            if info.id == room_id:
                return info
        return None

    def _nick(self, peer_id: bytes, room_id: bytes | None = None) -> str:
        if peer_id == self.me.peer_id and self.me.nick:
            return inert_line(self.me.nick)
        for member in self.members.get(room_id or self.current or b"", []):
            if member.peer_id == peer_id and member.nick:
                return inert_line(member.nick)
        return short_id(peer_id)

    def _show_rooms(self) -> None:
        entries = [
            RoomEntry(
                info,
                self.unread.get(info.id, 0),
                self.mentions.get(info.id, 0),
                not info.synced,
            )
            for info in self.rooms
        ]
        self._part(RoomList).show(entries, self.current)

    def _show_status(self) -> None:
        room = self._room_info(self.current)
        progress: float | None = None
        if room is not None and room.behind + room.held:
            peak = self._behind_peak.get(room.id, 0)
            if peak:
                progress = 1.0 - (room.behind + room.held) / peak
        syncing = sum(1 for info in self.rooms if not info.synced)
        self._part(StatusBar).show(
            self.me.nick, self.me.peer_id, self.status, room, progress, syncing
        )

    def _show_welcome(self) -> None:
        welcome = self._part(Static, "#welcome")
        welcome.update(welcome_text(self.me))
        welcome.display = True
        self.timeline.display = False
        self.timeline.clear_room()
        self._part(TopicBar).show(None)
        self._part(MemberList).display = False  # no room, no members
        self._show_rooms()
        self._show_status()

    # -- switching rooms ------------------------------------------------------------------------

    async def _switch(self, room_id: bytes) -> None:
        """Show a room: its newest page, members and topic; it counts as read."""
        if self.current is not None and self.current != room_id:
            self._remember_read()
        self.current = room_id
        self.ui_state.last_room = room_id.hex()
        self.unread[room_id] = 0
        self.mentions[room_id] = 0
        info = self._room_info(room_id)
        self._part(Static, "#welcome").display = False
        self._fit_panels(self.size.width)
        timeline = self.timeline
        timeline.display = True
        self._part(TopicBar).show(info)
        self._show_rooms()
        self._show_status()
        self._search = None
        page = await self.attempt(self.api.history, room_id, limit=PAGE)
        if page is None or self.current != room_id:
            return
        timeline.show_room(
            room_id,
            page.messages,
            more_before=page.more_before,
            me=self.me.peer_id,
            read_hlc=self.ui_state.read_hlc(room_id),
        )
        if info is not None:
            timeline.set_acked(info.acked_seq)
        self._remember_read()
        self._load_members(room_id)

    @work(exclusive=True, group="switch")
    async def switch_room(self, room_id: bytes) -> None:
        await self._switch(room_id)

    def _remember_read(self) -> None:
        if self.current is None or self.timeline.room_id != self.current:
            return
        newest = self.timeline.newest(skip_deleted=False)
        # An empty room gets marker 0: all that comes later is unread.
        if self.ui_state.mark_read(self.current, newest.hlc if newest is not None else 0):
            self._state_dirty = True

    def _room_index(self) -> int:
        ids = [info.id for info in self.rooms]
        return ids.index(self.current) if self.current in ids else -1

    def action_next_room(self) -> None:
        if self.rooms:
            self.switch_room(self.rooms[(self._room_index() + 1) % len(self.rooms)].id)

    def action_previous_room(self) -> None:
        if self.rooms:
            self.switch_room(self.rooms[(self._room_index() - 1) % len(self.rooms)].id)

    def action_room(self, number: int) -> None:
        if 0 < number <= len(self.rooms):
            self.switch_room(self.rooms[number - 1].id)

    @on(RoomList.Picked)
    def _room_picked(self, message: RoomList.Picked) -> None:
        self.switch_room(message.room_id)

    async def _add_room(self, info: RoomInfo) -> None:
        """A room we created or joined: list it and show it."""
        if info.id not in {r.id for r in self.rooms}:
            self.rooms = ordered([*self.rooms, info])
        await self._switch(info.id)


def ordered(rooms: list[RoomInfo]) -> list[RoomInfo]:
    """Rooms by name (then id): the order, and so Alt+N, stays put across restarts."""
    return sorted(rooms, key=lambda info: (info.name.casefold(), info.id))
