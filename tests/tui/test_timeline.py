"""The timeline's incremental layout draws what a fresh layout of the same messages draws.

`Timeline` lays out only the blocks a change touches (new messages, the one after each,
edited ones and the replies quoting them) and keeps the rest; whatever sequence of pages,
bursts, edits, replies, local echoes and trims it is fed, its lines must equal those of a
timeline built from scratch on the messages it ends up holding.
"""

from __future__ import annotations

import asyncio
import random
from datetime import UTC

import pytest
from textual.app import App, ComposeResult
from textual.pilot import Pilot

from crdt import Message, make_hlc
from tui import _timeline
from tui._timeline import Timeline

from ._harness import run

DAY_MS = 86_400_000
ALICE, BOB = b"\x01" * 32, b"\x02" * 32


class Two(App[None]):
    """The timeline under test beside a reference one, both the same size."""

    def compose(self) -> ComposeResult:
        yield Timeline(tz=UTC, id="live")
        yield Timeline(tz=UTC, id="fresh")


EDITS: dict[bytes, str] = {}  # message id -> its latest text, as the node would hold it


def message(n: int, reply_to: bytes | None = None) -> Message:
    """Message number `n` as it stands: always the same (id, author, time) for one `n`."""
    rng = random.Random(n)
    # Times spread over a few days: day separators come and go as messages are inserted.
    hlc = make_hlc(1_700_000_000_000 + n * DAY_MS // 7)
    words = " ".join(rng.choice(["lorem", "ipsum", "dolor", "sit", "amet"]) for _ in range(9))
    text = f"{n} {words * rng.randint(1, 3)}"
    author = rng.choice([ALICE, BOB])
    message_id = n.to_bytes(32, "big")
    if message_id in EDITS:
        return Message(message_id, author, n, hlc, EDITS[message_id], reply_to, True, False, ())
    return Message(message_id, author, n, hlc, text, reply_to, False, False, ())


def edited(old: Message, text: str) -> Message:
    EDITS[old.id] = text
    return Message(old.id, old.author, old.seq, old.hlc, text, old.reply_to, True, False, ())


async def check_same(pilot: Pilot[None], live: Timeline, fresh: Timeline) -> None:
    fresh.show_room(
        b"room",
        live.messages,
        more_before=live.more_before,
        me=ALICE,
        read_hlc=live.read_hlc,
    )
    fresh._quotes = dict(live._quotes)
    fresh._pending = list(live._pending)
    fresh._blocks = [None] * fresh._entries()
    fresh._relayout()
    await pilot.pause()  # the scrollbar, as on the live one: the same width
    fresh._blocks = [None] * fresh._entries()
    fresh._relayout()
    assert fresh.scrollable_content_region.width == live.scrollable_content_region.width
    assert live.rendered_text() == fresh.rendered_text()
    assert live._starts == fresh._starts and live.line_count == fresh.line_count


@pytest.mark.parametrize("seed", range(4))
def test_incremental_layout_matches_a_fresh_one(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_timeline, "MAX_LOADED", 40)
    monkeypatch.setattr(_timeline, "TRIM_SLACK", 10)
    rng = random.Random(seed)
    EDITS.clear()

    async def scenario() -> None:
        app = Two()
        async with app.run_test(size=(60, 30)) as pilot:
            live = app.query_one("#live", Timeline)
            fresh = app.query_one("#fresh", Timeline)
            numbers = list(range(0, 400, 2))  # the odd ones come later, "from sync"
            live.show_room(
                b"room",
                [message(n) for n in numbers[-20:]],
                more_before=True,
                me=ALICE,
                read_hlc=None,
            )
            next_new = 400
            tokens: list[bytes] = []
            for _ in range(60):
                step = rng.randrange(6)
                held = live.messages
                if step == 0:  # a burst of new ones, some replying to loaded ones
                    burst = []
                    for _ in range(rng.randint(1, 15)):
                        target = rng.choice(held).id if held and rng.random() < 0.3 else None
                        burst.append(message(next_new, reply_to=target))
                        next_new += 1
                    live.upsert_many(burst)
                elif step == 1 and held:  # sync fills in the past, between loaded ones
                    low = int.from_bytes(held[0].id, "big")
                    gaps = [n for n in range(low + 1, next_new) if n % 2][:50]
                    if gaps:
                        live.upsert_many([message(n) for n in rng.sample(gaps, 3)])
                elif step == 2 and held:  # edits, reactions and deletions of loaded ones
                    changes = [edited(m, f"edited {rng.random()}") for m in rng.sample(held, 3)]
                    live.upsert_many(changes)
                elif step == 3 and held:  # an older page
                    low = int.from_bytes(held[0].id, "big")
                    page = [message(n) for n in range(max(low - 20, 0), low)]
                    live.add_older(b"room", page, more_before=low > 20)
                elif step == 4:  # local echo and its end
                    if tokens and rng.random() < 0.5:
                        live.drop_pending(tokens.pop(rng.randrange(len(tokens))))
                    else:
                        tokens.append(live.add_pending("on its way", None, now_ms=1))
                else:  # scrolled up (no trimming) or back at the bottom (trimming)
                    live._follow = rng.random() < 0.5
                await pilot.pause()
                await check_same(pilot, live, fresh)

    run(scenario)


def test_a_flood_keeps_the_window_bounded_and_the_view_at_the_bottom() -> None:
    async def scenario() -> None:
        app = Two()
        async with app.run_test(size=(60, 30)) as pilot:
            live = app.query_one("#live", Timeline)
            live.show_room(b"room", [], more_before=False, me=ALICE, read_hlc=None)
            for start in range(0, 6000, 250):
                live.upsert_many([message(n) for n in range(start, start + 250)])
                await asyncio.sleep(0)
            await pilot.pause()
            assert len(live.messages) <= _timeline.MAX_LOADED + _timeline.TRIM_SLACK
            assert live.messages[-1].text.startswith("5999 ")
            assert live.scroll_y == live.max_scroll_y
            assert live.allow_vertical_scroll  # no scrollbar drawn, but the wheel scrolls
            assert "5999" in "".join(live.rendered_text()[-10:])

    run(scenario)


def test_a_reply_to_an_action_quotes_it_as_it_reads() -> None:
    from tui._layout import BlockContext, layout_block

    context = BlockContext(
        width=80,
        nick="bob",
        forked=False,
        own=False,
        mark="",
        day_separator=False,
        new_marker=False,
        quote=("alice", "/me waves at bob"),
        reactions=(),
        my_nick="",
    )
    block = layout_block(message(1), context, UTC)
    quote = "".join(segment.text for segment in block.lines[0])
    assert "↪ * alice waves at bob" in quote and "/me" not in quote
