"""One `RoomGossip` core driven by hand: exact actions for each event."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crdt import IngestReport, Op, Outcome, Reason, Replica
from node.gossip import (
    MAX_MESSAGE_BYTES,
    Ack,
    Action,
    Fault,
    GossipConfig,
    GossipLocalError,
    Hello,
    IHave,
    Ingest,
    Mode,
    Ops,
    Pause,
    Penalise,
    Prune,
    RoomGossip,
    Send,
    Vector,
    Want,
    encode_message,
)
from node.gossip._stream import READ_AHEAD
from node.gossip._wire import MIN_MESSAGE_BYTES, ops_overhead
from tests.gossip._core import (
    A,
    B,
    C,
    authored,
    connect,
    deliver,
    graft,
    make,
    of_type,
    report_for,
    sent,
)
from tests.gossip.cluster import ROOM, T0_MS, identity


def test_link_up_sends_hello_then_vector_then_asks_for_first_ops() -> None:
    core, _ = make(sync_interval=60.0)
    messages = sent(core.peer_up(A, 10.0))
    assert messages == [
        (A, Hello(1, GossipConfig().window, MAX_MESSAGE_BYTES)),
        (A, Vector(False, False, ())),
        (A, Want(True, ())),  # one of the peers that push us authors' first ops
    ]
    timer = core.next_timer()
    assert timer is not None and 10.0 + 45.0 <= timer <= 10.0 + 75.0
    assert core.eager_peers == []  # we push first ops to a peer once it asks for them


def test_each_node_asks_eager_peers_of_its_peers_for_first_ops() -> None:
    """The thin eager core is chosen by the receivers: a node asks (a link-wide GRAFT)
    `eager_peers` peers to push it authors' first ops, and asks another when one goes."""
    core, _ = make(eager_peers=2)
    asked = [of_type(connect(core, peer, feeds=False), Want) for peer in (A, B, C)]
    assert asked == [[(A, Want(True, ()))], [(B, Want(True, ()))], []]
    assert of_type(core.peer_down(A, 1.0), Want) == [(C, Want(True, ()))]
    # We push first ops to the peers that asked us: here only C.
    core.receive(C, encode_message(Want(True, ())), 1.0)
    assert core.eager_peers == [C] and core.lazy_peers == [B]


def test_ops_are_ingested_first_and_forwarded_only_once_added() -> None:
    core, replica = make()
    connect(core, A)
    connect(core, B)
    op = authored(1)[0]
    actions = core.receive(A, encode_message(Ops(0, Mode.PUSH, (op.data,))), 1.0)
    # Nothing sent on before verification; the first copy's sender becomes the parent.
    assert actions == [Send(A, encode_message(graft(op.author))), Ingest(A, 0, (op.data,))]
    report = report_for(replica, (op.data,))
    actions = core.ingested(0, report, 1.1)
    assert sent(actions) == [(B, Ops(0, Mode.PUSH, (op.data,))), (A, Ack(0))]


def test_rejected_ops_are_not_forwarded() -> None:
    core, replica = make()
    connect(core, A)
    connect(core, B)
    op = authored(1)[0]
    core.receive(A, encode_message(Ops(3, Mode.PUSH, (op.data,))), 1.0)
    # The clock is a peer-independent refusal: no penalty, just an ack and nothing on.
    report = IngestReport([Outcome.REJECTED], {0: Reason.CLOCK_SKEW}, [], [])
    actions = core.ingested(0, report, 1.1)
    assert sent(actions) == [(A, Ack(3))]
    assert op.id not in replica


def test_bad_signature_penalises_the_sender() -> None:
    core, replica = make()
    connect(core, A)
    connect(core, B)
    op = authored(1)[0]
    forged = op.data[:-1] + bytes([op.data[-1] ^ 1])
    actions = core.receive(A, encode_message(Ops(0, Mode.PUSH, (forged,))), 1.0)
    assert [type(a) for a in actions] == [Send, Ingest]  # graft A, ingest
    actions = core.ingested(0, report_for(replica, (forged,)), 1.1)
    # A goes; the author it was parent of (it pushed the first copy) moves to B.
    assert actions == [
        Penalise(A, Fault.BAD_OP, "bad_signature"),
        Send(B, encode_message(graft(op.author))),
    ]
    assert core.peers == [B] and len(replica) == 0
    # Later messages from the closed peer are ignored; the genuine op still gets in.
    assert core.receive(A, encode_message(Ops(1, Mode.PUSH, (op.data,))), 1.2) == []
    assert core.receive(B, encode_message(Ops(0, Mode.PUSH, (op.data,))), 1.3) == [
        Ingest(B, 1, (op.data,))
    ]


@pytest.mark.parametrize(
    ("data", "fault"),
    [
        (b"\xc1garbage", Fault.GARBAGE),
        (b"\x93" + b"\x00" * (MAX_MESSAGE_BYTES + 10), Fault.OVERSIZED),
        (encode_message(Ops(0, Mode.PUSH, (b"\x00" * 100,))), Fault.BAD_OP),  # not an op
        (encode_message(Ack(5)), Fault.FLOW),  # an ack for nothing we sent
        (encode_message(Hello(1, 4, MAX_MESSAGE_BYTES)), Fault.PROTOCOL),  # a second HELLO
    ],
)
def test_bad_input_penalises_and_forgets_the_peer(data: bytes, fault: Fault) -> None:
    core, _ = make()
    connect(core, A)
    actions = core.receive(A, data, 1.0)
    assert len(actions) == 1 and isinstance(actions[0], Penalise)
    assert actions[0].fault is fault and actions[0].peer == A
    assert core.peers == []
    core.peer_down(A, 1.1)  # the driver's close arriving later is harmless


def test_messages_before_hello_are_a_protocol_fault() -> None:
    core, _ = make()
    core.peer_up(A, 0.0)
    actions = core.receive(A, encode_message(Vector(False, False, ())), 0.0)
    assert actions == [Penalise(A, Fault.PROTOCOL, "message before HELLO")]


def test_incompatible_version_is_a_protocol_fault() -> None:
    core, _ = make()
    core.peer_up(A, 0.0)
    actions = core.receive(A, encode_message(Hello(2, 4, MAX_MESSAGE_BYTES)), 0.0)
    assert [type(a) for a in actions] == [Penalise]


def test_a_peer_overrunning_our_window_is_penalised() -> None:
    core, _ = make(window=2)
    connect(core, A)
    ops = authored(3)
    for n in range(2):
        actions = core.receive(A, encode_message(Ops(n, Mode.SYNC, (ops[n].data,))), 1.0)
        assert [type(a) for a in actions][-1] is Ingest
    actions = core.receive(A, encode_message(Ops(2, Mode.SYNC, (ops[2].data,))), 1.0)
    assert actions == [Penalise(A, Fault.FLOW, "more than 2 batches")]


def test_we_never_exceed_the_window_the_peer_grants() -> None:
    core, replica = make()
    connect(core, A, window=2)
    ops = authored(6, who=0)
    out: list[Action] = []
    for op in ops:
        replica.admit(op)
        out += core.authored(op, 1.0)
    batches = [m for _, m in of_type(out, Ops)]
    assert [m.batch for m in batches] == [0, 1]
    assert core.outstanding(A) == 2
    # One ack, one more batch, holding everything queued meanwhile.
    more = of_type(core.receive(A, encode_message(Ack(0)), 1.1), Ops)
    assert len(more) == 1 and more[0][1] == Ops(2, Mode.PUSH, tuple(op.data for op in ops[2:]))
    assert core.outstanding(A) == 2


def test_duplicates_are_dropped_and_a_first_ops_copies_prune_nothing() -> None:
    core, replica = make()
    connect(core, A)
    connect(core, B)
    op = authored(1)[0]
    push = encode_message(Ops(0, Mode.PUSH, (op.data,)))
    assert sent(core.receive(A, push, 1.0)) == [(A, graft(op.author))]
    # The same op from B while A's copy is still being verified: not ingested twice, and
    # no PRUNE: B pushed an author new to it, and pushes its later ops only if asked.
    actions = core.receive(B, push, 1.0)
    assert sent(actions) == [(B, Ack(0))]
    assert core.parent(op.author) == A
    core.ingested(0, report_for(replica, (op.data,)), 1.1)
    # And once stored, a copy in a catch-up batch is dropped without pruning.
    actions = core.receive(A, encode_message(Ops(1, Mode.SYNC, (op.data,))), 1.2)
    assert sent(actions) == [(A, Ack(1))]
    assert core.stats.duplicates == 2


def test_prune_turns_pushes_into_announcements() -> None:
    core, replica = make(ihave_interval=0.1)
    connect(core, A)
    core.receive(A, encode_message(Prune()), 1.0)
    op = authored(1, who=0)[0]
    replica.admit(op)
    assert core.authored(op, 2.0) == []
    assert core.next_timer() == pytest.approx(2.1)
    assert sent(core.handle_timer(2.1)) == [(A, IHave((op.id,)))]


def test_an_announced_op_is_pulled_after_the_timeout_and_its_author_grafted() -> None:
    core, replica = make(eager_peers=0, graft_timeout=0.5)
    connect(core, A)
    connect(core, B)
    op = authored(1)[0]
    assert core.receive(A, encode_message(IHave((op.id,))), 1.0) == []
    assert core.receive(B, encode_message(IHave((op.id,))), 1.05) == []
    deadline = core.next_timer()
    assert deadline is not None and 1.5 <= deadline <= 1.75
    assert core.handle_timer(deadline - 0.01) == []
    assert sent(core.handle_timer(deadline)) == [(A, Want(False, (op.id,)))]
    # No answer in time: the next announcer is asked.
    retry = core.next_timer()
    assert retry is not None and retry == pytest.approx(deadline + 0.25)
    assert sent(core.handle_timer(retry)) == [(B, Want(False, (op.id,)))]
    # B answers first: its IHAVE beat every push, so it becomes the author's parent.
    actions = core.receive(B, encode_message(Ops(0, Mode.PULLED, (op.data,))), retry + 0.1)
    assert sent(actions) == [(B, graft(op.author))]
    assert core.parent(op.author) == B
    core.ingested(0, report_for(replica, (op.data,)), retry + 0.2)
    assert all(not isinstance(m, Want) for _, m in sent(core.handle_timer(retry + 1.0)))


def test_an_announced_op_that_arrives_is_not_pulled() -> None:
    core, replica = make(eager_peers=1)
    connect(core, A)
    connect(core, B)
    op = authored(1)[0]
    core.receive(B, encode_message(IHave((op.id,))), 1.0)
    core.receive(A, encode_message(Ops(0, Mode.PUSH, (op.data,))), 1.1)
    core.ingested(0, report_for(replica, (op.data,)), 1.2)
    assert all(not isinstance(m, Want) for _, m in sent(core.handle_timer(10.0)))


def test_want_is_answered_with_the_ops_we_hold() -> None:
    core, replica = make(eager_peers=0)
    connect(core, A)
    ops = authored(2, who=0)
    replica.admit(ops[0])
    actions = core.receive(A, encode_message(Want(True, (ops[0].id, ops[1].id))), 1.0)
    assert sent(actions) == [(A, Ops(0, Mode.PULLED, (ops[0].data,)))]
    assert core.eager_peers == [A]  # grafted


def test_link_up_streams_what_the_peer_lacks_in_bounded_batches() -> None:
    core, replica = make(batch_ops=10, catch_up_ids=20)  # 22 ops are more than a short list
    for op in authored(25, who=0):
        replica.admit(op)
    core.peer_up(A, 0.0)
    core.receive(A, encode_message(Hello(1, 2, MAX_MESSAGE_BYTES)), 0.0)
    vector = Vector(False, False, ((identity(0).peer_id, 3),))
    actions = core.receive(A, encode_message(vector), 0.0)
    batches = [m for _, m in of_type(actions, Ops)]
    assert [len(m.ops) for m in batches] == [10, 10]
    assert all(m.mode is Mode.SYNC for m in batches)
    rest = of_type(core.receive(A, encode_message(Ack(0)), 0.1), Ops)
    assert [len(m.ops) for _, m in rest] == [2]
    assert of_type(core.receive(A, encode_message(Ack(1)), 0.1), Ops) == []


def test_link_up_announces_a_short_list_and_the_peer_pulls_it_once() -> None:
    """A member back from a short absence links to all its peers at once: each announces
    what it lacks (no stream of the same ops from each), and it pulls each op once, from
    the first to announce it, after the pull timeout."""
    server, replica = make(catch_up_ids=3)
    ops = authored(3, who=0)
    for op in ops:
        replica.admit(op)
    server.peer_up(A, 0.0)
    server.receive(A, encode_message(Hello(1, 4, MAX_MESSAGE_BYTES)), 0.0)
    actions = server.receive(A, encode_message(Vector(False, False, ())), 0.0)
    ids = tuple(op.id for op in ops)
    assert of_type(actions, IHave) == [(A, IHave(ids))] and of_type(actions, Ops) == []
    back, _ = make(graft_timeout=0.1)
    connect(back, B)
    connect(back, C)
    assert back.receive(B, encode_message(IHave(ids)), 1.0) == []
    assert back.receive(C, encode_message(IHave(ids)), 1.01) == []
    when = back.next_timer()
    assert when is not None and 1.1 <= when <= 1.15
    # Every pull is due by 1.15 (the timeout x 1..1.5), each from B alone.
    wants = of_type(back.handle_timer(1.15), Want)
    assert [peer for peer, _ in wants] == [B]
    assert sorted(wants[0][1].ids) == sorted(ids)
    assert sent(back.handle_timer(1.2)) == []


def test_a_vector_ahead_of_ours_grafts_its_authors_and_its_list_is_pulled_at_once() -> None:
    """The peer's vector shows an author's ops we lack: the author (no parent here) is
    grafted on it before they come, so its next ops are pushed, and the catch-up list
    that answers our vector is pulled without waiting for pushes that will not come."""
    core, _ = make()
    ops = authored(2, who=0)
    author = identity(0).peer_id
    core.peer_up(A, 0.0)
    core.receive(A, encode_message(Hello(1, 4, MAX_MESSAGE_BYTES)), 0.0)
    actions = core.receive(A, encode_message(Vector(False, False, ((author, 2),))), 0.0)
    assert of_type(actions, Want) == [(A, graft(author))]
    assert core.parent(author) == A
    ids = tuple(op.id for op in ops)
    assert sent(core.receive(A, encode_message(IHave(ids)), 0.05)) == [(A, Want(False, ids))]


def test_a_pull_is_answered_in_chain_order() -> None:
    """A catch-up list pulled in any order is sent in chain order, so what we believe the
    peer holds (and our own ops' acks read) grows with it."""
    core, replica = make()
    ops = authored(3, who=0)
    for op in ops:
        replica.admit(op)
    connect(core, A)
    want = Want(False, tuple(op.id for op in reversed(ops)))
    batches = of_type(core.receive(A, encode_message(want), 1.0), Ops)
    assert [m.ops for _, m in batches] == [tuple(op.data for op in ops)]
    assert core.peer_seq(identity(0).peer_id) == 3


def test_later_vector_swaps_announce_small_gaps_instead_of_sending() -> None:
    core, replica = make()
    connect(core, A)
    op = authored(1, who=0)[0]
    replica.admit(op)
    actions = core.receive(A, encode_message(Vector(True, False, ())), 5.0)
    assert sent(actions) == [
        (A, Vector(False, False, ((identity(0).peer_id, 1),))),
        (A, IHave((op.id,))),
    ]


def test_periodic_swap_asks_for_a_reply() -> None:
    core, _ = make(sync_interval=10.0)
    connect(core, A)
    when = core.next_timer()
    assert when is not None
    assert sent(core.handle_timer(when)) == [(A, Vector(True, False, ()))]
    later = core.next_timer()
    assert later is not None and when + 7.5 <= later <= when + 12.5


def test_later_vectors_on_a_link_carry_only_what_changed() -> None:
    core, replica = make(sync_interval=10.0)
    first, second = identity(0).peer_id, identity(1).peer_id
    replica.admit(authored(1, who=0)[0])
    replica.admit(authored(1, who=1)[0])
    assert (A, Vector(False, False, ((first, 1), (second, 1)))) in sent(core.peer_up(A, 0.0))
    core.receive(A, encode_message(Hello(1, 4, MAX_MESSAGE_BYTES)), 0.0)
    when = core.next_timer()
    assert when is not None
    assert sent(core.handle_timer(when)) == [(A, Vector(True, False, ()))]  # nothing new
    replica.admit(authored(2, who=1)[1])
    swap = sent(core.receive(A, encode_message(Vector(True, False, ())), when))
    assert swap[0] == (A, Vector(False, False, ((second, 2),)))
    # A new link to the same peer starts from the whole vector again.
    core.peer_down(A, when)
    assert (A, Vector(False, False, ((first, 1), (second, 2)))) in sent(core.peer_up(A, when))


def test_long_vectors_are_chunked_and_reassembled() -> None:
    core, replica = make()
    authors = [Replica(ROOM, identity=identity(100 + n)) for n in range(1030)]
    ops = [r.new_join(now_ms=T0_MS) for r in authors]
    for op in ops:
        replica.admit(op)
    chunks = [m for _, m in of_type(core.peer_up(A, 0.0), Vector)]
    assert [(len(m.entries), m.more) for m in chunks] == [(1024, True), (6, False)]


def test_misuse_is_a_local_error() -> None:
    core, _ = make()
    core.peer_up(A, 0.0)
    with pytest.raises(GossipLocalError):
        core.peer_up(A, 0.0)
    with pytest.raises(GossipLocalError):
        core.ingested(42, IngestReport([], {}, [], []), 0.0)
    with pytest.raises(GossipLocalError):
        core.authored(authored(1)[0], 0.0)  # not in the source yet
    with pytest.raises(GossipLocalError):
        GossipConfig(window=0)
    with pytest.raises(GossipLocalError):
        GossipConfig(reroute_margin=-0.1)


def test_an_ingest_finishing_after_the_link_reopened_acks_nothing() -> None:
    core, replica = make()
    connect(core, A)
    op = authored(1)[0]
    core.receive(A, encode_message(Ops(9, Mode.PUSH, (op.data,))), 1.0)
    core.peer_down(A, 1.1)
    connect(core, A)  # a new link: batch 9 means nothing on it
    actions = core.ingested(0, report_for(replica, (op.data,)), 1.2)
    assert of_type(actions, Ack) == []
    assert op.id in replica


def test_a_slow_peer_falls_back_from_queued_pushes_to_catch_up() -> None:
    core, replica = make(window=1, push_queue=3)
    connect(core, A, window=1)
    ops = authored(8, who=0)
    out: list[Action] = []
    for op in ops:
        replica.admit(op)
        out += core.authored(op, 1.0)
    assert [len(m.ops) for _, m in of_type(out, Ops)] == [1]
    # The queue overflowed and was dropped; the rest comes as catch-up, in order.
    rest = of_type(core.receive(A, encode_message(Ack(0)), 1.1), Ops)
    assert [(m.mode, len(m.ops)) for _, m in rest] == [(Mode.SYNC, 7)]
    assert rest[0][1].ops == tuple(op.data for op in ops[1:])


def test_a_second_catch_up_stream_of_the_same_ops_is_paused() -> None:
    core, _ = make()
    connect(core, A)
    connect(core, B)
    ops = authored(4)
    batch = encode_message(Ops(0, Mode.SYNC, tuple(op.data for op in ops[:2])))
    # The author is new to us: the peer whose catch-up brought it becomes its parent, as
    # nobody would push us its next ops otherwise.
    actions = core.receive(A, batch, 1.0)
    assert actions == [
        Send(A, encode_message(graft(ops[0].author))),
        Ingest(A, 0, tuple(op.data for op in ops[:2])),
    ]
    assert core.parent(ops[0].author) == A
    # B's stream brings the same ops: B is paused, A goes on.
    assert sent(core.receive(B, batch, 1.0)) == [(B, Pause()), (B, Ack(0))]
    # Pausing is said once; our next vector resumes B's catch-up.
    assert sent(core.receive(B, encode_message(Ops(1, Mode.SYNC, (ops[0].data,))), 1.0)) == [
        (B, Ack(1))
    ]


def test_pause_stops_our_catch_up_until_the_next_vector() -> None:
    core, replica = make(batch_ops=2, catch_up_ids=0)
    for op in authored(10, who=0):
        replica.admit(op)
    core.peer_up(A, 0.0)
    core.receive(A, encode_message(Hello(1, 1, MAX_MESSAGE_BYTES)), 0.0)
    first = core.receive(A, encode_message(Vector(False, False, ())), 0.0)
    assert len(of_type(first, Ops)) == 1
    assert core.receive(A, encode_message(Pause()), 0.1) == []
    assert of_type(core.receive(A, encode_message(Ack(0)), 0.2), Ops) == []
    # A vector from it later resumes the stream (8 ops, though a short list).
    resumed = core.receive(A, encode_message(Vector(True, False, ())), 5.0)
    assert [len(m.ops) for _, m in of_type(resumed, Ops)] == [2]


def test_catch_up_batches_fill_the_budget_reading_about_what_fits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A catch-up batch holds as many ops as the peer's message limit allows; after the
    first, the source is asked for about as many as fit (at the last batch's mean size),
    not `batch_ops`: an op read beyond the budget is read again for the next batch."""
    core, replica = make(catch_up_ids=0)
    author = Replica(ROOM, identity=identity(3))
    for n in range(100):
        op = author.new_message("x" * 300, now_ms=T0_MS + n)
        author.admit(op)
        replica.admit(op)
    asked: list[int | None] = []  # the limits of the reads, in order (either kind)
    missing_for = replica.missing_for

    def recording(vector: Mapping[bytes, int], limit: int | None = None) -> list[Op]:
        asked.append(limit)
        return missing_for(vector, limit)

    def recording_wire(
        vector: Mapping[bytes, int], limit: int | None = None
    ) -> list[tuple[bytes, int, bytes]]:
        asked.append(limit)
        return [(op.author, op.seq, op.data) for op in missing_for(vector, limit)]

    monkeypatch.setattr(replica, "missing_for", recording)
    monkeypatch.setattr(replica, "missing_wire", recording_wire)
    core.peer_up(A, 0.0)
    core.receive(A, encode_message(Hello(1, 16, MIN_MESSAGE_BYTES)), 0.0)
    actions = core.receive(A, encode_message(Vector(False, False, ())), 0.0)
    batches = [m.ops for _, m in of_type(actions, Ops)]
    # Greedy by bytes: each batch as full as the budget allows, every op once, in order.
    budget = MIN_MESSAGE_BYTES - ops_overhead(0)
    expected: list[list[bytes]] = [[]]
    for op in replica.ops():
        if expected[-1] and sum(len(d) + 5 for d in expected[-1]) + len(op.data) + 5 > budget:
            expected.append([])
        expected[-1].append(op.data)
    assert [list(b) for b in batches] == expected and len(expected) == 3
    first = -(-sum(len(d) + 5 for d in batches[0]) // len(batches[0]))  # its mean, rounded up
    # (The first read asks whether the list is short: catch_up_ids + 1 ops.)
    assert asked[:3] == [1, GossipConfig().batch_ops, budget // first + READ_AHEAD]
    assert all(
        limit is not None and limit < len(batches[0]) + 2 * READ_AHEAD for limit in asked[2:]
    )


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=120), min_size=1, max_size=4))
def test_no_bytes_from_a_peer_make_the_core_raise(frames: list[bytes]) -> None:
    core, _ = make()
    connect(core, A)
    connect(core, B)
    for frame in frames:
        was_up = A in core.peers
        actions = core.receive(A, frame, 1.0)
        penalties = [a for a in actions if isinstance(a, Penalise)]
        if not was_up:
            assert actions == []  # a forgotten peer is ignored
        else:
            # Whatever came in, the peer is still up, or penalised once and forgotten.
            assert len(penalties) <= 1
            assert (A in core.peers) is (not penalties)
    assert B in core.peers  # one peer's garbage never costs another's link


def test_behind_counts_what_peers_vectors_show_we_lack() -> None:
    """The sync lag: ops a linked peer's version vector shows that we lack."""
    import random as _random

    from crdt import Identity, Replica
    from node.gossip._wire import Hello, Vector, encode_message

    room = bytes(32)
    ours, theirs = Replica(room), Replica(room, identity=Identity.from_seed(b"\x07" * 32))
    for i in range(5):
        theirs.admit(theirs.new_message(f"m{i}", now_ms=1_000 + i))
    core = RoomGossip(ours, rng=_random.Random(1))
    peer = b"\x09" * 32
    assert core.behind() == 0
    core.peer_up(peer, 0.0)
    core.receive(peer, encode_message(Hello(1, 4, 60 * 1024)), 0.0)
    vector = tuple(theirs.version_vector().items())
    core.receive(peer, encode_message(Vector(False, False, vector)), 0.0)
    assert core.behind() == 5
    for op in theirs.missing_for({})[:2]:
        ours.apply(op.data)
    assert core.behind() == 3
    core.peer_down(peer, 1.0)
    assert core.behind() == 0


def test_may_author_only_once_our_own_chain_is_known() -> None:
    core, replica = make()
    me = identity(5).peer_id
    # Holding none of our ops: not before a peer has told us its whole vector.
    assert not core.may_author(me, new_chain=False, settled=True)
    assert core.may_author(me, new_chain=True, settled=False)  # a room we just created
    core.peer_up(A, 0.0)
    core.receive(A, encode_message(Hello(1, 4, MAX_MESSAGE_BYTES)), 0.0)
    assert not core.may_author(me, new_chain=False, settled=True)  # no vector yet
    # A holds two ops of ours that we lost: wait for them, even in a room we "created".
    core.receive(A, encode_message(Vector(False, False, ((me, 2),))), 0.0)
    assert not core.may_author(me, new_chain=True, settled=True)
    for op in authored(1):
        replica.admit(op)
    assert not core.may_author(me, new_chain=False, settled=True)
    replica.admit(authored(2)[1])
    assert core.may_author(me, new_chain=False, settled=False)  # caught up with A


def test_may_author_with_a_chain_of_ours_waits_until_settled() -> None:
    core, replica = make()
    me = identity(5).peer_id
    replica.admit(authored(1)[0])
    assert not core.may_author(me, new_chain=False, settled=False)
    assert core.may_author(me, new_chain=False, settled=True)
    connect(core, A)  # an empty vector: A holds nothing of ours
    assert core.may_author(me, new_chain=False, settled=False)


def test_peers_state_holds_each_author_key_once_not_a_copy_per_link() -> None:
    """Keys decoded from a peer's vector, GRAFT or PRUNE are new bytes objects; what the
    core keeps per peer (`have`, the authors it grafted or pruned) holds the key of the
    ops we forwarded instead, so a room of N members costs each node N keys, not N per
    link. Keys of authors we hold no op of are kept as they came."""
    core, replica = make()
    op = authored(1, who=0)[0]
    connect(core, A)
    deliver(core, replica, A, op, 1.0)
    stranger = identity(1).peer_id
    core.peer_up(B, 2.0)
    core.receive(B, encode_message(Hello(1, 4, MAX_MESSAGE_BYTES)), 2.0)
    vector = Vector(False, False, ((op.author, 1), (stranger, 1)))
    core.receive(B, encode_message(vector), 2.0)
    core.receive(B, encode_message(graft(op.author)), 2.1)
    core.peer_up(C, 3.0)
    core.receive(C, encode_message(Hello(1, 4, MAX_MESSAGE_BYTES)), 3.0)
    core.receive(C, encode_message(Prune((op.author,))), 3.0)
    peers = core._peers  # the memory layout is what this test is about
    have = {key: key for key in peers[B].have}
    assert have[op.author] is op.author and stranger in have
    assert next(iter(peers[B].eager_for)) is op.author
    assert next(iter(peers[C].lazy_for)) is op.author
    assert core.peer_seq(op.author) == 1 and peers[B].have == {op.author: 1, stranger: 1}
