"""Text from the network made inert: emoji sequences whose width terminals disagree on."""

from __future__ import annotations

import pytest
from rich.cells import cell_len, get_character_cell_size

from tui._safe import REPLACEMENT, inert, inert_line

TRICKY = [
    "family 👨\u200d👩\u200d👧 and a team 👩\u200d💻",
    "tones 👍🏽 👋🏿",
    "flags 🇫🇷🇯🇵 and a lone 🇺",
    "variation ❤\ufe0f ☺\ufe0e keycap 1\ufe0f\u20e3",
    "tag flag 🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f",
    "plain é ñ 日本語 and a combining e\u0301",
]


@pytest.mark.parametrize("text", TRICKY)
def test_every_character_is_as_wide_as_the_layout_counts_it(text: str) -> None:
    """The layout's width of what is drawn is the sum of its characters' own widths, so a
    terminal that joins no emoji sequence draws it in the cells the layout gave it."""
    shown = inert(text)
    assert cell_len(shown) == sum(get_character_cell_size(char) for char in shown)


def test_sequences_are_drawn_as_their_parts() -> None:
    assert inert("👨\u200d👩\u200d👧") == "👨👩👧"
    assert inert("👍🏽 ok") == "👍 ok"
    assert inert("🇫🇷🇯🇵 🇺") == "[FR][JP] [U]"
    assert inert("❤\ufe0f") == "❤"


def test_unsafe_characters_are_still_replaced() -> None:
    assert inert("a\x1b[31mb\u202e") == f"a{REPLACEMENT}[31mb{REPLACEMENT}"
    assert inert_line("two\nlines 👍🏽") == "two lines 👍"
    assert inert("ascii stays as it is\n") == "ascii stays as it is\n"
