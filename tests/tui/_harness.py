"""Running `RumorApp` under Textual's Pilot with real nodes as the UI's node and its peers.

The peers are real `Node`s on loopback, opened in the same trio guest as the UI's node
(the client factory opens them all), so a test drives them with ``app.call(...)``.
Tests are plain functions running an asyncio scenario: pytest-trio owns `async def` tests.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC
from pathlib import Path
from typing import Any

from textual.pilot import Pilot

from node import Node
from node.client import ChatClient, LocalClient
from tui import RumorApp
from tui._timeline import Timeline

DEADLINE = 30.0  # seconds any one condition may take


class Swarm:
    """The UI's node and its peers, once the factory has opened them."""

    def __init__(self) -> None:
        self.ui: Node | None = None
        self.peers: list[Node] = []

    @property
    def peer(self) -> Node:
        return self.peers[0]


def factory(tmp_path: Path, swarm: Swarm, peers: int = 1) -> Callable[[], object]:
    @asynccontextmanager
    async def open_client() -> AsyncIterator[ChatClient]:
        async with AsyncExitStack() as stack:
            ui = await stack.enter_async_context(
                Node.open(tmp_path / "ui", dht_port=None, verify_workers=0)
            )
            swarm.ui = ui
            for index in range(peers):
                node = await stack.enter_async_context(
                    Node.open(tmp_path / f"peer{index}", dht_port=None, verify_workers=0)
                )
                swarm.peers.append(node)
            yield LocalClient(ui)

    return open_client


def make_app(tmp_path: Path, swarm: Swarm, peers: int = 1) -> RumorApp:
    return RumorApp(factory(tmp_path, swarm, peers), state_dir=tmp_path, tz=UTC)  # type: ignore[arg-type]


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 120))


async def until(pilot: Pilot[Any], condition: Callable[[], bool], what: str = "") -> None:
    """Let the app run until `condition()` holds; fail after DEADLINE seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        await pilot.pause(0.02)


async def submit(pilot: Pilot[Any], app: RumorApp, line: str) -> None:
    """Put `line` in the input and press Enter, as if typed."""
    app.input.focus()
    app.input.set_text(line)
    await pilot.press("enter")
    await pilot.pause()


def screen_lines(timeline: Timeline) -> list[str]:
    """The timeline's visible lines, as its render_line paints them."""
    return [
        "".join(segment.text for segment in timeline.render_line(y))
        for y in range(timeline.size.height)
    ]


def screen_text(timeline: Timeline) -> str:
    return "\n".join(screen_lines(timeline))


def noticed(app: RumorApp, text: str) -> bool:
    """Whether a notice containing `text` is showing."""
    return any(text in str(notice.message) for notice in app._notifications)
