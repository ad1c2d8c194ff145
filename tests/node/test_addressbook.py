"""Address records: the signed wire form, the strict decoder (valid, or RecordError and
nothing else) and the per-room book's rules (news, expiry, bounds)."""

from __future__ import annotations

import contextlib
import random

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crdt import Identity
from node._addressbook import (
    GREETING,
    MAX_RECORDS,
    MAX_TTL,
    MIN_STEP,
    PASS_ON,
    RECORD_TTL,
    AddressBook,
    RecordError,
    decode_record,
    decode_records,
    encode_records,
    pass_on_to,
    record_channel,
    sign_record,
)

ROOM, OTHER_ROOM = b"\x01" * 32, b"\x02" * 32
NOW = 1_800_000_000
ALICE, BOB = Identity.generate(), Identity.generate()


def test_a_record_round_trips_and_binds_its_room() -> None:
    record = sign_record(ALICE, ROOM, ["192.0.2.1:4433", "alice.example.org:443"], NOW + 60)
    assert decode_record(record.data, ROOM, NOW) == record
    with pytest.raises(RecordError, match="bad-signature"):
        decode_record(record.data, OTHER_ROOM, NOW)  # replayed into another room
    assert record_channel(ROOM) != record_channel(OTHER_ROOM) != ROOM


def test_a_record_signed_by_someone_else_is_refused() -> None:
    record = sign_record(ALICE, ROOM, ["192.0.2.1:4433"], NOW + 60)
    forged = record.data.replace(ALICE.peer_id, BOB.peer_id)
    with pytest.raises(RecordError) as caught:
        decode_record(forged, ROOM, NOW)
    assert caught.value.reason == "bad-signature"


@pytest.mark.parametrize(
    ("expires", "reason"), [(NOW, "expired"), (NOW - 1, "expired"), (NOW + MAX_TTL + 1, "too-long")]
)
def test_stale_or_overlong_records_are_refused(expires: int, reason: str) -> None:
    record = sign_record(ALICE, ROOM, ["192.0.2.1:4433"], expires)
    with pytest.raises(RecordError) as caught:
        decode_record(record.data, ROOM, NOW)
    assert caught.value.reason == reason


def test_fields_are_checked() -> None:
    good = msgpack.unpackb(sign_record(ALICE, ROOM, ["192.0.2.1:1"], NOW + 60).data)
    for index, value in [(0, 2), (0, True), (1, b"x"), (2, []), (2, ["no port"]), (3, 1.5)]:
        fields = list(good)
        fields[index] = value
        with pytest.raises(RecordError):
            decode_record(msgpack.packb(fields), ROOM, NOW)
    # The same fields with the expiry in a needlessly long int encoding: one record, one
    # wire form.
    long_int = b"\xd3" + good[3].to_bytes(8, "big")
    parts = [msgpack.packb(f) for f in good]
    with pytest.raises(RecordError, match="canonical"):
        decode_record(b"\x95" + parts[0] + parts[1] + parts[2] + long_int + parts[4], ROOM, NOW)


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_any_bytes_are_a_record_or_a_record_error(data: bytes) -> None:
    with contextlib.suppress(RecordError):
        decode_record(data, ROOM, NOW)


@settings(max_examples=200)
@given(st.data())
def test_mutated_records_are_a_record_or_a_record_error(data: st.DataObject) -> None:
    raw = bytearray(sign_record(ALICE, ROOM, ["192.0.2.1:4433"], NOW + 60).data)
    index = data.draw(st.integers(0, len(raw) - 1))
    raw[index] = data.draw(st.integers(0, 255))
    with contextlib.suppress(RecordError):
        decode_record(bytes(raw), ROOM, NOW)


def test_the_book_keeps_news_only() -> None:
    book = AddressBook(ROOM, ALICE.peer_id)
    first = sign_record(BOB, ROOM, ["192.0.2.2:1"], NOW + 600)
    assert book.add(first, NOW)
    assert not book.add(first, NOW)  # the same again: not passed on
    assert not book.add(sign_record(BOB, ROOM, ["192.0.2.2:1"], NOW + 600 + MIN_STEP - 1), NOW)
    assert book.add(sign_record(BOB, ROOM, ["192.0.2.2:1"], NOW + 600 + MIN_STEP), NOW)
    assert book.add(sign_record(BOB, ROOM, ["192.0.2.9:1"], NOW + 600 + MIN_STEP + 1), NOW)
    assert not book.add(sign_record(BOB, ROOM, ["192.0.2.2:1"], NOW + 60), NOW)  # older
    assert not book.add(sign_record(ALICE, ROOM, ["192.0.2.1:1"], NOW + 600), NOW)  # ours
    assert [r.addresses for r in book.others(NOW)] == [("192.0.2.9:1",)]
    assert book.others(NOW + 600 + MIN_STEP + 1) == []  # expired


def test_the_book_is_bounded_and_keeps_the_longest_lived() -> None:
    book = AddressBook(ROOM, ALICE.peer_id, limit=3)
    signers = [Identity.generate() for _ in range(5)]
    for n, signer in enumerate(signers):
        book.add(sign_record(signer, ROOM, ["192.0.2.3:1"], NOW + 100 + n), NOW)
    assert {r.peer_id for r in book.others(NOW)} == {s.peer_id for s in signers[2:]}
    assert not book.add(sign_record(Identity.generate(), ROOM, ["192.0.2.3:1"], NOW + 1), NOW)
    assert MAX_RECORDS >= 32


def test_our_record_is_signed_again_at_half_its_life() -> None:
    book = AddressBook(ROOM, ALICE.peer_id)
    assert not book.needs_signing((), NOW)  # nothing to say: dial-out only
    assert book.needs_signing(("192.0.2.1:1",), NOW)
    book.set_own(sign_record(ALICE, ROOM, ["192.0.2.1:1"], NOW + RECORD_TTL))
    assert not book.needs_signing(("192.0.2.1:1",), NOW + RECORD_TTL / 2)
    assert book.needs_signing(("192.0.2.1:1",), NOW + RECORD_TTL / 2 + 1)
    assert book.needs_signing(("192.0.2.1:2",), NOW)  # moved


def test_stored_lists_keep_the_valid_records_only() -> None:
    good = sign_record(BOB, ROOM, ["192.0.2.2:1"], NOW + 60)
    stale = sign_record(ALICE, ROOM, ["192.0.2.1:1"], NOW - 1)
    data = encode_records([good, stale])
    assert decode_records(data, ROOM, NOW) == [good]
    assert decode_records(b"\xc1 damaged", ROOM, NOW) == []
    assert decode_records(msgpack.packb({"a": 1}), ROOM, NOW) == []


def test_a_greeting_is_ours_and_a_few_others_at_random() -> None:
    book = AddressBook(ROOM, ALICE.peer_id)
    book.set_own(sign_record(ALICE, ROOM, ["10.0.0.1:1"], NOW + 100))
    others = [Identity.generate() for _ in range(GREETING + 4)]
    for n, who in enumerate(others):
        book.add(sign_record(who, ROOM, [f"10.0.1.{n}:1"], NOW + 100), NOW)
    greeting = book.greeting(NOW, random.Random(3))
    assert greeting[0] == book.own and len(greeting) == 1 + GREETING
    assert len({r.peer_id for r in greeting}) == 1 + GREETING
    assert greeting == book.greeting(NOW, random.Random(3))  # one seed, one choice
    small = AddressBook(ROOM, ALICE.peer_id)
    small.add(sign_record(others[0], ROOM, ["10.0.1.0:1"], NOW + 100), NOW)
    assert small.greeting(NOW, random.Random(3)) == small.others(NOW)  # no own record yet


def test_news_goes_on_to_a_few_members() -> None:
    members = [bytes([i]) * 32 for i in range(10)]
    assert pass_on_to(members[:PASS_ON], random.Random(1)) == members[:PASS_ON]
    chosen = pass_on_to(members, random.Random(1))
    assert len(set(chosen)) == PASS_ON and set(chosen) <= set(members)


def test_a_full_book_keeps_a_new_signers_record_but_spreads_only_refreshes() -> None:
    book = AddressBook(ROOM, ALICE.peer_id, limit=2)
    carol = Identity.generate()
    bob = sign_record(BOB, ROOM, ["10.0.0.2:1"], NOW + 100)
    assert book.spreads(bob, NOW) and book.add(bob, NOW)
    assert book.add(sign_record(carol, ROOM, ["10.0.0.3:1"], NOW + 50), NOW)
    dave = sign_record(Identity.generate(), ROOM, ["10.0.0.4:1"], NOW + 200)
    assert not book.spreads(dave, NOW)  # full: kept (it outlives carol's), not passed on
    refresh = sign_record(BOB, ROOM, ["10.0.0.2:1"], NOW + 100 + MIN_STEP)
    assert book.spreads(refresh, NOW)
    assert book.spreads(dave, NOW + 60)  # carol's expired: room again
