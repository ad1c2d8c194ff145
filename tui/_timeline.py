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
from itertools import accumulate
from typing import Final

from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.geometry import Region, Size
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
STRIP_CACHE: Final = 4000  # painted lines kept (a few screens' worth, whatever the width)


def _key(message: Message) -> tuple[int, bytes, int]:
    """The timeline order crdt defines: (hlc, author, seq)."""
    return (message.hlc, message.author, message.seq)


class Timeline(ScrollView, can_focus=True):
    """A room's messages; the app feeds it pages and changes."""

    DEFAULT_CSS = """
    /* No scrollbar: redrawing its thumb for each burst of news cost more than the lines
       themselves, and it could only show the loaded window, not the room. The wheel,
       PageUp/PageDown and Ctrl+Home/End still scroll. */
    Timeline { height: 1fr; scrollbar-size-vertical: 0; }
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
        # One block per entry (messages, then pending); None: to be laid out again.
        self._blocks: list[Block | None] = []
        self._starts: list[int] = []  # first line of each block
        self._total = 0
        self._strips: dict[tuple[bytes, int], tuple[Block, Strip]] = {}
        self._strip_key: tuple[Style, int] | None = None  # what the cached strips were made for
        self._paint: tuple[Style, int, int] | None = None  # style, width, pad: while painting
        self._layout_width = 0  # the width the blocks were laid out for
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
        self._blocks = [None] * len(self._messages)
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
        self.upsert_many([message])

    def upsert_many(self, messages: Iterable[Message]) -> None:
        """Messages were added or changed: one layout pass (and one repaint) for them all."""
        anchor = self._anchor()
        added: list[Message] = []
        changed: set[bytes] = set()
        for message in messages:
            if message.id in self._by_id:
                index = bisect_left(self._keys, _key(message))
                self._messages[index] = message
                self._by_id[message.id] = message
                self._layouts.pop(message.id, None)
                self._blocks[index] = None
                changed.add(message.id)
            elif not (self._messages and self.more_before and _key(message) < self._keys[0]):
                added.append(message)  # (older than the window: it comes with its page)
            if message.id in self._quotes:
                self._quotes[message.id] = message
                changed.add(message.id)
        if changed:
            self._mark_replies(changed)  # their quotes show the new text
        self._insert_messages(added, anchor=anchor)

    def add_quote(self, message: Message) -> None:
        """The message a reply answers, fetched because it was not loaded."""
        self._quotes[message.id] = message
        self._mark_replies({message.id})
        self._relayout(keep_anchor=True)

    def set_people(self, nicks: dict[bytes, str], forked: set[bytes], my_nick: str) -> None:
        if nicks != self._nicks or forked != self._forked or my_nick != self.my_nick:
            self._nicks, self._forked, self.my_nick = dict(nicks), set(forked), my_nick
            self._layouts.clear()
            self._blocks = [None] * self._entries()
            self._relayout(keep_anchor=True)

    def set_acked(self, acked_seq: int) -> None:
        if acked_seq != self.acked_seq:
            self.acked_seq = acked_seq
            for index, message in enumerate(self._messages):
                if message.author == self.me:  # only our own show the mark
                    self._blocks[index] = None
            self._relayout(keep_anchor=True)

    def add_pending(self, text: str, reply_to: bytes | None, now_ms: int | None = None) -> bytes:
        """Show our message at once, before the node has stored it; returns its token."""
        token = PENDING_PREFIX + str(next(self._pending_counter)).encode()
        ms = int(time.time() * 1000) if now_ms is None else now_ms
        newest = self._keys[-1][0] if self._keys else 0
        hlc = max(make_hlc(ms), newest + 1)
        self._pending.append(Message(token, self.me, 0, hlc, text, reply_to, False, False, ()))
        self._blocks.append(None)
        self._follow = True
        self._relayout()
        self._to_bottom()
        return token

    def drop_pending(self, token: bytes) -> None:
        for number, message in enumerate(self._pending):
            if message.id == token:
                anchor = self._anchor()
                del self._pending[number]
                index = len(self._messages) + number
                del self._blocks[index]
                if index < len(self._blocks):
                    self._blocks[index] = None  # its previous entry changed
                self._layouts.pop(token, None)
                self._relayout(anchor=anchor)
                return

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
            for block in self._blocks
            if block is not None
            for line in block.lines
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
        block = self._blocks[index]
        assert block is not None
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
        width = self.scrollable_content_region.width or self.size.width
        if width != self._layout_width:  # blocks depend on the width only, not the height
            self._blocks = [None] * self._entries()
            self._relayout(keep_anchor=True)
        if self._follow:
            self._to_bottom()
        self._maybe_need_older()

    async def _on_click(self, event: events.Click) -> None:
        line = int(self.scroll_y) + event.y - self._top_pad()
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

    def _insert_messages(
        self, messages: list[Message], *, anchor: tuple[bytes, int] | None = None
    ) -> None:
        """Insert messages in timeline order; only their blocks (and each one's next, whose
        day separator may change) are laid out, the others are kept."""
        if anchor is None:
            anchor = self._anchor()
        inserted: list[Message] = []
        for message in messages:
            if message.id in self._by_id:
                continue
            key = _key(message)
            index = bisect_left(self._keys, key)
            self._keys.insert(index, key)
            self._messages.insert(index, message)
            self._blocks.insert(index, None)
            self._by_id[message.id] = message
            inserted.append(message)
        for message in inserted:
            after = bisect_left(self._keys, _key(message)) + 1
            if after < len(self._blocks):
                self._blocks[after] = None
        requoted = {m.id for m in inserted if m.id in self._quotes}
        if requoted:  # quoted from the window now: replies show it as it is now
            for message_id in requoted:
                self._quotes[message_id] = self._by_id[message_id]
            self._mark_replies(requoted)
        if self._follow and len(self._messages) > MAX_LOADED + TRIM_SLACK:
            # Following the bottom: keep memory bounded, older pages come back on demand.
            drop = len(self._messages) - MAX_LOADED
            quoted = {m.reply_to for m in itertools.islice(self._messages, drop, None)}
            for message in self._messages[:drop]:
                self._by_id.pop(message.id, None)
                self._layouts.pop(message.id, None)
                if message.id in quoted:  # still quoted by a reply on screen
                    self._quotes[message.id] = message
            del self._messages[:drop]
            del self._keys[:drop]
            del self._blocks[:drop]
            self._blocks[0] = None  # now the first: it opens with a day separator
            self.more_before = True
        if self._new_marker_id is None:
            self._find_new_marker()
            if self._new_marker_id is not None:
                index = bisect_left(self._keys, _key(self._by_id[self._new_marker_id]))
                self._blocks[index] = None
        self._relayout(anchor=anchor)

    def _mark_replies(self, message_ids: set[bytes]) -> None:
        """Lay out again the entries that quote one of `message_ids`."""
        for index in range(self._entries()):
            if self._entry(index).reply_to in message_ids:
                self._blocks[index] = None

    def _relayout(
        self,
        *,
        keep_anchor: bool = False,
        anchor: tuple[bytes, int] | None = None,
    ) -> None:
        """Lay out the blocks marked None, recount the start lines, keep the view put."""
        if keep_anchor and anchor is None:
            anchor = self._anchor()
        follow = self._follow
        blocks = self._blocks
        assert len(blocks) == self._entries()
        for index, block in enumerate(blocks):
            if block is None:
                blocks[index] = self._block(index)
        starts = list(accumulate([len(b.lines) for b in blocks if b is not None], initial=0))
        self._total = starts.pop()
        self._starts = starts
        if len(self._layouts) > 2 * len(blocks) + 64:
            live = {m.id for m in self._messages} | {m.id for m in self._pending}
            self._layouts = {k: v for k, v in self._layouts.items() if k in live}
        width = self.scrollable_content_region.width or self.size.width
        self._layout_width = width
        self._set_virtual_size(Size(width, self._total))
        if follow:
            self._to_bottom()
            self._follow = True
        elif anchor is not None:
            target = self._line_of(anchor)
            if target is not None:
                self.scroll_to(y=target, animate=False, immediate=True, force=True)
        self.refresh()

    def _set_virtual_size(self, size: Size) -> None:
        """Set the scrollable size; a full layout of the screen only when the scrollbar
        comes or goes. (`virtual_size` is a layout reactive: assigning it reflows and
        repaints every widget, which a flood would do for each burst.)"""
        if size == self.virtual_size:
            return
        height = self.container_size.height
        if height and (size.height > height) == (self.virtual_size.height > height):
            self.set_reactive(Timeline.virtual_size, size)
            self._scroll_update(size)  # the scrollbar's thumb and the scroll limits
        else:
            self.virtual_size = size

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

    def _fit_width(self) -> int:
        """Lay the blocks out again if the width changed since (a resize not yet handled:
        every block's height may change, and no line may be drawn from the old ones)."""
        width = self.scrollable_content_region.width or self.size.width
        if width != self._layout_width and self._blocks:
            self._blocks = [None] * self._entries()
            self._relayout(keep_anchor=True)
        return width

    def render_lines(self, crop: Region) -> list[Strip]:
        width = self._fit_width()
        # The base style, width and top margin, found once per paint, not once per line.
        self._paint = (self.rich_style, width, self._top_pad())
        try:
            return super().render_lines(crop)
        finally:
            self._paint = None

    def render_line(self, y: int) -> Strip:
        if self._paint is None:  # called on its own, not from `render_lines`
            self._fit_width()
        base, width, pad = self._paint or (
            self.rich_style,
            self.scrollable_content_region.width or self.size.width,
            self._top_pad(),
        )
        line = int(self.scroll_y) + y - pad
        if not self._starts or line >= self._total or line < 0:
            return Strip.blank(width, base)
        index = bisect_right(self._starts, line) - 1
        strip = self._strip(index, line - self._starts[index], base, width)
        if index < len(self._messages) and self._messages[index].id == self.selected:
            strip = strip.extend_cell_length(width).apply_style(SELECTED).crop(0, width)
        return strip

    def _top_pad(self) -> int:
        """Blank lines above the messages while they do not fill the view: a chat reads
        upwards from the input line, so a short room sits at the bottom, next to it."""
        height = self.scrollable_content_region.height or self.size.height
        return max(0, height - self._total)

    def _strip(self, index: int, offset: int, base: Style, width: int) -> Strip:
        """Line `offset` of block `index`, styled and cut to the width; kept until its
        block is laid out again (a flood repaints the same lines many times)."""
        if self._strip_key != (base, width) or len(self._strips) > STRIP_CACHE:
            self._strips.clear()
            self._strip_key = (base, width)
        block = self._blocks[index]
        assert block is not None
        key = (self._entry(index).id, offset)
        cached = self._strips.get(key)
        if cached is not None and cached[0] is block:
            return cached[1]
        if offset >= len(block.lines):  # (never, once laid out for this width)
            return Strip.blank(width, base)
        segments = block.lines[offset]
        strip = Strip([Segment(s.text, base + s.style if s.style else base) for s in segments])
        strip = strip.crop_extend(0, width, base)
        self._strips[key] = (block, strip)
        return strip
