"""The room protocol's wire format: round trips, limits, and the decoder's one invariant."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crdt import MAX_OP_BYTES
from node.gossip import (
    MAX_MESSAGE_BYTES,
    Ack,
    Fault,
    GossipLocalError,
    GossipRemoteError,
    Hello,
    IHave,
    Message,
    Mode,
    Ops,
    Pause,
    Prune,
    Vector,
    Want,
    decode_message,
    encode_message,
)
from node.gossip._wire import UNREACHABLE, Dist, Ping, Pong

ID = bytes(range(32))
OP = b"\x01" * 100

EXAMPLES: list[Message] = [
    Hello(1, 4, MAX_MESSAGE_BYTES),
    Vector(True, False, ((ID, 1), (b"\xff" * 32, 2**40))),
    Vector(False, True, ()),
    Ops(7, Mode.SYNC, (OP, OP + b"\x02")),
    Ack(2**32 - 1),
    IHave((ID,)),
    Want(True, (ID, ID)),
    Want(False, ()),
    Prune(),
    Pause(),
    Ping(0),
    Pong(2**32 - 1),
    Dist(ID[:8] + ID[8:16], (0, UNREACHABLE)),
]


@pytest.mark.parametrize("message", EXAMPLES)
def test_round_trip(message: Message) -> None:
    data = encode_message(message)
    assert decode_message(data) == message
    # A msgpack array whose first field is the type: a reader in any language can dispatch.
    assert msgpack.unpackb(data)[0] == message.fields()[0]


@pytest.mark.parametrize(
    "build",
    [
        lambda: Hello(1, 0, MAX_MESSAGE_BYTES),  # a window of nothing
        lambda: Hello(1, 4, 1000),  # too small for one op
        lambda: Vector(True, False, ((b"short", 1),)),
        lambda: Vector(True, False, ((ID, 0),)),  # seqs start at 1
        lambda: Ops(0, Mode.PUSH, ()),  # an empty batch
        lambda: Ops(-1, Mode.PUSH, (OP,)),
        lambda: Ops(0, Mode.PUSH, (b"x" * 10,)),  # shorter than a signature
        lambda: IHave(()),
        lambda: Want(True, (ID[:31],)),
        lambda: Ack(2**32),
        lambda: Ping(-1),
        lambda: Dist(ID[:8], ()),  # no entry
        lambda: Dist(ID[:7], (1,)),  # a tag is 8 bytes
        lambda: Dist(ID[:16], (1,)),  # one distance a tag
        lambda: Dist(ID[:8], (UNREACHABLE + 1,)),
    ],
)
def test_invalid_fields_are_local_errors(build: object) -> None:
    with pytest.raises(GossipLocalError):
        build()  # type: ignore[operator]


def test_oversized_message_is_refused_before_parsing() -> None:
    with pytest.raises(GossipRemoteError) as info:
        decode_message(b"\x00" * (MAX_MESSAGE_BYTES + 1))
    assert info.value.reason == "oversized"
    small = encode_message(Ops(1, Mode.PUSH, (OP,) * 100))
    with pytest.raises(GossipRemoteError) as info:
        decode_message(small, max_bytes=len(small) - 1)
    assert info.value.reason == "oversized"


def test_batch_over_the_op_count_is_oversized() -> None:
    data = msgpack.packb([2, 0, 0, [OP] * 513])
    assert len(data) < MAX_MESSAGE_BYTES
    with pytest.raises(GossipRemoteError) as info:
        decode_message(data)
    assert info.value.reason == "oversized"


@pytest.mark.parametrize(
    ("ops", "reason"),
    [
        ([OP, b"\x01" * (MAX_OP_BYTES + 1)], Fault.OVERSIZED),  # bytes only, one too large
        ([OP, 5, b"\x01" * (MAX_OP_BYTES + 1)], Fault.OVERSIZED),  # and something else
        ([OP, 5, b"\x01" * MAX_OP_BYTES], Fault.GARBAGE),  # at the limit: the 5 is garbage
        ([OP, "text"], Fault.GARBAGE),
    ],
)
def test_an_op_over_its_limit_is_oversized_whatever_else_the_batch_holds(
    ops: list[object], reason: Fault
) -> None:
    data = msgpack.packb([2, 0, 0, ops])
    assert len(data) < MAX_MESSAGE_BYTES
    with pytest.raises(GossipRemoteError) as info:
        decode_message(data)
    assert info.value.reason is reason


@pytest.mark.parametrize(
    "fields",
    [
        [],
        [99],  # unknown type
        [True, 1, 4, MAX_MESSAGE_BYTES],  # a bool is not a type
        [0, 1, 4],  # HELLO missing a field
        [2, 0, 9, [OP]],  # unknown mode
        [2, 0, 0, OP],  # ops not an array
        [3, "1"],
        [4, [ID, 5]],
        [6, 1],  # PRUNE takes no fields
        {"type": 3},
    ],
)
def test_malformed_messages_are_remote_errors(fields: object) -> None:
    with pytest.raises(GossipRemoteError) as info:
        decode_message(msgpack.packb(fields))
    assert info.value.reason is Fault.GARBAGE


def test_trailing_bytes_are_malformed() -> None:
    with pytest.raises(GossipRemoteError):
        decode_message(encode_message(Prune()) + b"\x00")


def _fuzz(data: bytes) -> None:
    try:
        message = decode_message(data)
    except GossipRemoteError:
        return
    # Whatever parses is a valid message, and says the same thing when encoded again.
    assert decode_message(encode_message(message)) == message


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_bytes(data: bytes) -> None:
    _fuzz(data)


_leaf = st.one_of(
    st.integers(-3, 2**33),
    st.booleans(),
    st.none(),
    st.binary(max_size=40),
    st.sampled_from([ID, OP, b"\xff" * 32]),
    st.text(max_size=5),
)
_tree = st.recursive(_leaf, lambda inner: st.lists(inner, max_size=4), max_leaves=12)


@settings(max_examples=600, deadline=None)
@given(st.integers(-1, 11), st.lists(_tree, max_size=4))
def test_fuzz_structured(kind: int, rest: list[object]) -> None:
    _fuzz(msgpack.packb([kind, *rest]))


_ids = st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=5).map(tuple)
_messages = st.one_of(
    st.builds(Hello, st.integers(0, 9), st.integers(1, 256), st.integers(17 * 1024, 1 << 20)),
    st.builds(
        Vector,
        st.booleans(),
        st.booleans(),
        st.lists(
            st.tuples(st.binary(min_size=32, max_size=32), st.integers(1, 2**63 - 1)),
            max_size=5,
        ).map(tuple),
    ),
    st.builds(
        Ops,
        st.integers(0, 2**32 - 1),
        st.sampled_from(Mode),
        st.lists(st.binary(min_size=65, max_size=200), min_size=1, max_size=4).map(tuple),
    ),
    st.builds(Ack, st.integers(0, 2**32 - 1)),
    st.builds(IHave, _ids),
    st.builds(Want, st.booleans(), _ids),
    st.just(Prune()),
    st.just(Pause()),
    st.builds(Ping, st.integers(0, 2**32 - 1)),
    st.builds(Pong, st.integers(0, 2**32 - 1)),
    st.lists(
        st.tuples(st.binary(min_size=8, max_size=8), st.integers(0, UNREACHABLE)),
        min_size=1,
        max_size=5,
    ).map(lambda e: Dist(b"".join(t for t, _ in e), tuple(d for _, d in e))),
)


@settings(max_examples=300, deadline=None)
@given(_messages)
def test_every_valid_message_round_trips(message: Message) -> None:
    assert decode_message(encode_message(message)) == message
