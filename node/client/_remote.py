"""`RemoteClient`: the `ChatClient` interface over a running node's control API.

``async with RemoteClient.connect(data_dir_or_address) as client`` opens one WebSocket
(over TCP on loopback, or a Unix socket), proves itself with the data dir's token, and
then behaves as `LocalClient` does: the same methods, the same data types, `ClientError`
for what the node refuses. One reader task dispatches results to their calls and events
to their streams; writes go through one lock. A connection that ends (the node stopped,
or refused us) fails every waiting call and event stream with `ConnectionLost`, a
`ClientError`, so a UI or a shell command shows one line.

Where to connect is recorded by the node in its data dir (`control.json`, written by
`rumor run`), beside the token (`control.token`, mode 0600). This module never starts or
stops a node; it only talks to one.
"""

from __future__ import annotations

import contextlib
import itertools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar

import trio
from trio_websocket import ConnectionClosed, HandshakeError, WebSocketConnection, wrap_client_stream

from crdt import Message
from rumor_runtime import open_unwrapping_nursery

from .._addresses import split_host_port
from .._status import NodeStatus
from ._api import (
    ClientError,
    ClientEvent,
    HistoryPage,
    Me,
    MemberInfo,
    RoomDiagnostics,
    RoomInfo,
)
from ._wire import (
    MAX_SERVER_FRAME,
    SUBSCRIBE,
    UNSUBSCRIBE,
    Call,
    ControlProtocolError,
    Event,
    Failure,
    Hello,
    Refusal,
    Result,
    Welcome,
    decode_server_frame,
    encode_frame,
    load_result,
)

__all__ = [
    "CONTROL_FILE",
    "TOKEN_FILE",
    "ConnectionLost",
    "ControlAddress",
    "RemoteClient",
    "parse_control_address",
    "read_control_address",
    "read_control_record",
    "read_token",
]

CONTROL_FILE: Final = "control.json"  # where the running node's control API listens
TOKEN_FILE: Final = "control.token"  # the secret a client proves itself with (0600)
CONNECT_TIMEOUT: Final = 5.0  # seconds to connect and be welcomed (the server's deadline too)
EVENT_BUFFER: Final = 1024  # events held for a stream that is not read; then the node waits
T = TypeVar("T")


class ConnectionLost(ClientError):
    """The connection to the node ended (it stopped, or refused us); one line for people."""


@dataclass(frozen=True, slots=True)
class ControlAddress:
    """Where a control API listens: TCP `host`:`port`, or a Unix socket at `unix`."""

    host: str = ""
    port: int = 0
    unix: str = ""

    def __str__(self) -> str:
        if self.unix:
            return f"unix:{self.unix}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_control_address(text: str) -> ControlAddress:
    """`unix:PATH`, `ws://HOST:PORT[/]` or `HOST:PORT`; ValueError (one line) if not."""
    if text.startswith("unix:"):
        path = text[len("unix:") :]
        if not path:
            raise ValueError("a unix: control address needs a path")
        return ControlAddress(unix=path)
    if text.startswith("ws://"):
        text = text[len("ws://") :].rstrip("/")
    host, port = split_host_port(text)
    return ControlAddress(host=host, port=port)


def read_token(data_dir: Path) -> str:
    """The data dir's control token; ClientError (one line) if it cannot be read."""
    try:
        return (data_dir / TOKEN_FILE).read_text(encoding="ascii").strip()
    except FileNotFoundError:
        raise ClientError(f"no control token in {data_dir} (is it a rumor data dir?)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ClientError(f"cannot read {data_dir / TOKEN_FILE}: {exc}") from None


def read_control_address(data_dir: Path) -> ControlAddress:
    """Where the node running on `data_dir` serves its control API, as it recorded."""
    return read_control_record(data_dir)[1]


def read_control_record(data_dir: Path) -> tuple[int | None, ControlAddress]:
    """The pid of the node that wrote `control.json` (None if it did not say) and its
    control address. ConnectionLost if there is no such file; ClientError (one line) if
    it cannot be read or is not what a node writes (it is a file anyone may edit)."""
    path = data_dir / CONTROL_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConnectionLost(f"no node is running on {data_dir}") from None
    except (OSError, ValueError) as exc:  # (UnicodeDecodeError and JSON's are ValueErrors)
        raise ClientError(f"cannot read {path}: {exc}") from None
    address = data.get("address") if isinstance(data, dict) else None
    if not isinstance(address, str):
        raise ClientError(f"cannot read {path}: no control address in it")
    try:
        parsed = parse_control_address(address)
    except ValueError as exc:
        raise ClientError(f"cannot read {path}: {exc}") from None
    pid = data.get("pid")
    return (pid if type(pid) is int else None), parsed


class _Pending:
    """One call waiting for its answer."""

    def __init__(self) -> None:
        self.done = trio.Event()
        self.frame: Result | Failure | None = None


class _EventStream:
    """The events of one subscription: ``await stream.receive()`` or ``async for``."""

    def __init__(self, receive: trio.MemoryReceiveChannel[ClientEvent], owner: RemoteClient):
        self._receive = receive
        self._owner = owner

    async def receive(self) -> ClientEvent:
        try:
            return await self._receive.receive()
        except trio.EndOfChannel:
            raise self._owner._lost() from None

    def __aiter__(self) -> _EventStream:
        return self

    async def __anext__(self) -> ClientEvent:
        return await self.receive()


class RemoteClient:
    """A `ChatClient` over a node's control API; open it with `RemoteClient.connect`."""

    def __init__(self, ws: WebSocketConnection, peer_id: bytes) -> None:
        self.peer_id = peer_id  # the node's, as its welcome said
        self._ws = ws
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._streams: dict[int, trio.MemorySendChannel[ClientEvent]] = {}
        self._write_lock = trio.Lock()
        self._closed: str | None = None  # why the connection ended, once it has

    @classmethod
    @asynccontextmanager
    async def connect(
        cls,
        target: str | Path,
        *,
        token: str | None = None,
        within: float = CONNECT_TIMEOUT,
    ) -> AsyncIterator[RemoteClient]:
        """Connect to the node running on data dir `target` (where it recorded its control
        address and token), or at control address `target` (`unix:PATH`, `HOST:PORT`) with
        `token`, within `within` seconds. ClientError (one line) when that cannot be done."""
        address, token = _resolve(target, token)
        async with open_unwrapping_nursery() as nursery:
            ws, peer_id = await _handshake(nursery, address, token, within)
            client = cls(ws, peer_id)
            nursery.start_soon(client._read)
            try:
                yield client
            finally:
                client._close("the client closed")
                with trio.CancelScope(shield=True), trio.move_on_after(1):
                    await ws.aclose()
                nursery.cancel_scope.cancel()

    # -- plumbing -----------------------------------------------------------------------

    def _lost(self) -> ConnectionLost:
        return ConnectionLost(f"connection to the node lost: {self._closed or 'closed'}")

    def _close(self, why: str) -> None:
        if self._closed is None:
            self._closed = why
        for pending in self._pending.values():
            pending.done.set()
        for stream in self._streams.values():
            stream.close()
        self._streams.clear()

    async def _read(self) -> None:
        """The one reader: results to their calls, events to their streams."""
        why = "the node closed the connection"
        try:
            while True:
                data = await self._ws.get_message()
                if isinstance(data, str):
                    raise ControlProtocolError("a text frame (frames are binary)")
                frame = decode_server_frame(data)
                if isinstance(frame, Result | Failure):
                    pending = self._pending.get(frame.id)
                    if pending is not None:  # (else: a call given up on)
                        pending.frame = frame
                        pending.done.set()
                elif isinstance(frame, Event):
                    stream = self._streams.get(frame.subscription)
                    if stream is not None:
                        try:
                            await stream.send(frame.event)
                        except trio.BrokenResourceError:
                            self._streams.pop(frame.subscription, None)
                elif isinstance(frame, Refusal):
                    why = f"refused: {frame.message}"
                    return
                else:
                    raise ControlProtocolError(f"an unexpected {type(frame).__name__} frame")
        except ControlProtocolError as exc:
            why = f"the node sent a bad frame ({exc})"
            with trio.move_on_after(1):
                await self._ws.aclose(code=1002, reason="bad frame")
        except ConnectionClosed as exc:
            reason = exc.reason
            if reason is not None and reason.reason:
                why = f"the node closed the connection ({reason.reason})"
        finally:
            self._close(why)

    async def _call(self, method: str, **args: object) -> Any:
        if self._closed is not None:
            raise self._lost()
        call_id = next(self._ids)
        pending = self._pending[call_id] = _Pending()
        try:
            await self._send(Call(call_id, method, args))
            await pending.done.wait()
        finally:
            del self._pending[call_id]
        return self._answer(method, pending)

    def _answer(self, method: str, pending: _Pending) -> Any:
        frame = pending.frame
        if frame is None:
            raise self._lost()
        if isinstance(frame, Failure):
            raise ClientError(frame.message)
        try:
            return load_result(method, frame.value)
        except ControlProtocolError as exc:
            raise ClientError(f"the node answered {method} with a bad value: {exc}") from None

    async def _send(self, frame: Call) -> None:
        async with self._write_lock:
            try:
                await self._ws.send_message(encode_frame(frame))
            except ConnectionClosed:
                self._close(self._closed or "the node closed the connection")
                raise self._lost() from None

    # -- the interface ------------------------------------------------------------------

    async def me(self) -> Me:
        result: Me = await self._call("me")
        return result

    async def rooms(self) -> list[RoomInfo]:
        result: list[RoomInfo] = await self._call("rooms")
        return result

    async def room(self, room_id: bytes) -> RoomInfo:
        result: RoomInfo = await self._call("room", room_id=room_id)
        return result

    async def create_room(self, name: str) -> RoomInfo:
        result: RoomInfo = await self._call("create_room", name=name)
        return result

    async def join(self, invite: str) -> RoomInfo:
        result: RoomInfo = await self._call("join", invite=invite)
        return result

    async def leave(self, room_id: bytes) -> None:
        await self._call("leave", room_id=room_id)

    async def set_nick(self, nick: str) -> None:
        await self._call("set_nick", nick=nick)

    async def set_topic(self, room_id: bytes, topic: str) -> None:
        await self._call("set_topic", room_id=room_id, topic=topic)

    async def send(self, room_id: bytes, text: str, *, reply_to: bytes | None = None) -> bytes:
        result: bytes = await self._call("send", room_id=room_id, text=text, reply_to=reply_to)
        return result

    async def edit(self, room_id: bytes, message_id: bytes, text: str) -> None:
        await self._call("edit", room_id=room_id, message_id=message_id, text=text)

    async def delete(self, room_id: bytes, message_id: bytes) -> None:
        await self._call("delete", room_id=room_id, message_id=message_id)

    async def react(self, room_id: bytes, message_id: bytes, emoji: str) -> None:
        await self._call("react", room_id=room_id, message_id=message_id, emoji=emoji)

    async def unreact(self, room_id: bytes, message_id: bytes, emoji: str) -> None:
        await self._call("unreact", room_id=room_id, message_id=message_id, emoji=emoji)

    async def history(
        self,
        room_id: bytes,
        *,
        before: bytes | None = None,
        before_ms: int | None = None,
        limit: int = 100,
    ) -> HistoryPage:
        result: HistoryPage = await self._call(
            "history", room_id=room_id, before=before, before_ms=before_ms, limit=limit
        )
        return result

    async def message(self, room_id: bytes, message_id: bytes) -> Message | None:
        result: Message | None = await self._call("message", room_id=room_id, message_id=message_id)
        return result

    async def messages(self, room_id: bytes, message_ids: list[bytes]) -> list[Message]:
        result: list[Message] = await self._call(
            "messages", room_id=room_id, message_ids=message_ids
        )
        return result

    async def members(self, room_id: bytes) -> list[MemberInfo]:
        result: list[MemberInfo] = await self._call("members", room_id=room_id)
        return result

    async def invite(self, room_id: bytes) -> str:
        result: str = await self._call("invite", room_id=room_id)
        return result

    async def status(self) -> NodeStatus:
        result: NodeStatus = await self._call("status")
        return result

    async def diagnostics(self, room_id: bytes) -> RoomDiagnostics:
        result: RoomDiagnostics = await self._call("diagnostics", room_id=room_id)
        return result

    @asynccontextmanager
    async def events(self) -> AsyncIterator[_EventStream]:
        """Every change in every room from now on, and changes to the list of rooms; the
        stream raises ConnectionLost if the connection ends."""
        if self._closed is not None:
            raise self._lost()
        send, receive = trio.open_memory_channel[ClientEvent](EVENT_BUFFER)
        # The subscription is the subscribe call's id: registered before it is sent, so no
        # event can arrive for a stream not yet listening.
        call_id = next(self._ids)
        pending = self._pending[call_id] = _Pending()
        self._streams[call_id] = send
        try:
            try:
                await self._send(Call(call_id, SUBSCRIBE, {}))
                await pending.done.wait()
            finally:
                del self._pending[call_id]
            self._answer(SUBSCRIBE, pending)
            async with receive:
                yield _EventStream(receive, self)
        finally:
            stream = self._streams.pop(call_id, None)
            if stream is not None:
                stream.close()
                if self._closed is None:
                    goodbye = Call(next(self._ids), UNSUBSCRIBE, {"subscription": call_id})
                    with (
                        trio.CancelScope(shield=True),
                        trio.move_on_after(1),
                        contextlib.suppress(ClientError),
                    ):
                        await self._send(goodbye)


def _resolve(target: str | Path, token: str | None) -> tuple[ControlAddress, str]:
    if isinstance(target, Path) or (not _looks_like_address(target) and Path(target).is_dir()):
        data_dir = Path(target)
        address = read_control_address(data_dir)
        return address, token if token is not None else read_token(data_dir)
    try:
        address = parse_control_address(target)
    except ValueError as exc:
        raise ClientError(f"not a control address or data dir: {target!r} ({exc})") from None
    if token is None:
        raise ClientError(f"connecting to {target} needs its node's control token")
    return address, token


def _looks_like_address(text: str) -> bool:
    return text.startswith(("unix:", "ws://"))


async def _handshake(
    nursery: trio.Nursery, address: ControlAddress, token: str, within: float
) -> tuple[WebSocketConnection, bytes]:
    """Connect, upgrade to a WebSocket, say hello; the socket and the node's peer id."""
    with trio.move_on_after(within) as scope:
        try:
            if address.unix:
                stream = await trio.open_unix_socket(address.unix)
                host = "localhost"
            else:
                stream = await trio.open_tcp_stream(address.host, address.port)
                host = address.host
            ws = await wrap_client_stream(
                nursery, stream, host, "/", max_message_size=MAX_SERVER_FRAME
            )
        except (OSError, HandshakeError, ConnectionClosed) as exc:
            detail = getattr(exc, "strerror", None) or exc
            raise ConnectionLost(f"cannot connect to the node at {address}: {detail}") from None
        try:
            await ws.send_message(encode_frame(Hello(token)))
            data = await ws.get_message()
        except ConnectionClosed as exc:
            reason = exc.reason.reason if exc.reason is not None else None
            raise ConnectionLost(
                f"the node at {address} closed the connection ({reason or 'no reason given'})"
            ) from None
        try:
            if isinstance(data, str):
                raise ControlProtocolError("a text frame")
            frame = decode_server_frame(data)
        except ControlProtocolError as exc:
            raise ConnectionLost(f"the node at {address} sent a bad frame ({exc})") from None
        if isinstance(frame, Refusal):
            with trio.move_on_after(1):
                await ws.aclose()
            raise ConnectionLost(f"the node at {address} refused us: {frame.message}")
        if not isinstance(frame, Welcome):
            raise ConnectionLost(f"the node at {address} did not welcome us")
        return ws, frame.peer_id
    assert scope.cancelled_caught
    raise ConnectionLost(f"the node at {address} did not answer within {within:g} s")
