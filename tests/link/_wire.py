"""Link pairs over a real transport for the driver tests: memory streams or loopback TCP.

Both run the real WebSocket framing of trio-websocket; only what is under it differs, so
the same conformance tests run over both (memory under MockClock, TCP on the real clock).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import trio
import trio.testing
import trio_websocket
from trio_websocket import WebSocketConnection

from crdt import Identity
from node.link import (
    MAX_MESSAGE,
    Link,
    LinkClosed,
    LinkConfig,
    LinkSession,
    connect_link,
    open_link,
    serve_links,
)


@asynccontextmanager
async def memory_websockets(
    *, lockstep: bool = False, streams: list[trio.abc.Stream] | None = None
) -> AsyncIterator[tuple[WebSocketConnection, WebSocketConnection]]:
    """A client and a server WebSocket over an in-memory stream pair.

    ``lockstep``: a write blocks until the other side reads it (no buffer at all), so a
    reader that stops reading pushes back on the writer, as a full TCP window does.
    ``streams`` receives the (client, server) byte streams underneath, to break them.
    """
    async with trio.open_nursery() as nursery:
        pair = trio.testing.lockstep_stream_pair if lockstep else trio.testing.memory_stream_pair
        client_stream, server_stream = pair()
        if streams is not None:
            streams += [client_stream, server_stream]
        accepted: list[WebSocketConnection] = []

        async def server() -> None:
            request = await trio_websocket.wrap_server_stream(
                nursery, server_stream, max_message_size=MAX_MESSAGE
            )
            accepted.append(await request.accept())

        nursery.start_soon(server)
        client = await trio_websocket.wrap_client_stream(
            nursery,
            client_stream,  # type: ignore[arg-type]  # any trio Stream works
            "peer",
            "/",
            max_message_size=MAX_MESSAGE,
        )
        await trio.testing.wait_all_tasks_blocked()
        (server_ws,) = accepted
        yield client, server_ws
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def memory_links(
    a: Identity,
    b: Identity,
    *,
    config_a: LinkConfig | None = None,
    config_b: LinkConfig | None = None,
    expected_peer_id: bytes | None = None,
    event_buffer_b: int = 64,
    lockstep: bool = False,
) -> AsyncIterator[tuple[Link, Link]]:
    """``a`` dials ``b`` over memory streams; yields (a's link, b's link)."""
    async with (
        memory_websockets(lockstep=lockstep) as (client, server),
        trio.open_nursery() as nursery,
    ):
        send, receive = trio.open_memory_channel[Link | LinkClosed](1)

        async def responder() -> None:
            try:
                async with open_link(
                    server, b, initiator=False, config=config_b, event_buffer=event_buffer_b
                ) as link:
                    await send.send(link)
                    await trio.sleep_forever()
            except LinkClosed as error:
                await send.send(error)

        nursery.start_soon(responder)
        async with open_link(
            client, a, initiator=True, config=config_a, expected_peer_id=expected_peer_id
        ) as link_a:
            link_b = await receive.receive()
            assert isinstance(link_b, Link)
            yield link_a, link_b
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def tcp_links(
    a: Identity,
    b: Identity,
    *,
    config_a: LinkConfig | None = None,
    config_b: LinkConfig | None = None,
    expected_peer_id: bytes | None = None,
    event_buffer_b: int = 64,
) -> AsyncIterator[tuple[Link, Link]]:
    """``a`` dials ``b``'s :func:`serve_links` on 127.0.0.1; yields (a's link, b's link)."""
    async with trio.open_nursery() as nursery:
        send, receive = trio.open_memory_channel[Link](1)

        async def handler(link: Link) -> None:
            await send.send(link)
            await trio.sleep_forever()

        listener = await nursery.start(
            partial(
                serve_links,
                handler,
                "127.0.0.1",
                0,
                b,
                config=config_b,
                event_buffer=event_buffer_b,
            )
        )
        async with connect_link(
            listener.url, a, config=config_a, expected_peer_id=expected_peer_id
        ) as link_a:
            link_b = await receive.receive()
            yield link_a, link_b
        nursery.cancel_scope.cancel()


LINK_PAIRS = {"memory": memory_links, "tcp": tcp_links}


async def join_both(
    a: Link, b: Link, room_id: bytes, secret_a: bytes, secret_b: bytes
) -> tuple[bool, bool]:
    """Both sides join ``room_id`` at once; what each side's ``join_room`` returned."""
    results: dict[str, bool] = {}

    async def join(name: str, link: Link, secret: bytes) -> None:
        results[name] = await link.join_room(room_id, secret)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(join, "a", a, secret_a)
        nursery.start_soon(join, "b", b, secret_b)
    return results["a"], results["b"]


async def drive_handshake(ws: WebSocketConnection, session: LinkSession) -> None:
    """Run ``session``'s handshake over a raw WebSocket (a hand-driven peer)."""
    for message in session.messages_to_send(trio.current_time()):
        await ws.send_message(message)
    while not session.is_established:
        data = await ws.get_message()
        assert isinstance(data, bytes)
        session.receive_message(data, trio.current_time())
        for message in session.messages_to_send(trio.current_time()):
            await ws.send_message(message)


@asynccontextmanager
async def raw_client(port: int) -> AsyncIterator[WebSocketConnection]:
    """A bare WebSocket to 127.0.0.1:``port`` whose TCP stream we close ourselves.

    (trio-websocket leaves a client's stream open when the server closes first.)
    """
    async with trio.open_nursery() as nursery:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        try:
            yield await trio_websocket.wrap_client_stream(
                nursery, stream, f"127.0.0.1:{port}", "/", max_message_size=MAX_MESSAGE
            )
        finally:
            await trio.aclose_forcefully(stream)


def close_code(closed: trio_websocket.ConnectionClosed) -> int:
    """The WebSocket close code a ConnectionClosed carries."""
    assert closed.reason is not None
    return closed.reason.code
