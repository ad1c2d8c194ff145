"""The public surface of node.link: what ``__all__`` promises exists, and nothing leaks."""

from __future__ import annotations

import node.link

EXPECTED = {
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
}


def test_public_names() -> None:
    assert set(node.link.__all__) == EXPECTED
    for name in node.link.__all__:
        assert getattr(node.link, name) is not None
    public = {n for n in vars(node.link) if not n.startswith("_")}
    assert public - EXPECTED == set(), "public names outside __all__"


def test_wire_constants() -> None:
    assert node.link.PROTOCOL == "Noise_XX_25519_ChaChaPoly_BLAKE2b"
    assert node.link.PROLOGUE == b"rumor link v1"
    assert node.link.MAX_FRAME == 60 * 1024 and node.link.MAX_MESSAGE == 65535
    assert node.link.MAX_FRAME + 16 <= node.link.MAX_MESSAGE


def test_link_errors_say_whose_fault() -> None:
    for error in (node.link.LinkRemoteError, node.link.LinkLocalError, node.link.LinkClosed):
        assert issubclass(error, node.link.LinkError)
    assert not issubclass(node.link.LinkRemoteError, node.link.LinkLocalError)
    assert not issubclass(node.link.LinkLocalError, node.link.LinkRemoteError)
