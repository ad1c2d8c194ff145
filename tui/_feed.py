"""`FeedApp`: what the client's event stream and the timeline's requests do to the screen.

New and changed messages go to the timeline (when their room is shown) or to the room's
unread and mention counts (when it is not); mentions ring the bell or ask the terminal for
a desktop notification; the timeline's requests for older pages and quoted messages are
answered here. It must never parse what the user types (that is `_app`) and never call
the node except through the shell's `call`/`attempt`.
"""

from __future__ import annotations

import asyncio
from typing import Final

from textual import on, work

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
from node.client import ClientError, RoomsChanged

from ._bridge import GuestClosed
from ._rooms import PAGE, RoomsApp
from ._safe import inert_line
from ._shell import ClientEventsPosted
from ._timeline import Timeline

__all__ = ["FeedApp"]

FRAME: Final = 0.05  # seconds a round of news waits for more: at most 20 repaints a second
SLICE: Final = 200  # messages fetched and laid out per round
MENTIONS_SIGNALLED: Final = 3  # bells (or notices) per round at most


class FeedApp(RoomsApp):
    """The rooms layer, plus the news: client events, mentions, timeline requests."""

    @on(ClientEventsPosted)
    def _client_events(self, message: ClientEventsPosted) -> None:
        for event in message.events:
            if isinstance(event, RoomsChanged):
                self._reload_rooms()
                continue
            change = event.change
            if isinstance(change, MessageAdded | MessageChanged):
                self.inbox.add(event.room_id, change.id, added=isinstance(change, MessageAdded))
            elif isinstance(change, TopicChanged):
                self._reload_room(event.room_id)
            elif (
                isinstance(change, NickChanged | MemberJoined | MemberLeft | AuthorForked)
                and event.room_id == self.current
            ):
                self._load_members(event.room_id)
        if self.inbox and not self._draining:
            self._draining = True
            self._drain_inbox()

    @work(group="feed")
    async def _drain_inbox(self) -> None:
        """Fetch and show the messages the events named: each round waits one frame so a
        burst arrives together, takes up to SLICE of them in one call and one layout pass,
        then yields, so a keypress never waits behind a flood."""
        try:
            while self.inbox:
                await asyncio.sleep(FRAME)
                room_id, ids, added = self.inbox.take(SLICE)
                try:
                    found = await self.call(self.api.messages, room_id, ids)
                except (ClientError, GuestClosed):
                    continue  # the room is gone, or the node: nothing to show
                self._show_news(room_id, found, added)
        finally:
            self._draining = False

    def _show_news(self, room_id: bytes, found: list[Message], added: set[bytes]) -> None:
        """New and changed messages: into the timeline, or counted as unread elsewhere."""
        if room_id == self.current:
            self.timeline.upsert_many(found)
            if self.timeline._follow and self.screen.is_current:
                self._remember_read()
        fresh = [m for m in found if m.id in added and m.author != self.me.peer_id]
        mentions = [m for m in fresh if self._mentions_me(m)]
        if fresh and room_id != self.current:
            self.unread[room_id] = self.unread.get(room_id, 0) + len(fresh)
            self.mentions[room_id] = self.mentions.get(room_id, 0) + len(mentions)
            self._show_rooms()
        for mention in mentions[-MENTIONS_SIGNALLED:]:
            self._signal_mention(room_id, mention)

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
