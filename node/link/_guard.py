"""What keeps strangers from tying a link server up: frame headers checked before any body,
and a bounded number of connections in their handshake. Pure, no IO, no clock.

- :class:`FrameGuard` reads the bytes one side of a WebSocket receives, skips the HTTP
  head and checks each frame's header (RFC 6455 §5.2) as soon as it is complete: a frame
  claiming more than ``max_frame`` bytes is a :class:`LinkRemoteError` before a byte of
  its body is read (trio-websocket counts a message's size only as its body arrives, so a
  header claiming 2^40 bytes followed by silence would hold the connection until the
  handshake deadline or the idle timeout).
- :class:`HandshakeGate` admits connections into their handshake, at most ``max_total``
  at once and ``max_per_source`` from one source (an IPv4 address, an IPv6 /64): one
  from a source at its cap is refused; one that finds the whole gate full pushes out the
  oldest handshake of the source holding the most, so a flood from a few sources cannot
  keep a peer from elsewhere out.

This module must never do IO or read a clock.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from dataclasses import dataclass
from typing import Final

from ._errors import LinkRemoteError

__all__ = ["MAX_HTTP_HEAD", "Admission", "FrameGuard", "HandshakeGate", "source_key"]

MAX_HTTP_HEAD: Final = 16 * 1024  # bytes of HTTP request/response head (h11's own limit)
_HEAD_END: Final = b"\r\n\r\n"


class FrameGuard:
    """Checks the frame headers in one direction of a WebSocket (see the module doc)."""

    def __init__(self, max_frame: int) -> None:
        self.max_frame = max_frame
        self._in_head = True
        self._head = b""  # the HTTP head's tail so far (to find its end across reads)
        self._head_bytes = 0
        self._header = bytearray()  # the frame header read so far
        self._payload_left = 0

    def feed(self, data: bytes) -> None:
        """Take the next bytes received; LinkRemoteError for a head or frame too big."""
        view = memoryview(data)
        if self._in_head:
            view = self._skip_head(view)
        while view:
            if self._payload_left:
                step = min(self._payload_left, len(view))
                self._payload_left -= step
                view = view[step:]
                continue
            self._header.append(view[0])
            view = view[1:]
            self._check_header()

    def _skip_head(self, view: memoryview) -> memoryview:
        window = self._head + bytes(view[: len(_HEAD_END) - 1 + MAX_HTTP_HEAD])
        end = window.find(_HEAD_END)
        if end < 0:
            self._head_bytes += len(view)
            if self._head_bytes > MAX_HTTP_HEAD:
                raise LinkRemoteError("oversized", "an HTTP head over the size limit")
            self._head = window[-(len(_HEAD_END) - 1) :]
            return view[len(view) :]
        consumed = end + len(_HEAD_END) - len(self._head)
        self._in_head = False
        self._head = b""
        return view[consumed:]

    def _check_header(self) -> None:
        header = self._header
        if len(header) < 2:
            return
        masked = header[1] & 0x80
        short = header[1] & 0x7F
        extended = {126: 2, 127: 8}.get(short, 0)
        needed = 2 + extended + (4 if masked else 0)
        if len(header) < 2 + extended:
            return
        length = int.from_bytes(header[2 : 2 + extended], "big") if extended else short
        # RFC 6455 §5.2: the length is known once its bytes are in; check it at once.
        if length > self.max_frame:
            raise LinkRemoteError(
                "oversized", f"a frame header claims {length} bytes (limit {self.max_frame})"
            )
        if len(header) < needed:
            return
        self._payload_left = length
        self._header = bytearray()


def source_key(host: str) -> str:
    """What the per-source cap counts by: an IPv4 address, the /64 of an IPv6 one (one
    host usually holds a whole /64), anything else as it is."""
    try:
        address = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is None:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


@dataclass(frozen=True, slots=True)
class Admission:
    """The gate's answer: whether the new connection may start its handshake, and which
    connection (if any) must be closed to make room for it."""

    admitted: bool
    evict: int | None = None


class HandshakeGate:
    """Connections in their handshake, bounded in total and per source."""

    def __init__(self, max_total: int, max_per_source: int) -> None:
        if not 1 <= max_per_source <= max_total:
            raise ValueError("need 1 <= max_per_source <= max_total")
        self.max_total = max_total
        self.max_per_source = max_per_source
        self._pending: OrderedDict[int, str] = OrderedDict()  # connection -> source, oldest first
        self._per_source: dict[str, int] = {}
        self.refused = 0
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._pending)

    def pending_from(self, source: str) -> int:
        return self._per_source.get(source, 0)

    def admit(self, connection: int, source: str) -> Admission:
        """A new connection from `source` (a `source_key`): admit it or not."""
        if self._per_source.get(source, 0) >= self.max_per_source:
            self.refused += 1
            return Admission(False)
        evict = None
        if len(self._pending) >= self.max_total:
            most = max(self._per_source.values())
            evict = next(c for c, s in self._pending.items() if self._per_source[s] == most)
            self.release(evict)
            self.evicted += 1
        self._pending[connection] = source
        self._per_source[source] = self._per_source.get(source, 0) + 1
        return Admission(True, evict)

    def release(self, connection: int) -> None:
        """The connection finished its handshake, failed or closed (idempotent)."""
        source = self._pending.pop(connection, None)
        if source is None:
            return
        left = self._per_source[source] - 1
        if left:
            self._per_source[source] = left
        else:
            del self._per_source[source]
