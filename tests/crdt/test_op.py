"""The op wire format: encoding, decoding, limits, and the decoder's one invariant."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crdt import MAX_OP_BYTES, InvalidOp, Kind, Op, Reason, decode_op, encode_op
from crdt._op import SIGNING_CONTEXT, decode_stored, op_id, stored_intact

from .conftest import ROOM, T0, identity

ME = identity(0)


def signed(fields: list[object]) -> bytes:
    """Any field list, msgpack-encoded and signed by ME (for crafting bad ops)."""
    payload: bytes = msgpack.packb(fields)
    return payload + ME.sign(SIGNING_CONTEXT + payload)


def header(**overrides: object) -> list[object]:
    fields: dict[str, object] = {
        "version": 1,
        "room": ROOM,
        "author": ME.peer_id,
        "seq": 1,
        "prev": None,
        "hlc": T0 << 16,
        "kind": int(Kind.MESSAGE),
        "body": ["hello", None],
    }
    fields.update(overrides)
    return list(fields.values())


def test_encode_decode_round_trip() -> None:
    op = encode_op(
        ME, room=ROOM, seq=1, prev=None, hlc=T0 << 16, kind=Kind.MESSAGE, body=("hello", None)
    )
    again = decode_op(op.data)
    assert again == op
    assert (again.room, again.author, again.seq, again.prev, again.hlc) == (
        ROOM,
        ME.peer_id,
        1,
        None,
        T0 << 16,
    )
    assert again.kind == Kind.MESSAGE
    assert again.body == ("hello", None)
    assert again.id == op_id(again.payload) and len(again.id) == 32
    assert again.signature_ok()


def test_wire_form_is_payload_then_signature() -> None:
    data = signed(header())
    op = decode_op(data)
    assert msgpack.unpackb(op.payload) == header()
    assert op.signature == data[-64:]
    assert op.data == data


def test_id_does_not_depend_on_signature() -> None:
    data = signed(header())
    forged = data[:-64] + bytes(64)
    assert decode_op(forged).id == decode_op(data).id
    assert not decode_op(forged).signature_ok()


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        (header(version=2), Reason.BAD_VERSION),
        (header(room=b"short"), Reason.BAD_FIELD),
        (header(author="text"), Reason.BAD_FIELD),
        (header(seq=0), Reason.BAD_SEQ),
        (header(seq=-5), Reason.BAD_SEQ),
        (header(seq=True), Reason.BAD_FIELD),
        (header(seq=2, prev=None), Reason.BAD_PREV),
        (header(seq=1, prev=bytes(32)), Reason.BAD_PREV),
        (header(seq=2, prev=b"x" * 31), Reason.BAD_PREV),
        (header(hlc=0), Reason.BAD_FIELD),
        (header(hlc=1.5), Reason.BAD_FIELD),
        (header(kind=99), Reason.UNKNOWN_KIND),
        (header(kind="message"), Reason.BAD_FIELD),
        (header(body="hello"), Reason.BAD_BODY),
        (header(body=["hello"]), Reason.BAD_BODY),
        (header(body=["", None]), Reason.BAD_BODY),
        (header(body=["bell\x07", None]), Reason.BAD_BODY),
        (header(body=["esc\x1b[2J", None]), Reason.BAD_BODY),
        (header(body=["hi", b"not an id"]), Reason.BAD_BODY),
        (header(kind=int(Kind.EDIT), body=[b"x" * 31, "text"]), Reason.BAD_BODY),
        (header(kind=int(Kind.NICK), body=["two\nlines"]), Reason.BAD_BODY),
        (header(kind=int(Kind.NICK), body=["n" * 65]), Reason.TOO_LARGE),
        (header(kind=int(Kind.REACT), body=[bytes(32), ""]), Reason.BAD_BODY),
        (header(kind=int(Kind.REACT), body=[bytes(32), " x"]), Reason.BAD_BODY),
        (header(kind=int(Kind.JOIN), body=["extra"]), Reason.BAD_BODY),
        (header()[:7], Reason.MALFORMED),
        ([*header(), 1], Reason.MALFORMED),
        ({"not": "an array"}, Reason.MALFORMED),
    ],
)
def test_malformed_fields_are_refused_with_their_reason(fields: object, reason: Reason) -> None:
    with pytest.raises(InvalidOp) as caught:
        decode_op(signed(fields))  # type: ignore[arg-type]
    assert caught.value.reason is reason


def test_multiline_message_text_is_allowed() -> None:
    assert decode_op(signed(header(body=["two\nlines\twith a tab", None]))).body[0] == (
        "two\nlines\twith a tab"
    )


def test_sizes_are_limited() -> None:
    with pytest.raises(InvalidOp) as caught:
        decode_op(signed(header(body=["x" * (13 * 1024), None])))
    assert caught.value.reason is Reason.TOO_LARGE
    with pytest.raises(InvalidOp) as caught:
        decode_op(bytes(MAX_OP_BYTES + 1))
    assert caught.value.reason is Reason.TOO_LARGE
    # The largest message text that fits is accepted.
    assert decode_op(signed(header(body=["x" * (12 * 1024 - 16), None])))


def test_non_canonical_encoding_is_refused() -> None:
    canonical = msgpack.packb(header())
    # seq 1 as a uint64 (0xcf) instead of a positive fixint: same value, other bytes.
    at = canonical.index(b"\xc4\x20" + ME.peer_id) + 34
    assert canonical[at] == 1
    longer = canonical[:at] + b"\xcf" + (1).to_bytes(8, "big") + canonical[at + 1 :]
    assert msgpack.unpackb(longer) == header()
    with pytest.raises(InvalidOp) as caught:
        decode_op(longer + ME.sign(SIGNING_CONTEXT + longer))
    assert caught.value.reason is Reason.NOT_CANONICAL


def test_truncated_and_junk_bytes() -> None:
    data = signed(header())
    for cut in (0, 1, 10, 64, 65, len(data) - 65, len(data) - 1):
        with pytest.raises(InvalidOp):
            decode_op(data[:cut])
    with pytest.raises(InvalidOp) as caught:
        decode_op("a string")  # type: ignore[arg-type]
    assert caught.value.reason is Reason.MALFORMED


def test_encode_refuses_what_decode_would_refuse() -> None:
    with pytest.raises(ValueError, match="cannot author"):
        encode_op(
            ME, room=ROOM, seq=1, prev=None, hlc=T0 << 16, kind=Kind.NICK, body=("bad\x00nick",)
        )


@settings(max_examples=400)
@given(st.binary(max_size=600))
def test_random_bytes_decode_or_raise_invalid_op(data: bytes) -> None:
    try:
        op = decode_op(data)
    except InvalidOp:
        return
    assert isinstance(op, Op)


@settings(max_examples=400)
@given(st.data())
def test_mutated_ops_decode_to_a_valid_op_or_raise_invalid_op(data: st.DataObject) -> None:
    original = signed(
        header(kind=int(Kind.EDIT), seq=3, prev=bytes(32), body=[bytes(range(32)), "edited text"])
    )
    mutated = bytearray(original)
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(mutated) - 1))
        mutated[position] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        cut = data.draw(st.integers(0, len(mutated)))
        mutated = mutated[:cut] + data.draw(st.binary(max_size=20))
    try:
        op = decode_op(bytes(mutated))
    except InvalidOp:
        return
    # Whatever decodes is canonical: re-encoding the fields gives back the payload.
    assert (
        msgpack.packb([1, op.room, op.author, op.seq, op.prev, op.hlc, op.kind, list(op.body)])
        == op.payload
    )


@pytest.mark.parametrize(
    ("kind", "body"),
    [
        (Kind.MESSAGE, ("hello", None)),
        (Kind.MESSAGE, ("a reply", bytes(32))),
        (Kind.EDIT, (bytes(32), "better")),
        (Kind.REACT, (bytes(32), "👍")),
        (Kind.TOPIC, ("room topic",)),
        (Kind.JOIN, ()),
    ],
)
def test_stored_bytes_read_back_as_the_op_they_were(kind: Kind, body: tuple[object, ...]) -> None:
    op = encode_op(ME, room=ROOM, seq=2, prev=bytes(32), hlc=T0 << 16, kind=kind, body=body)
    assert tuple(decode_stored(op.id, op.data) or ()) == tuple(op)


def test_stored_bytes_that_no_longer_hash_to_their_id_are_damaged() -> None:
    op = encode_op(ME, room=ROOM, seq=1, prev=None, hlc=T0 << 16, kind=Kind.JOIN, body=())
    flipped = bytes([op.data[0] ^ 1]) + op.data[1:]
    assert decode_stored(op.id, flipped) is None
    assert decode_stored(bytes(32), op.data) is None
    assert decode_stored(op.id, op.data[:10]) is None
    assert stored_intact(op.id, op.data)
    assert not stored_intact(op.id, flipped)
    assert not stored_intact(bytes(32), op.data)
    assert not stored_intact(op.id, op.data[:10])
    assert not stored_intact(op.id, None)
