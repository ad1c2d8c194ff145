"""The side panels and bars: rooms, members, topic and status, each drawn as `Text`.

They only draw what the app hands them (plain data from `ChatClient`); every string from
the network goes through `_safe.inert_line`. None of them calls the node.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual import events
from textual.message import Message
from textual.widgets import Static

from crdt import format_peer_id
from node import NodeStatus
from node.client import MemberInfo, RoomInfo

from ._layout import nick_style, short_id
from ._safe import inert_line

__all__ = ["MemberList", "RoomEntry", "RoomList", "StatusBar", "TopicBar", "progress_bar"]


@dataclass(frozen=True, slots=True)
class RoomEntry:
    info: RoomInfo
    unread: int
    mentions: int
    syncing: bool


class RoomList(Static):
    """Rooms with their number (Alt+N), unread count and hotlist marks: `@` a mention,
    `*` unread messages (cabal-cli, WeeChat)."""

    DEFAULT_CSS = """
    RoomList { width: 24; height: 1fr; padding: 0 1; border-right: solid $panel-lighten-2; }
    """

    class Picked(Message):
        def __init__(self, room_id: bytes) -> None:
            super().__init__()
            self.room_id = room_id

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.entries: list[RoomEntry] = []
        self.current: bytes | None = None

    def show(self, entries: list[RoomEntry], current: bytes | None) -> None:
        self.entries, self.current = entries, current
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append("Rooms\n", style="bold underline")
        if not entries:
            text.append("(none yet)\n", style="dim")
        for number, entry in enumerate(entries, 1):
            mark = "@" if entry.mentions else "*" if entry.unread else " "
            name = inert_line(entry.info.name) or short_id(entry.info.id)
            style = "bold" if entry.unread else ""
            if entry.info.id == current:
                style = "reverse bold"
            line = Text(no_wrap=True, overflow="ellipsis")
            line.append(f"{number if number < 10 else ' '} ", style="dim")
            line.append(mark, style="bold red" if entry.mentions else "bold yellow")
            line.append(f"#{name}", style=style)
            if entry.syncing:
                line.append(" ⟳", style="cyan")
            if entry.unread:
                line.append(f" {entry.unread if entry.unread < 1000 else '999+'}", style="yellow")
            line.append("\n")
            text.append_text(line)
        self.update(text)

    def on_click(self, event: events.Click) -> None:
        index = event.y - 1
        if 0 <= index < len(self.entries):
            self.post_message(self.Picked(self.entries[index].info.id))


class MemberList(Static):
    """A room's members: nick, short peer id, linked now (●) or not (○), forked (!)."""

    DEFAULT_CSS = """
    MemberList { width: 28; height: 1fr; padding: 0 1; border-left: solid $panel-lighten-2; }
    """

    def show(self, members: list[MemberInfo], me: bytes) -> None:
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append(f"Members ({len(members)})\n", style="bold underline")
        ordered = sorted(
            members,
            key=lambda m: (m.peer_id != me, not m.linked, (m.nick or "~").lower(), m.peer_id),
        )
        for member in ordered:
            you = member.peer_id == me
            if you:
                text.append("● ", style="green")
            else:
                text.append(
                    "● " if member.linked else "○ ", style="green" if member.linked else "dim"
                )
            nick = inert_line(member.nick) if member.nick else "you" if you else "(no nick)"
            text.append(nick[:14], style=nick_style(member.peer_id))
            if member.forked:
                text.append("!", style="bold red")
            text.append(f" {short_id(member.peer_id)}", style="dim")
            if you and nick.casefold() != "you":  # the nick "you" says it already
                text.append(" (you)", style="dim italic")
            text.append("\n")
        self.update(text)


class TopicBar(Static):
    """The room's name and topic, one line."""

    DEFAULT_CSS = """
    TopicBar { height: 1; background: $panel; padding: 0 1; }
    """

    def show(self, info: RoomInfo | None) -> None:
        text = Text(no_wrap=True, overflow="ellipsis")
        if info is None:
            text.append("rumor", style="bold")
        else:
            text.append(f"#{inert_line(info.name) or short_id(info.id)}", style="bold")
            if info.topic:
                text.append(" — ")
                text.append(inert_line(info.topic))
        self.update(text)


def progress_bar(fraction: float, width: int = 10) -> str:
    filled = max(0, min(width, round(fraction * width)))
    return "█" * filled + "░" * (width - filled)


class StatusBar(Static):
    """DHT contacts, links, and whether the current room is caught up (a bar while not)."""

    DEFAULT_CSS = """
    StatusBar { height: 1; background: $primary-background; padding: 0 1; }
    """

    def show(
        self,
        me_nick: str,
        me_id: bytes,
        status: NodeStatus | None,
        room: RoomInfo | None,
        progress: float | None,
        syncing_rooms: int,
    ) -> None:
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append(inert_line(me_nick) or "(no nick)", style="bold")
        text.append(f" {format_peer_id(me_id)[:8]}" if me_id else "", style="dim")
        if status is None:
            text.append(" │ starting…")
            self.update(text)
            return
        dht = "off" if status.dht_contacts is None else str(status.dht_contacts)
        text.append(f" │ DHT {dht} │ links {len(status.links)}")
        if status.failed_rooms:
            text.append(f" │ {len(status.failed_rooms)} room(s) failed", style="bold red")
        if room is not None:
            text.append(" │ ")
            if room.synced and progress is None:
                text.append("✓ caught up", style="green")
            else:
                fraction = progress if progress is not None else 0.0
                text.append(f"⟳ syncing {progress_bar(fraction)} {fraction:4.0%}", style="cyan")
                text.append(f" behind {room.behind}", style="dim")
            text.append(f" · {room.peers} peer{'s' if room.peers != 1 else ''} linked")
        others = syncing_rooms - (0 if room is None or room.synced else 1)
        if others > 0:
            text.append(f" │ {others} other room(s) syncing", style="dim")
        self.update(text)
