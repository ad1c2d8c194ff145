"""Link error types, split by whose fault it was.

A :class:`LinkRemoteError` is anything the peer (or someone on the path) could have caused:
a handshake message that does not parse or verify, an identity binding that does not check
out, a frame that does not decrypt, is too big, is malformed, or names a room the peer was
never authorized for. The driver logs it once, closes the link and keeps serving others.

A :class:`LinkLocalError` is misuse by our own code (sending to a room that is not
authorized, a payload over the limit, using a closed session): a bug, raised loudly.

:class:`LinkClosed` is the driver's answer to any operation on a link that is closed or
could not be opened; ``reason`` says why in one short tag.

This module must never import anything but the standard library.
"""

from __future__ import annotations

__all__ = ["LinkClosed", "LinkError", "LinkLocalError", "LinkRemoteError"]


class LinkError(Exception):
    """Base class of every error this package raises on purpose."""


class LinkRemoteError(LinkError):
    """The peer sent something we must reject; ``reason`` is a short machine-readable tag.

    Tags: ``handshake`` (a Noise handshake message failed), ``identity`` (the identity
    binding did not verify), ``unexpected-peer``, ``decrypt``, ``oversized``, ``malformed``,
    ``unauthorized-room``, ``unsolicited``.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class LinkLocalError(LinkError):
    """Our own code misused a link or a session; a bug, never the peer's doing."""


class LinkClosed(LinkError):
    """The link is closed or could not be opened.

    ``reason`` is one of ``local`` (we closed it), ``peer`` (the peer closed it),
    ``protocol`` (the peer broke the protocol; ``__cause__`` is the
    :class:`LinkRemoteError`), ``idle`` (nothing received for ``idle_timeout``), ``slow``
    (the peer stopped reading while ``send_budget`` bytes waited for it),
    ``handshake-timeout`` or ``transport`` (the connection failed underneath).
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        text = f"link closed ({reason})"
        super().__init__(f"{text}: {detail}" if detail else text)
        self.reason = reason
        self.detail = detail
