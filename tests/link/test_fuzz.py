"""Hostile bytes: whatever arrives, the link core accepts it or raises LinkRemoteError.

The one invariant, after h11's fuzz harness: no other exception type ever escapes, and a
mutated handshake never completes with a different transcript.
"""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from node.link import LinkRemoteError, LinkSession
from node.link._frames import (
    MAX_FRAME,
    MAX_PAYLOAD,
    Data,
    Frame,
    Ping,
    RoomProof,
    RoomUnknown,
    decode_frame,
    encode_frame,
)

from .conftest import ALICE, BOB, ROOM_A, SECRET_A, converse, established

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=40)
    | st.binary(max_size=80),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=12,
)


def _valid_or_remote(data: bytes) -> Frame | None:
    try:
        return decode_frame(data)
    except LinkRemoteError:
        return None


@FUZZ
@given(st.binary(max_size=300))
def test_decode_frame_of_any_bytes(data: bytes) -> None:
    frame = _valid_or_remote(data)
    if frame is not None:  # then it means the same as our encoding of it
        assert decode_frame(encode_frame(frame)) == frame


@FUZZ
@given(st.lists(_msgpack_values, max_size=4), st.integers(min_value=-1, max_value=5))
def test_decode_frame_of_any_msgpack_array(fields: list[object], kind: int) -> None:
    for value in ([kind, *fields], fields, {"type": kind}):
        _valid_or_remote(msgpack.packb(value, use_bin_type=True))


@FUZZ
@given(
    st.one_of(
        st.just(Ping()),
        st.builds(Data, st.binary(min_size=32, max_size=32), st.binary(max_size=200)),
        st.builds(
            RoomProof, st.binary(min_size=32, max_size=32), st.binary(min_size=32, max_size=32)
        ),
        st.builds(RoomUnknown, st.binary(min_size=32, max_size=32)),
    )
)
def test_frames_round_trip(frame: Frame) -> None:
    assert decode_frame(encode_frame(frame)) == frame


def test_a_maximal_data_frame_fits_and_one_byte_more_is_oversized() -> None:
    data = encode_frame(Data(ROOM_A, b"\x00" * MAX_PAYLOAD))
    assert len(data) == MAX_FRAME and decode_frame(data) == Data(ROOM_A, b"\x00" * MAX_PAYLOAD)
    with pytest.raises(LinkRemoteError) as caught:
        decode_frame(data + b"\x00")
    assert caught.value.reason == "oversized"


_mutations = st.one_of(
    st.tuples(st.just("flip"), st.integers(min_value=0), st.integers(min_value=1, max_value=255)),
    st.tuples(st.just("truncate"), st.integers(min_value=0), st.just(0)),
    st.tuples(st.just("append"), st.integers(min_value=1, max_value=70000), st.just(0)),
    st.tuples(st.just("replace"), st.integers(min_value=0, max_value=200), st.just(0)),
)


def _mutate(message: bytes, mutation: tuple[str, int, int], junk: bytes) -> bytes:
    kind, n, x = mutation
    if kind == "flip" and message:
        i = n % len(message)
        return message[:i] + bytes([message[i] ^ x]) + message[i + 1 :]
    if kind == "truncate":
        return message[: n % (len(message) + 1)]
    if kind == "append":
        return message + (junk * (n // max(len(junk), 1) + 1))[:n]
    return junk[:n]


@FUZZ
@given(st.integers(min_value=0, max_value=2), _mutations, st.binary(min_size=1, max_size=64))
def test_mutated_handshake_messages_raise_only_the_remote_error(
    index: int, mutation: tuple[str, int, int], junk: bytes
) -> None:
    a = LinkSession(ALICE, initiator=True, now=0.0)
    b = LinkSession(BOB, initiator=False, now=0.0)
    a.join_room(ROOM_A, SECRET_A)
    b.join_room(ROOM_A, SECRET_A)
    order = [(a, b), (b, a), (a, b), (b, a), (a, b)]
    mutated = False
    try:
        for step, (src, dst) in enumerate(order):
            for message in src.messages_to_send(0.0):
                if step == index:
                    changed = _mutate(message, mutation, junk)
                    mutated = changed != message
                    message = changed
                dst.receive_message(message, 0.0)
    except LinkRemoteError:
        assert mutated
        return
    # Nothing raised: the mutation was a no-op and the link is whole.
    assert not mutated
    assert a.handshake_hash == b.handshake_hash and a.rooms == b.rooms == {ROOM_A}


@FUZZ
@given(st.binary(max_size=200))
def test_garbage_transport_messages_raise_only_the_remote_error(data: bytes) -> None:
    a, _ = established()
    with pytest.raises(LinkRemoteError) as caught:
        a.receive_message(data, 0.0)
    assert caught.value.reason in {"decrypt", "oversized"}
    assert a.is_closed


@FUZZ
@given(st.binary(max_size=400))
def test_encrypted_garbage_frames_are_valid_or_the_remote_error(plaintext: bytes) -> None:
    a, b = established()
    a.join_room(ROOM_A, SECRET_A)
    b.join_room(ROOM_A, SECRET_A)
    converse(a, b)
    b._encrypt(plaintext)
    reason = None
    try:
        converse(a, b)
    except LinkRemoteError as exc:
        reason = exc.reason
    assert reason in {None, "malformed", "oversized", "unsolicited", "unauthorized-room"}


def test_truncated_and_oversized_transport_messages() -> None:
    a, b = established()
    b._encrypt(encode_frame(Ping()))
    (message,) = b.messages_to_send(0.0)
    for cut in (0, 1, 15, 16, len(message) - 1):
        a2, b2 = established()
        b2._encrypt(encode_frame(Ping()))
        (genuine,) = b2.messages_to_send(0.0)
        with pytest.raises(LinkRemoteError):
            a2.receive_message(genuine[:cut], 0.0)
    with pytest.raises(LinkRemoteError) as caught:
        a.receive_message(b"\x00" * (MAX_FRAME + 17), 0.0)
    assert caught.value.reason == "oversized"
    # An authentic message whose plaintext is over the frame limit.
    a3, b3 = established()
    b3._encrypt(b"\x90" * (MAX_FRAME + 1))
    with pytest.raises(LinkRemoteError) as caught:
        a3.receive_message(b3.messages_to_send(0.0)[0], 0.0)
    assert caught.value.reason == "oversized"
