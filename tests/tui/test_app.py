"""The chat UI under Textual's Pilot, on real nodes linked on loopback."""

from __future__ import annotations

from pathlib import Path

from textual.pilot import Pilot

from crdt import format_peer_id
from tui import RumorApp
from tui._panels import RoomList

from ._harness import Swarm, make_app, run, screen_text, submit, until


def test_first_run_shows_the_welcome_and_creating_a_room_lets_you_chat(tmp_path: Path) -> None:
    async def scenario() -> None:
        swarm = Swarm()
        app = make_app(tmp_path, swarm)
        async with app.run_test(size=(120, 40)) as pilot:
            await until(pilot, lambda: app.ready, "the client")
            welcome = str(app.query_one("#welcome").render())
            assert "Welcome to rumor" in welcome and "/create NAME" in welcome
            assert swarm.ui is not None and (tmp_path / "ui" / "identity.pem").exists()
            await submit(pilot, app, "/nick alice")
            await until(pilot, lambda: app.me.nick == "alice", "the nick")
            await submit(pilot, app, "/create plans")
            await until(pilot, lambda: app.current is not None, "the room")
            assert not app.query_one("#welcome").display
            # Typed key by key, as a person would.
            await pilot.press(*"hello there")
            await pilot.press("enter")
            await until(
                pilot, lambda: "hello there" in screen_text(app.timeline), "the message on screen"
            )
            assert swarm.ui.rooms()[0].timeline()[0].text == "hello there"

    run(scenario)
