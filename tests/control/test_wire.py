"""The control API's wire codec: every frame and every interface value round-trips exactly,
and any bytes either decode or raise `ControlProtocolError` (the one invariant)."""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import types
import typing
from collections.abc import Callable
from typing import Any, cast

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crdt import Change, Message, Reason
from node import NodeStatus
from node.client import ClientEvent, HistoryPage, RoomDiagnostics
from node.client._wire import (
    MAX_CLIENT_FRAME,
    METHODS,
    PROTOCOL_VERSION,
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
    decode_server_frame,
    encode_frame,
    load_result,
)

INTS = st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1)
IDS = st.integers(min_value=0, max_value=(1 << 63) - 1)


def values(tp: Any) -> st.SearchStrategy[Any]:
    """Any value of an interface type (the same type language the codec reads)."""
    origin = typing.get_origin(tp)
    if origin is types.UnionType or origin is typing.Union:
        return st.one_of(*(values(arm) for arm in typing.get_args(tp)))
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return st.lists(values(args[0]), max_size=3).map(tuple)
        return st.tuples(*(values(arg) for arg in args))
    if origin is list:
        return st.lists(values(typing.get_args(tp)[0]), max_size=3)
    if tp is type(None):
        return st.none()
    if tp is bool:
        return st.booleans()
    if tp is int:
        return INTS
    if tp is str:
        return st.text(max_size=20)
    if tp is bytes:
        return st.binary(max_size=40)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return st.sampled_from(list(tp))
    assert dataclasses.is_dataclass(tp), tp
    hints = typing.get_type_hints(tp)
    fields = {f.name: values(hints[f.name]) for f in dataclasses.fields(tp)}
    return st.builds(cast(Callable[..., Any], tp), **fields)


RETURNS = sorted(METHODS)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_every_result_round_trips_exactly(data: st.DataObject) -> None:
    method = data.draw(st.sampled_from(RETURNS))
    value = data.draw(values(METHODS[method].returns))
    call_id = data.draw(IDS)
    frame = decode_server_frame(encode_frame(Result(call_id, value)))
    assert isinstance(frame, Result) and frame.id == call_id
    loaded = load_result(method, frame.value)
    assert loaded == value
    assert type(loaded) is type(value)


@settings(max_examples=300)
@given(st.data())
def test_every_call_round_trips_exactly(data: st.DataObject) -> None:
    method = METHODS[data.draw(st.sampled_from(RETURNS))]
    args = {}
    for name, tp in method.params.items():
        if name in method.required or data.draw(st.booleans()):
            args[name] = data.draw(values(tp))
    call = Call(data.draw(IDS), method.name, args)
    assert decode_client_frame(encode_frame(call)) == call


@given(IDS, values(ClientEvent))
def test_events_round_trip(subscription: int, event: ClientEvent) -> None:
    frame = Event(subscription, event)
    assert decode_server_frame(encode_frame(frame)) == frame


@given(values(Change))
def test_crdt_change_events_round_trip(change: Change) -> None:
    assert load_result("message", None) is None
    frame = decode_server_frame(encode_frame(Event(1, _room_changed(change))))
    assert isinstance(frame, Event) and frame.event.change == change  # type: ignore[union-attr]


def _room_changed(change: Change) -> ClientEvent:
    from node.client import RoomChanged

    return RoomChanged(b"\x01" * 32, change)


@given(values(NodeStatus), values(HistoryPage), values(RoomDiagnostics), values(Message))
def test_status_history_and_diagnostics_round_trip(
    status: NodeStatus, page: HistoryPage, diagnostics: RoomDiagnostics, message: Message
) -> None:
    for method, value in [
        ("status", status),
        ("history", page),
        ("diagnostics", diagnostics),
        ("message", message),
    ]:
        frame = decode_server_frame(encode_frame(Result(7, value)))
        assert isinstance(frame, Result)
        assert load_result(method, frame.value) == value


@pytest.mark.parametrize(
    "frame",
    [
        Welcome(b"\x02" * 32),
        Failure(3, "no room 01020304 on this node"),
        *(Refusal(code, "why") for code in RefusalCode),
    ],
)
def test_other_server_frames_round_trip(frame: object) -> None:
    assert decode_server_frame(encode_frame(frame)) == frame  # type: ignore[arg-type]


def test_hello_round_trips_and_the_wire_form_is_documented() -> None:
    assert decode_client_frame(encode_frame(Hello("abc"))) == Hello("abc")
    assert msgpack.unpackb(encode_frame(Hello("abc"))) == [1, "hello", "abc"]
    call = Call(5, "send", {"room_id": b"r", "text": "hi"})
    assert msgpack.unpackb(encode_frame(call)) == [
        1,
        "call",
        5,
        "send",
        {"room_id": b"r", "text": "hi"},
    ]
    reason = Reason.BAD_SEQ
    assert msgpack.unpackb(encode_frame(Result(1, reason))) == [1, "result", 1, "bad_seq"]


# -- the one invariant: decode, or ControlProtocolError ------------------------------------


@settings(max_examples=1000)
@given(st.binary(max_size=300))
def test_any_bytes_decode_or_raise_the_remote_error(data: bytes) -> None:
    for decode in (decode_client_frame, decode_server_frame):
        with contextlib.suppress(ControlProtocolError):
            decode(data)


def _msgpack_values() -> st.SearchStrategy[object]:
    leaves = st.one_of(
        st.none(),
        st.booleans(),
        INTS,
        st.floats(allow_nan=False),
        st.text(max_size=10),
        st.binary(max_size=10),
        st.sampled_from(["hello", "call", "result", "event", "type", "send", "RoomInfo"]),
    )
    return st.recursive(
        leaves,
        lambda inner: (
            st.lists(inner, max_size=5)
            | st.dictionaries(
                st.sampled_from(["type", "room_id", "id", "change", "x"]), inner, max_size=4
            )
        ),
        max_leaves=20,
    )


@settings(max_examples=1000)
@given(
    st.sampled_from(["hello", "call", "result", "failure", "event", "refusal", "welcome", 7]),
    st.lists(_msgpack_values(), max_size=4),
)
def test_structured_junk_decodes_or_raises_the_remote_error(
    kind: object, rest: list[object]
) -> None:
    data = msgpack.packb([PROTOCOL_VERSION, kind, *rest], use_bin_type=True)
    for decode in (decode_client_frame, decode_server_frame):
        try:
            frame = decode(data)
        except ControlProtocolError:
            continue
        if isinstance(frame, Result):  # the value's type comes with the method it answers
            for method in METHODS:
                with contextlib.suppress(ControlProtocolError):
                    load_result(method, frame.value)


@given(st.data())
def test_a_mutated_valid_frame_decodes_or_raises_the_remote_error(data: st.DataObject) -> None:
    value = data.draw(values(NodeStatus))
    raw = bytearray(encode_frame(Result(1, value)))
    for _ in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    try:
        frame = decode_server_frame(bytes(raw))
        if isinstance(frame, Result):
            load_result("status", frame.value)
    except ControlProtocolError:
        pass


def test_size_is_checked_before_decoding() -> None:
    # Not msgpack at all: the size, not the content, is what it is refused for.
    with pytest.raises(ControlProtocolError, match="over the limit") as caught:
        decode_client_frame(b"\xc1" * (MAX_CLIENT_FRAME + 1))
    assert caught.value.code is RefusalCode.TOO_LARGE


@pytest.mark.parametrize(
    ("data", "code", "match"),
    [
        (msgpack.packb([2, "hello", "t"]), RefusalCode.VERSION, "version 2"),
        (msgpack.packb([1, "hello", 5]), RefusalCode.UNAUTHORIZED, "token"),
        (msgpack.packb([1, "call", 1, "nope", {}]), RefusalCode.BAD_FRAME, "no method"),
        (msgpack.packb([1, "call", 1, "send", {"room_id": b"r"}]), RefusalCode.BAD_FRAME, "text"),
        (msgpack.packb([1, "call", -1, "me", {}]), RefusalCode.BAD_FRAME, "id"),
        (msgpack.packb([1, "call", 1, "me", {"x": 1}]), RefusalCode.BAD_FRAME, "no argument"),
        (
            msgpack.packb([1, "call", 1, "history", {"room_id": b"r", "limit": True}]),
            RefusalCode.BAD_FRAME,
            "int",
        ),
        (msgpack.packb([1, "result", 1, None]), RefusalCode.BAD_FRAME, "client sends"),
        (b"\x93\x01", RefusalCode.BAD_FRAME, "msgpack"),
    ],
)
def test_bad_client_frames_say_what_is_wrong(data: bytes, code: RefusalCode, match: str) -> None:
    with pytest.raises(ControlProtocolError, match=match) as caught:
        decode_client_frame(data)
    assert caught.value.code is code


def test_encoding_a_bad_frame_is_our_bug() -> None:
    with pytest.raises(ValueError, match="no method"):
        Call(1, "nope")
    with pytest.raises(ValueError, match="text"):
        Call(1, "send", {"room_id": b"r"})
    with pytest.raises(TypeError):
        encode_frame(Result(1, object()))
