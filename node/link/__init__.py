"""Secure peer links: Noise XX over WebSocket, proven peer ids, per-room authorization.

A link is one WebSocket to one peer. The first three messages are a
``Noise_XX_25519_ChaChaPoly_BLAKE2b`` handshake whose payloads bind each side's Ed25519
identity to its Noise static key; every later message is one Noise transport message
carrying one msgpack frame of at most :data:`MAX_FRAME` bytes. Before any message of a
room flows, each side proves with a MAC over the handshake hash that it holds the room's
secret. :class:`LinkSession` is the sans-IO core; :func:`open_link`, :func:`connect_link`
and :func:`serve_links` run it on trio-websocket, over TCP or any :class:`StreamTransport`.
A server bounds strangers: a deadline for the upgrade and handshake together, a cap on
connections in their handshake (in all and per source), frame headers checked before
their bodies are read.
"""

from ._driver import (
    CLOSE_TIMEOUT,
    Link,
    LinkEvent,
    StreamTransport,
    TCPTransport,
    connect_link,
    open_link,
)
from ._errors import LinkClosed, LinkError, LinkLocalError, LinkRemoteError
from ._frames import MAX_FRAME, MAX_PAYLOAD
from ._server import LinkListener, serve_links
from ._session import (
    MAX_MESSAGE,
    PROLOGUE,
    PROTOCOL,
    Event,
    HandshakeComplete,
    LinkConfig,
    LinkSession,
    Message,
    RoomAuthorized,
    RoomDenied,
    RoomRefused,
    TimedOut,
)

__all__ = [
    "CLOSE_TIMEOUT",
    "MAX_FRAME",
    "MAX_MESSAGE",
    "MAX_PAYLOAD",
    "PROLOGUE",
    "PROTOCOL",
    "Event",
    "HandshakeComplete",
    "Link",
    "LinkClosed",
    "LinkConfig",
    "LinkError",
    "LinkEvent",
    "LinkListener",
    "LinkLocalError",
    "LinkRemoteError",
    "LinkSession",
    "Message",
    "RoomAuthorized",
    "RoomDenied",
    "RoomRefused",
    "StreamTransport",
    "TCPTransport",
    "TimedOut",
    "connect_link",
    "open_link",
    "serve_links",
]
