"""The sans-IO link core as in-memory pairs: handshake, identity binding, rooms, timers."""

from __future__ import annotations

import msgpack
import pytest

from crdt import Identity
from node.link import (
    PROLOGUE,
    PROTOCOL,
    HandshakeComplete,
    LinkConfig,
    LinkLocalError,
    LinkRemoteError,
    LinkSession,
    Message,
    RoomAuthorized,
    RoomDenied,
    RoomRefused,
    TimedOut,
)
from node.link._auth import IDENTITY_CONTEXT, identity_payload, room_proof
from node.link._frames import MAX_PAYLOAD, Data, RoomProof, RoomUnknown
from node.noise import HandshakeState, KeyPair, NoiseDecryptError

from .conftest import (
    ALICE,
    BOB,
    MALLORY,
    ROOM_A,
    ROOM_B,
    SECRET_A,
    SECRET_B,
    WRONG_SECRET,
    converse,
    established,
    pump,
    session_pair,
)

# -- handshake -------------------------------------------------------------------------


def test_handshake_proves_both_peer_ids_and_shares_the_hash() -> None:
    a, b = session_pair()
    seen_a, seen_b = converse(a, b)
    assert seen_a == [HandshakeComplete(BOB.peer_id, a.handshake_hash)]
    assert seen_b == [HandshakeComplete(ALICE.peer_id, b.handshake_hash)]
    assert a.peer_id == BOB.peer_id and b.peer_id == ALICE.peer_id
    assert a.handshake_hash == b.handshake_hash and len(a.handshake_hash) == 64


def test_handshake_is_three_messages_and_fresh_keys_per_link() -> None:
    a, b = session_pair()
    first = a.messages_to_send(0.0)
    assert len(first) == 1 and len(first[0]) == 32  # "-> e", no payload
    b.receive_message(first[0], 0.0)
    second = b.messages_to_send(0.0)
    a.receive_message(second[0], 0.0)
    third = a.messages_to_send(0.0)
    assert len(second) == 1 and len(third) == 1
    b.receive_message(third[0], 0.0)
    assert a.is_established and b.is_established
    c, _ = established()
    assert c.handshake_hash != a.handshake_hash


def test_peer_id_before_the_handshake_is_a_local_error() -> None:
    a, _ = session_pair()
    with pytest.raises(LinkLocalError):
        _ = a.peer_id
    with pytest.raises(LinkLocalError):
        _ = a.handshake_hash
    with pytest.raises(LinkLocalError):
        a.send(ROOM_A, b"x")


def test_expected_peer_id_mismatch_is_a_remote_error() -> None:
    a = LinkSession(ALICE, initiator=True, now=0.0, expected_peer_id=MALLORY.peer_id)
    b = LinkSession(BOB, initiator=False, now=0.0)
    with pytest.raises(LinkRemoteError) as caught:
        converse(a, b)
    assert caught.value.reason == "unexpected-peer"
    assert a.is_closed


def test_expected_peer_id_match_completes() -> None:
    a = LinkSession(ALICE, initiator=True, now=0.0, expected_peer_id=BOB.peer_id)
    b = LinkSession(BOB, initiator=False, now=0.0)
    converse(a, b)
    assert a.peer_id == BOB.peer_id


def test_message_one_with_a_payload_is_refused() -> None:
    hs = HandshakeState(PROTOCOL, initiator=True, prologue=PROLOGUE, s=KeyPair.generate())
    b = LinkSession(BOB, initiator=False, now=0.0)
    with pytest.raises(LinkRemoteError) as caught:
        b.receive_message(hs.write_message(b"hello"), 0.0)
    assert caught.value.reason == "handshake"


def test_another_prologue_does_not_complete() -> None:
    hs = HandshakeState(PROTOCOL, initiator=True, prologue=b"rumor link v2", s=KeyPair.generate())
    b = LinkSession(BOB, initiator=False, now=0.0)
    b.receive_message(hs.write_message(b""), 0.0)
    with pytest.raises(NoiseDecryptError):
        hs.read_message(b.messages_to_send(0.0)[0])


# -- forged identity bindings ----------------------------------------------------------


def _forged_payloads(static_public: bytes) -> dict[str, bytes]:
    other_static = KeyPair.generate().public
    return {
        # Bob's genuine signature, but over a key that is not the one in the handshake.
        "other-static": identity_payload(BOB, other_static),
        # Claims Bob's id, signed by Mallory.
        "other-signer": msgpack.packb(
            [BOB.peer_id, MALLORY.sign(IDENTITY_CONTEXT + static_public)], use_bin_type=True
        ),
        # Bob's signature over the bare key: no domain separation, no pass.
        "no-context": msgpack.packb([BOB.peer_id, BOB.sign(static_public)], use_bin_type=True),
        "empty": b"",
        "not-an-array": msgpack.packb({"id": BOB.peer_id}),
        "short-signature": msgpack.packb([BOB.peer_id, b"\x00" * 63], use_bin_type=True),
    }


@pytest.mark.parametrize(
    "case",
    ["other-static", "other-signer", "no-context", "empty", "not-an-array", "short-signature"],
)
def test_forged_responder_binding_is_refused(case: str) -> None:
    a = LinkSession(ALICE, initiator=True, now=0.0)
    static = KeyPair.generate()
    fake = HandshakeState(PROTOCOL, initiator=False, prologue=PROLOGUE, s=static)
    fake.read_message(a.messages_to_send(0.0)[0])
    message2 = fake.write_message(_forged_payloads(static.public)[case])
    with pytest.raises(LinkRemoteError) as caught:
        a.receive_message(message2, 0.0)
    assert caught.value.reason == "identity"
    assert a.is_closed and a.messages_to_send(0.0) == []  # never revealed its identity


@pytest.mark.parametrize(
    "case",
    ["other-static", "other-signer", "no-context", "empty", "not-an-array", "short-signature"],
)
def test_forged_initiator_binding_is_refused(case: str) -> None:
    b = LinkSession(BOB, initiator=False, now=0.0)
    static = KeyPair.generate()
    fake = HandshakeState(PROTOCOL, initiator=True, prologue=PROLOGUE, s=static)
    b.receive_message(fake.write_message(b""), 0.0)
    fake.read_message(b.messages_to_send(0.0)[0])
    message3 = fake.write_message(_forged_payloads(static.public)[case])
    with pytest.raises(LinkRemoteError) as caught:
        b.receive_message(message3, 0.0)
    assert caught.value.reason == "identity"
    assert not b.is_established


def test_man_in_the_middle_with_its_own_static_key_fails_the_identity_check() -> None:
    a = LinkSession(ALICE, initiator=True, now=0.0)
    b = LinkSession(BOB, initiator=False, now=0.0)
    m_static = KeyPair.generate()
    to_a = HandshakeState(PROTOCOL, initiator=False, prologue=PROLOGUE, s=m_static)
    to_b = HandshakeState(PROTOCOL, initiator=True, prologue=PROLOGUE, s=m_static)
    to_a.read_message(a.messages_to_send(0.0)[0])
    b.receive_message(to_b.write_message(b""), 0.0)
    bobs_payload = to_b.read_message(b.messages_to_send(0.0)[0])  # Bob's genuine binding
    with pytest.raises(LinkRemoteError) as caught:
        a.receive_message(to_a.write_message(bobs_payload), 0.0)
    assert caught.value.reason == "identity"


def test_man_in_the_middle_with_its_own_identity_is_not_the_expected_peer() -> None:
    a = LinkSession(ALICE, initiator=True, now=0.0, expected_peer_id=BOB.peer_id)
    m = LinkSession(MALLORY, initiator=False, now=0.0)
    with pytest.raises(LinkRemoteError) as caught:
        converse(a, m)
    assert caught.value.reason == "unexpected-peer"


# -- rooms -----------------------------------------------------------------------------


def test_right_secret_authorizes_and_messages_flow_both_ways() -> None:
    a, b = established()
    a.join_room(ROOM_A, SECRET_A)
    b.join_room(ROOM_A, SECRET_A)
    seen_a, seen_b = converse(a, b)
    assert seen_a == [RoomAuthorized(ROOM_A)] and seen_b == [RoomAuthorized(ROOM_A)]
    assert a.rooms == b.rooms == {ROOM_A}
    a.send(ROOM_A, b"from a")
    b.send(ROOM_A, b"from b")
    seen_a, seen_b = converse(a, b)
    assert seen_b == [Message(ROOM_A, b"from a")] and seen_a == [Message(ROOM_A, b"from b")]


def test_rooms_joined_before_the_handshake_are_offered_when_it_completes() -> None:
    a, b = session_pair()
    a.join_room(ROOM_A, SECRET_A)
    b.join_room(ROOM_A, SECRET_A)
    seen_a, seen_b = converse(a, b)
    assert RoomAuthorized(ROOM_A) in seen_a and RoomAuthorized(ROOM_A) in seen_b


def test_wrong_secret_is_refused_and_the_other_room_still_works() -> None:
    a, b = established()
    a.join_room(ROOM_A, SECRET_A)
    a.join_room(ROOM_B, SECRET_B)
    b.join_room(ROOM_A, WRONG_SECRET)
    b.join_room(ROOM_B, SECRET_B)
    seen_a, seen_b = converse(a, b)
    # Both proofs for ROOM_A fail: each side refuses the other, neither authorizes it.
    assert RoomRefused(ROOM_A) in seen_a and RoomRefused(ROOM_A) in seen_b
    assert RoomAuthorized(ROOM_B) in seen_a and RoomAuthorized(ROOM_B) in seen_b
    assert a.rooms == b.rooms == {ROOM_B}
    assert a.refused_rooms == b.refused_rooms == {ROOM_A}
    with pytest.raises(LinkLocalError):
        a.send(ROOM_A, b"leak")
    b.send(ROOM_B, b"still here")
    seen_a, _ = converse(a, b)
    assert seen_a == [Message(ROOM_B, b"still here")]
    assert a.is_established and b.is_established


def test_a_refused_room_stays_refused_on_that_link() -> None:
    a, b = established()
    a.join_room(ROOM_A, SECRET_A)
    b.join_room(ROOM_A, WRONG_SECRET)
    converse(a, b)
    a.join_room(ROOM_A, SECRET_A)  # no new offer
    assert a.pending_messages == 0
    b._queue(
        RoomProof(
            ROOM_A,
            room_proof(SECRET_A, initiator=False, handshake_hash=b.handshake_hash, room_id=ROOM_A),
        )
    )
    seen_a, seen_b = converse(a, b)
    assert seen_a == [] and seen_b == [RoomDenied(ROOM_A)]
    assert a.rooms == frozenset()


def test_unknown_room_gets_a_denial_and_a_later_join_authorizes() -> None:
    a, b = established()
    a.join_room(ROOM_A, SECRET_A)
    seen_a, seen_b = converse(a, b)
    assert seen_a == [RoomDenied(ROOM_A)] and seen_b == []
    b.join_room(ROOM_A, SECRET_A)
    seen_a, seen_b = converse(a, b)
    assert seen_a == [RoomAuthorized(ROOM_A)] and seen_b == [RoomAuthorized(ROOM_A)]


def test_unknown_room_and_wrong_proof_get_the_same_answer() -> None:
    a1, b1 = established()
    a1.join_room(ROOM_A, SECRET_A)
    sent_unknown = a1.messages_to_send(0.0)
    b1.receive_message(sent_unknown[0], 0.0)
    unknown_answer = b1.messages_to_send(0.0)
    a2, b2 = established()
    b2.join_room(ROOM_A, WRONG_SECRET)
    converse(a2, b2)  # Alice lacks the room yet: Bob's offer is denied
    a2.join_room(ROOM_A, SECRET_A)
    b2.receive_message(a2.messages_to_send(0.0)[0], 0.0)
    refused_answer = b2.messages_to_send(0.0)
    assert [len(m) for m in unknown_answer] == [len(m) for m in refused_answer] == [16 + 36]
    assert a1.receive_message(unknown_answer[0], 0.0) == [RoomDenied(ROOM_A)]
    assert a2.receive_message(refused_answer[0], 0.0) == [RoomDenied(ROOM_A)]


def test_a_reflected_proof_is_refused() -> None:
    a, b = established()
    a.join_room(ROOM_A, SECRET_A)
    converse(a, b)  # Bob lacks the room; he saw Alice's proof go by
    alices_proof = room_proof(
        SECRET_A, initiator=True, handshake_hash=a.handshake_hash, room_id=ROOM_A
    )
    b._queue(RoomProof(ROOM_A, alices_proof))
    assert pump(b, a) == [RoomRefused(ROOM_A)]
    assert a.rooms == frozenset() and a.pending_messages == 1  # the "unknown room" answer


def test_a_proof_from_another_link_is_refused() -> None:
    a, b = established()
    other_a, _ = established()
    a.join_room(ROOM_A, SECRET_A)
    converse(a, b)
    replayed = room_proof(
        SECRET_A, initiator=False, handshake_hash=other_a.handshake_hash, room_id=ROOM_A
    )
    b._queue(RoomProof(ROOM_A, replayed))
    assert pump(b, a) == [RoomRefused(ROOM_A)]


def test_data_for_a_room_the_peer_never_proved_is_a_remote_error() -> None:
    a, b = established()
    a.join_room(ROOM_A, SECRET_A)
    converse(a, b)
    b._queue(Data(ROOM_A, b"sneaky"))
    with pytest.raises(LinkRemoteError) as caught:
        converse(a, b)
    assert caught.value.reason == "unauthorized-room"
    assert a.is_closed


def test_an_unsolicited_unknown_room_answer_is_a_remote_error() -> None:
    a, b = established()
    b._queue(RoomUnknown(ROOM_B))
    with pytest.raises(LinkRemoteError) as caught:
        converse(a, b)
    assert caught.value.reason == "unsolicited"


def test_room_misuse_is_a_local_error() -> None:
    a, b = established()
    with pytest.raises(LinkLocalError):
        a.join_room(b"short", SECRET_A)
    with pytest.raises(LinkLocalError):
        a.join_room(ROOM_A, b"short")
    a.join_room(ROOM_A, SECRET_A)
    with pytest.raises(LinkLocalError):
        a.join_room(ROOM_A, SECRET_B)
    with pytest.raises(LinkLocalError):
        a.send(ROOM_A, b"not yet authorized")
    b.join_room(ROOM_A, SECRET_A)
    converse(a, b)
    a.send(ROOM_A, b"\x00" * MAX_PAYLOAD)
    with pytest.raises(LinkLocalError):
        a.send(ROOM_A, b"\x00" * (MAX_PAYLOAD + 1))
    assert [len(m) for m in a.messages_to_send(0.0)] == [60 * 1024 + 16]


def test_a_closed_session_refuses_calls_and_ignores_bytes() -> None:
    a, b = established()
    b.join_room(ROOM_A, SECRET_A)
    a.close()
    with pytest.raises(LinkLocalError):
        a.join_room(ROOM_A, SECRET_A)
    assert a.receive_message(b.messages_to_send(0.0)[0], 0.0) == []
    assert a.next_deadline() is None and a.handle_timer(1e9) == []


# -- timers ----------------------------------------------------------------------------


def test_handshake_timeout_is_exact() -> None:
    a, _ = session_pair(now=100.0)
    assert a.next_deadline() == 105.0  # 5 s by default: a stranger is not waited on long
    assert a.handle_timer(104.999) == []
    assert a.handle_timer(105.0) == [TimedOut("handshake")]
    assert a.is_closed and a.next_deadline() is None


def test_keepalive_then_idle_at_exact_deadlines() -> None:
    config = LinkConfig(keepalive=5.0, idle_timeout=15.0)
    a, b = established(config, now=0.0)
    assert a.next_deadline() == 5.0
    assert a.handle_timer(4.9) == [] and a.pending_messages == 0
    assert a.handle_timer(5.0) == [] and a.pending_messages == 1
    assert a.next_deadline() == 15.0  # the queued ping resets the keepalive once sent
    ping = a.messages_to_send(5.5)
    assert a.next_deadline() == 10.5
    assert b.receive_message(ping[0], 7.0) == []  # a ping carries no event
    assert b.next_deadline() == 5.0  # b's own keepalive, idle now at 22
    b.handle_timer(5.0)
    b.messages_to_send(5.0)
    assert b.next_deadline() == 10.0
    b.handle_timer(10.0)
    b.messages_to_send(10.0)
    assert b.next_deadline() == 15.0
    b.handle_timer(15.0)
    b.messages_to_send(15.0)
    assert b.next_deadline() == 20.0
    b.handle_timer(20.0)
    b.messages_to_send(20.0)
    assert b.next_deadline() == 22.0
    assert b.handle_timer(22.0) == [TimedOut("idle")]
    assert b.is_closed


def test_paused_receiving_does_not_count_as_idle() -> None:
    config = LinkConfig(keepalive=5.0, idle_timeout=15.0)
    a, _ = established(config)
    a.pause_receiving()
    for t in (5.0, 10.0, 15.0, 20.0):
        assert a.next_deadline() == t
        assert a.handle_timer(t) == []
        a.messages_to_send(t)
    a.resume_receiving(22.0)
    assert a.next_deadline() == 25.0
    a.handle_timer(25.0)
    a.messages_to_send(25.0)
    assert a.next_deadline() == 30.0
    a.handle_timer(30.0)
    a.messages_to_send(30.0)
    assert a.next_deadline() == 35.0  # keepalive; idle would be 22 + 15 = 37
    assert a.handle_timer(37.0) == [TimedOut("idle")]


@pytest.mark.parametrize(
    ("keepalive", "idle", "handshake"), [(0.0, 1.0, 1.0), (5.0, 5.0, 1.0), (1.0, 2.0, -1.0)]
)
def test_bad_config_is_a_local_error(keepalive: float, idle: float, handshake: float) -> None:
    with pytest.raises(LinkLocalError):
        LinkConfig(keepalive=keepalive, idle_timeout=idle, handshake_timeout=handshake)


def test_identity_must_be_an_identity() -> None:
    with pytest.raises(LinkLocalError):
        LinkSession(b"not an identity", initiator=True, now=0.0)  # type: ignore[arg-type]
    with pytest.raises(LinkLocalError):
        LinkSession(Identity.generate(), initiator=True, now=0.0, expected_peer_id=b"x")
