"""Making text from the network inert before it reaches the terminal.

Nicks, topics, room names and message texts come from peers. crdt already refuses C0/C1
control characters in ops, but the UI does not rely on that (a remote client may hand it
anything): every such string passes through `inert` or `inert_line` before it is drawn.
Bidi overrides and isolates (U+202A–U+202E, U+2066–U+2069) and the invisible direction
marks could reorder what follows them on the line, so they are shown as a visible mark.
Text is always drawn with `rich.text.Text` or segments, never parsed as markup.
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


def inert(text: str) -> str:
    """`text` with every unsafe character replaced by U+FFFD and tabs by spaces; newlines
    are kept (message texts are multi-line)."""
    return _UNSAFE.sub(REPLACEMENT, text.replace("\t", "    "))


def inert_line(text: str) -> str:
    """`inert`, on one line: newlines become spaces (nicks, topics, names, snippets)."""
    return inert(text.replace("\r\n", " ").replace("\n", " ").replace("\r", " "))
