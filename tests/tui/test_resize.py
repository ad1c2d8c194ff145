"""Resizing the terminal re-lays the timeline out; nothing is lost or cut."""

from __future__ import annotations

import asyncio
from datetime import UTC

from tui import RumorApp

from ._fake import NOW, FakeClient, factory
from ._harness import screen_lines, until


def test_resizing_the_terminal_keeps_every_line_and_never_fails() -> None:
    async def scenario() -> None:
        client = FakeClient()
        app = RumorApp(factory(client), tz=UTC, notify_mode="off", clock_ms=lambda: NOW)
        async with app.run_test(size=(130, 40)) as pilot:
            await until(pilot, lambda: app.ready and app.current is not None, "the room")
            await until(pilot, lambda: bool(screen_lines(app.timeline)), "the timeline")
            for width, height in [(80, 24), (130, 40), (40, 12), (200, 50), (90, 30)]:
                await pilot.resize_terminal(width, height)
                await pilot.pause()
                lines = screen_lines(app.timeline)  # renders every visible line
                assert lines and app.is_running
                drawn = app.timeline.scrollable_content_region.width
                long = [(len(line), drawn, line) for line in lines if len(line.rstrip()) > drawn]
                assert not long, (width, long[:2])

    asyncio.run(asyncio.wait_for(scenario(), 120))
