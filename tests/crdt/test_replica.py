"""The replica: views, held ops, forks, rejections, sync helpers."""

from __future__ import annotations

import msgpack
import pytest

from crdt import (
    AuthorForked,
    Kind,
    MemberJoined,
    MemberLeft,
    MessageAdded,
    MessageChanged,
    NickChanged,
    Op,
    OpDropped,
    Outcome,
    Reason,
    Replica,
    TopicChanged,
    encode_op,
)
from crdt._op import SIGNING_CONTEXT

from .conftest import ROOM, T0, identity


def post(replica: Replica, op: Op) -> Op:
    """Apply an op of the replica's own identity and return it."""
    result = replica.admit(op)
    assert result.outcome is Outcome.ADDED and result.waiting_for is None, result
    return op


def deliver(replica: Replica, *ops: Op) -> None:
    for op in ops:
        assert replica.apply(op.data).outcome is Outcome.ADDED


def assert_unchanged(replica: Replica, before: bytes, size: int, result: object) -> None:
    assert replica.render() == before, result
    assert len(replica) == size


# -- views ------------------------------------------------------------------------------------


def test_timeline_orders_by_hlc_author_seq(alice: Replica, bob: Replica) -> None:
    a1 = post(alice, alice.new_message("a1", now_ms=T0 + 10))
    b1 = post(bob, bob.new_message("b1", now_ms=T0 + 5))
    b2 = post(bob, bob.new_message("b2", now_ms=T0 + 10))  # same ms as a1
    room = Replica(ROOM)
    deliver(room, a1, b2, b1)  # b2 is held until b1 arrives
    texts = [m.text for m in room.timeline()]
    a_first = alice.identity.peer_id < bob.identity.peer_id  # type: ignore[union-attr]
    assert texts == (["b1", "a1", "b2"] if a_first else ["b1", "b2", "a1"])


def test_edits_are_last_writer_wins_and_flag_the_message(alice: Replica) -> None:
    m = post(alice, alice.new_message("first", now_ms=T0))
    e1 = post(alice, alice.new_edit(m.id, "second", now_ms=T0 + 1))
    e2 = post(alice, alice.new_edit(m.id, "third", now_ms=T0 + 2))
    for order in ([m, e1, e2], [m, e2, e1]):
        room = Replica(ROOM)
        for op in order:
            room.apply(op.data)
        (message,) = room.timeline()
        assert (message.text, message.edited, message.deleted) == ("third", True, False)
        assert message.id == m.id and message.hlc == m.hlc


def test_delete_hides_text_and_reactions_for_good(alice: Replica, bob: Replica) -> None:
    m = post(alice, alice.new_message("oops", now_ms=T0))
    bob.apply(m.data)
    r = post(bob, bob.new_reaction(m.id, "👍", now_ms=T0 + 1))
    d = post(alice, alice.new_delete(m.id, now_ms=T0 + 2))
    alice.apply(r.data)
    with pytest.raises(ValueError, match="only a message's author"):
        bob.new_delete(m.id, now_ms=T0 + 3)
    (message,) = alice.timeline()
    assert (message.text, message.deleted, message.reactions) == ("", True, ())
    # An edit after the delete does not bring it back.
    post(alice, alice.new_edit(m.id, "resurrected?", now_ms=T0 + 4))
    assert alice.timeline()[0].deleted and alice.timeline()[0].text == ""
    assert d.id in alice


def test_reactions_add_and_remove_per_author_and_emoji(alice: Replica, bob: Replica) -> None:
    m = post(alice, alice.new_message("react to me", now_ms=T0))
    bob.apply(m.data)
    ops = [
        post(bob, bob.new_reaction(m.id, "👍", now_ms=T0 + 1)),
        post(bob, bob.new_reaction(m.id, "🎉", now_ms=T0 + 2)),
        post(alice, alice.new_reaction(m.id, "👍", now_ms=T0 + 3)),
        post(bob, bob.new_reaction(m.id, "🎉", now_ms=T0 + 4, remove=True)),
    ]
    room = Replica(ROOM)
    for op in [m, *reversed(ops)]:
        room.apply(op.data)
    (message,) = room.timeline()
    a, b = alice.identity.peer_id, bob.identity.peer_id  # type: ignore[union-attr]
    assert message.reactions == (("👍", tuple(sorted([a, b]))),)


def test_topic_nick_and_membership(alice: Replica, bob: Replica) -> None:
    a, b = alice.identity.peer_id, bob.identity.peer_id  # type: ignore[union-attr]
    ops = [
        post(alice, alice.new_join(now_ms=T0)),
        post(bob, bob.new_join(now_ms=T0)),
        post(alice, alice.new_topic("plans", now_ms=T0 + 1)),
        post(bob, bob.new_topic("lunch", now_ms=T0 + 2)),
        post(alice, alice.new_nick("alice", now_ms=T0 + 3)),
        post(alice, alice.new_nick("ally", now_ms=T0 + 4)),
        post(bob, bob.new_leave(now_ms=T0 + 5)),
    ]
    room = Replica(ROOM)
    changes = [c for op in ops for c in room.apply(op.data).changes]
    assert room.topic == "lunch"
    assert room.nicknames() == {a: "ally"} and room.nick(a) == "ally" and room.nick(b) is None
    assert room.members() == [a]
    assert changes == [
        MemberJoined(a),
        MemberJoined(b),
        TopicChanged("plans", a),
        TopicChanged("lunch", b),
        NickChanged(a, "alice"),
        NickChanged(a, "ally"),
        MemberLeft(b),
    ]


def test_changes_report_what_apply_did(alice: Replica) -> None:
    m = alice.new_message("hi", now_ms=T0)
    assert alice.admit(m).changes == (MessageAdded(m.id),)
    e = alice.new_edit(m.id, "hello", now_ms=T0 + 1)
    assert alice.admit(e).changes == (MessageChanged(m.id),)
    assert alice.apply(e.data).outcome is Outcome.DUPLICATE


def test_reply_to_is_shown(alice: Replica) -> None:
    m = post(alice, alice.new_message("question", now_ms=T0))
    post(alice, alice.new_message("answer", reply_to=m.id, now_ms=T0 + 1))
    assert [x.reply_to for x in alice.timeline()] == [None, m.id]


# -- held ops -----------------------------------------------------------------------------


def test_ops_wait_for_their_chain_predecessor(alice: Replica) -> None:
    ops = [post(alice, alice.new_message(f"m{i}", now_ms=T0 + i)) for i in range(5)]
    room = Replica(ROOM)
    for op in reversed(ops[1:]):
        result = room.apply(op.data)
        assert result.outcome is Outcome.ADDED and result.waiting_for is not None
    assert room.timeline() == [] and room.held_count == 4 and len(room) == 4
    assert room.version_vector() == {}
    result = room.apply(ops[0].data)
    assert [c for c in result.changes] == [MessageAdded(op.id) for op in ops]
    assert [m.text for m in room.timeline()] == [f"m{i}" for i in range(5)]
    assert room.held_count == 0


def test_edit_and_reaction_wait_for_their_target(alice: Replica, bob: Replica) -> None:
    m = post(alice, alice.new_message("target", now_ms=T0))
    e = post(alice, alice.new_edit(m.id, "edited", now_ms=T0 + 1))
    bob.apply(m.data)
    r = post(bob, bob.new_reaction(m.id, "❤️", now_ms=T0 + 2))
    b2 = post(bob, bob.new_message("after my reaction", now_ms=T0 + 3))
    room = Replica(ROOM)
    assert room.apply(r.data).waiting_for == m.id
    assert room.apply(b2.data).waiting_for == r.id  # its chain waits for the reaction
    assert room.apply(e.data).waiting_for == m.id
    assert [m.text for m in room.timeline()] == []
    room.apply(m.data)
    assert [(x.text, x.edited, len(x.reactions)) for x in room.timeline()] == [
        ("edited", True, 1),
        ("after my reaction", False, 0),
    ]


def test_held_ops_are_bounded_in_bytes(alice: Replica) -> None:
    ops = [post(alice, alice.new_message("x" * 1000, now_ms=T0 + i)) for i in range(6)]
    room = Replica(ROOM, max_pending_bytes=3 * len(ops[-1].data))
    results = [room.apply(op.data) for op in reversed(ops)]
    assert [r.reason for r in results] == [
        None,
        None,
        None,
        Reason.TOO_MANY_PENDING,
        Reason.TOO_MANY_PENDING,
        None,
    ]
    assert room.held_count == 3
    assert len(room.timeline()) == 1
    # Sent again (as sync would), the refused ones fill the gap and release the rest.
    for op in ops[1:3]:
        room.apply(op.data)
    assert room.held_count == 0
    assert len(room.timeline()) == 6


def test_held_ops_are_bounded(alice: Replica) -> None:
    ops = [post(alice, alice.new_message(f"m{i}", now_ms=T0 + i)) for i in range(6)]
    room = Replica(ROOM, max_pending=3)
    results = [room.apply(op.data) for op in reversed(ops)]
    assert [r.outcome for r in results[:3]] == [Outcome.ADDED] * 3
    assert results[3].reason is Reason.TOO_MANY_PENDING
    assert room.held_count == 3


# -- forks --------------------------------------------------------------------------------


def test_forks_are_kept_and_the_author_is_reported(alice: Replica) -> None:
    me = alice.identity
    assert me is not None
    first = post(alice, alice.new_message("one", now_ms=T0))
    fork_a = encode_op(
        me,
        room=ROOM,
        seq=2,
        prev=first.id,
        hlc=(T0 + 1) << 16,
        kind=Kind.MESSAGE,
        body=("fork a", None),
    )
    fork_b = encode_op(
        me,
        room=ROOM,
        seq=2,
        prev=first.id,
        hlc=(T0 + 2) << 16,
        kind=Kind.MESSAGE,
        body=("fork b", None),
    )
    after_b = encode_op(
        me,
        room=ROOM,
        seq=3,
        prev=fork_b.id,
        hlc=(T0 + 3) << 16,
        kind=Kind.MESSAGE,
        body=("after b", None),
    )
    rooms = []
    for order in ([first, fork_a, fork_b, after_b], [after_b, fork_b, fork_a, first]):
        room = Replica(ROOM)
        changes = [c for op in order for c in room.apply(op.data).changes]
        assert AuthorForked(me.peer_id, 2) in changes
        assert room.forked_authors() == [me.peer_id]
        assert sorted(m.text for m in room.timeline()) == ["after b", "fork a", "fork b", "one"]
        assert room.version_vector() == {me.peer_id: 3}
        assert set(room.missing_for({me.peer_id: 1})) == {fork_a, fork_b, after_b}
        assert room.missing_for({me.peer_id: 2}) == [after_b]
        # What a vector cannot show: the forked stretch, predecessors first.
        assert room.fork_seq(me.peer_id) == 2
        twins = room.fork_ops()
        assert set(twins) == {fork_a, fork_b, after_b}
        assert twins.index(fork_b) < twins.index(after_b)
        assert room.fork_ops(limit=1) == twins[:1]
        rooms.append(room.render())
    assert rooms[0] == rooms[1]
    assert alice.fork_seq(me.peer_id) is None and alice.fork_ops() == []


# -- rejected input -------------------------------------------------------------------------


def craft(
    author: int,
    *,
    seq: int,
    prev: bytes | None,
    hlc: int,
    kind: Kind,
    body: tuple[object, ...],
    room: bytes = ROOM,
) -> bytes:
    return encode_op(
        identity(author), room=room, seq=seq, prev=prev, hlc=hlc << 16, kind=kind, body=body
    ).data


@pytest.fixture
def busy_room(alice: Replica, bob: Replica) -> tuple[Replica, list[Op]]:
    """A replica holding a few ops of alice and bob."""
    ops = [
        post(alice, alice.new_join(now_ms=T0)),
        post(alice, alice.new_message("hi", now_ms=T0 + 1)),
    ]
    bob.apply(ops[0].data)
    bob.apply(ops[1].data)
    ops.append(post(bob, bob.new_message("hello", now_ms=T0 + 2)))
    room = Replica(ROOM)
    deliver(room, *ops)
    return room, ops


def test_bad_signature_is_refused(busy_room: tuple[Replica, list[Op]]) -> None:
    room, ops = busy_room
    before, size = room.render(), len(room)
    good = craft(0, seq=3, prev=ops[1].id, hlc=T0 + 5, kind=Kind.MESSAGE, body=("x", None))
    for bad in (good[:-1] + bytes([good[-1] ^ 1]), good[:-64] + identity(1).sign(good[:-64])):
        result = room.apply(bad)
        assert (result.outcome, result.reason) == (Outcome.REJECTED, Reason.BAD_SIGNATURE)
        assert_unchanged(room, before, size, result)
    # A forged copy does not get the genuine op refused afterwards.
    assert room.apply(good).outcome is Outcome.ADDED


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (
            lambda ops: craft(
                0,
                seq=3,
                prev=ops[1].id,
                hlc=T0 + 5,
                kind=Kind.MESSAGE,
                body=("x", None),
                room=bytes(32),
            ),
            Reason.WRONG_ROOM,
        ),
        (
            lambda ops: craft(
                0, seq=3, prev=ops[0].id, hlc=T0 + 5, kind=Kind.MESSAGE, body=("x", None)
            ),
            Reason.BAD_PREV,
        ),  # prev is seq 1, not seq 2
        (
            lambda ops: craft(
                1, seq=2, prev=ops[1].id, hlc=T0 + 5, kind=Kind.MESSAGE, body=("x", None)
            ),
            Reason.BAD_PREV,
        ),  # prev is another author's
        (
            lambda ops: craft(
                0, seq=3, prev=ops[1].id, hlc=T0, kind=Kind.MESSAGE, body=("x", None)
            ),
            Reason.BAD_PREV,
        ),  # timestamp goes backwards
        (
            lambda ops: craft(
                1, seq=2, prev=ops[2].id, hlc=T0 + 5, kind=Kind.EDIT, body=(ops[1].id, "mine now")
            ),
            Reason.NOT_AUTHOR,
        ),
        (
            lambda ops: craft(
                1, seq=2, prev=ops[2].id, hlc=T0 + 5, kind=Kind.DELETE, body=(ops[1].id,)
            ),
            Reason.NOT_AUTHOR,
        ),
        (
            lambda ops: craft(
                1, seq=2, prev=ops[2].id, hlc=T0 + 5, kind=Kind.REACT, body=(ops[0].id, "👍")
            ),
            Reason.BAD_TARGET,
        ),  # a join is no message
        (
            lambda ops: craft(
                0,
                seq=3,
                prev=ops[1].id,
                hlc=T0 + 10 * 60_000,
                kind=Kind.MESSAGE,
                body=("from the future", None),
            ),
            Reason.CLOCK_SKEW,
        ),
        (lambda ops: msgpack.packb([1, ROOM]) + bytes(64), Reason.MALFORMED),
        (lambda ops: b"\x00" * 30, Reason.MALFORMED),
        (lambda ops: ops[2].data[:-70], Reason.MALFORMED),
        (lambda ops: signed_raw(0, ops, body=["x" * 13_000, None]), Reason.TOO_LARGE),
        (lambda ops: signed_raw(0, ops, seq=0), Reason.BAD_SEQ),
        (lambda ops: signed_raw(0, ops, kind=42), Reason.UNKNOWN_KIND),
    ],
)
def test_rejected_with_reason_and_replica_unchanged(
    busy_room: tuple[Replica, list[Op]], make: object, reason: Reason
) -> None:
    room, ops = busy_room
    before, size = room.render(), len(room)
    result = room.apply(make(ops), now_ms=T0 + 10)  # type: ignore[operator]
    assert (result.outcome, result.reason) == (Outcome.REJECTED, reason)
    assert_unchanged(room, before, size, result)
    assert room.held_count == 0


def signed_raw(author: int, ops: list[Op], **fields: object) -> bytes:
    values: dict[str, object] = {
        "version": 1,
        "room": ROOM,
        "author": identity(author).peer_id,
        "seq": 3,
        "prev": ops[1].id,
        "hlc": (T0 + 5) << 16,
        "kind": int(Kind.MESSAGE),
        "body": ["x", None],
    }
    values.update(fields)
    payload: bytes = msgpack.packb(list(values.values()))
    return payload + identity(author).sign(SIGNING_CONTEXT + payload)


def test_a_held_op_that_proves_invalid_is_dropped(alice: Replica, bob: Replica) -> None:
    m = post(alice, alice.new_message("mine", now_ms=T0))
    rogue = craft(1, seq=1, prev=None, hlc=T0 + 1, kind=Kind.EDIT, body=(m.id, "yours?"))
    follow = craft(
        1,
        seq=2,
        prev=Replica(ROOM).apply(rogue).id,
        hlc=T0 + 2,
        kind=Kind.MESSAGE,
        body=("after", None),
    )
    early, late = Replica(ROOM), Replica(ROOM)
    # early: the rogue edit arrives before its target and is held, as is what follows it
    assert early.apply(rogue).waiting_for == m.id
    assert early.apply(follow).outcome is Outcome.ADDED
    changes = early.apply(m.data).changes
    assert [type(c) for c in changes] == [MessageAdded, OpDropped, OpDropped]
    assert {c.reason for c in changes if isinstance(c, OpDropped)} == {
        Reason.NOT_AUTHOR,
        Reason.BAD_PREV,
    }
    # late: the target is there first, so the edit is refused at once
    late.apply(m.data)
    assert late.apply(rogue).reason is Reason.NOT_AUTHOR
    assert late.apply(follow).reason is Reason.BAD_PREV  # remembered: it can never apply
    assert early.render() == late.render()
    assert len(early) == len(late) == 1 and early.held_count == late.held_count == 0


# -- sync helpers ---------------------------------------------------------------------------


def test_version_vector_and_missing_for(alice: Replica, bob: Replica) -> None:
    a_ops = [post(alice, alice.new_message(f"a{i}", now_ms=T0 + i)) for i in range(4)]
    for op in a_ops:
        bob.apply(op.data)
    b_ops = [
        post(bob, bob.new_reaction(a_ops[0].id, "👍", now_ms=T0 + 10)),
        post(bob, bob.new_message("b", now_ms=T0 + 11)),
    ]
    a, b = alice.identity.peer_id, bob.identity.peer_id  # type: ignore[union-attr]
    assert bob.version_vector() == {a: 4, b: 2}
    assert bob.missing_for({a: 2, b: 0}) == [a_ops[2], a_ops[3], *b_ops]
    assert bob.missing_for(bob.version_vector()) == []
    assert bob.missing_for({a: -5, b: 10**9}) == a_ops  # hostile numbers do no harm
    assert bob.missing_for({a: 99}) == b_ops
    assert len(bob.missing_for({}, limit=3)) == 3
    # Whatever is missing, sent in this order, applies without anything being held.
    fresh = Replica(ROOM)
    for op in bob.missing_for({}):
        assert fresh.apply(op.data).waiting_for is None
    assert fresh.render() == bob.render()


def test_missing_for_puts_targets_before_what_aims_at_them(alice: Replica, bob: Replica) -> None:
    m = post(alice, alice.new_message("late target", now_ms=T0 + 50))
    room = Replica(ROOM)
    bob_first = post(bob, bob.new_message("early", now_ms=T0))
    room.apply(bob_first.data)
    room.apply(m.data)
    bob.apply(m.data)
    react = post(bob, bob.new_reaction(m.id, "👀", now_ms=T0 + 60))
    room.apply(react.data)
    order = room.missing_for({})
    assert order.index(m) < order.index(react)


def test_authoring_requires_an_identity() -> None:
    with pytest.raises(ValueError, match="no identity"):
        Replica(ROOM).new_message("hi", now_ms=T0)
    with pytest.raises(ValueError, match="32 bytes"):
        Replica(b"short")


def test_authoring_chains_and_stamps(alice: Replica) -> None:
    ops = [post(alice, alice.new_message("x", now_ms=T0)) for _ in range(3)]
    assert [op.seq for op in ops] == [1, 2, 3]
    assert [op.prev for op in ops] == [None, ops[0].id, ops[1].id]
    assert ops[0].hlc < ops[1].hlc < ops[2].hlc  # same wall ms: the counter moves
    with pytest.raises(ValueError, match="no such message"):
        alice.new_edit(bytes(32), "x", now_ms=T0)
