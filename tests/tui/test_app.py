"""The chat UI under Textual's Pilot, on real nodes linked on loopback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual.pilot import Pilot

from crdt import format_peer_id
from tui import RumorApp
from tui._panels import RoomList

from ._harness import Swarm, make_app, noticed, run, screen_text, submit, until


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


async def linked_room(pilot: Pilot[Any], app: RumorApp, swarm: Swarm, name: str) -> bytes:
    """Create a room in the UI and have the peer join it through its invite."""
    await submit(pilot, app, f"/create {name}")
    await until(pilot, lambda: any(r.name == name for r in app.rooms), f"room {name}")
    room_id = next(r.id for r in app.rooms if r.name == name)
    ui = swarm.ui
    assert ui is not None
    invite = ui.room(room_id).invite()
    await app.call(swarm.peer.join, invite)
    await until(pilot, lambda: swarm.peer.peer_id in ui.status().links, "the link")
    return room_id


def test_a_message_from_a_peer_appears_and_a_reply_quotes_it(tmp_path: Path) -> None:
    async def scenario() -> None:
        swarm = Swarm()
        app = make_app(tmp_path, swarm)
        async with app.run_test(size=(120, 40)) as pilot:
            await until(pilot, lambda: app.ready)
            await submit(pilot, app, "/nick alice")
            room_id = await linked_room(pilot, app, swarm, "plans")
            await app.call(swarm.peer.set_nick, "bob")
            await app.call(swarm.peer.room(room_id).send, "lunch at noon?")
            await until(pilot, lambda: "lunch at noon?" in screen_text(app.timeline))
            await until(pilot, lambda: "bob" in screen_text(app.timeline), "bob's nick")
            # /reply with no target answers the newest message: bob's.
            await submit(pilot, app, "/reply yes, noon")
            peer_room = swarm.peer.room(room_id)
            await until(pilot, lambda: any(m.text == "yes, noon" for m in peer_room.timeline()))
            reply = next(m for m in peer_room.timeline() if m.text == "yes, noon")
            assert reply.reply_to == next(
                m.id for m in peer_room.timeline() if m.author != reply.author
            )
            await until(pilot, lambda: "↪ bob: lunch at noon?" in screen_text(app.timeline))
            # Our message is marked once the peer holds it.
            await until(pilot, lambda: "yes, noon ✓" in screen_text(app.timeline), "the ack")
            # The member list shows bob, linked.
            await until(pilot, lambda: "bob" in str(app.query_one("#members").render()))
            members = str(app.query_one("#members").render())
            assert format_peer_id(swarm.peer.peer_id)[:8] in members

    run(scenario)


def test_switching_rooms_unread_and_mention_marks_survive_a_restart(tmp_path: Path) -> None:
    async def scenario() -> None:
        swarm = Swarm()
        app = make_app(tmp_path, swarm)
        async with app.run_test(size=(120, 40)) as pilot:
            await until(pilot, lambda: app.ready)
            await submit(pilot, app, "/nick alice")
            await until(pilot, lambda: app.me.nick == "alice")
            first = await linked_room(pilot, app, swarm, "one")
            second = await linked_room(pilot, app, swarm, "two")
            assert app.current == second
            await pilot.press("ctrl+p")
            await until(pilot, lambda: app.current == first, "room one")
            await pilot.press("alt+2")
            await until(pilot, lambda: app.current == second, "room two")
            await app.call(swarm.peer.room(first).send, "something")
            await app.call(swarm.peer.room(first).send, "hey alice, look")
            await until(pilot, lambda: app.unread.get(first) == 2 and app.mentions.get(first) == 1)
            rooms = str(app.query_one(RoomList).render())
            assert "@#one 2" in rooms
            assert app.bells == 1
            await app.call(swarm.peer.room(second).send, "plain")
            await until(pilot, lambda: "plain" in screen_text(app.timeline))
            assert app.unread.get(second, 0) == 0  # the room on screen counts as read
        # Restart: the read markers were saved, so room one still has 2 unread.
        swarm2 = Swarm()
        app2 = make_app(tmp_path, swarm2)
        async with app2.run_test(size=(120, 40)) as pilot:
            await until(pilot, lambda: app2.ready)
            assert app2.current == second  # the room on screen when it closed
            assert app2.unread.get(first) == 2 and app2.mentions.get(first) == 1
            assert "@#one 2" in str(app2.query_one(RoomList).render())
            await pilot.press("alt+1")
            await until(pilot, lambda: app2.current == first and app2.timeline.room_id == first)
            # The "new messages" line sits above the first unread message.
            lines = app2.timeline.rendered_text()
            marker = next(i for i, line in enumerate(lines) if "new messages" in line)
            assert "something" in lines[marker + 1]
            assert app2.unread.get(first) == 0

    run(scenario)


def test_nick_topic_me_edit_delete_react(tmp_path: Path) -> None:
    async def scenario() -> None:
        swarm = Swarm()
        app = make_app(tmp_path, swarm)
        async with app.run_test(size=(120, 40)) as pilot:
            await until(pilot, lambda: app.ready)
            room_id = await linked_room(pilot, app, swarm, "ops")
            peer_room = swarm.peer.room(room_id)
            await submit(pilot, app, "/nick carol")
            await until(pilot, lambda: peer_room.nicknames().get(app.me.peer_id) == "carol")
            await submit(pilot, app, "/topic release on friday")
            await until(pilot, lambda: peer_room.topic == "release on friday")
            await until(pilot, lambda: "release on friday" in str(app.query_one("#topic").render()))
            await submit(pilot, app, "/me waves")
            await until(pilot, lambda: "carol waves" in screen_text(app.timeline), "the action")
            assert "* │ carol waves" in screen_text(app.timeline)
            await submit(pilot, app, "first draft")
            await until(pilot, lambda: "first draft ✓" in screen_text(app.timeline))
            # Up on an empty line puts the last message in the input to edit it.
            app.input.focus()
            await pilot.press("up")
            assert app.input.text == "/edit first draft"
            app.input.set_text("/edit second draft")
            await pilot.press("enter")
            await until(pilot, lambda: "second draft (edited)" in screen_text(app.timeline))
            await until(pilot, lambda: any(m.text == "second draft" for m in peer_room.timeline()))
            await submit(pilot, app, "/react 👍")
            await until(pilot, lambda: " 👍 1 " in screen_text(app.timeline), "the reaction")
            await app.call(peer_room.react, peer_room.timeline()[-1].id, "👍")
            await until(pilot, lambda: " 👍 2 " in screen_text(app.timeline), "two reactions")
            await submit(pilot, app, "/react 👍")  # again: takes ours back
            await until(pilot, lambda: " 👍 1 " in screen_text(app.timeline))
            await submit(pilot, app, "/delete")
            await until(pilot, lambda: "(message deleted)" in screen_text(app.timeline))
            await until(pilot, lambda: peer_room.timeline()[-1].deleted)
            # Someone else's message cannot be edited: a notice, not a crash.
            await app.call(peer_room.send, "theirs")
            await until(pilot, lambda: "theirs" in screen_text(app.timeline))
            await submit(pilot, app, "/edit ^1 mine now")
            await until(pilot, lambda: noticed(app, "someone else"))

    run(scenario)


def test_search_and_mentions(tmp_path: Path) -> None:
    async def scenario() -> None:
        swarm = Swarm()
        app = make_app(tmp_path, swarm)
        async with app.run_test(size=(120, 40)) as pilot:
            await until(pilot, lambda: app.ready)
            await submit(pilot, app, "/nick dave")
            room_id = await linked_room(pilot, app, swarm, "big")
            peer_room = swarm.peer.room(room_id)
            for index in range(450):  # more than two pages: the hits need older pages
                text = f"needle {index}" if index in (3, 400) else f"hay {index}"
                if index == 5:
                    text = "dave: are you there?"
                await app.call(peer_room.send, text)
            await until(pilot, lambda: "hay 449" in screen_text(app.timeline), "the flood")
            await submit(pilot, app, "/search needle")
            await until(pilot, lambda: "needle 400" in screen_text(app.timeline), "first hit")
            assert app.timeline.selected is not None
            await submit(pilot, app, "/search")
            await until(pilot, lambda: "needle 3" in screen_text(app.timeline), "older hit")
            await submit(pilot, app, "/search")
            await until(pilot, lambda: noticed(app, "no more"))
            await submit(pilot, app, "/mentions")
            await until(pilot, lambda: app.screen.id == "mentions-screen", "mentions")
            body = str(app.screen.query_one("#text-body").render())
            assert "dave: are you there?" in body and "#big" in body
            await pilot.press("escape")

    run(scenario)


def test_a_bad_invite_and_an_unknown_command_give_notices(tmp_path: Path) -> None:
    async def scenario() -> None:
        swarm = Swarm()
        app = make_app(tmp_path, swarm, peers=0)
        async with app.run_test(size=(120, 40)) as pilot:
            await until(pilot, lambda: app.ready)
            await submit(pilot, app, "rumor://invite/garbage")
            await until(pilot, lambda: any(n.severity == "error" for n in app._notifications))
            await submit(pilot, app, "/frobnicate")
            await until(pilot, lambda: noticed(app, "unknown command"))
            await submit(pilot, app, "hello")  # no room yet
            await until(pilot, lambda: noticed(app, "no room yet"))
            assert app.is_running and app.rooms == []

    run(scenario)


def test_ctrl_c_asks_once_and_quits_when_pressed_again(tmp_path: Path) -> None:
    async def scenario() -> None:
        swarm = Swarm()
        app = make_app(tmp_path, swarm, peers=0)
        async with app.run_test(size=(120, 40)) as pilot:
            await until(pilot, lambda: app.ready)
            await pilot.press("ctrl+c")
            await until(pilot, lambda: noticed(app, "press Ctrl+C again"))
            assert app.is_running
            await pilot.press("ctrl+c")
            await until(pilot, lambda: not app.is_running, "the app to quit")
        assert app.return_code == 0

    run(scenario)


HOSTILE_TEXT = "[link=http://x]click[/link] \u202eevil\u2066 [reverse]x"


def test_hostile_text_renders_inert(tmp_path: Path) -> None:
    async def scenario() -> None:
        swarm = Swarm()
        app = make_app(tmp_path, swarm)
        async with app.run_test(size=(120, 40)) as pilot:
            await until(pilot, lambda: app.ready)
            room_id = await linked_room(pilot, app, swarm, "safe")
            # crdt refuses control characters in nicks; markup and bidi pass through it.
            await app.call(swarm.peer.set_nick, "[i]eve\u202e")
            await app.call(swarm.peer.room(room_id).send, HOSTILE_TEXT)
            await app.call(swarm.peer.room(room_id).set_topic, "[blink]topic\u2067")
            await until(pilot, lambda: "click" in screen_text(app.timeline), "the text")
            await until(
                pilot, lambda: "[i]eve\N{REPLACEMENT CHARACTER}" in screen_text(app.timeline)
            )
            shown = screen_text(app.timeline)
            assert "[link=http://x]click[/link]" in shown  # markup shown as text
            for char in ("\u202e", "\u2066", "\u2067", "\x1b"):
                assert char not in shown
            for strip_y in range(app.timeline.size.height):
                for segment in app.timeline.render_line(strip_y):
                    assert segment.style is None or not segment.style.link
            await until(pilot, lambda: "[blink]topic" in str(app.query_one("#topic").render()))
            assert "\u2067" not in str(app.query_one("#topic").render())

    run(scenario)
