"""The control API `rumor run` serves: `ChatClient` calls and events over a WebSocket.

A client connects (TCP on loopback by default, or a Unix socket), upgrades to a WebSocket
and says hello with the data dir's token (`control.token`, 0600); then it calls the
`ChatClient` methods of a `LocalClient` over the running node and subscribes to events.
The frames are `node.client._wire`'s.

Hostile until checked (issue 10's rules for any connection): the WebSocket upgrade and
the hello must be done within `HANDSHAKE_TIMEOUT` seconds; at most `MAX_HANDSHAKING`
connections (`MAX_HANDSHAKING_PER_HOST` from one address) may be in handshake at once,
and a newcomer past a cap pushes out the oldest handshake of the address holding the most
(so idle connections cannot lock clients out); a client not on loopback is refused unless
the operator allowed remote clients; a wrong token, a frame over the size limit or a
malformed frame gets a refusal frame naming the problem and the connection is closed.
Once welcomed, frames to a client go through a bounded queue and one writer task: a
client that stops reading is dropped when its queue is full, so it never slows the node.

This module only translates; it decides nothing about rooms, and it never blocks the node
on a client.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hmac
import ipaddress
import json
import logging
import os
import secrets
import socket
import stat
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, wrap_server_stream

from ..client import ChatClient, ClientError
from ..client._remote import CONTROL_FILE, TOKEN_FILE, ControlAddress
from ..client._wire import (
    MAX_CLIENT_FRAME,
    SUBSCRIBE,
    UNSUBSCRIBE,
    Call,
    ControlProtocolError,
    Event,
    Failure,
    Hello,
    Refusal,
    RefusalCode,
    Result,
    Welcome,
    decode_client_frame,
    encode_frame,
)

__all__ = [
    "HANDSHAKE_TIMEOUT",
    "ControlLimits",
    "ensure_token",
    "forget_control_address",
    "open_control_listeners",
    "peer_allowed",
    "record_control_address",
    "serve_control",
]

log = logging.getLogger("rumor")

HANDSHAKE_TIMEOUT: Final = 5.0
MAX_HANDSHAKING: Final = 64
MAX_HANDSHAKING_PER_HOST: Final = 16
QUEUE_FRAMES: Final = 512  # frames waiting for a slow client before it is dropped
MAX_CALLS: Final = 32  # calls of one client in progress at once; more wait (backpressure)
MAX_SUBSCRIPTIONS: Final = 8  # event streams of one client at once
# trio-websocket closes (1009) past this; frames between it and our limit get a refusal.
WS_MESSAGE_LIMIT: Final = 4 * MAX_CLIENT_FRAME


@dataclass(frozen=True, slots=True)
class ControlLimits:
    handshake_timeout: float = HANDSHAKE_TIMEOUT
    max_handshaking: int = MAX_HANDSHAKING
    max_handshaking_per_host: int = MAX_HANDSHAKING_PER_HOST
    queue_frames: int = QUEUE_FRAMES
    max_calls: int = MAX_CALLS
    max_subscriptions: int = MAX_SUBSCRIPTIONS


# -- the data dir's files --------------------------------------------------------------


def ensure_token(data_dir: Path) -> str:
    """The data dir's control token, made (32 random bytes, hex, mode 0600) if missing."""
    path = data_dir / TOKEN_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        st = path.stat()
        if st.st_mode & 0o077:
            # Readable by others: anyone on the machine could drive the node.
            os.chmod(path, 0o600)
        token = path.read_text(encoding="ascii").strip()
        if len(token) >= 32:
            return token
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC, 0o600)  # empty or damaged: a new one
    token = secrets.token_hex(32)
    with os.fdopen(fd, "w", encoding="ascii") as file:
        file.write(token + "\n")
    return token


def record_control_address(data_dir: Path, address: ControlAddress) -> None:
    """Write `control.json` (atomically) so clients find the running node's control API."""
    path = data_dir / CONTROL_FILE
    temporary = path.with_name(f".{CONTROL_FILE}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps({"pid": os.getpid(), "address": str(address)}) + "\n")
    os.replace(temporary, path)


def forget_control_address(data_dir: Path) -> None:
    with contextlib.suppress(OSError):
        (data_dir / CONTROL_FILE).unlink()


# -- listening -------------------------------------------------------------------------


def is_loopback(address: ControlAddress) -> bool:
    if address.unix:
        return True
    if address.host == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.host).is_loopback
    except ValueError:
        return False


async def open_control_listeners(
    address: ControlAddress,
) -> tuple[list[trio.SocketListener], ControlAddress]:
    """Listen at `address` (port 0: any free one); the listeners and the bound address.
    OSError if it cannot be done."""
    if address.unix:
        sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            await _clear_stale_socket(address.unix)
            # The token guards it, and only we may connect at all: 0600.
            old = os.umask(0o177)
            try:
                await sock.bind(address.unix)
            finally:
                os.umask(old)
            sock.listen(128)
        except BaseException:
            sock.close()
            raise
        return [trio.SocketListener(sock)], address
    listeners = await trio.open_tcp_listeners(address.port, host=address.host)
    host, port = listeners[0].socket.getsockname()[:2]
    return listeners, ControlAddress(host=str(host), port=int(port))


async def _clear_stale_socket(path: str) -> None:
    """Remove a socket file nobody listens on (left by a node that was killed)."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise OSError(errno.EEXIST, "exists and is not a socket", path)
    probe = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        await probe.connect(path)
    except ConnectionRefusedError:
        os.unlink(path)
        return
    finally:
        probe.close()
    raise OSError(errno.EADDRINUSE, "another process listens on it", path)


def peer_allowed(peer: object, *, allow_remote: bool) -> bool:
    """Whether a client at socket address `peer` may connect: loopback (or a Unix socket,
    whose peer address is a str) always, others only if the operator allowed them."""
    if allow_remote or isinstance(peer, str | bytes):
        return True
    if not isinstance(peer, tuple) or not peer:
        return False
    try:
        return ipaddress.ip_address(str(peer[0]).split("%")[0]).is_loopback
    except ValueError:
        return False


def _peer_name(stream: trio.abc.Stream) -> tuple[object, str]:
    """The peer's socket address, and a short form for the log."""
    sock = getattr(stream, "socket", None)
    if sock is None:
        return None, "?"
    try:
        peer = sock.getpeername()
    except OSError:
        return None, "?"
    if isinstance(peer, tuple):
        host = str(peer[0])
        return peer, (f"[{host}]:{peer[1]}" if ":" in host else f"{host}:{peer[1]}")
    return peer, "unix socket"


# -- serving ---------------------------------------------------------------------------


class _WatchedStream(trio.abc.Stream):
    """A stream that says when its peer hung up (EOF or a broken connection), which
    trio-websocket does not tell before the upgrade is done."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.hung_up = trio.Event()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.stream.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        try:
            data = await self.stream.receive_some(max_bytes)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.hung_up.set()
            raise
        if not data:
            self.hung_up.set()
        return data

    async def aclose(self) -> None:
        await self.stream.aclose()


class _Refused(Exception):
    def __init__(self, code: RefusalCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class _Gate:
    """Connections in handshake, bounded in total and per host (pure bookkeeping).

    A newcomer is always let in: at a cap, the oldest handshake of its own host (at the
    per-host cap) or of the host holding the most (at the total cap) is pushed out, as the
    link server does (`node.link._guard`). Refusing the newcomer instead would let anyone
    on the machine keep every client out with a few idle connections (all of loopback is
    one host); a real client's handshake takes milliseconds, so it is never the oldest."""

    def __init__(self, limits: ControlLimits) -> None:
        self._limits = limits
        self._pending: OrderedDict[int, str] = OrderedDict()  # connection -> host, oldest first
        self._per_host: Counter[str] = Counter()

    def admit(self, connection: int, host: str) -> int | None:
        """Let `connection` from `host` in; the connection to push out for it, if any."""
        evict = None
        if self._per_host[host] >= self._limits.max_handshaking_per_host:
            evict = next(c for c, h in self._pending.items() if h == host)
        elif len(self._pending) >= self._limits.max_handshaking:
            most = max(self._per_host.values())
            evict = next(c for c, h in self._pending.items() if self._per_host[h] == most)
        if evict is not None:
            self.leave(evict)
        self._pending[connection] = host
        self._per_host[host] += 1
        return evict

    def leave(self, connection: int) -> None:
        """The connection's handshake is over: done, failed or pushed out (idempotent)."""
        host = self._pending.pop(connection, None)
        if host is None:
            return
        self._per_host[host] -= 1
        if not self._per_host[host]:
            del self._per_host[host]


async def serve_control(
    client: ChatClient,
    listeners: list[trio.SocketListener],
    token: str,
    *,
    allow_remote: bool = False,
    limits: ControlLimits = ControlLimits(),
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the control API on `listeners` until cancelled."""
    peer_id = (await client.me()).peer_id
    gate = _Gate(limits)
    ids = iter(range(1, 1 << 62))

    handshaking: dict[int, trio.SocketStream] = {}  # the gate's connections, to push out

    def handshake_over(number: int) -> None:
        gate.leave(number)
        handshaking.pop(number, None)

    async def handle(stream: trio.SocketStream) -> None:
        peer, name = _peer_name(stream)
        host = str(peer[0]) if isinstance(peer, tuple) else "unix"
        number = next(ids)
        evict = gate.admit(number, host)
        handshaking[number] = stream
        if evict is not None:
            pushed = handshaking.pop(evict, None)
            if pushed is not None:  # its handshake sees the connection end, and gives up
                log.debug("control: client %d pushed out: too many connections in handshake", evict)
                await trio.aclose_forcefully(pushed)
        connection = _Connection(client, stream, token, peer_id, number, name, limits)
        try:
            await connection.run(
                peer_allowed(peer, allow_remote=allow_remote),
                functools.partial(handshake_over, number),
            )
        except Exception:  # a bug of ours in one connection must not stop the node
            log.exception("control: %s failed", name)
        finally:
            handshake_over(number)

    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, handle, listeners)
        task_status.started()


async def _cancel_when(event: trio.Event, target: trio.CancelScope, own: trio.CancelScope) -> None:
    with own:
        await event.wait()
        target.cancel()


class _Connection:
    """One client, from its TCP connection to its close."""

    def __init__(
        self,
        client: ChatClient,
        stream: trio.SocketStream,
        token: str,
        peer_id: bytes,
        number: int,
        name: str,
        limits: ControlLimits,
    ) -> None:
        self._client = client
        self._stream = stream
        self._token = token
        self._peer_id = peer_id
        self._name = f"client {number} ({name})"
        self._limits = limits
        self._queue, self._outgoing = trio.open_memory_channel[bytes](limits.queue_frames)
        self._ended: tuple[int, str] | None = None  # the close code and reason, once decided
        self._subscriptions: dict[int, trio.CancelScope] = {}
        self._scope = trio.CancelScope()  # the served connection's, once welcomed

    async def run(self, allowed: bool, handshake_over: Callable[[], None]) -> None:
        async with trio.open_nursery() as nursery:
            ws: WebSocketConnection | None = None
            watched = _WatchedStream(self._stream)
            try:
                with trio.move_on_after(self._limits.handshake_timeout) as deadline:
                    # A client that hangs up mid-handshake frees its place at once.
                    hang_up_watch = trio.CancelScope()
                    nursery.start_soon(_cancel_when, watched.hung_up, deadline, hang_up_watch)
                    request = await wrap_server_stream(
                        nursery, watched, max_message_size=WS_MESSAGE_LIMIT
                    )
                    ws = await request.accept()
                    await self._handshake(ws, allowed)
                    hang_up_watch.cancel()
                if watched.hung_up.is_set():
                    return
                if deadline.cancelled_caught:
                    raise _Refused(RefusalCode.TIMEOUT, "handshake not done within the deadline")
                assert ws is not None
                handshake_over()
                await self._serve(ws)
            except _Refused as refused:
                log.info("control: %s refused: %s", self._name, refused.message)
                if ws is not None:
                    await self._refuse(ws, refused.code, refused.message)
            except ConnectionClosed:
                pass
            finally:
                if ws is not None:
                    with trio.CancelScope(shield=True), trio.move_on_after(1):
                        await ws.aclose(*(self._ended or (1000, "")))
                nursery.cancel_scope.cancel()
        with trio.CancelScope(shield=True):
            await trio.aclose_forcefully(self._stream)

    async def _refuse(self, ws: WebSocketConnection, code: RefusalCode, message: str) -> None:
        """An error frame saying why, then close (code 1009 for size, else 1008)."""
        self._ended = (1009 if code is RefusalCode.TOO_LARGE else 1008, message[:120])
        with trio.move_on_after(1), contextlib.suppress(ConnectionClosed):
            await ws.send_message(encode_frame(Refusal(code, message)))

    async def _receive(self, ws: WebSocketConnection) -> Hello | Call:
        data = await ws.get_message()
        if isinstance(data, str):
            raise _Refused(RefusalCode.BAD_FRAME, "a text frame; frames are binary msgpack")
        try:
            return decode_client_frame(data)
        except ControlProtocolError as exc:
            raise _Refused(exc.code, str(exc)) from None

    async def _handshake(self, ws: WebSocketConnection, allowed: bool) -> None:
        if not allowed:
            raise _Refused(
                RefusalCode.NOT_LOOPBACK,
                "control clients must connect from loopback (rumor run --control-allow-remote)",
            )
        frame = await self._receive(ws)
        if not isinstance(frame, Hello):
            raise _Refused(RefusalCode.UNAUTHORIZED, "say hello with the token first")
        if not hmac.compare_digest(frame.token.encode(), self._token.encode()):
            raise _Refused(RefusalCode.UNAUTHORIZED, "wrong token")
        await ws.send_message(encode_frame(Welcome(self._peer_id)))
        log.debug("control: %s connected", self._name)

    async def _serve(self, ws: WebSocketConnection) -> None:
        calls = trio.Semaphore(self._limits.max_calls)
        async with trio.open_nursery() as nursery:
            self._scope = nursery.cancel_scope
            nursery.start_soon(self._write, ws, nursery.cancel_scope)
            try:
                while True:
                    frame = await self._receive(ws)
                    if not isinstance(frame, Call):
                        raise _Refused(RefusalCode.BAD_FRAME, "hello again after the welcome")
                    await calls.acquire()
                    nursery.start_soon(self._call, frame, calls, nursery)
            except ConnectionClosed:
                nursery.cancel_scope.cancel()
            except _Refused as refused:
                log.info("control: %s refused: %s", self._name, refused.message)
                self._ended = (
                    1009 if refused.code is RefusalCode.TOO_LARGE else 1008,
                    refused.message[:120],
                )
                # After what is queued: the refusal is the last frame the client gets.
                with contextlib.suppress(trio.WouldBlock, trio.ClosedResourceError):
                    self._queue.send_nowait(encode_frame(Refusal(refused.code, refused.message)))
                self._queue.close()
                # A client that does not read even its refusal is not waited for long.
                nursery.cancel_scope.deadline = trio.current_time() + 2
            finally:
                for scope in self._subscriptions.values():
                    scope.cancel()
        log.debug("control: %s gone", self._name)

    async def _write(self, ws: WebSocketConnection, scope: trio.CancelScope) -> None:
        """The one writer: queued frames in order, then the end of the connection."""
        try:
            async for data in self._outgoing:
                await ws.send_message(data)
        except ConnectionClosed:
            pass
        scope.cancel()

    def _post(self, data: bytes) -> None:
        """Queue a frame; a client whose queue is full is not reading: drop it."""
        try:
            self._queue.send_nowait(data)
        except trio.WouldBlock:
            if self._ended is None:
                log.info(
                    "control: %s dropped: %d frames unread", self._name, self._limits.queue_frames
                )
                self._ended = (1008, "too slow: frames piled up unread")
            self._queue.close()
            self._scope.cancel()  # the writer may be stuck on a full socket
        except trio.ClosedResourceError:
            pass

    async def _call(self, call: Call, calls: trio.Semaphore, nursery: trio.Nursery) -> None:
        try:
            if call.method == SUBSCRIBE:
                if len(self._subscriptions) >= self._limits.max_subscriptions:
                    message = f"at most {self._limits.max_subscriptions} event streams at once"
                    self._post(encode_frame(Failure(call.id, message)))
                    return
                await nursery.start(self._subscribe, call.id)
                return
            if call.method == UNSUBSCRIBE:
                subscription = call.args["subscription"]
                assert isinstance(subscription, int)  # (the decoder checked)
                scope = self._subscriptions.pop(subscription, None)
                if scope is not None:
                    scope.cancel()
                self._post(encode_frame(Result(call.id, None)))
                return
            method: Callable[..., Awaitable[Any]] = getattr(self._client, call.method)
            try:
                value = await method(**call.args)
            except ClientError as exc:
                self._post(encode_frame(Failure(call.id, str(exc))))
                return
            except Exception as exc:  # a bug of ours must not take the node down
                log.exception("control: %s: %s failed", self._name, call.method)
                self._post(encode_frame(Failure(call.id, f"internal error: {exc!r}")))
                return
            self._post(encode_frame(Result(call.id, value)))
        finally:
            calls.release()

    async def _subscribe(
        self, subscription: int, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Forward every event, tagged `subscription`, after the subscribe call's result."""
        with trio.CancelScope() as scope:
            self._subscriptions[subscription] = scope
            async with self._client.events() as events:
                self._post(encode_frame(Result(subscription, None)))
                task_status.started()
                async for event in events:
                    self._post(encode_frame(Event(subscription, event)))
        self._subscriptions.pop(subscription, None)
