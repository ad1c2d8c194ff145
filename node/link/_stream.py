"""A byte stream with its WebSocket frame headers checked as they arrive (`FrameGuard`).

`GuardedStream` wraps the stream a link's WebSocket runs on: every received chunk goes
through the guard first, and a frame header over the limit closes the stream at once,
before its body is read (trio-websocket then sees a broken connection). It also names
the peer for logs and for the per-source handshake cap.

This module must never decide anything about the protocol: the guard does.
"""

from __future__ import annotations

import logging

import trio

from ._errors import LinkRemoteError
from ._guard import FrameGuard

__all__ = ["GuardedStream", "stream_peer"]

log = logging.getLogger("node.link")


def stream_peer(stream: trio.abc.Stream) -> tuple[str, str]:
    """(host, "host:port") of the peer at the other end of `stream`, as well as known."""
    if isinstance(stream, GuardedStream):
        return stream.peer_host, stream.peer
    if isinstance(stream, trio.SocketStream):
        try:
            host, port, *_ = stream.socket.getpeername()
        except OSError:
            return "?", "?"
        return str(host), f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    remote = getattr(stream, "remote", None)  # a simulated stream: (host, port)
    if isinstance(remote, tuple) and len(remote) == 2:
        return str(remote[0]), repr(stream)
    return repr(stream), repr(stream)


class GuardedStream(trio.abc.Stream):
    """`inner` with its received frame headers checked (see the module docstring)."""

    def __init__(self, inner: trio.abc.Stream, max_frame: int) -> None:
        self.inner = inner
        self.guard = FrameGuard(max_frame)
        self.peer_host, self.peer = stream_peer(inner)
        self.violation: LinkRemoteError | None = None

    def __repr__(self) -> str:
        # trio-websocket names a stream that is not a socket by its repr.
        return self.peer

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        if self.violation is not None:
            raise trio.BrokenResourceError(str(self.violation))
        data = await self.inner.receive_some(max_bytes)
        try:
            self.guard.feed(bytes(data))
        except LinkRemoteError as exc:
            self.violation = exc
            # DEBUG: a flood of these must not flood the log (the link, if any, says more).
            log.debug("connection with %s closed: %s", self.peer, exc)
            await trio.aclose_forcefully(self.inner)
            raise trio.BrokenResourceError(str(exc)) from None
        return data

    async def aclose(self) -> None:
        await self.inner.aclose()
