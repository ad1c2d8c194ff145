"""The same link behaviour over memory streams (MockClock) and loopback TCP (real clock)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from functools import partial
from typing import Any

import pytest
import trio
import trio_websocket
from trio.testing import MockClock

from node.link import (
    MAX_PAYLOAD,
    Link,
    LinkClosed,
    LinkConfig,
    LinkLocalError,
    LinkRemoteError,
    Message,
    RoomAuthorized,
    RoomDenied,
    RoomRefused,
    connect_link,
    serve_links,
)

from ._wire import LINK_PAIRS, close_code, join_both, raw_client
from .conftest import ALICE, BOB, MALLORY, ROOM_A, ROOM_B, SECRET_A, SECRET_B, WRONG_SECRET

Pair = Callable[..., AbstractAsyncContextManager[tuple[Link, Link]]]


@pytest.fixture(params=sorted(LINK_PAIRS))
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def clock(transport: str) -> MockClock | None:
    # Real sockets block in the kernel, which an autojumping clock would skip past.
    return MockClock(autojump_threshold=0) if transport == "memory" else None


@pytest.fixture
def pair(transport: str, clock: MockClock | None) -> Pair:
    return LINK_PAIRS[transport]


async def _events(link: Link, n: int) -> list[Any]:
    return [await link.receive() for _ in range(n)]


async def test_handshake_proves_peer_ids_and_shares_the_hash(pair: Pair) -> None:
    async with pair(ALICE, BOB) as (a, b):
        assert a.peer_id == BOB.peer_id and b.peer_id == ALICE.peer_id
        assert a.handshake_hash == b.handshake_hash
        assert a.initiator and not b.initiator
        assert a.closed is None and a.rooms == frozenset()


async def test_messages_flow_both_ways_in_order(pair: Pair) -> None:
    async with pair(ALICE, BOB) as (a, b):
        assert await join_both(a, b, ROOM_A, SECRET_A, SECRET_A) == (True, True)
        assert await a.receive() == RoomAuthorized(ROOM_A)
        assert await b.receive() == RoomAuthorized(ROOM_A)
        big = bytes(range(256)) * (MAX_PAYLOAD // 256) + b"\x07" * (MAX_PAYLOAD % 256)
        for i in range(20):
            await a.send(ROOM_A, b"%d" % i)
        await a.send(ROOM_A, big)
        await b.send(ROOM_A, b"pong")
        assert await _events(b, 21) == [Message(ROOM_A, b"%d" % i) for i in range(20)] + [
            Message(ROOM_A, big)
        ]
        assert await a.receive() == Message(ROOM_A, b"pong")
        with pytest.raises(LinkLocalError):
            await a.send(ROOM_A, big + b"!")


async def test_concurrent_senders_share_one_link(pair: Pair) -> None:
    async with pair(ALICE, BOB) as (a, b):
        assert await join_both(a, b, ROOM_A, SECRET_A, SECRET_A) == (True, True)
        assert await join_both(a, b, ROOM_B, SECRET_B, SECRET_B) == (True, True)

        async def sender(task: int) -> None:
            for i in range(30):
                await a.send(ROOM_A if task % 2 else ROOM_B, b"%d:%d" % (task, i))

        async with trio.open_nursery() as nursery:
            for task in range(4):
                nursery.start_soon(sender, task)
        events = [e for e in await _events(b, 2 + 120) if isinstance(e, Message)]
        by_task: dict[bytes, list[int]] = {}
        for event in events:
            task_id, i = event.payload.split(b":")
            assert event.room_id == (ROOM_A if int(task_id) % 2 else ROOM_B)
            by_task.setdefault(task_id, []).append(int(i))
        assert by_task == {b"%d" % t: list(range(30)) for t in range(4)}


async def test_two_rooms_on_one_link_and_one_the_peer_cannot_prove(pair: Pair) -> None:
    async with pair(ALICE, BOB) as (a, b):
        assert await join_both(a, b, ROOM_A, SECRET_A, SECRET_A) == (True, True)
        assert await join_both(a, b, ROOM_B, SECRET_B, WRONG_SECRET) == (False, False)
        assert a.rooms == b.rooms == {ROOM_A}
        assert a.refused_rooms == b.refused_rooms == {ROOM_B}
        seen_a = set(await _events(a, 3))
        assert seen_a == {RoomAuthorized(ROOM_A), RoomRefused(ROOM_B), RoomDenied(ROOM_B)}
        with pytest.raises(LinkLocalError):
            await b.send(ROOM_B, b"leak")
        await b.send(ROOM_A, b"room A still works")
        assert await a.receive() == Message(ROOM_A, b"room A still works")
        assert a.closed is None and b.closed is None


async def test_unknown_room_is_denied_until_the_peer_joins(pair: Pair) -> None:
    async with pair(ALICE, BOB) as (a, b):
        assert await a.join_room(ROOM_A, SECRET_A) is False
        assert await a.receive() == RoomDenied(ROOM_A)
        assert await b.join_room(ROOM_A, SECRET_A) is True
        assert await a.receive() == RoomAuthorized(ROOM_A)
        assert a.rooms == b.rooms == {ROOM_A}


async def test_closing_one_end_closes_the_other(pair: Pair) -> None:
    async with pair(ALICE, BOB) as (a, b):
        assert await join_both(a, b, ROOM_A, SECRET_A, SECRET_A) == (True, True)
        await a.send(ROOM_A, b"last words")
        await a.aclose()
        with pytest.raises(LinkClosed) as local:
            await a.send(ROOM_A, b"too late")
        assert local.value.reason == "local"
        events = [event async for event in b]
        assert events == [RoomAuthorized(ROOM_A), Message(ROOM_A, b"last words")]
        assert b.closed is not None and b.closed.reason == "peer"
        with pytest.raises(LinkClosed):
            await b.join_room(ROOM_B, SECRET_B)


async def test_an_unexpected_peer_id_fails_the_dial(pair: Pair) -> None:
    with pytest.raises(ExceptionGroup) as group:
        async with pair(ALICE, BOB, expected_peer_id=MALLORY.peer_id):
            pytest.fail("the link must not open")
    error: BaseException = group.value
    while isinstance(error, BaseExceptionGroup):  # the test helper's nurseries wrap it
        (error,) = error.exceptions
    assert isinstance(error, LinkClosed) and error.reason == "protocol"
    assert isinstance(error.__cause__, LinkRemoteError)
    assert error.__cause__.reason == "unexpected-peer"


async def test_server_survives_garbage_and_keeps_serving() -> None:
    async def handler(link: Link) -> None:
        assert await link.join_room(ROOM_A, SECRET_A)
        await link.send(ROOM_A, b"welcome " + link.peer_id[:4])

    async with trio.open_nursery() as nursery:
        listener = await nursery.start(partial(serve_links, handler, "127.0.0.1", 0, BOB))
        async with raw_client(listener.port) as raw:
            await raw.send_message(b"\x00" * 40)  # not a handshake message
            with pytest.raises(trio_websocket.ConnectionClosed) as closed:
                await raw.get_message()
            assert close_code(closed.value) == 4001
        async with raw_client(listener.port) as raw:
            await raw.send_message(b"\x00" * 70_000)  # over the WebSocket message limit
            with pytest.raises(trio_websocket.ConnectionClosed) as closed:
                await raw.get_message()
            # Cut off at the frame's header, before its body: no closing handshake.
            assert close_code(closed.value) == 1006
        for who in (ALICE, MALLORY):
            async with connect_link(listener.url, who, expected_peer_id=BOB.peer_id) as link:
                assert await link.join_room(ROOM_A, SECRET_A)
                assert await link.receive() == RoomAuthorized(ROOM_A)
                assert await link.receive() == Message(ROOM_A, b"welcome " + who.peer_id[:4])
        nursery.cancel_scope.cancel()


async def test_server_handshake_timeout_on_the_real_clock() -> None:
    config = LinkConfig(handshake_timeout=0.3)
    handled: list[Link] = []

    async def handler(link: Link) -> None:
        handled.append(link)

    async with trio.open_nursery() as nursery:
        listener = await nursery.start(
            partial(serve_links, handler, "127.0.0.1", 0, BOB, config=config)
        )
        started = trio.current_time()  # before the server's own clock for this link starts
        async with raw_client(listener.port) as raw:  # upgrades, then says nothing
            with pytest.raises(trio_websocket.ConnectionClosed) as closed:
                await raw.get_message()
            assert close_code(closed.value) == 4003
            assert 0.3 <= trio.current_time() - started < 2.0
        assert handled == []
        async with connect_link(listener.url, ALICE, config=config) as link:
            assert link.peer_id == BOB.peer_id
            assert link.remote == f"127.0.0.1:{listener.port}"
        nursery.cancel_scope.cancel()


async def test_dialing_nothing_is_a_transport_close() -> None:
    with trio.socket.socket() as sock:
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: the dial is refused
        with pytest.raises(LinkClosed) as caught:
            async with connect_link(f"ws://127.0.0.1:{port}/", ALICE):
                pytest.fail("the link must not open")
    assert caught.value.reason == "transport"
