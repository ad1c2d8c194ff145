"""The link server: accepting connections, with strangers bounded.

:func:`serve_links` accepts connections on a :class:`StreamTransport` and turns each into
a :class:`Link` (WebSocket upgrade, then the Noise handshake), under three bounds:

- one deadline per connection, ``handshake_timeout`` from the moment it is accepted,
  for the upgrade *and* the handshake together; then the connection is closed;
- a cap on connections in their handshake, in all and per source
  (:class:`~node.link._guard.HandshakeGate`): one beyond its source's cap is closed at
  once, one that finds the whole gate full closes the oldest handshake of the source
  holding the most;
- frame headers checked before any body is read (:class:`GuardedStream`).

A connection that has proven its peer id leaves the gate and is the handler's.

This module must never decide what a link means or carries: that is the session's.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import NoReturn

import trio
import trio_websocket
from trio_websocket import ConnectionClosed

from crdt import Identity

from ..noise import KeyPair
from ._driver import (
    _TCP,
    EVENT_BUFFER,
    RECEIVE_BYTES,
    Link,
    StreamTransport,
    open_link,
)
from ._errors import LinkClosed
from ._guard import HandshakeGate, source_key
from ._session import MAX_MESSAGE, LinkConfig
from ._stream import GuardedStream

__all__ = ["LinkListener", "serve_links"]

log = logging.getLogger("node.link")


@dataclass(frozen=True, slots=True)
class LinkListener:
    """Where :func:`serve_links` listens; ``url`` is what peers dial. ``gate`` counts the
    connections in their handshake, and those refused or pushed out."""

    host: str
    port: int
    gate: HandshakeGate | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ws://{host}:{self.port}/"


async def serve_links(
    handler: Callable[[Link], Awaitable[None]],
    host: str,
    port: int,
    identity: Identity,
    *,
    config: LinkConfig | None = None,
    static: KeyPair | None = None,
    event_buffer: int = EVENT_BUFFER,
    transport: StreamTransport = _TCP,
    task_status: trio.TaskStatus[LinkListener] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Accept links on ``host:port`` of ``transport`` (TCP by default) and run
    ``handler(link)`` for each, until cancelled.

    Start it with ``listener = await nursery.start(serve_links, ...)``. The WebSocket
    upgrade and the Noise handshake together get ``config.handshake_timeout`` from the
    moment a connection is accepted (see the module docstring for the other bounds). A
    connection whose handshake fails or times out is logged and dropped; the server keeps
    serving. The link closes when ``handler`` returns; :class:`LinkClosed` out of
    ``handler`` (its link died) is logged, any other error propagates.
    """
    config = config if config is not None else LinkConfig()
    gate = HandshakeGate(config.max_handshakes, config.max_handshakes_per_source)
    pending: dict[int, trio.abc.Stream] = {}  # connections in the gate, to push out
    numbers = itertools.count()

    async def on_connection(raw: trio.abc.Stream) -> None:
        accepted = trio.current_time()
        stream = GuardedStream(raw, MAX_MESSAGE)
        number = next(numbers)
        admission = gate.admit(number, source_key(stream.peer_host))
        if not admission.admitted:
            log.debug("connection from %s closed: too many handshakes from there", stream.peer)
            await trio.aclose_forcefully(stream)
            return
        if admission.evict is not None:
            evicted = pending.pop(admission.evict, None)
            if evicted is not None:  # its handshake sees a broken connection
                log.debug("handshake gate full: closing a pending connection from %s", stream)
                await trio.aclose_forcefully(evicted)
        pending[number] = stream
        try:
            async with trio.open_nursery() as nursery:
                await _serve_one(stream, number, accepted, nursery)
                nursery.cancel_scope.cancel()  # the WebSocket's reader, if still running
        finally:
            gate.release(number)
            pending.pop(number, None)
            await trio.aclose_forcefully(stream)

    async def _serve_one(
        stream: GuardedStream, number: int, accepted: float, nursery: trio.Nursery
    ) -> None:
        ws = None
        with trio.move_on_at(accepted + config.handshake_timeout):
            try:
                request = await trio_websocket.wrap_server_stream(
                    nursery, stream, max_message_size=MAX_MESSAGE, receive_buffer_size=RECEIVE_BYTES
                )
                ws = await request.accept()
            except ConnectionClosed:
                return
        if ws is None:
            log.debug("connection from %s closed: no WebSocket in time", stream.peer)
            return
        try:
            async with open_link(
                ws,
                identity,
                initiator=False,
                config=config,
                static=static,
                event_buffer=event_buffer,
                started_at=accepted,
            ) as link:
                gate.release(number)  # a proven peer: no longer a stranger
                pending.pop(number, None)
                await handler(link)
        except LinkClosed as error:
            log.debug("inbound link from %s ended: %s", stream.peer, error)

    listeners, bound = await transport.open_listeners(host, port)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, on_connection, listeners)
            task_status.started(LinkListener(host, bound, gate))
            await trio.sleep_forever()
    finally:
        # serve_listeners closes them as it stops, unless stopped before it took them over.
        for listener in listeners:
            await trio.aclose_forcefully(listener)
    raise AssertionError("unreachable")
