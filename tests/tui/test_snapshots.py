"""SVG snapshots of the main screens (pytest-textual-snapshot), on fixed data and time."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC
from typing import Any

from textual.pilot import Pilot

from tui import RumorApp

from ._fake import NOW, EmptyClient, FakeClient, factory

SIZE = (120, 34)


def app_on(client: FakeClient) -> RumorApp:
    return RumorApp(factory(client), tz=UTC, notify_mode="off", clock_ms=lambda: NOW)


def settle(*keys: str) -> Callable[[Pilot[Any]], Awaitable[None]]:
    async def run_before(pilot: Pilot[Any]) -> None:
        app = pilot.app
        assert isinstance(app, RumorApp)
        app.input.cursor_blink = False
        for _ in range(500):
            if (
                app.ready
                and app.status is not None
                and (not app.rooms or app.current in app.members)
            ):
                break
            await pilot.pause(0.01)
        for key in keys:
            await pilot.press(key)
            for _ in range(100):
                await pilot.pause(0.01)
                if len(app.screen_stack) > 1:
                    break
        await pilot.pause()

    return run_before


def test_welcome(snap_compare: Any) -> None:
    assert snap_compare(app_on(EmptyClient()), terminal_size=SIZE, run_before=settle())


def test_room_with_messages_and_members(snap_compare: Any) -> None:
    assert snap_compare(app_on(FakeClient()), terminal_size=SIZE, run_before=settle())


def test_room_without_members_panel(snap_compare: Any) -> None:
    assert snap_compare(app_on(FakeClient()), terminal_size=SIZE, run_before=settle("f2"))


def test_diagnostics(snap_compare: Any) -> None:
    assert snap_compare(app_on(FakeClient()), terminal_size=SIZE, run_before=settle("f4"))


def test_help(snap_compare: Any) -> None:
    assert snap_compare(app_on(FakeClient()), terminal_size=SIZE, run_before=settle("f1"))
