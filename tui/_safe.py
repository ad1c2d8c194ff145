"""Making text from the network inert before it reaches the terminal.

Nicks, topics, room names and message texts come from peers. crdt already refuses C0/C1
control characters in ops, but the UI does not rely on that (a remote client may hand it
anything): every such string passes through `inert` or `inert_line` before it is drawn.
Bidi overrides and isolates (U+202A–U+202E, U+2066–U+2069) and the invisible direction
marks could reorder what follows them on the line, so they are shown as a visible mark.
Text is always drawn with `rich.text.Text` or segments, never parsed as markup.

Emoji sequences whose width terminals disagree on are drawn as their parts: a terminal
that does not join `👨‍👩‍👧` or `👍🏽` draws each part in its own cells, while the layout
(rich) counts the joined glyph, and the line overflows its column. So joiners, variation
selectors, skin-tone modifiers and tag characters are left out (the base emoji stay),
and a flag's two regional indicators become its letters (`[FR]`). After this every
character's width is its own, whatever the terminal joins. The op keeps the original.
This module must never import Textual or touch the node.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["REPLACEMENT", "inert", "inert_line"]

REPLACEMENT: Final = "\N{REPLACEMENT CHARACTER}"

# C0 and C1 controls (newline and tab are handled by the callers), DEL, bidi embeddings,
# overrides, isolates and marks, and the line/paragraph separators some terminals honour.
_UNSAFE: Final = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]"
)


# Zero-width joiner, variation selectors 15/16, skin-tone modifiers, tag characters.
_JOINING: Final = re.compile("[\u200d\ufe0e\ufe0f\U0001f3fb-\U0001f3ff\U000e0020-\U000e007f]")
_REGIONAL: Final = re.compile("[\U0001f1e6-\U0001f1ff]{1,2}")


def _letters(match: re.Match[str]) -> str:
    letters = "".join(chr(ord(c) - 0x1F1E6 + ord("A")) for c in match.group())
    return f"[{letters}]"


def inert(text: str) -> str:
    """`text` with every unsafe character replaced by U+FFFD and tabs by spaces, and emoji
    sequences drawn as their parts; newlines are kept (message texts are multi-line)."""
    text = _UNSAFE.sub(REPLACEMENT, text.replace("\t", "    "))
    if text.isascii():
        return text
    return _REGIONAL.sub(_letters, _JOINING.sub("", text))


def inert_line(text: str) -> str:
    """`inert`, on one line: newlines become spaces (nicks, topics, names, snippets)."""
    return inert(text.replace("\r\n", " ").replace("\n", " ").replace("\r", " "))
