"""The trio driver: a :class:`LinkSession` over a trio-websocket connection.

:func:`open_link` runs a link over a WebSocket someone else opened (memory streams in
tests); :func:`connect_link` dials a ``ws://`` URL (and ``_server.serve_links`` accepts
links), over a :class:`StreamTransport`: real TCP (:class:`TCPTransport`, the default) or the
simulated network (`node.SimNetwork`). A :class:`Link` has three tasks: one
reader (the only caller of ``get_message``), one sender (the only caller of
``send_message``, so Noise nonces go out in order and a cancelled :meth:`Link.send` never
tears a frame) and one timer for keepalives and timeouts. The sender is the only writer:
:meth:`Link.send_nowait` queues without waiting, within a byte budget past which a peer
that stopped reading is dropped. Errors from trio-websocket are
turned into :class:`LinkClosed` here and never escape.

This module holds no protocol logic: every decision is the session's.
"""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Final, Protocol

import trio
import trio_websocket
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest

from crdt import Identity, format_peer_id
from rumor_runtime import open_unwrapping_nursery

from ..noise import KeyPair
from ._errors import LinkClosed, LinkLocalError, LinkRemoteError
from ._session import (
    MAX_MESSAGE,
    LinkConfig,
    LinkSession,
    Message,
    RoomAuthorized,
    RoomDenied,
    RoomRefused,
    TimedOut,
)
from ._stream import GuardedStream

__all__ = [
    "CLOSE_TIMEOUT",
    "RECEIVE_BYTES",
    "Link",
    "LinkEvent",
    "StreamTransport",
    "TCPTransport",
    "connect_link",
    "open_link",
]

log = logging.getLogger("node.link")

LinkEvent = Message | RoomAuthorized | RoomRefused | RoomDenied
"""What :meth:`Link.receive` returns."""

CLOSE_TIMEOUT: Final = 2.0
"""Seconds the WebSocket closing handshake may take before the stream is just closed."""

STRANGER_CLOSE_TIMEOUT: Final = 0.1
"""Seconds a connection that never finished its handshake gets to take our close frame."""

EVENT_BUFFER: Final = 64

RECEIVE_BYTES: Final = 64 * 1024
"""Bytes a link's WebSocket asks its stream for at once: a whole OPS batch (up to 64 KiB)
in one read, where trio-websocket's default of 4 KiB took about a dozen, each a trip through
trio, the frame guard and wsproto."""

# WebSocket close codes (RFC 6455 §7.4.2: 4000-4999 are for applications).
_CLOSE_NORMAL: Final = 1000
_CLOSE_TOO_BIG: Final = 1009
_CLOSE_ABNORMAL: Final = 1006
_CLOSE_CODES: Final = {"protocol": 4001, "idle": 4002, "handshake-timeout": 4003}


def _protocol_error(exc: LinkRemoteError) -> LinkClosed:
    error = LinkClosed("protocol", str(exc))
    error.__cause__ = exc
    return error


def _describe_remote(ws: WebSocketConnection | WebSocketRequest) -> str:
    try:
        remote = ws.remote
    except OSError:
        return "?"
    if isinstance(remote, trio_websocket.Endpoint):
        host = f"[{remote.address}]" if ":" in str(remote.address) else str(remote.address)
        return f"{host}:{remote.port}"
    return remote


class StreamTransport(Protocol):
    """Where links' byte streams come from: real TCP or a simulated network.

    Errors opening a stream or listeners are ``OSError``s, as from sockets.
    """

    async def open_stream(self, host: str, port: int) -> trio.abc.Stream:
        """A stream connected to ``host:port``; ``OSError`` if it cannot be had."""
        ...

    async def open_listeners(
        self, host: str, port: int
    ) -> tuple[list[trio.abc.Listener[trio.abc.Stream]], int]:
        """Listeners on ``host:port`` (port 0: any free one) and the port they got."""
        ...


class TCPTransport:
    """Real TCP through trio's sockets: what links run on outside of tests."""

    async def open_stream(self, host: str, port: int) -> trio.abc.Stream:
        return await trio.open_tcp_stream(host, port)

    async def open_listeners(
        self, host: str, port: int
    ) -> tuple[list[trio.abc.Listener[trio.abc.Stream]], int]:
        listeners = await trio.open_tcp_listeners(port, host=host)
        ports = {listener.socket.getsockname()[1] for listener in listeners}
        if len(ports) != 1:  # a name bound on several interfaces, each with its own port
            for listener in listeners:
                await listener.aclose()
            raise OSError(f"{host}:{port} gave listeners on several ports: {sorted(ports)}")
        return list(listeners), ports.pop()


_TCP: Final = TCPTransport()


def _short(peer_id: bytes | None) -> str:
    return format_peer_id(peer_id)[:8] if peer_id else "?"


class Link:
    """An open, authenticated link to one peer. Made by :func:`open_link` and friends.

    Consume :meth:`receive` (or ``async for event in link``): while its buffer is full the
    reader stops reading, which pushes back on the peer (and does not count as idle).
    """

    def __init__(self, ws: WebSocketConnection, session: LinkSession, *, event_buffer: int) -> None:
        self._ws = ws
        self._session = session
        self._remote = _describe_remote(ws)  # read now: the socket is gone once closed
        self._events_in, self._events_out = trio.open_memory_channel[LinkEvent](event_buffer)
        self._room_waiters: dict[bytes, trio.Event] = {}
        self._closed: LinkClosed | None = None
        self._ws_closed = False
        self._tasks = trio.CancelScope()
        self._timer_scope: trio.CancelScope | None = None
        self._wakeup = trio.Event()
        self._progress = trio.Event()
        self._taken = 0
        self._written = 0
        self._bytes_sent = 0
        self._bytes_received = 0
        self._queued = 0  # payload bytes queued by send_nowait and not yet written
        self._budget = session.config.send_budget
        self._sink: Callable[[Message], bool] | None = None  # see `deliver_to`
        # Events queued for `receive` and not yet returned by it (in the channel's buffer,
        # or handed to a receiver not yet run): the sink waits until there are none.
        self._unreceived = 0

    # -- what callers see -------------------------------------------------------------

    @property
    def peer_id(self) -> bytes:
        """The peer's Ed25519 public key, proven by the handshake."""
        return self._session.peer_id

    @property
    def handshake_hash(self) -> bytes:
        """The Noise handshake hash; both ends of a link see the same one."""
        return self._session.handshake_hash

    @property
    def initiator(self) -> bool:
        """Whether this side dialed."""
        return self._session.initiator

    @property
    def rooms(self) -> frozenset[bytes]:
        """Rooms authorized on this link (joined here and proven by the peer)."""
        return self._session.rooms

    @property
    def refused_rooms(self) -> frozenset[bytes]:
        """Joined rooms the peer sent a wrong proof for."""
        return self._session.refused_rooms

    @property
    def remote(self) -> str:
        """The peer's transport address as text (for logs; the peer id is what counts)."""
        return self._remote

    @property
    def bytes_sent(self) -> int:
        """WebSocket message bytes written so far, handshake included (not framing)."""
        return self._bytes_sent

    @property
    def bytes_received(self) -> int:
        """WebSocket message bytes read so far, handshake included (not framing)."""
        return self._bytes_received

    @property
    def closed(self) -> LinkClosed | None:
        """Why the link closed, or None while it is open."""
        return self._closed

    def __repr__(self) -> str:
        state = f"closed: {self._closed.reason}" if self._closed else "open"
        return f"<Link to {_short(self._peer_or_none())} ({state})>"

    async def join_room(self, room_id: bytes, secret: bytes) -> bool:
        """Prove we hold ``room_id``'s secret; True once the peer proved it too.

        False if the peer answered "unknown room" (it may join later: a
        :class:`RoomAuthorized` event says so) or sent a wrong proof (refused for good).
        Calling it again after a denial offers the room again.
        """
        self._check_open()
        self._session.join_room(room_id, secret)
        if room_id in self._session.rooms:
            return True
        if room_id in self._session.refused_rooms:
            return False
        waiter = self._room_waiters.setdefault(room_id, trio.Event())
        self._wake_sender()
        await waiter.wait()
        self._check_open()
        return room_id in self._session.rooms

    async def send(self, room_id: bytes, payload: bytes) -> None:
        """Send ``payload`` (≤ ``MAX_PAYLOAD`` bytes) to an authorized room.

        Returns once it is written; if cancelled earlier it is still sent, in order.
        Raises :class:`LinkLocalError` for a room that is not authorized.
        """
        self._check_open()
        self._session.send(room_id, payload)
        target = self._taken + self._session.pending_messages
        self._wake_sender()
        while self._written < target:
            await self._progress.wait()
            self._check_open()

    def send_nowait(self, room_id: bytes, payload: bytes) -> None:
        """Queue ``payload`` for an authorized room without waiting; the sender writes it
        in order. Past the link's ``send_budget`` of bytes waiting (a peer that stopped
        reading) the link closes (``slow``) and this raises :class:`LinkClosed`, as it
        does on a closed link. :class:`LinkLocalError` for a room not authorized."""
        self._check_open()
        self._session.send(room_id, payload)
        self._queued += len(payload)
        if self._queued > self._budget:
            log.warning(
                "link to %s: peer not reading (%d bytes waiting); closing it",
                _short(self._peer_or_none()),
                self._queued,
            )
            self._mark_closed(LinkClosed("slow", f"{self._queued} bytes waiting"))
            # The sender may be stuck writing to the peer: cut it loose. No closing
            # handshake either, since the peer reads nothing; the stream is just closed.
            self._ws_closed = True
            self._tasks.cancel()
            raise self._closed_error()
        self._wake_sender()

    async def flush(self) -> None:
        """Return once everything queued so far is written (at once on a closed link)."""
        target = self._taken + self._session.pending_messages
        while self._written < target and self._closed is None:
            await self._progress.wait()

    def deliver_to(self, sink: Callable[[Message], bool] | None) -> None:
        """Offer each received :class:`Message` to `sink` in the link's own reader task,
        whenever no event is queued for :meth:`receive` before it: `sink` returns True if
        it took the message (then :meth:`receive` never sees it), False to have it
        queued as usual. A consumer that routes messages on (to a room's queue) saves
        its task a wake-up per message. To keep the order of events, `sink` must return
        False while the consumer is still handling an event it received. None: every
        event is queued."""
        self._sink = sink

    async def receive(self) -> LinkEvent:
        """The next event; raises :class:`LinkClosed` once the link is closed and drained."""
        try:
            event = await self._events_out.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            pass
        else:
            self._unreceived -= 1
            return event
        raise self._closed_error()

    def __aiter__(self) -> Link:
        return self

    async def __anext__(self) -> LinkEvent:
        """The next event; iteration ends when the link closes (the reason is then in
        :attr:`closed`). No async generator: a reader cancelled mid-iteration leaves
        nothing to finalise."""
        try:
            return await self.receive()
        except LinkClosed:
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        """Close the link (idempotent); pending events are dropped."""
        if self._closed is None:
            self._mark_closed(LinkClosed("local"))
        await self._close_ws(_CLOSE_NORMAL, "")
        self._events_out.close()
        self._tasks.cancel()

    # -- internals --------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed is not None:
            raise self._closed_error()

    def _closed_error(self) -> LinkClosed:
        assert self._closed is not None
        # A fresh exception per raise (tracebacks would pile up on a shared one), with the
        # remote error that closed the link as its cause.
        error = LinkClosed(self._closed.reason, self._closed.detail)
        error.__cause__ = self._closed.__cause__
        error.__suppress_context__ = True
        return error

    def _mark_closed(self, error: LinkClosed) -> None:
        self._closed = error
        self._session.close()
        self._events_in.close()
        for waiter in self._room_waiters.values():
            waiter.set()
        self._room_waiters.clear()
        self._progress.set()
        self._wakeup.set()

    async def _close_ws(self, code: int, reason: str) -> None:
        if self._ws_closed:
            return
        self._ws_closed = True
        # A peer that never proved who it is gets the close frame, not a wait for its
        # answer: past its deadline, a stranger's connection is gone.
        wait = CLOSE_TIMEOUT if self._session.handshake_done else STRANGER_CLOSE_TIMEOUT
        # Shielded and bounded: closing must finish even when the caller is cancelled.
        with trio.CancelScope(shield=True), trio.move_on_after(wait):
            await self._ws.aclose(code, reason)

    async def _fail(self, error: LinkClosed) -> None:
        if self._closed is None:
            # A peer's fault is worth a line; a stranger's (no handshake: junk, scanners,
            # floods) is not, or a flood would flood the log too.
            peer_fault = error.reason in ("protocol", "idle")
            level = logging.INFO if peer_fault and self._session.handshake_done else logging.DEBUG
            log.log(level, "link to %s closed: %s", _short(self._peer_or_none()), error)
            self._mark_closed(error)
        await self._close_ws(_CLOSE_CODES.get(error.reason, _CLOSE_NORMAL), error.reason)
        self._tasks.cancel()

    def _peer_or_none(self) -> bytes | None:
        try:
            return self._session.peer_id
        except LinkLocalError:  # closed before the handshake proved anyone
            return None

    def _transport_closed(self) -> LinkClosed:
        reason = self._ws.closed
        if reason is None or reason.code == _CLOSE_ABNORMAL:
            return LinkClosed("transport", "the connection broke")
        if reason.code == _CLOSE_TOO_BIG:
            return LinkClosed("protocol", "a WebSocket message over the size limit")
        return LinkClosed("peer", f"code {reason.code} {reason.reason or ''}".strip())

    def _wake_sender(self) -> None:
        self._wakeup.set()
        self._reschedule()

    def _wake_sender_if_queued(self) -> None:
        """After a received message or a timer: the sender is woken only if the session
        queued something to send (an answer, a ping); most received messages queue
        nothing, and waking the sender for them cost a task step each. The deadlines
        moved either way."""
        if self._session.pending_messages:
            self._wakeup.set()
        self._reschedule()

    def _reschedule(self) -> None:
        scope = self._timer_scope
        if scope is not None:
            deadline = self._session.next_deadline()
            deadline = float("inf") if deadline is None else deadline
            # Setting a scope's deadline re-registers it with trio even when unchanged.
            if scope.deadline != deadline:
                scope.deadline = deadline

    async def _get_message(self) -> bytes:
        try:
            data = await self._ws.get_message()
        except ConnectionClosed:
            raise self._transport_closed() from None
        if not isinstance(data, bytes):
            raise LinkClosed("protocol", "a text WebSocket message") from LinkRemoteError(
                "malformed", "text message"
            )
        self._bytes_received += len(data)
        return data

    async def _handshake(self) -> None:
        session = self._session
        deadline = session.next_deadline()
        assert deadline is not None
        try:
            with trio.move_on_at(deadline):
                await self._write_now()
                while not session.is_established:
                    data = await self._get_message()
                    session.receive_message(data, trio.current_time())
                    await self._write_now()
                return
            session.handle_timer(trio.current_time())
            raise LinkClosed("handshake-timeout")
        except LinkRemoteError as exc:
            await self._fail(_protocol_error(exc))
            raise self._closed_error() from exc
        except LinkClosed as error:
            await self._fail(error)
            raise

    async def _write_now(self) -> None:
        # Only during the handshake, before the sender task exists.
        for message in self._session.messages_to_send(trio.current_time()):
            try:
                await self._ws.send_message(message)
            except ConnectionClosed:
                raise self._transport_closed() from None
            self._bytes_sent += len(message)

    async def _run(self) -> None:
        with self._tasks:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._reader)
                nursery.start_soon(self._sender)
                nursery.start_soon(self._timer)

    async def _reader(self) -> None:
        session = self._session
        while True:
            try:
                data = await self._get_message()
                events = session.receive_message(data, trio.current_time())
            except LinkClosed as closed:
                await self._fail(closed)
                return
            except LinkRemoteError as exc:
                await self._fail(_protocol_error(exc))
                return
            self._wake_sender_if_queued()
            for event in events:
                await self._deliver(event)

    async def _deliver(self, event: object) -> None:
        assert isinstance(event, Message | RoomAuthorized | RoomRefused | RoomDenied)
        if not isinstance(event, Message):
            waiter = self._room_waiters.pop(event.room_id, None)
            if waiter is not None:
                waiter.set()
        elif self._sink is not None and not self._unreceived and self._sink(event):
            return
        self._unreceived += 1
        try:
            self._events_in.send_nowait(event)
            return
        except trio.WouldBlock:
            pass
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            self._unreceived -= 1
            return
        # Backpressure: we stop reading, so our silence must not count as the peer's.
        self._session.pause_receiving()
        self._reschedule()
        try:
            await self._events_in.send(event)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            self._unreceived -= 1
            return
        except BaseException:
            self._unreceived -= 1
            raise
        finally:
            self._session.resume_receiving(trio.current_time())
            self._reschedule()

    async def _sender(self) -> None:
        session = self._session
        while True:
            messages = session.messages_to_send(trio.current_time())
            self._reschedule()
            if not messages:
                await self._wakeup.wait()
                self._wakeup = trio.Event()
                if self._closed is not None:
                    return
                continue
            self._taken += len(messages)
            for message in messages:
                try:
                    await self._ws.send_message(message)
                except ConnectionClosed:
                    await self._fail(self._transport_closed())
                    return
                self._bytes_sent += len(message)
                # Each written frame frees its payload's share of the budget (frames carry
                # a few bytes of overhead, and pings carry no payload: never below 0).
                self._queued = max(0, self._queued - len(message))
                self._written += 1
                self._progress.set()
                self._progress = trio.Event()

    async def _timer(self) -> None:
        session = self._session
        while True:
            deadline = session.next_deadline()
            if deadline is None:
                return
            with trio.CancelScope(deadline=deadline) as scope:
                self._timer_scope = scope
                await trio.sleep_forever()
            self._timer_scope = None
            for event in session.handle_timer(trio.current_time()):
                assert isinstance(event, TimedOut)
                await self._fail(LinkClosed("idle", "nothing received"))
                return
            self._wake_sender_if_queued()


@asynccontextmanager
async def open_link(
    ws: WebSocketConnection,
    identity: Identity,
    *,
    initiator: bool,
    config: LinkConfig | None = None,
    static: KeyPair | None = None,
    expected_peer_id: bytes | None = None,
    event_buffer: int = EVENT_BUFFER,
    started_at: float | None = None,
) -> AsyncIterator[Link]:
    """Run the handshake over an open WebSocket and yield the :class:`Link`.

    Raises :class:`LinkClosed` if the handshake fails (``protocol``), times out
    (``handshake-timeout``, counted from ``started_at``, default now) or the connection
    breaks. The link is closed when the block exits; ``ws`` is closed with it.
    """
    session = LinkSession(
        identity,
        initiator=initiator,
        now=trio.current_time() if started_at is None else started_at,
        config=config,
        static=static,
        expected_peer_id=expected_peer_id,
    )
    link = Link(ws, session, event_buffer=event_buffer)
    await link._handshake()
    log.debug("link to %s open", _short(session.peer_id))
    async with open_unwrapping_nursery() as nursery:
        nursery.start_soon(link._run)
        try:
            yield link
        finally:
            await link.aclose()


def _parse_url(url: str) -> tuple[str, int, str]:
    """(host, port, resource) of a ``ws://`` URL; a bad URL is the caller's mistake."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port if parts.port is not None else 80
    except ValueError as exc:
        raise LinkLocalError(f"not a link URL: {url!r} ({exc})") from None
    if parts.scheme != "ws" or not parts.hostname:
        # Noise already encrypts and authenticates; TLS underneath would add nothing.
        raise LinkLocalError(f"a link URL looks like ws://host:port/, not {url!r}")
    resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        # A name the resolver cannot even encode (an empty or over-long label) is the
        # caller's mistake, found here rather than as a UnicodeError from getaddrinfo.
        parts.hostname.encode("idna")
    except UnicodeError:
        raise LinkLocalError(f"not a host name: {parts.hostname[:60]!r}") from None
    return parts.hostname, port, resource


@asynccontextmanager
async def connect_link(
    url: str,
    identity: Identity,
    *,
    config: LinkConfig | None = None,
    static: KeyPair | None = None,
    expected_peer_id: bytes | None = None,
    event_buffer: int = EVENT_BUFFER,
    transport: StreamTransport = _TCP,
) -> AsyncIterator[Link]:
    """Dial ``url`` (``ws://host:port/``) over ``transport`` (TCP by default) and yield
    the :class:`Link`.

    The connect, the WebSocket opening and the Noise handshake together must finish
    within ``config.handshake_timeout``; any failure to open raises :class:`LinkClosed`
    (``transport``, ``handshake-timeout`` or ``protocol``).
    """
    config = config if config is not None else LinkConfig()
    host, port, resource = _parse_url(url)
    host_header = (f"[{host}]" if ":" in host else host) + ("" if port == 80 else f":{port}")
    started = trio.current_time()
    opened = False
    try:
        async with open_unwrapping_nursery() as nursery:
            with trio.move_on_at(started + config.handshake_timeout):
                # The server's frame headers are checked too, before their bodies.
                stream: trio.abc.Stream = GuardedStream(
                    await transport.open_stream(host, port), MAX_MESSAGE
                )
                try:
                    ws = await trio_websocket.wrap_client_stream(
                        nursery,
                        stream,  # type: ignore[arg-type]  # any trio Stream works
                        host_header,
                        resource,
                        max_message_size=MAX_MESSAGE,
                        receive_buffer_size=RECEIVE_BYTES,
                    )
                    opened = True
                finally:
                    if not opened:
                        await trio.aclose_forcefully(stream)
            if not opened:
                raise LinkClosed("handshake-timeout", f"no WebSocket from {url}")
            try:
                async with open_link(
                    ws,
                    identity,
                    initiator=True,
                    config=config,
                    static=static,
                    expected_peer_id=expected_peer_id,
                    event_buffer=event_buffer,
                    started_at=started,
                ) as link:
                    yield link
            finally:
                # We own the stream: trio-websocket leaves a client's stream open when
                # the server closes first, so close it here whatever happened.
                await trio.aclose_forcefully(stream)
    except (OSError, trio_websocket.HandshakeError) as exc:
        if opened:
            raise
        raise LinkClosed("transport", f"cannot open {url}: {exc}") from exc
