"""`RumorApp`: the chat UI. The node runs as a trio guest; the UI only uses `ChatClient`.

On mount the app starts a `TrioGuest` whose trio program opens the client (through the
factory it was given), posts it to the app, forwards the client's events as Textual
messages, and closes the client when the app ends. Every call to the client is a future
awaited in a worker, so the screen never waits on the node or the network; writes show
at once (local echo) and report failures as notices.
This module must never import the node's internals: only `node.client` and status types.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager
from datetime import tzinfo
from pathlib import Path
from typing import Any, ClassVar, Final, TypeVar

import outcome
import trio
from rich.text import Text
from textual import events, on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message as TextualMessage
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Static

from crdt import (
    AuthorForked,
    MemberJoined,
    MemberLeft,
    Message,
    MessageAdded,
    MessageChanged,
    NickChanged,
    TopicChanged,
)
from node import NodeStatus
from node.client import (
    ChatClient,
    ClientError,
    ClientEvent,
    Me,
    MemberInfo,
    RoomChanged,
    RoomInfo,
    RoomsChanged,
)

from ._bridge import GuestClosed, TrioGuest
from ._commands import COMMANDS, Command, CommandError, Invite, Say, parse, split_target
from ._input import ChatInput
from ._layout import ACTION_PREFIX, short_id
from ._panels import MemberList, RoomEntry, RoomList, StatusBar, TopicBar
from ._safe import inert_line
from ._screens import TextScreen, diagnostics_text, help_text, invite_text, mentions_text
from ._state import NOTIFY_MODES, STATE_FILE, UiState
from ._timeline import Timeline

__all__ = ["ClientFactory", "RumorApp"]

T = TypeVar("T")
W = TypeVar("W", bound=Widget)

ClientFactory = Callable[[], AbstractAsyncContextManager[ChatClient]]

PAGE: Final = 200  # messages per history page the timeline asks for
UNREAD_SCAN: Final = 500  # messages read back per room at start to count unread ones
MENTION_SCAN_PAGES: Final = 5  # pages per room /mentions reads back
SEARCH_PAGES: Final = 50  # older pages /search loads before giving up
STATUS_EVERY: Final = 1.0  # seconds between status polls
SAVE_EVERY: Final = 10.0  # seconds between saves of the read markers, when they moved


class ClientReady(TextualMessage):
    def __init__(self, client: ChatClient) -> None:
        super().__init__()
        self.client = client


class ClientEventPosted(TextualMessage):
    def __init__(self, event: ClientEvent) -> None:
        super().__init__()
        self.event = event


NARROW = 100  # columns below which the members panel hides unless asked for
TIGHT = 72  # columns below which the room list narrows


class RumorApp(App[int]):
    """The terminal chat client."""

    TITLE = "rumor"
    CSS = """
    Screen { layout: vertical; }
    #body { height: 1fr; }
    #center { width: 1fr; }
    #welcome { height: 1fr; padding: 1 2; }
    #input-row { height: auto; border-top: solid $panel-lighten-2; }
    #prompt { width: auto; padding: 0 0 0 1; color: $accent; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+q", "quit", "quit", priority=True),
        Binding("ctrl+n", "next_room", "next room", priority=True),
        Binding("ctrl+p", "previous_room", "previous room", priority=True),
        *(
            Binding(f"alt+{n}", f"room({n})", f"room {n}", show=False, priority=True)
            for n in range(1, 10)
        ),
        Binding("f1", "help", "help"),
        Binding("f2", "toggle_members", "members"),
        Binding("f4", "peers", "diagnostics"),
        Binding("alt+up", "select(-1)", "select older", show=False, priority=True),
        Binding("alt+down", "select(1)", "select newer", show=False, priority=True),
        Binding("escape", "unselect", "clear selection", show=False),
        Binding("ctrl+home", "timeline_top", "top", show=False),
        Binding("ctrl+end", "timeline_bottom", "bottom", show=False),
        Binding("ctrl+l", "command_palette", "palette", show=False),
    ]

    def __init__(
        self,
        client_factory: ClientFactory,
        *,
        state_dir: Path | None = None,
        tz: tzinfo | None = None,
        notify_mode: str | None = None,
        clock_ms: Callable[[], int] | None = None,
    ) -> None:
        super().__init__()
        self.client_factory = client_factory
        self.state_path = state_dir / STATE_FILE if state_dir is not None else None
        self.ui_state = UiState.load(self.state_path) if self.state_path else UiState()
        if notify_mode is not None:
            self.ui_state.notify = notify_mode
        self.tz = tz
        self.clock_ms = clock_ms or _wall_ms
        self.guest = TrioGuest()
        self.client: ChatClient | None = None
        self.me = Me(b"", "", "")
        self.rooms: list[RoomInfo] = []
        self.current: bytes | None = None
        self.unread: dict[bytes, int] = {}
        self.mentions: dict[bytes, int] = {}
        self.members: dict[bytes, list[MemberInfo]] = {}
        self.status: NodeStatus | None = None
        self.ready = False  # the client is open and the first rooms are shown
        self.failure: str | None = None
        self._behind_peak: dict[bytes, int] = {}
        self._search: tuple[str, bytes | None] | None = None
        self._state_dirty = False
        self.bells = 0  # mentions signalled (bell or desktop notice), for tests
        self._parts: dict[str, Widget] = {}
        self._timeline: Timeline | None = None  # kept: still read while unmounting
        self._input: ChatInput | None = None

    # -- layout ---------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        with Horizontal(id="body"):
            yield RoomList(id="rooms")
            with Vertical(id="center"):
                yield TopicBar(id="topic")
                yield Static(self._welcome_text(), id="welcome")
                yield Timeline(tz=self.tz, id="timeline")
                with Horizontal(id="input-row"):
                    yield Static("›", id="prompt")
                    yield ChatInput(id="input")
            yield MemberList(id="members")
        yield StatusBar(id="status")

    def _part(self, kind: type[W], selector: str | None = None) -> W:
        """A widget of the screen, found once and kept: workers finishing while the app
        shuts down still update it harmlessly (it is no longer on screen)."""
        key = selector or kind.__name__
        found = self._parts.get(key)
        if found is None:
            found = self.query_one(selector, kind) if selector else self.query_one(kind)
            self._parts[key] = found
        assert isinstance(found, kind)
        return found

    @property
    def timeline(self) -> Timeline:
        if self._timeline is None:
            self._timeline = self.query_one(Timeline)
        return self._timeline

    @property
    def input(self) -> ChatInput:
        if self._input is None:
            self._input = self.query_one(ChatInput)
        return self._input

    def on_mount(self) -> None:
        self._timeline, self._input = self.query_one(Timeline), self.query_one(ChatInput)
        for kind in (RoomList, MemberList, TopicBar, StatusBar):
            self._part(kind)
        self._part(Static, "#welcome")
        self.timeline.display = False
        self._fit_panels(self.size.width)
        self._part(RoomList).show([], None)
        self._part(TopicBar).show(None)
        self._part(StatusBar).show("", b"", None, None, None, 0)
        self.input.focus()
        done = self.guest.start(self._trio_main)
        done.add_done_callback(self._guest_ended)
        self.set_interval(STATUS_EVERY, self._poll_status)
        self.set_interval(SAVE_EVERY, self._save_if_dirty)

    async def on_unmount(self) -> None:
        self.workers.cancel_all()
        self._remember_read()
        self._save_state()
        await self.guest.aclose()

    # -- the trio side ----------------------------------------------------------------------

    async def _trio_main(self, stopping: trio.Event) -> None:
        """Open the client, hand it to the app, forward its events until the app ends."""
        async with self.client_factory() as client, trio.open_nursery() as nursery:
            nursery.start_soon(self._forward_events, client)
            self.post_message(ClientReady(client))
            await stopping.wait()
            nursery.cancel_scope.cancel()

    async def _forward_events(self, client: ChatClient) -> None:
        events: AsyncIterator[ClientEvent]
        async with client.events() as events:
            async for event in events:
                self.post_message(ClientEventPosted(event))

    def _guest_ended(self, future: Any) -> None:
        if future.cancelled():
            return
        result = future.result()
        if isinstance(result, outcome.Error) and self.is_running:
            error = result.error
            self.failure = f"rumor: {_one_line(error)}"
            self.exit(1, message=self.failure)

    async def call(self, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """``await fn(*args, **kwargs)`` on the trio side (the client's methods)."""
        return await self.guest.call(functools.partial(fn, *args, **kwargs))

    async def attempt(self, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T | None:
        """`call`, with a refusal or a failure shown as a notice (None then)."""
        _, result = await self.attempted(fn, *args, **kwargs)
        return result

    async def attempted(
        self, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any
    ) -> tuple[bool, T | None]:
        """`attempt`, saying whether the call succeeded (for calls that return None)."""
        try:
            return True, await self.call(fn, *args, **kwargs)
        except ClientError as exc:
            self.notify(inert_line(str(exc)), title="refused", severity="error")
        except GuestClosed:
            pass
        except Exception as exc:
            self.notify(_one_line(exc), title="failed", severity="error")
        return False, None

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: Any = "information",
        timeout: float | None = None,
        markup: bool = False,
    ) -> None:
        """`App.notify`, with markup off by default: notices quote network text."""
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=markup)

    @property
    def api(self) -> ChatClient:
        if self.client is None:
            raise GuestClosed("the node is still opening")
        return self.client

    # -- the client's news --------------------------------------------------------------------

    @on(ClientReady)
    async def _client_ready(self, message: ClientReady) -> None:
        self.client = message.client
        self._load_start()

    @work(exclusive=True, group="start")
    async def _load_start(self) -> None:
        self.me = await self.call(self.api.me)
        self.rooms = _ordered(await self.call(self.api.rooms))
        for info in self.rooms:
            await self._count_unread(info)
        self._show_rooms()
        if self.rooms:
            last = [r.id for r in self.rooms if r.id.hex() == self.ui_state.last_room]
            await self._switch(last[0] if last else self.rooms[0].id)
        else:
            self._show_welcome()
        self.ready = True
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

    @on(ClientEventPosted)
    def _client_event(self, message: ClientEventPosted) -> None:
        event = message.event
        if isinstance(event, RoomsChanged):
            self._reload_rooms()
            return
        assert isinstance(event, RoomChanged)
        change = event.change
        if isinstance(change, MessageAdded | MessageChanged):
            self._fetch_message(event.room_id, change.id, isinstance(change, MessageAdded))
        elif isinstance(change, TopicChanged):
            self._reload_room(event.room_id)
        elif (
            isinstance(change, NickChanged | MemberJoined | MemberLeft | AuthorForked)
            and event.room_id == self.current
        ):
            self._load_members(event.room_id)

    @work(group="messages")
    async def _fetch_message(self, room_id: bytes, message_id: bytes, added: bool) -> None:
        found = await self.attempt(self.api.message, room_id, message_id)
        if found is None:
            return
        if room_id == self.current:
            self.timeline.upsert(found)
            if self.timeline._follow and self.screen.is_current:
                self._remember_read()
        if not added or found.author == self.me.peer_id:
            return
        mention = self._mentions_me(found)
        if room_id != self.current:
            self.unread[room_id] = self.unread.get(room_id, 0) + 1
            if mention:
                self.mentions[room_id] = self.mentions.get(room_id, 0) + 1
            self._show_rooms()
        if mention:
            self._signal_mention(room_id, found)

    def _mentions_me(self, message: Message) -> bool:
        nick = self.me.nick
        if not nick or message.deleted or message.author == self.me.peer_id:
            return False
        pattern = rf"(?<![\w]){re.escape(nick)}(?![\w])"
        return re.search(pattern, message.text, re.IGNORECASE) is not None

    def _signal_mention(self, room_id: bytes, message: Message) -> None:
        """A mention rings the bell or asks the terminal for a desktop notification."""
        mode = self.ui_state.notify
        if mode == "off":
            return
        self.bells += 1
        room = self._room_info(room_id)
        where = f"#{inert_line(room.name)}" if room else "rumor"
        who = self._nick(message.author)
        body = inert_line(message.text)[:120]
        if mode in ("bell", "both"):
            self.bell()
        if mode in ("desktop", "both"):
            self._desktop_notification(f"{who} in {where}", body)
        if room_id != self.current:
            self.notify(f"{who}: {body}", title=where, timeout=4)

    def _desktop_notification(self, title: str, body: str) -> None:
        """OSC 777 (rxvt, foot, Konsole, VTE) and OSC 9 (iTerm2, kitty, WezTerm, Windows
        Terminal); terminals that know neither ignore them. Text is made one-line and free
        of escape characters by `inert_line`, and ';' is kept out of OSC 777's fields."""
        driver = self._driver
        if driver is None or self.is_headless:
            return
        title = inert_line(title).replace(";", ",")
        body = inert_line(body)
        driver.write(f"\x1b]777;notify;{title};{body.replace(';', ',')}\x07")
        driver.write(f"\x1b]9;{title}: {body}\x07")

    @work(exclusive=True, group="rooms")
    async def _reload_rooms(self) -> None:
        rooms = await self.attempt(self.api.rooms)
        if rooms is None:
            return
        known = {info.id for info in self.rooms}
        self.rooms = _ordered(rooms)
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
                )
                changed = changed or updated != info
                info = updated
                lag = room.behind + room.held
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
        if room is not None and self.status is not None:
            for status in self.status.rooms:
                if status.room_id == room.id:
                    lag = status.behind + status.held
                    peak = self._behind_peak.get(room.id, 0)
                    if lag and peak:
                        progress = 1.0 - lag / peak
        syncing = sum(1 for info in self.rooms if not info.synced)
        self._part(StatusBar).show(
            self.me.nick, self.me.peer_id, self.status, room, progress, syncing
        )

    def _welcome_text(self) -> Text:
        text = Text()
        text.append("Welcome to rumor\n\n", style="bold")
        text.append("A chat with no server: your messages live on your machine and on the")
        text.append(" machines of the people in your rooms.\n\n")
        if self.me.peer_id:
            text.append("You are ")
            text.append(short_id(self.me.peer_id), style="bold")
            text.append(f"{' (' + inert_line(self.me.nick) + ')' if self.me.nick else ''}.\n\n")
        text.append("1. ", style="bold")
        text.append("pick a nick:        ")
        text.append("/nick NAME\n", style="bold cyan")
        text.append("2. ", style="bold")
        text.append("create a room:      ")
        text.append("/create NAME\n", style="bold cyan")
        text.append("   ", style="bold")
        text.append("or join one:        ")
        text.append("paste an invite (rumor://…)\n\n", style="bold cyan")
        text.append("F1 or /help lists every command; Ctrl+Q quits.", style="dim")
        return text

    def _show_welcome(self) -> None:
        welcome = self._part(Static, "#welcome")
        welcome.update(self._welcome_text())
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

    def _save_state(self) -> None:
        if self.state_path is not None:
            self.ui_state.save(self.state_path)
        self._state_dirty = False

    def _save_if_dirty(self) -> None:
        if self._state_dirty:
            self._save_state()

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

    # -- timeline requests ----------------------------------------------------------------------

    @on(Timeline.NeedOlder)
    def _need_older(self, message: Timeline.NeedOlder) -> None:
        self._load_older(message.room_id, message.before)

    @work(group="older")
    async def _load_older(self, room_id: bytes, before: bytes) -> None:
        page = await self.attempt(self.api.history, room_id, before=before, limit=PAGE)
        if page is not None:
            self.timeline.add_older(room_id, page.messages, more_before=page.more_before)
        elif room_id == self.timeline.room_id:
            self.timeline.loading_older = False

    @on(Timeline.NeedQuote)
    def _need_quote(self, message: Timeline.NeedQuote) -> None:
        self._load_quote(message.room_id, message.message_id)

    @work(group="quotes")
    async def _load_quote(self, room_id: bytes, message_id: bytes) -> None:
        found = await self.attempt(self.api.message, room_id, message_id)
        if found is not None and room_id == self.timeline.room_id:
            self.timeline.add_quote(found)

    def action_scroll_timeline(self, pages: int) -> None:
        timeline = self.timeline
        height = max(timeline.size.height - 1, 1)
        target = timeline.scroll_y + pages * height
        timeline.scroll_to(y=target, animate=False, immediate=True, force=True)

    def action_timeline_top(self) -> None:
        self.timeline.scroll_to(y=0, animate=False, immediate=True, force=True)

    def action_timeline_bottom(self) -> None:
        timeline = self.timeline
        timeline.scroll_to(y=timeline.max_scroll_y, animate=False, immediate=True, force=True)

    def action_select(self, delta: int) -> None:
        self.timeline.move_selection(delta)

    def action_unselect(self) -> None:
        self.timeline.select(None, scroll=False)

    # -- input ------------------------------------------------------------------------------------

    @on(ChatInput.EditLast)
    def _edit_last(self) -> None:
        last = self.timeline.newest(own=True)
        if last is None:
            return
        self.timeline.select(last.id)
        self.input.set_text(f"/edit {last.text}")

    @on(ChatInput.Submitted)
    def _submitted(self, message: ChatInput.Submitted) -> None:
        try:
            parsed = parse(message.text)
        except CommandError as exc:
            self.notify(str(exc), severity="warning")
            return
        if parsed is None:
            return
        if self.client is None or not self.ready:
            self.input.set_text(message.text)  # kept, to send once the node is open
            self.notify("the node is still opening", severity="warning")
            return
        if isinstance(parsed, Say):
            self._say(parsed.text)
        elif isinstance(parsed, Invite):
            self._join(parsed.uri)
        else:
            self.run_command(parsed)

    def _need_room(self) -> bytes | None:
        if self.current is None:
            self.notify("no room yet: /create NAME or /join INVITE", severity="warning")
        return self.current

    def _say(self, text: str, reply_to: bytes | None = None) -> None:
        room_id = self._need_room()
        if room_id is None:
            return
        token = self.timeline.add_pending(text, reply_to, self.clock_ms())
        self._send(room_id, text, reply_to, token)

    @work(group="writes")
    async def _send(self, room_id: bytes, text: str, reply_to: bytes | None, token: bytes) -> None:
        try:
            message_id = await self.attempt(self.api.send, room_id, text, reply_to=reply_to)
            if message_id is not None and room_id == self.timeline.room_id:
                stored = await self.attempt(self.api.message, room_id, message_id)
                if stored is not None:
                    self.timeline.upsert(stored)
        finally:
            if room_id == self.timeline.room_id:
                self.timeline.drop_pending(token)

    def _target(self, arg: str, *, own: bool) -> tuple[Message | None, str]:
        """The message a command names (``^N``, else the selection, else the newest) and
        the rest of its argument."""
        back, rest = split_target(arg)
        timeline = self.timeline
        target: Message | None
        if back is not None:
            target = timeline.back(back)
        elif timeline.selected is not None:
            target = timeline.message(timeline.selected)
        else:
            target = timeline.newest(own=own)
        if target is None:
            self.notify("no such message", severity="warning")
        elif own and target.author != self.me.peer_id:
            self.notify("that is someone else's message", severity="warning")
            target = None
        return target, rest

    def run_command(self, command: Command) -> None:
        handler = getattr(self, f"_cmd_{command.name}")
        handler(command.arg)

    def _cmd_create(self, arg: str) -> None:
        self._create(arg)

    @work(group="writes")
    async def _create(self, name: str) -> None:
        info = await self.attempt(self.api.create_room, name)
        if info is not None:
            await self._add_room(info)

    async def _add_room(self, info: RoomInfo) -> None:
        if info.id not in {r.id for r in self.rooms}:
            self.rooms = _ordered([*self.rooms, info])
        await self._switch(info.id)

    def _cmd_join(self, arg: str) -> None:
        self._join(arg)

    @work(group="writes")
    async def _join(self, invite: str) -> None:
        info = await self.attempt(self.api.join, invite)
        if info is not None:
            self.notify(f"joined #{inert_line(info.name)}")
            await self._add_room(info)

    def _cmd_invite(self, arg: str) -> None:
        room_id = self._need_room()
        if room_id is not None:
            self._show_invite(room_id)

    @work(group="reads")
    async def _show_invite(self, room_id: bytes) -> None:
        uri = await self.attempt(self.api.invite, room_id)
        info = self._room_info(room_id)
        if uri is None or info is None:
            return
        self.copy_to_clipboard(uri)
        await self.push_screen(TextScreen("Invite", invite_text(info, uri), id="invite-screen"))

    def _cmd_nick(self, arg: str) -> None:
        self._set_nick(arg)

    @work(group="writes")
    async def _set_nick(self, nick: str) -> None:
        previous = self.me
        self.me = Me(previous.peer_id, nick, previous.address)  # local echo
        done, _ = await self.attempted(self.api.set_nick, nick)
        if not done and not await self._nick_is(nick):
            self.me = previous
        self._show_status()
        if self.current is not None:
            self._load_members(self.current)
        else:
            self._show_welcome()

    async def _nick_is(self, nick: str) -> bool:
        me = await self.attempt(self.api.me)
        if me is not None:
            self.me = me
        return me is not None and me.nick == nick

    def _cmd_topic(self, arg: str) -> None:
        room_id = self._need_room()
        if room_id is not None:
            self._write(self.api.set_topic, room_id, arg)

    @work(group="writes")
    async def _write(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        await self.attempt(fn, *args)

    def _cmd_me(self, arg: str) -> None:
        self._say(ACTION_PREFIX + arg)

    def _cmd_reply(self, arg: str) -> None:
        target, text = self._target(arg, own=False)
        if target is None:
            return
        if not text.strip():
            self.notify("usage: /reply [^N] TEXT", severity="warning")
            return
        self.timeline.select(None, scroll=False)
        self._say(text, reply_to=target.id)

    def _cmd_edit(self, arg: str) -> None:
        room_id = self._need_room()
        if room_id is None:
            return
        target, text = self._target(arg, own=True)
        if target is None:
            return
        if not text.strip():
            self.notify("usage: /edit [^N] TEXT", severity="warning")
            return
        self.timeline.select(None, scroll=False)
        self._write(self.api.edit, room_id, target.id, text)

    def _cmd_delete(self, arg: str) -> None:
        room_id = self._need_room()
        if room_id is None:
            return
        target, _ = self._target(arg, own=True)
        if target is not None:
            self.timeline.select(None, scroll=False)
            self._write(self.api.delete, room_id, target.id)

    def _cmd_react(self, arg: str) -> None:
        room_id = self._need_room()
        if room_id is None:
            return
        target, emoji = self._target(arg, own=False)
        emoji = emoji.strip()
        if target is None:
            return
        if not emoji:
            self.notify("usage: /react [^N] EMOJI", severity="warning")
            return
        mine = any(e == emoji and self.me.peer_id in who for e, who in target.reactions)
        self._write(self.api.unreact if mine else self.api.react, room_id, target.id, emoji)

    def _cmd_search(self, arg: str) -> None:
        room_id = self._need_room()
        if room_id is None:
            return
        if not arg:
            if self._search is None:
                self.notify("usage: /search TEXT", severity="warning")
                return
            arg = self._search[0]
        self._run_search(room_id, arg)

    @work(exclusive=True, group="search")
    async def _run_search(self, room_id: bytes, needle: str) -> None:
        timeline = self.timeline
        before = self._search[1] if self._search and self._search[0] == needle else None
        for _ in range(SEARCH_PAGES):
            hit = timeline.find(needle, before)
            if hit is not None:
                self._search = (needle, hit.id)
                timeline.select(hit.id)
                return
            if not timeline.more_before or not timeline.messages:
                break
            oldest = timeline.messages[0]
            page = await self.attempt(self.api.history, room_id, before=oldest.id, limit=PAGE)
            if page is None or self.current != room_id:
                return
            timeline.add_older(room_id, page.messages, more_before=page.more_before)
        self.notify(
            f"no {'more ' if before else ''}messages contain “{inert_line(needle)}”",
            severity="warning",
        )
        self._search = None

    def _cmd_mentions(self, arg: str) -> None:
        self._show_mentions()

    @work(exclusive=True, group="reads")
    async def _show_mentions(self) -> None:
        found: list[tuple[RoomInfo, Message]] = []
        for info in self.rooms:
            before: bytes | None = None
            for _ in range(MENTION_SCAN_PAGES):
                page = await self.attempt(self.api.history, info.id, before=before, limit=PAGE)
                if page is None:
                    break
                found.extend((info, m) for m in page.messages if self._mentions_me(m))
                if not page.more_before or not page.messages:
                    break
                before = page.messages[0].id
            if info.id not in self.members:
                members = await self.attempt(self.api.members, info.id)
                if members is not None:
                    self.members[info.id] = members
        found.sort(key=lambda pair: pair[1].hlc, reverse=True)
        body = mentions_text(found, lambda room, peer: self._nick(peer, room), self.tz)
        await self.push_screen(TextScreen("Mentions", body, id="mentions-screen"))

    def _cmd_leave(self, arg: str) -> None:
        room_id = self._need_room()
        if room_id is not None:
            self._leave(room_id)

    @work(group="writes")
    async def _leave(self, room_id: bytes) -> None:
        info = self._room_info(room_id)
        done, _ = await self.attempted(self.api.leave, room_id)
        if not done:
            rooms = await self.attempt(self.api.rooms)
            if rooms is not None and room_id in {r.id for r in rooms}:
                return  # refused: the notice is shown
        self.rooms = [r for r in self.rooms if r.id != room_id]
        if info is not None:
            self.notify(f"left #{inert_line(info.name)}")
        if self.rooms:
            await self._switch(self.rooms[0].id)
        else:
            self.current = None
            self._show_welcome()

    def _cmd_peers(self, arg: str) -> None:
        self.action_peers()

    def action_peers(self) -> None:
        room_id = self._need_room()
        if room_id is not None and self.client is not None:
            self._show_diagnostics(room_id)

    @work(exclusive=True, group="reads")
    async def _show_diagnostics(self, room_id: bytes) -> None:
        diagnostics = await self.attempt(self.api.diagnostics, room_id)
        status = await self.attempt(self.api.status)
        info = await self.attempt(self.api.room, room_id)
        if diagnostics is None or status is None or info is None:
            return
        body = diagnostics_text(info, diagnostics, status, self.clock_ms())
        await self.push_screen(TextScreen("Diagnostics", body, id="peers-screen"))

    def on_resize(self, event: events.Resize) -> None:
        """Fit the panels to the terminal: below 100 columns the members panel gives way
        to the timeline (F2 still shows it), below 72 the room list narrows."""
        self._fit_panels(event.size.width)

    def _fit_panels(self, width: int) -> None:
        members = self._part(MemberList)
        members.display = self.ui_state.show_members and width >= NARROW
        self._part(RoomList).styles.width = 24 if width >= TIGHT else 14

    def _cmd_members(self, arg: str) -> None:
        self.action_toggle_members()

    def action_toggle_members(self) -> None:
        panel = self._part(MemberList)
        panel.display = not panel.display
        self.ui_state.show_members = bool(panel.display)
        self._state_dirty = True

    def _cmd_notify(self, arg: str) -> None:
        if not arg:
            self.notify(f"mentions: {self.ui_state.notify} (bell, desktop, both or off)")
            return
        if arg not in NOTIFY_MODES:
            self.notify("usage: /notify bell|desktop|both|off", severity="warning")
            return
        self.ui_state.notify = arg
        self._state_dirty = True
        self.notify(f"mentions: {arg}")

    def _cmd_help(self, arg: str) -> None:
        self.action_help()

    def action_help(self) -> None:
        self.push_screen(TextScreen("Help", help_text(), id="help-screen"))

    def _cmd_quit(self, arg: str) -> None:
        self.exit(0)

    async def action_quit(self) -> None:
        self.exit(0)

    # -- command palette ------------------------------------------------------------------------

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        """The palette lists the slash commands: those without arguments run, the others
        put the command in the input line to be completed."""
        for spec in COMMANDS.values():
            usage = f"/{spec.name} {spec.args}".rstrip()
            if spec.needs_arg or spec.args.startswith("[^N]"):
                callback = _prefill(self, f"/{spec.name} ")
            else:
                callback = _runner(self, spec.name)
            yield SystemCommand(usage, spec.help, callback)
        for number, info in enumerate(self.rooms[:9], 1):
            name = inert_line(info.name)
            yield SystemCommand(f"Go to #{name}", f"Alt+{number}", _goto(self, info.id))


def _prefill(app: RumorApp, text: str) -> Callable[[], None]:
    def callback() -> None:
        app.input.set_text(text)
        app.input.focus()

    return callback


def _runner(app: RumorApp, name: str) -> Callable[[], None]:
    def callback() -> None:
        if app.client is None:
            app.notify("the node is still opening", severity="warning")
            return
        app.run_command(Command(name, ""))

    return callback


def _goto(app: RumorApp, room_id: bytes) -> Callable[[], None]:
    def callback() -> None:
        app.switch_room(room_id)

    return callback


def _wall_ms() -> int:
    return int(time.time() * 1000)


def _ordered(rooms: list[RoomInfo]) -> list[RoomInfo]:
    """Rooms by name (then id): the order, and so Alt+N, stays put across restarts."""
    return sorted(rooms, key=lambda info: (info.name.casefold(), info.id))


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return inert_line(text[0]) if text else type(error).__name__
