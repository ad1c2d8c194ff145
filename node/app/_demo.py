"""`rumor demo`: your node and three bot nodes on loopback, chatting in a demo room.

Real nodes: each has its own data dir (under a directory the caller removes), its own
links and DHT node; the bots bootstrap their DHT from yours and join the room from its
invite. The bots converse from a bundled script, answer when someone names them, react
to messages, and one of them (cy) goes offline and comes back, catching up on what it
missed. `open_demo` yields a `ChatClient` over your node, for the UI; `run_headless`
prints the conversation and checks that the four nodes converge.

This module only drives nodes through their public API (`Node`, `Room`, `LocalClient`);
the script and the bots' manners are its only decisions.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import trio

from crdt import Message, MessageAdded

from .._node import Node
from .._room import Room
from ..client import ChatClient, LocalClient, RoomChanged

__all__ = ["BOTS", "SCRIPT", "Demo", "Line", "open_demo", "open_demo_client", "run_headless"]

ROOM_NAME: Final = "demo"
BOTS: Final = ("ada", "bob", "cy")
AWAY_BOT: Final = "cy"
CONVERGE_WITHIN: Final = 30.0  # seconds the headless run waits for all four to agree


@dataclass(frozen=True, slots=True)
class Line:
    """One step of the script: `who` says `text`, reacts with it (`react`), goes offline
    (`away`) or comes back (`back`); then the script pauses `pause` seconds."""

    who: str
    text: str
    action: str = "say"
    pause: float = 0.6


SCRIPT: Final = (
    Line("ada", "hi all! this room lives on four nodes on your machine, no server", pause=0.5),
    Line("bob", "every message is a signed op; each node keeps the whole history"),
    Line("bob", "👍", action="react"),
    Line("cy", "and we found each other through a little Kademlia DHT"),
    Line("ada", "try it: say hello, or name one of us (ada, bob or cy)"),
    Line("cy", "brb, restarting my node: watch me catch up when I'm back", pause=0.3),
    Line("cy", "", action="away", pause=0.4),
    Line("bob", "while cy is gone, we keep talking: cy's node will pull these"),
    Line("ada", "gossip pushes new ops along the mesh, and a sync fills any gap"),
    Line("ada", "🎉", action="react"),
    Line("bob", "edits, reactions and topics are ops too"),
    Line("cy", "", action="back"),
    Line("ada", "welcome back cy!", pause=0.8),
    Line("bob", "that's the tour. stop with ctrl-c; the temporary nodes are removed"),
)

# What a bot answers when someone (not a bot) names it.
ANSWERS: Final = {
    "ada": "hi! I'm ada, a bot node. what you send goes to bob and cy directly, no server",
    "bob": "bob here (a bot): try `rumor status` in another shell to see the links",
    "cy": "cy speaking: I'm the one who went away and caught up",
}


@dataclass
class _Bot:
    """One bot's node (None while away) and the cues the script gives it."""

    name: str
    node: Node | None = None
    ready: trio.Event = field(default_factory=trio.Event)
    away: trio.Event = field(default_factory=trio.Event)
    back: trio.Event = field(default_factory=trio.Event)
    returned: trio.Event = field(default_factory=trio.Event)


@dataclass
class Demo:
    """The running demo: a client over your node, and what the script has done."""

    client: ChatClient
    you: Node
    room_id: bytes
    bots: dict[str, _Bot]
    script_done: trio.Event = field(default_factory=trio.Event)

    def converged(self) -> bool:
        """All four nodes up and showing the very same room (messages, edits, reactions)."""
        nodes = [self.you, *(bot.node for bot in self.bots.values())]
        views = set()
        for node in nodes:
            if node is None:
                return False
            views.add(tuple(node.room(self.room_id).timeline()))
        return len(views) == 1


def _open_node(root: Path, name: str, bootstrap: list[str]) -> AbstractAsyncContextManager[Node]:
    return Node.open(
        root / name,
        listen="127.0.0.1:0",
        dht_port=0,
        bootstrap=bootstrap,
        verify_workers=0,
        discovery_interval=5.0,
        dial_backoff=0.2,
    )


@contextlib.asynccontextmanager
async def open_demo(
    root: Path, *, say: Callable[[str], None] | None = None, seed: int | None = None
) -> AsyncIterator[Demo]:
    """Your node (nick "you") in the demo room, the bots joined and the script playing.
    `say` gets a line for people at each offline/online step (headless mode)."""
    rng = random.Random(seed)
    async with _open_node(root, "you", []) as you, trio.open_nursery() as nursery:
        assert you.dht is not None  # (opened with a DHT port)
        dht_host, dht_port = you.dht.address[:2]
        bootstrap = [f"{dht_host}:{dht_port}"]
        await you.set_nick("you")
        room = await you.create_room(ROOM_NAME)
        await room.set_topic("rumor demo: four nodes on loopback")
        demo = Demo(LocalClient(you), you, room.id, {name: _Bot(name) for name in BOTS})
        bot_ids: set[bytes] = set()
        invite = room.invite()
        for bot in demo.bots.values():
            nursery.start_soon(_run_bot, demo, bot, invite, bootstrap, bot_ids, rng)
        for bot in demo.bots.values():
            await bot.ready.wait()
        nursery.start_soon(_play, demo, say)
        try:
            yield demo
        finally:
            nursery.cancel_scope.cancel()


@contextlib.asynccontextmanager
async def open_demo_client(root: Path) -> AsyncIterator[ChatClient]:
    """The demo as the UI takes it: a client over your node while the bots chat."""
    async with open_demo(root) as demo:
        yield demo.client


async def _run_bot(
    demo: Demo,
    bot: _Bot,
    invite: str,
    bootstrap: list[str],
    bot_ids: set[bytes],
    rng: random.Random,
) -> None:
    """A bot's node: join, chat and answer; go offline on cue and come back caught up."""
    async with _open_node(demo.you.data_dir.parent, bot.name, bootstrap) as node:
        bot_ids.add(node.peer_id)
        await node.set_nick(bot.name)
        await node.join(invite)
        bot.node = node
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_answer, demo, bot.name, node.room(demo.room_id), bot_ids, rng)
            bot.ready.set()
            await bot.away.wait()
            bot.node = None
            nursery.cancel_scope.cancel()
    await bot.back.wait()
    async with _open_node(demo.you.data_dir.parent, bot.name, bootstrap) as node:
        room = node.room(demo.room_id)
        before = room.message_count()
        # Caught up: holding every message your node holds (bounded; it goes on anyway).
        with trio.move_on_after(10):
            await _until(lambda: _holds_all(room, demo.you.room(demo.room_id)))
        missed = room.message_count() - before
        await room.send(f"back! caught up on {missed} messages I missed while offline")
        bot.node = node
        bot.returned.set()
        await _answer(demo, bot.name, room, bot_ids, rng)


async def _until(condition: Callable[[], bool]) -> None:
    """Return once `condition()` holds (a view of several nodes: no one event to wait
    for); the caller bounds the wait."""
    while True:
        if condition():
            return
        await trio.sleep(0.05)


def _holds_all(room: Room, other: Room) -> bool:
    return {m.id for m in other.timeline()} <= {m.id for m in room.timeline()}


async def _answer(
    demo: Demo, name: str, room: Room, bot_ids: set[bytes], rng: random.Random
) -> None:
    """Answer messages from people (not bots) that name us, and wave at them."""
    async with room.events() as events:
        async for change in events:
            if not isinstance(change, MessageAdded):
                continue
            message = room.message(change.id)
            if message is None or message.author in bot_ids:
                continue
            words = "".join(c if c.isalnum() else " " for c in message.text.lower()).split()
            if name not in words:
                continue
            await trio.sleep(0.2 + rng.random() * 0.3)
            await room.send(ANSWERS[name], reply_to=message.id)
            await room.react(message.id, "👋")


async def _play(demo: Demo, say: Callable[[str], None] | None) -> None:
    for line in SCRIPT:
        bot = demo.bots[line.who]
        if line.action == "away":
            bot.away.set()
            if say:
                say(f"-- {line.who}'s node goes offline --")
        elif line.action == "back":
            if say:
                say(f"-- {line.who}'s node comes back --")
            bot.back.set()
            with trio.move_on_after(15):
                await bot.returned.wait()
        elif bot.node is not None:
            room = bot.node.room(demo.room_id)
            timeline = room.timeline()
            if line.action == "react":
                if timeline:
                    await room.react(timeline[-1].id, line.text)
            else:
                await room.send(line.text)
        await trio.sleep(line.pause)
    demo.script_done.set()


def format_line(message: Message, names: dict[bytes, str]) -> str:
    author = names.get(message.author, message.author.hex()[:8])
    reply = "↳ " if message.reply_to else ""
    return f"<{author}> {reply}{message.text}"


async def run_headless(root: Path, *, print_line: Callable[[str], None] = print) -> int:
    """The demo without the UI: print the conversation as your node sees it, name a bot
    once as a person would, and return 0 once all four nodes show the same room (1 if
    they do not within `CONVERGE_WITHIN` seconds of the script's end)."""
    async with open_demo(root, say=print_line, seed=1) as demo:
        client = demo.client
        names: dict[bytes, str] = {}
        async with client.events() as events, trio.open_nursery() as nursery:

            async def follow() -> None:
                async for event in events:
                    if not (isinstance(event, RoomChanged) and event.room_id == demo.room_id):
                        continue
                    if not isinstance(event.change, MessageAdded):
                        continue
                    message = await client.message(demo.room_id, event.change.id)
                    if message is None:
                        continue
                    if message.author not in names:
                        for member in await client.members(demo.room_id):
                            if member.nick:
                                names[member.peer_id] = member.nick
                    print_line(format_line(message, names))

            nursery.start_soon(follow)
            await trio.sleep(1.0)
            await client.send(demo.room_id, "hi ada! is this really peer to peer?")
            await demo.script_done.wait()
            with trio.move_on_after(CONVERGE_WITHIN):
                await _until(demo.converged)
            await trio.sleep(0.2)  # the last lines printed
            nursery.cancel_scope.cancel()
        same = demo.converged()
        count = len(demo.you.room(demo.room_id).timeline())
        print_line(
            f"converged: {'yes' if same else 'NO'} ({count} messages on {1 + len(demo.bots)} nodes)"
        )
        return 0 if same else 1
