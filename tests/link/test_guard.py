"""The pure guards: frame headers checked before their bodies, and the handshake gate."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.link import LinkRemoteError
from node.link._guard import MAX_HTTP_HEAD, FrameGuard, HandshakeGate, source_key

HEAD = b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n"
MASK = b"\x01\x02\x03\x04"


def frame(length: int, *, masked: bool = True, body: bool = True) -> bytes:
    if length < 126:
        header = bytes([0x82, (0x80 if masked else 0) | length])
    elif length < 1 << 16:
        header = bytes([0x82, (0x80 if masked else 0) | 126]) + struct.pack("!H", length)
    else:
        header = bytes([0x82, (0x80 if masked else 0) | 127]) + struct.pack("!Q", length)
    return header + (MASK if masked else b"") + (b"\x00" * length if body else b"")


def test_frames_within_the_limit_pass_in_any_split() -> None:
    data = HEAD + frame(10) + frame(300) + frame(65535) + frame(0, masked=False)
    for step in (1, 3, 7, 4096, len(data)):
        guard = FrameGuard(65535)
        for i in range(0, len(data), step):
            guard.feed(data[i : i + step])


@pytest.mark.parametrize("length", [65536, 2**40, 2**63 - 1])
def test_a_header_over_the_limit_fails_before_any_body(length: int) -> None:
    guard = FrameGuard(65535)
    guard.feed(HEAD + frame(5))
    header = frame(length, body=False)
    # Fails as soon as the length bytes are in: before the mask key, with no body at all.
    length_bytes = 2 + (2 if length < 1 << 16 else 8)
    guard.feed(header[: length_bytes - 1])
    with pytest.raises(LinkRemoteError, match="claims"):
        guard.feed(header[length_bytes - 1 : length_bytes])


def test_an_endless_http_head_fails() -> None:
    guard = FrameGuard(65535)
    guard.feed(b"GET / HTTP/1.1\r\n")
    junk = b"X-Junk: " + b"a" * 990 + b"\r\n"
    for _ in range(MAX_HTTP_HEAD // 1000 - 1):
        guard.feed(junk)
    with pytest.raises(LinkRemoteError, match="HTTP head"):
        guard.feed(junk * 2)


@given(st.lists(st.binary(max_size=64), max_size=20))
def test_any_bytes_pass_or_fail_as_remote_errors(chunks: list[bytes]) -> None:
    guard = FrameGuard(65535)
    try:
        for chunk in [HEAD, *chunks]:
            guard.feed(chunk)
    except LinkRemoteError:
        pass


def test_the_gate_refuses_beyond_a_source_cap() -> None:
    gate = HandshakeGate(max_total=10, max_per_source=2)
    assert gate.admit(1, "a").admitted and gate.admit(2, "a").admitted
    assert not gate.admit(3, "a").admitted
    assert gate.admit(4, "b").admitted
    gate.release(1)
    gate.release(1)  # idempotent
    assert gate.admit(5, "a").admitted
    assert gate.refused == 1 and len(gate) == 3


def test_a_full_gate_pushes_out_the_oldest_of_the_biggest_source() -> None:
    gate = HandshakeGate(max_total=4, max_per_source=3)
    for n, source in enumerate(["a", "b", "b", "c"]):
        assert gate.admit(n, source).admitted
    admission = gate.admit(9, "peer")
    assert admission.admitted and admission.evict == 1  # b's oldest
    assert gate.pending_from("b") == 1 and len(gate) == 4 and gate.evicted == 1


def test_sources_are_addresses_and_ipv6_slash_64s() -> None:
    assert source_key("192.0.2.1") == "192.0.2.1"
    assert source_key("2001:db8::1") == source_key("2001:db8::ffff") == "2001:db8::/64"
    assert source_key("::ffff:192.0.2.1") == "192.0.2.1"
    assert source_key("10.0.0.1") != source_key("10.0.0.2")
