"""Laying out one timeline message as lines of styled segments: pure, cached by the caller.

A message's block is: a day separator (when its day differs from the message above), the
"new messages" line (at the read marker), a quote of the message it answers, its text
(wrapped, continuation lines indented under the text), and its reactions. Everything
from the network goes through `_safe.inert*` and becomes plain `Segment`s: nothing here
parses markup. This module must never touch Textual widgets or the node.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Final

from rich.cells import cell_len, chop_cells
from rich.segment import Segment
from rich.style import Style

from crdt import Message, format_peer_id, hlc_millis

from ._safe import inert, inert_line

__all__ = [
    "ACTION_PREFIX",
    "Block",
    "BlockContext",
    "Line",
    "day_of",
    "is_action",
    "layout_block",
    "nick_style",
    "short_id",
    "wrap",
]

Line = list[Segment]

ACTION_PREFIX: Final = "/me "  # crdt refuses control characters, so actions are marked in text
NICK_WIDTH: Final = 12  # cells of the right-aligned nick column
QUOTE_CHARS: Final = 60

# Distinct, readable on dark and light backgrounds; picked by a hash of the peer id.
PALETTE: Final = (
    "#e06c75",
    "#98c379",
    "#e5c07b",
    "#61afef",
    "#c678dd",
    "#56b6c2",
    "#d19a66",
    "#ff79c6",
    "#8be9fd",
    "#50fa7b",
    "#f1fa8c",
    "#bd93f9",
    "#ffb86c",
    "#5fd7af",
    "#d7875f",
    "#87afff",
)

TIME_STYLE: Final = Style(color="#7f848e")
DIM: Final = Style(color="#7f848e")
DELETED: Final = Style(color="#7f848e", italic=True)
EDITED: Final = Style(color="#7f848e", italic=True)
SEPARATOR: Final = Style(color="#5c6370")
NEW_LINE: Final = Style(color="#e06c75", bold=True)
QUOTE: Final = Style(color="#9da5b4", italic=True)
REACTION: Final = Style(color="#abb2bf", bgcolor="#2c313a")
OWN_REACTION: Final = Style(color="#e5c07b", bgcolor="#3e4451", bold=True)
ACKED: Final = Style(color="#98c379")
UNACKED: Final = Style(color="#7f848e")
FORKED: Final = Style(color="#ff5555", bold=True)
MENTION: Final = Style(color="#1e1e1e", bgcolor="#e5c07b", bold=True)
TEXT: Final = Style()


def nick_style(peer_id: bytes) -> Style:
    """A stable colour per author: the same peer id always gets the same one."""
    index = hashlib.blake2b(peer_id, digest_size=2).digest()[0] % len(PALETTE)
    return Style(color=PALETTE[index], bold=True)


def short_id(peer_id: bytes) -> str:
    """The first 8 characters of the peer id as people see it (lowercase base32)."""
    return format_peer_id(peer_id)[:8]


def is_action(text: str) -> bool:
    return text.startswith(ACTION_PREFIX)


def day_of(hlc: int, tz: tzinfo | None) -> datetime:
    return datetime.fromtimestamp(hlc_millis(hlc) / 1000, tz)


@dataclass(frozen=True, slots=True)
class BlockContext:
    """Everything besides the message itself that its block depends on."""

    width: int
    nick: str  # the author's nick (or short id), inert
    forked: bool
    own: bool
    mark: str  # own messages: "…" pending, "○" stored, "✓" a peer holds it; else ""
    day_separator: bool
    new_marker: bool
    quote: tuple[str, str] | None  # (nick, text) of the message answered, if it is one
    reactions: tuple[tuple[str, int, bool], ...]  # (emoji, count, ours)
    my_nick: str  # highlight mentions of it ("" : none)


@dataclass(frozen=True, slots=True)
class Block:
    lines: tuple[Line, ...]
    text_start: int  # index of the first line of the message text itself


def wrap(text: str, width: int) -> list[str]:
    """Greedy word wrap of one line of text to `width` cells; long words are chopped."""
    width = max(width, 1)
    if cell_len(text) <= width:
        return [text]
    lines: list[str] = []
    current = ""
    current_len = 0
    for word in _words(text):
        word_len = cell_len(word)
        if current_len + word_len <= width:
            current += word
            current_len += word_len
            continue
        if current.strip():
            lines.append(current.rstrip(" "))
        word = word.lstrip(" ") if current.strip() else word
        if cell_len(word) > width:
            pieces = chop_cells(word, width)
            lines.extend(pieces[:-1])
            word = pieces[-1]
        current, current_len = word, cell_len(word)
    if current or not lines:
        lines.append(current)
    return lines


def _words(text: str) -> list[str]:
    """Words with the spaces before them attached, so joining them gives `text` back."""
    words: list[str] = []
    start = 0
    length = len(text)
    index = 0
    while index < length:
        while index < length and text[index] == " ":
            index += 1
        while index < length and text[index] != " ":
            index += 1
        words.append(text[start:index])
        start = index
    return words


def _time(message: Message, tz: tzinfo | None) -> str:
    return day_of(message.hlc, tz).strftime("%H:%M")


def _rule(label: str, width: int, style: Style) -> Line:
    label = f" {label} "
    left = max((width - cell_len(label)) // 2, 1)
    right = max(width - left - cell_len(label), 1)
    return [Segment("─" * left, SEPARATOR), Segment(label, style), Segment("─" * right, SEPARATOR)]


def _highlight(text: str, my_nick: str, base: Style) -> Line:
    """`text` as segments, with mentions of `my_nick` (any case) picked out."""
    if not my_nick:
        return [Segment(text, base)]
    lower, needle = text.lower(), my_nick.lower()
    segments: Line = []
    start = 0
    while True:
        found = lower.find(needle, start)
        if found < 0:
            break
        if found > start:
            segments.append(Segment(text[start:found], base))
        segments.append(Segment(text[found : found + len(needle)], MENTION))
        start = found + len(needle)
    if start < len(text):
        segments.append(Segment(text[start:], base))
    return segments


def layout_block(message: Message, ctx: BlockContext, tz: tzinfo | None) -> Block:
    """The lines of one message's block at `ctx.width` cells."""
    width = max(ctx.width, 20)
    lines: list[Line] = []
    if ctx.day_separator:
        lines.append(_rule(day_of(message.hlc, tz).strftime("%A %d %B %Y"), width, SEPARATOR))
    if ctx.new_marker:
        lines.append(_rule("new messages", width, NEW_LINE))
    author_style = nick_style(message.author)
    nick = ctx.nick
    nick_cells = cell_len(nick)
    if nick_cells > NICK_WIDTH:
        nick = chop_cells(nick, NICK_WIDTH - 1)[0] + "…"
        nick_cells = cell_len(nick)
    time_text = _time(message, tz)
    indent = len(time_text) + 1 + NICK_WIDTH + 3  # "HH:MM " nick " │ "
    text_width = max(width - indent, 8)
    pad = " " * (indent - 2)
    if ctx.quote is not None:
        quoted_nick, quoted_text = ctx.quote
        quoted_action = is_action(quoted_text)
        snippet = inert_line(quoted_text[len(ACTION_PREFIX) :] if quoted_action else quoted_text)
        if len(snippet) > QUOTE_CHARS:
            snippet = snippet[: QUOTE_CHARS - 1] + "…"
        # An action is quoted as it reads ("* alice waves"), not as typed ("/me waves").
        quote_line = (
            f"↪ * {quoted_nick} {snippet}" if quoted_action else f"↪ {quoted_nick}: {snippet}"
        )
        lines.append([Segment(pad + "┌ ", DIM), *_clip(quote_line, text_width, QUOTE)])
    text_start = len(lines)
    action = is_action(message.text) and not message.deleted
    fork_mark = [Segment("!", FORKED)] if ctx.forked else []
    nick_cells += len(fork_mark)
    head: Line = [Segment(time_text + " ", TIME_STYLE)]
    if action:
        head += [Segment(" " * (NICK_WIDTH - 1) + "* │ ", DIM)]
    else:
        head += [
            Segment(" " * max(NICK_WIDTH - nick_cells, 0)),
            Segment(nick, author_style),
            *fork_mark,
            Segment(" │ ", DIM),
        ]
    body_lines: list[Line]
    if message.deleted:
        body_lines = [[Segment("(message deleted)", DELETED)]]
    else:
        text = inert(message.text)
        if action:
            text = f"{nick} {text[len(ACTION_PREFIX) :]}"
        body_lines = []
        for paragraph in text.split("\n"):
            for piece in wrap(paragraph, text_width):
                body_lines.append(_highlight(piece, "" if ctx.own else ctx.my_nick, TEXT))
        if action:
            # The actor's nick, first on the line, in their colour.
            first = body_lines[0]
            rest = "".join(segment.text for segment in first)[len(nick) :]
            body_lines[0] = [Segment(nick, author_style), *fork_mark, Segment(rest, TEXT)]
    tail: Line = []
    if message.edited and not message.deleted:
        tail.append(Segment(" (edited)", EDITED))
    if ctx.mark:
        tail.append(Segment(" " + ctx.mark, ACKED if ctx.mark == "✓" else UNACKED))
    last = body_lines[-1]
    last_len = sum(cell_len(segment.text) for segment in last)
    tail_len = sum(cell_len(segment.text) for segment in tail)
    if last_len + tail_len <= text_width:
        body_lines[-1] = [*last, *tail]
    elif tail:
        body_lines.append([Segment(part.text.lstrip(), part.style) for part in tail[:1]] + tail[1:])
    lines.append([*head, *body_lines[0]])
    continuation = " " * (indent - 2) + "│ "
    for body in body_lines[1:]:
        lines.append([Segment(continuation, DIM), *body])
    if ctx.reactions and not message.deleted:
        chips: Line = [Segment(" " * indent)]
        used = indent
        for emoji, count, ours in ctx.reactions:
            chip = f" {inert_line(emoji)} {count} "
            if used + cell_len(chip) + 1 > width and used > indent:
                lines.append(chips)
                chips, used = [Segment(" " * indent)], indent
            chips += [Segment(chip, OWN_REACTION if ours else REACTION), Segment(" ")]
            used += cell_len(chip) + 1
        lines.append(chips)
    return Block(tuple(lines), text_start)


def _clip(text: str, width: int, style: Style) -> Line:
    if cell_len(text) > width:
        text = chop_cells(text, max(width - 1, 1))[0] + "…"
    return [Segment(text, style)]
