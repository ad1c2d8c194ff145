"""`Timeline`: one room's messages in a `ScrollView` drawn with the line API.

It holds a window of the room's history (pages fetched by the app through
`ChatClient.history`), oldest first, plus our messages still on their way (local echo).
Each message's block of lines is laid out once per (message, width, context) and cached;
an index of block start lines maps a screen line to its block, so only the visible lines
are ever turned into strips. Messages inserted above the view (older pages, sync filling in
the past) keep the top visible line where it is; at the bottom the view follows new ones.

It never calls the node: it asks for what it lacks with messages (`NeedOlder`,
`NeedQuote`) and the app answers by calling `add_older` / `add_quote`.
"""

from __future__ import annotations

import itertools
import time
from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from datetime import tzinfo
from typing import Final

from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.geometry import Size
from textual.message import Message as TextualMessage
from textual.scroll_view import ScrollView
from textual.strip import Strip

from crdt import Message, make_hlc

from ._layout import Block, BlockContext, day_of, layout_block, short_id
from ._safe import inert_line

__all__ = ["PENDING_PREFIX", "Timeline"]

PENDING_PREFIX: Final = b"\x00pending"
MAX_LOADED: Final = 5000  # messages kept while following the bottom; older ones drop
TRIM_SLACK: Final = 500  # ... in steps of this many, so a flood does not relayout each time
SELECTED: Final = Style(bgcolor="#3e4451")


def _key(message: Message) -> tuple[int, bytes, int]:
    """The timeline order crdt defines: (hlc, author, seq)."""
    return (message.hlc, message.author, message.seq)


class Timeline(ScrollView, can_focus=True):
    """A room's messages; the app feeds it pages and changes."""

    DEFAULT_CSS = """
    Timeline { height: 1fr; scrollbar-size-vertical: 1; }
    """

    class NeedOlder(TextualMessage):
        """The view reached the oldest loaded message and older ones exist."""

        def __init__(self, room_id: bytes, before: bytes) -> None:
            super().__init__()
            self.room_id = room_id
            self.before = before

    class NeedQuote(TextualMessage):
        """A reply answers a message that is not loaded: fetch it for the quote."""

        def __init__(self, room_id: bytes, message_id: bytes) -> None:
            super().__init__()
            self.room_id = room_id
            self.message_id = message_id

    class Selected(TextualMessage):
        """The selected message changed (None: no selection)."""

        def __init__(self, message_id: bytes | None) -> None:
            super().__init__()
            self.message_id = message_id

    def __init__(
        self,
        *,
        tz: tzinfo | None = None,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.tz = tz
        self.room_id: bytes | None = None
        self.me = b""
        self.my_nick = ""
        self.more_before = False
        self.loading_older = False
        self.read_hlc: int | None = None  # the read marker when the room was opened
        self.acked_seq = 0
        self._messages: list[Message] = []
        self._keys: list[tuple[int, bytes, int]] = []
        self._by_id: dict[bytes, Message] = {}
        self._pending: list[Message] = []
        self._pending_counter = itertools.count(1)
        self._quotes: dict[bytes, Message] = {}
        self._asked_quotes: set[bytes] = set()
        self._nicks: dict[bytes, str] = {}
        self._forked: set[bytes] = set()
        self._layouts: dict[bytes, tuple[BlockContext, Block]] = {}
        self._starts: list[int] = []  # first line of each block (messages, then pending)
        self._laid_out_for = 0  # the width `_starts` was counted for
        self._total = 0
        self._follow = True
        self.selected: bytes | None = None
        self._new_marker_id: bytes | None = None

    # -- feeding ------------------------------------------------------------------------

    def show_room(
        self,
        room_id: bytes,
        messages: Iterable[Message],
        *,
        more_before: bool,
        me: bytes,
        read_hlc: int | None,
    ) -> None:
        """Replace the view with a room's newest page; the view follows the bottom."""
        self.room_id = room_id
        self.me = me
        self.read_hlc = read_hlc
        self.more_before = more_before
        self.loading_older = False
        self._messages = sorted(messages, key=_key)
        self._keys = [_key(m) for m in self._messages]
        self._by_id = {m.id: m for m in self._messages}
        self._pending.clear()
        self._quotes.clear()
        self._asked_quotes.clear()
        self._layouts.clear()
        self.selected = None
        self._follow = True
        self._find_new_marker()
        self._relayout()
        self._to_bottom()

    def clear_room(self) -> None:
        self.show_room(b"", (), more_before=False, me=self.me, read_hlc=None)
        self.room_id = None

    def add_older(self, room_id: bytes, messages: Iterable[Message], *, more_before: bool) -> None:
        """An older page arrived: insert it above, keeping what is on screen in place."""
        if room_id != self.room_id:
            return
        self.loading_older = False
        self.more_before = more_before
        self._insert_messages(list(messages))

    def upsert(self, message: Message) -> None:
        """A message was added or changed (edit, delete, reaction)."""
        if message.id in self._by_id:
            index = bisect_left(self._keys, _key(message))
            self._messages[index] = message
            self._by_id[message.id] = message
            self._layouts.pop(message.id, None)
            self._relayout(keep_anchor=True, start=index)
        else:
            if self._messages and self.more_before and _key(message) < self._keys[0]:
                return  # older than the window: it comes with its page
            self._insert_messages([message])
        if message.id in self._quotes:
            self._quotes[message.id] = message
            self._layouts.clear()
            self._relayout(keep_anchor=True)

    def add_quote(self, message: Message) -> None:
        """The message a reply answers, fetched because it was not loaded."""
        self._quotes[message.id] = message
        self._layouts.clear()
        self._relayout(keep_anchor=True)

    def set_people(self, nicks: dict[bytes, str], forked: set[bytes], my_nick: str) -> None:
        if nicks != self._nicks or forked != self._forked or my_nick != self.my_nick:
            self._nicks, self._forked, self.my_nick = dict(nicks), set(forked), my_nick
            self._layouts.clear()
            self._relayout(keep_anchor=True)

    def set_acked(self, acked_seq: int) -> None:
        if acked_seq != self.acked_seq:
            self.acked_seq = acked_seq
            self._relayout(keep_anchor=True)

    def add_pending(self, text: str, reply_to: bytes | None, now_ms: int | None = None) -> bytes:
        """Show our message at once, before the node has stored it; returns its token."""
        token = PENDING_PREFIX + str(next(self._pending_counter)).encode()
        ms = int(time.time() * 1000) if now_ms is None else now_ms
        newest = self._keys[-1][0] if self._keys else 0
        hlc = max(make_hlc(ms), newest + 1)
        self._pending.append(Message(token, self.me, 0, hlc, text, reply_to, False, False, ()))
        self._follow = True
        self._relayout(start=self._entries() - 1)
        self._to_bottom()
        return token

    def drop_pending(self, token: bytes) -> None:
        self._pending = [m for m in self._pending if m.id != token]
        self._layouts.pop(token, None)
        self._relayout(keep_anchor=True)

    # -- reading ------------------------------------------------------------------------

    @property
    def messages(self) -> list[Message]:
        return list(self._messages)

    @property
    def line_count(self) -> int:
        return self._total

    def message(self, message_id: bytes) -> Message | None:
        return self._by_id.get(message_id) or self._quotes.get(message_id)

    def newest(self, *, own: bool = False, skip_deleted: bool = True) -> Message | None:
        for message in reversed(self._messages):
            if (not own or message.author == self.me) and not (skip_deleted and message.deleted):
                return message
        return None

    def back(self, count: int) -> Message | None:
        """The `count`-th newest message (1: the newest)."""
        if 0 < count <= len(self._messages):
            return self._messages[-count]
        return None

    def find(self, text: str, before: bytes | None) -> Message | None:
        """The newest loaded message containing `text` (any case), older than `before`."""
        needle = text.lower()
        end = len(self._messages)
        if before is not None and before in self._by_id:
            end = bisect_left(self._keys, _key(self._by_id[before]))
        for message in reversed(self._messages[:end]):
            if not message.deleted and needle in message.text.lower():
                return message
        return None

    def rendered_text(self) -> list[str]:
        """Every line of the loaded window as plain text (what the screen would show)."""
        return [
            "".join(segment.text for segment in line)
            for index in range(len(self._starts))
            for line in self._block(index).lines
        ]

    # -- selection and scrolling ----------------------------------------------------------

    def select(self, message_id: bytes | None, *, scroll: bool = True) -> None:
        self.selected = message_id if message_id in self._by_id else None
        if scroll and self.selected is not None:
            self.scroll_to_message(self.selected)
        self.refresh()
        self.post_message(self.Selected(self.selected))

    def move_selection(self, delta: int) -> None:
        """Select the next older (-1) or newer (+1) message."""
        if not self._messages:
            return
        if self.selected is None:
            index = len(self._messages) if delta < 0 else len(self._messages) - 1
        else:
            index = bisect_left(self._keys, _key(self._by_id[self.selected]))
        index += delta
        if index >= len(self._messages):
            self.select(None)
            self._to_bottom()
            self._follow = True
            return
        index = max(index, 0)
        self.select(self._messages[index].id)
        if index == 0:
            self._maybe_need_older(force=True)

    def scroll_to_message(self, message_id: bytes) -> None:
        if message_id not in self._by_id:
            return
        index = bisect_left(self._keys, _key(self._by_id[message_id]))
        block = self._block(index)
        top = self._starts[index] + block.text_start
        height = self.scrollable_content_region.height or self.size.height
        if not (self.scroll_y <= top < self.scroll_y + height - 1):
            self.scroll_to(y=max(top - height // 3, 0), animate=False, immediate=True, force=True)
        self._follow = self._at_bottom()

    def _to_bottom(self) -> None:
        # Forced: just after the virtual size grows, the scrollbar (and so "may scroll")
        # is only updated at the next layout, and a plain scroll would be refused.
        self.scroll_to(y=self.max_scroll_y, animate=False, immediate=True, force=True)

    def _at_bottom(self) -> bool:
        return self.scroll_y >= self.max_scroll_y - 0.5

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        if self.size.height and self._total:  # not while hidden or empty: keep following
            self._follow = self._at_bottom()
            self._maybe_need_older()

    def _maybe_need_older(self, *, force: bool = False) -> None:
        height = self.size.height or 1
        near_top = self.scroll_y < height
        if (
            (near_top or force)
            and self.more_before
            and not self.loading_older
            and self._messages
            and self.room_id
        ):
            self.loading_older = True
            self.post_message(self.NeedOlder(self.room_id, self._messages[0].id))

    def _on_resize(self, event: events.Resize) -> None:
        self._relayout(keep_anchor=True)
        if self._follow:
            self._to_bottom()
        self._maybe_need_older()

    async def _on_click(self, event: events.Click) -> None:
        line = int(self.scroll_y) + event.y
        index = bisect_right(self._starts, line) - 1
        if 0 <= index < len(self._messages):
            message_id = self._messages[index].id
            self.select(None if message_id == self.selected else message_id, scroll=False)

    # -- layout ---------------------------------------------------------------------------

    def _entries(self) -> int:
        return len(self._messages) + len(self._pending)

    def _entry(self, index: int) -> Message:
        count = len(self._messages)
        return self._messages[index] if index < count else self._pending[index - count]

    def _find_new_marker(self) -> None:
        self._new_marker_id = None
        if self.read_hlc is None:
            return
        start = bisect_right(self._keys, (self.read_hlc, b"\xff" * 64, 1 << 62))
        for message in self._messages[start:]:
            if message.author != self.me:
                self._new_marker_id = message.id
                return

    def _block_context(self, index: int) -> BlockContext:
        message = self._entry(index)
        own = message.author == self.me
        pending = message.id.startswith(PENDING_PREFIX)
        mark = ""
        if pending:
            mark = "…"
        elif own:
            mark = "✓" if message.seq <= self.acked_seq else "○"
        previous = self._entry(index - 1) if index > 0 else None
        day_separator = previous is None or (
            day_of(previous.hlc, self.tz).date() != day_of(message.hlc, self.tz).date()
        )
        quote: tuple[str, str] | None = None
        if message.reply_to is not None:
            quoted = self._by_id.get(message.reply_to) or self._quotes.get(message.reply_to)
            if quoted is None:
                quote = ("…", "(an earlier message)")
                if message.reply_to not in self._asked_quotes and self.room_id:
                    self._asked_quotes.add(message.reply_to)
                    self.post_message(self.NeedQuote(self.room_id, message.reply_to))
            elif quoted.deleted:
                quote = (self._nick(quoted.author), "(message deleted)")
            else:
                quote = (self._nick(quoted.author), quoted.text)
        reactions = tuple(
            (emoji, len(authors), self.me in authors) for emoji, authors in message.reactions
        )
        return BlockContext(
            width=self.scrollable_content_region.width or self.size.width or 80,
            nick=self._nick(message.author),
            forked=message.author in self._forked,
            own=own,
            mark=mark,
            day_separator=day_separator,
            new_marker=message.id == self._new_marker_id,
            quote=quote,
            reactions=reactions,
            my_nick=self.my_nick,
        )

    def _nick(self, peer_id: bytes) -> str:
        nick = self._nicks.get(peer_id)
        return inert_line(nick) if nick else short_id(peer_id)

    def _block(self, index: int) -> Block:
        message = self._entry(index)
        context = self._block_context(index)
        cached = self._layouts.get(message.id)
        if cached is not None and cached[0] == context:
            return cached[1]
        block = layout_block(message, context, self.tz)
        self._layouts[message.id] = (context, block)
        return block

    def _anchor(self) -> tuple[bytes, int] | None:
        """The block at the top of the view and how far into it the view starts."""
        if not self._starts or self._follow:
            return None
        line = int(self.scroll_y)
        index = bisect_right(self._starts, line) - 1
        if not 0 <= index < self._entries():
            return None
        return (self._entry(index).id, line - self._starts[index])

    def _insert_messages(self, messages: list[Message]) -> None:
        anchor = self._anchor()
        first = self._entries()
        for message in messages:
            if message.id in self._by_id:
                continue
            key = _key(message)
            index = bisect_left(self._keys, key)
            self._keys.insert(index, key)
            self._messages.insert(index, message)
            self._by_id[message.id] = message
            first = min(first, index)
        if self._follow and len(self._messages) > MAX_LOADED + TRIM_SLACK:
            # Following the bottom: keep memory bounded, older pages come back on demand.
            first = 0
            drop = len(self._messages) - MAX_LOADED
            for message in self._messages[:drop]:
                self._by_id.pop(message.id, None)
                self._layouts.pop(message.id, None)
            del self._messages[:drop]
            del self._keys[:drop]
            self.more_before = True
        if self._new_marker_id is None:
            self._find_new_marker()
        self._relayout(anchor=anchor, start=first)

    def _relayout(
        self,
        *,
        keep_anchor: bool = False,
        anchor: tuple[bytes, int] | None = None,
        start: int = 0,
    ) -> None:
        """Recount block heights from block `start` on (those above it did not change)."""
        if keep_anchor and anchor is None:
            anchor = self._anchor()
        follow = self._follow
        start = max(min(start, len(self._starts)), 0)
        starts = self._starts[:start]
        total = starts[-1] + len(self._block(start - 1).lines) if start > 0 else 0
        for index in range(start, self._entries()):
            starts.append(total)
            total += len(self._block(index).lines)
        live = {m.id for m in self._messages} | {m.id for m in self._pending}
        if len(self._layouts) > 2 * len(live) + 64:
            self._layouts = {k: v for k, v in self._layouts.items() if k in live}
        self._starts, self._total = starts, total
        width = self.scrollable_content_region.width or self.size.width
        self._laid_out_for = width
        self.virtual_size = Size(width, total)
        if follow:
            self._to_bottom()
            self._follow = True
        elif anchor is not None:
            target = self._line_of(anchor)
            if target is not None:
                self.scroll_to(y=target, animate=False, immediate=True, force=True)
        self.refresh()

    def _line_of(self, anchor: tuple[bytes, int]) -> int | None:
        message_id, offset = anchor
        message = self._by_id.get(message_id)
        if message is not None:
            return self._starts[bisect_left(self._keys, _key(message))] + offset
        for number, pending in enumerate(self._pending):
            if pending.id == message_id:
                return self._starts[len(self._messages) + number] + offset
        return None

    # -- painting -------------------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width or self.size.width
        if width != self._laid_out_for and self._starts:
            # Resized: every block is laid out again for the new width, heights included,
            # before any line of them is drawn (the top line stays where it was).
            self._relayout(keep_anchor=True)
        line = int(self.scroll_y) + y
        base = self.rich_style
        if not self._starts or line >= self._total or line < 0:
            return Strip.blank(width, base)
        index = bisect_right(self._starts, line) - 1
        block = self._block(index)
        offset = line - self._starts[index]
        if offset >= len(block.lines):  # (never, once laid out for this width)
            return Strip.blank(width, base)
        segments = block.lines[offset]
        strip = Strip([Segment(s.text, base + s.style if s.style else base) for s in segments])
        if index < len(self._messages) and self._messages[index].id == self.selected:
            strip = strip.extend_cell_length(width).apply_style(SELECTED)
        return strip.crop_extend(0, width, base)
