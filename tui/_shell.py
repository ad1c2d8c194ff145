"""`AppShell`: the frame of the chat UI: its widgets, the node as a trio guest, and calls.

On mount the shell starts a `TrioGuest` whose trio program opens the client (through the
factory it was given), posts it to the app, forwards the client's events as Textual
messages, and closes the client when the app ends. Every call to the client is a future
awaited in a worker (`call`, `attempt`), so the screen never waits on the node or the
network; refusals and failures become notices.

The shell decides nothing about rooms, messages or commands (the layers above it do:
`_rooms`, `_feed`, `_app`), and must never import the node's internals: only
`node.client` and status types.
"""

from __future__ import annotations

import functools
import gc
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from datetime import tzinfo
from pathlib import Path
from typing import Any, Final, TypeVar

import outcome
import trio
from textual import events
from textual.app import App, ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message as TextualMessage
from textual.widget import Widget
from textual.widgets import Static

from node import NodeStatus
from node.client import ChatClient, ClientError, ClientEvent, Me, MemberInfo, RoomInfo

from . import _gc
from ._bridge import GuestClosed, TrioGuest
from ._inbox import Inbox
from ._input import ChatInput
from ._panels import MemberList, RoomList, StatusBar, TopicBar
from ._safe import inert_line
from ._screens import welcome_text
from ._state import STATE_FILE, UiState
from ._timeline import Timeline

__all__ = ["AppShell", "ClientEventsPosted", "ClientFactory", "ClientReady", "one_line"]

T = TypeVar("T")
W = TypeVar("W", bound=Widget)

ClientFactory = Callable[[], AbstractAsyncContextManager[ChatClient]]

STATUS_EVERY: Final = 1.0  # seconds between status polls
SAVE_EVERY: Final = 10.0  # seconds between saves of the read markers, when they moved
NARROW: Final = 100  # columns below which the members panel hides unless asked for
TIGHT: Final = 72  # columns below which the room list narrows
EVENT_BATCH: Final = 500  # client events posted to the app as one message, at most


class ClientReady(TextualMessage):
    def __init__(self, client: ChatClient) -> None:
        super().__init__()
        self.client = client


class ClientEventsPosted(TextualMessage):
    """The client's events that were waiting, in order (a burst comes as one message)."""

    def __init__(self, events: list[ClientEvent]) -> None:
        super().__init__()
        self.events = events


class AppShell(App[int]):
    """The app's frame: widgets, the trio guest, calls to the client, the saved state."""

    CSS = """
    Screen { layout: vertical; }
    #body { height: 1fr; }
    #center { width: 1fr; }
    #welcome { height: 1fr; padding: 1 2; }
    #input-row { height: auto; border-top: solid $panel-lighten-2; }
    #prompt { width: auto; padding: 0 0 0 1; color: $accent; }
    """

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
        self.clock_ms = clock_ms or wall_ms
        self.guest = TrioGuest()
        self.client: ChatClient | None = None
        self.me = Me(b"", "", "")
        self.rooms: list[RoomInfo] = []
        self.current: bytes | None = None
        self.unread: dict[bytes, int] = {}
        self.mentions: dict[bytes, int] = {}
        self.members: dict[bytes, list[MemberInfo]] = {}
        self.status: NodeStatus | None = None
        self.ready = False  # the client is open, a room is shown, the others are counted
        self.failure: str | None = None
        self._behind_peak: dict[bytes, int] = {}
        self._search: tuple[str, bytes | None] | None = None
        self._state_dirty = False
        self.inbox = Inbox()  # messages the events named, to fetch (see `FeedApp`)
        self._draining = False  # a worker is fetching them
        self._gc_thresholds: tuple[int, int, int] | None = None  # set while `_gc` rules
        self._collector = _gc.Collector(time.monotonic())
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
                yield Static(welcome_text(self.me), id="welcome")
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
        if self._gc_thresholds is not None:
            _gc.uninstall(self._gc_thresholds)
            self._gc_thresholds = None
        await self.guest.aclose()

    def _started(self) -> None:
        """The first room is shown: what is alive now lives as long as the app, so full
        garbage collections leave it out and wait for a pause in the typing (`_gc`)."""
        if self._gc_thresholds is None:
            self._gc_thresholds = _gc.install()
            self._collector = _gc.Collector(time.monotonic())
            self.set_interval(_gc.QUIET / 2, self._collect_if_due)

    def _collect_if_due(self) -> None:
        now = time.monotonic()
        if self._collector.due(now):
            gc.collect()
            self._collector.collected(time.monotonic())

    async def on_event(self, event: events.Event) -> None:
        if isinstance(
            event, events.Key | events.MouseDown | events.MouseScrollUp | events.MouseScrollDown
        ):
            self._collector.input(time.monotonic())
        await super().on_event(event)

    # -- the trio side ----------------------------------------------------------------------

    async def _trio_main(self, stopping: trio.Event) -> None:
        """Open the client, hand it to the app, forward its events until the app ends."""
        async with self.client_factory() as client, trio.open_nursery() as nursery:
            nursery.start_soon(self._forward_events, client)
            self.post_message(ClientReady(client))
            await stopping.wait()
            nursery.cancel_scope.cancel()

    async def _forward_events(self, client: ChatClient) -> None:
        """Post the client's events to the app, what has queued up as one message."""
        send, receive = trio.open_memory_channel[ClientEvent](EVENT_BATCH)
        events: AsyncIterator[ClientEvent]
        async with client.events() as events, trio.open_nursery() as nursery:
            nursery.start_soon(_read_events, events, send)
            async with receive:
                async for event in receive:
                    batch = [event]
                    while len(batch) < EVENT_BATCH:
                        try:
                            batch.append(receive.receive_nowait())
                        except trio.WouldBlock:
                            break
                    self.post_message(ClientEventsPosted(batch))

    def _guest_ended(self, future: Any) -> None:
        if future.cancelled():
            return
        result = future.result()
        if isinstance(result, outcome.Error) and self.is_running:
            error = result.error
            self.failure = f"rumor: {one_line(error)}"
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
            self.notify(one_line(exc), title="failed", severity="error")
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

    def on_resize(self, event: events.Resize) -> None:
        """Fit the panels to the terminal: below NARROW columns the members panel gives
        way to the timeline (F2 still shows it), below TIGHT the room list narrows."""
        self._fit_panels(event.size.width)

    def _fit_panels(self, width: int) -> None:
        members = self._part(MemberList)
        members.display = self.ui_state.show_members and width >= NARROW
        self._part(RoomList).styles.width = 24 if width >= TIGHT else 14

    # -- kept state ---------------------------------------------------------------------------

    def _save_state(self) -> None:
        if self.state_path is not None:
            self.ui_state.save(self.state_path)
        self._state_dirty = False

    def _save_if_dirty(self) -> None:
        if self._state_dirty:
            self._save_state()

    # -- what the layers above provide ----------------------------------------------------------

    def _poll_status(self) -> None:
        """Ask the node for its status (every STATUS_EVERY seconds); see `RoomsApp`."""

    def _remember_read(self) -> None:
        """Move the current room's read marker to what is shown; see `RoomsApp`."""


async def _read_events(
    events: AsyncIterator[ClientEvent], send: trio.MemorySendChannel[ClientEvent]
) -> None:
    async with send:
        async for event in events:
            await send.send(event)


def wall_ms() -> int:
    return int(time.time() * 1000)


def one_line(error: BaseException) -> str:
    """An error as one inert line for a notice."""
    text = str(error).strip().splitlines()
    return inert_line(text[0]) if text else type(error).__name__
