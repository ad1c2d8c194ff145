"""`RumorApp`: the terminal chat client: key bindings, the input line and the commands.

The layers below it draw the screen (`_shell`), keep the rooms (`_rooms`) and follow the
node's news (`_feed`); this one turns what the user types and presses into calls: a line
is sent (with local echo), a slash command runs, an invite is joined. It must never call
the node except through the shell's `call`/`attempt`, nor block the screen on a reply:
every call runs in a worker.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, ClassVar, Final

from textual import on, work
from textual.app import SystemCommand
from textual.binding import Binding, BindingType
from textual.screen import Screen

from crdt import Message
from node.client import Me, RoomInfo

from ._commands import COMMANDS, Command, CommandError, Invite, Say, parse, split_target
from ._feed import FeedApp
from ._input import ChatInput
from ._layout import ACTION_PREFIX
from ._panels import MemberList
from ._rooms import PAGE
from ._safe import inert_line
from ._screens import TextScreen, diagnostics_text, help_text, invite_text, mentions_text
from ._shell import ClientFactory
from ._state import NOTIFY_MODES

__all__ = ["ClientFactory", "RumorApp"]

MENTION_SCAN_PAGES: Final = 5  # pages per room /mentions reads back
SEARCH_PAGES: Final = 50  # older pages /search loads before giving up
QUIT_AGAIN: Final = 3.0  # seconds in which a second Ctrl+C quits


class RumorApp(FeedApp):
    """The terminal chat client."""

    TITLE = "rumor"
    _quit_asked = float("-inf")  # when Ctrl+C last asked "quit?"

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

    # -- the timeline -----------------------------------------------------------------------

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
        nick = functools.partial(self._nick, room_id=room_id)
        body = diagnostics_text(info, diagnostics, status, self.clock_ms(), nick)
        await self.push_screen(TextScreen("Diagnostics", body, id="peers-screen"))

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

    def action_help_quit(self) -> None:
        """Ctrl+C (when it has nothing to copy): pressed again soon, it quits; once may
        be a reflex, so it only says how."""
        now = time.monotonic()
        if now - self._quit_asked < QUIT_AGAIN:
            self.exit(0)
            return
        self._quit_asked = now
        self.notify("press Ctrl+C again, or Ctrl+Q, to quit", title="quit?")

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
