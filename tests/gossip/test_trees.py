"""One tree per author, grown by the receivers: exact grafts, prunes and announcements
of one `RoomGossip` core driven by hand."""

from __future__ import annotations

from crdt import Op
from node.gossip import Ack, IHave, Ingest, Mode, Ops, Prune, RoomGossip, Want, encode_message
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
    push,
    report_for,
    sent,
)


def test_each_author_has_its_own_tree() -> None:
    """Past an author's first op, we push its ops only to the peers that grafted it: a
    GRAFT or PRUNE naming an author moves that author's ops alone."""
    core, replica = make()
    connect(core, A)
    connect(core, B)
    x, y = authored(3, who=5), authored(2, who=6)
    for n, op in enumerate((x[0], y[0])):  # first ops: along the thin core (A asked)
        push(core, B, op, 1.0, batch=n)
        out = core.ingested(n, report_for(replica, (op.data,)), 1.1)
        assert sent(out) == [(A, Ops(n, Mode.PUSH, (op.data,))), (B, Ack(n))]
    core.receive(A, encode_message(graft(x[0].author)), 1.2)  # A keeps x on the tree
    push(core, B, x[1], 2.0, batch=2)
    push(core, B, y[1], 2.0, batch=3)
    out = core.ingested(2, report_for(replica, (x[1].data,)), 2.1)
    assert sent(out) == [(A, Ops(2, Mode.PUSH, (x[1].data,))), (B, Ack(2))]
    out = core.ingested(3, report_for(replica, (y[1].data,)), 2.1)
    assert sent(out) == [(B, Ack(3)), (A, IHave((y[1].id,)))]  # announced at once
    # A PRUNE naming x takes it off the tree again.
    core.receive(A, encode_message(Prune((x[0].author,))), 3.0)
    push(core, B, x[2], 3.0, batch=4)
    out = core.ingested(4, report_for(replica, (x[2].data,)), 3.1)
    assert sent(out) == [(B, Ack(4)), (A, IHave((x[2].id,)))]


def test_a_later_op_pushed_by_a_peer_we_never_asked_prunes_it() -> None:
    """A first op's extra copies are one-offs (their senders push that author no
    further); a later op pushed by a peer that is not its parent here prunes it."""
    core, replica = make()
    connect(core, A)
    connect(core, B)
    ops = authored(3)
    push(core, A, ops[0], 1.0)
    assert sent(push(core, B, ops[0], 1.01)) == [(B, Ack(0))]
    core.ingested(0, report_for(replica, (ops[0].data,)), 1.1)
    push(core, A, ops[1], 2.0, batch=1)
    assert sent(push(core, B, ops[1], 2.0, batch=1)) == [
        (B, Prune((ops[0].author,))),
        (B, Ack(1)),
    ]
    core.ingested(1, report_for(replica, (ops[1].data,)), 2.1)
    # Pruned and pushing still (its PRUNE crossed the push): told again.
    push(core, A, ops[2], 3.0, batch=2)
    late = push(core, B, ops[2], 3.0, batch=2)
    assert of_type(late, Prune) == [(B, Prune((ops[0].author,)))]
    assert core.parent(ops[0].author) == A


def test_a_push_beating_the_parents_moves_the_author_to_its_sender() -> None:
    core, replica = make(reroute_margin=0.01)
    connect(core, A)
    connect(core, B)
    ops = authored(2)
    push(core, A, ops[0], 1.0)
    core.ingested(0, report_for(replica, (ops[0].data,)), 1.1)
    # B pushes the next op (it had it before it learnt of our tree) 50 ms before A.
    assert sent(push(core, B, ops[1], 2.0)) == []
    actions = push(core, A, ops[1], 2.05, batch=1)
    assert sent(actions) == [
        (A, Prune((ops[0].author,))),
        (B, graft(ops[0].author)),
        (A, Ack(1)),
    ]
    assert core.parent(ops[0].author) == B


def test_an_announcement_beating_the_push_moves_the_author_to_the_faster_peer() -> None:
    """Plumtree §3.8, per author: B announced the op before A's push brought it, so B is
    on a faster path from its author: graft B for that author, prune A for it."""
    core, replica = make(eager_peers=1, reroute_margin=0.01)
    connect(core, A)
    connect(core, B)
    ops = authored(2)
    push(core, A, ops[0], 1.0)
    core.ingested(0, report_for(replica, (ops[0].data,)), 1.1)
    assert core.receive(B, encode_message(IHave((ops[1].id,))), 2.0) == []
    actions = push(core, A, ops[1], 2.05, batch=1)
    assert sent(actions) == [(A, Prune((ops[0].author,))), (B, graft(ops[0].author))]
    assert [type(a) for a in actions][-1] is Ingest
    # Within the margin it is a tie, and the parent stays.
    core, replica = make(reroute_margin=0.01)
    connect(core, A)
    connect(core, B)
    push(core, A, ops[0], 1.0)
    core.ingested(0, report_for(replica, (ops[0].data,)), 1.1)
    core.receive(B, encode_message(IHave((ops[1].id,))), 2.0)
    assert of_type(push(core, A, ops[1], 2.005, batch=1), Prune) == []
    assert core.parent(ops[0].author) == A


def test_a_peer_that_announced_an_op_gets_neither_it_nor_an_announcement_back() -> None:
    core, replica = make()
    for peer in (A, B, C):
        connect(core, peer)
    op = authored(1)[0]
    core.receive(B, encode_message(IHave((op.id,))), 1.0)  # B holds it
    push(core, A, op, 1.01)
    out = core.ingested(0, report_for(replica, (op.data,)), 1.02)
    # A new author: pushed along the thin core to C (which asked for first ops), and to
    # B neither pushed nor announced.
    assert sent(out) == [(C, Ops(0, Mode.PUSH, (op.data,))), (A, Ack(0))]


def test_a_parent_that_goes_hands_its_authors_to_the_runner_up() -> None:
    """A peer that announced an op while we were still ingesting it is upstream of us
    for its author, the runner-up: when the parent's link closes, the author is grafted
    on it at once, not pulled per op. A peer announcing it after we forwarded it may have
    it from us (a descendant), and is not taken: grafting on it could close a cycle."""
    core, replica = make()
    for peer in (A, B, C):
        connect(core, peer)
    op = authored(1)[0]
    push(core, A, op, 1.0)
    core.receive(C, encode_message(IHave((op.id,))), 1.005)  # C: the runner-up
    core.ingested(0, report_for(replica, (op.data,)), 1.01)
    core.receive(B, encode_message(IHave((op.id,))), 1.02)  # after our forward
    assert sent(core.peer_down(A, 2.0)) == [(C, graft(op.author))]
    assert core.parent(op.author) == C


def test_the_first_announcer_of_an_op_we_lacked_is_the_runner_up() -> None:
    core, replica = make()
    for peer in (A, B, C):
        connect(core, peer)
    op = authored(1)[0]
    core.receive(C, encode_message(IHave((op.id,))), 1.0)
    push(core, A, op, 1.005)  # within the margin: A stays the parent
    core.ingested(0, report_for(replica, (op.data,)), 1.01)
    assert core.parent(op.author) == A
    assert sent(core.peer_down(A, 2.0)) == [(C, graft(op.author))]


def test_with_no_runner_up_a_parent_that_goes_hands_its_authors_to_a_feeder() -> None:
    core, replica = make()
    for peer in (A, B, C):
        connect(core, peer)
    op = authored(1)[0]
    deliver(core, replica, A, op, 1.0)
    core.receive(C, encode_message(IHave((op.id,))), 1.02)  # after our forward
    # B and C feed us first ops; B was asked first.
    assert sent(core.peer_down(A, 2.0)) == [(B, graft(op.author))]


def test_a_feeder_that_may_be_a_descendant_is_passed_over() -> None:
    """B announced the op only after we forwarded it: it may have it from us. With no
    runner-up, the author goes to another feeder, C."""
    core, replica = make()
    for peer in (A, B, C):
        connect(core, peer)
    op = authored(1)[0]
    deliver(core, replica, A, op, 1.0)
    core.receive(B, encode_message(IHave((op.id,))), 1.05)
    assert sent(core.peer_down(A, 2.0)) == [(C, graft(op.author))]


def test_crossed_grafts_the_lower_id_gives_way() -> None:
    """Our parent for an author grafts that author on us: our grafts crossed, and would
    close a cycle. The peer with the lower id gives way if it can: it takes the other as
    a child and moves the author to another peer. The other keeps its parent."""
    op = authored(2)
    lower, replica = make(peer_id=bytes(32))  # below A's id
    connect(lower, A)
    connect(lower, B)
    deliver(lower, replica, A, op[0], 1.0)
    assert lower.parent(op[0].author) == A
    actions = lower.receive(A, encode_message(graft(op[0].author)), 2.0)
    assert of_type(actions, Want) == [(B, graft(op[0].author))]
    assert lower.parent(op[0].author) == B
    higher, replica = make(peer_id=b"\xff" * 32)
    connect(higher, A)
    connect(higher, B)
    deliver(higher, replica, A, op[0], 1.0)
    assert sent(higher.receive(A, encode_message(graft(op[0].author)), 2.0)) == []
    assert higher.parent(op[0].author) == A


def test_crossed_grafts_with_nobody_else_to_graft_on_are_kept() -> None:
    op = authored(1)[0]
    lower, replica = make(peer_id=bytes(32))
    connect(lower, A)
    deliver(lower, replica, A, op, 1.0)
    assert sent(lower.receive(A, encode_message(graft(op.author)), 2.0)) == []
    assert lower.parent(op.author) == A  # a cycle, until one of us pulls an op


def test_a_node_cut_off_grafts_its_authors_on_the_first_link_back() -> None:
    core, replica = make()
    connect(core, A)
    op = authored(1)[0]
    deliver(core, replica, A, op, 1.0)
    assert core.peer_down(A, 2.0) == []  # nobody left to graft it on
    assert core.parent(op.author) is None
    assert sent(core.peer_up(B, 3.0))[2:] == [(B, Want(True, ())), (B, graft(op.author))]
    assert core.parent(op.author) == B


def test_a_parent_whose_link_comes_back_gets_its_authors_back() -> None:
    """A's link closes and its author goes to a stand-in (the feeder B); when A's link
    comes back (a restart, a blip), the author goes back to A, which its copies had
    won the race for, and the stand-in is pruned."""
    core, replica = make()
    for peer in (A, B):
        connect(core, peer)
    op = authored(1)[0]
    deliver(core, replica, A, op, 1.0)
    assert sent(core.peer_down(A, 2.0)) == [(B, graft(op.author))]
    back = sent(core.peer_up(A, 3.0))
    assert [m for m in back if isinstance(m[1], (Want, Prune))] == [
        (A, Want(True, ())),  # it feeds us first ops again, too (we are short of feeders)
        (B, Prune((op.author,))),
        (A, graft(op.author)),
    ]
    assert core.parent(op.author) == A


def test_a_parent_that_a_race_replaced_is_not_taken_back() -> None:
    """Once a race has picked another parent (C's announcement beat the stand-in's
    push), the old parent coming back changes nothing."""
    core, replica = make()
    for peer in (A, B, C):
        connect(core, peer)
    ops = authored(2)
    deliver(core, replica, A, ops[0], 1.0)
    core.peer_down(A, 2.0)
    assert core.parent(ops[0].author) == B
    core.receive(C, encode_message(IHave((ops[1].id,))), 3.0)
    push(core, B, ops[1], 3.05, batch=1)  # C's announcement beat B's push: C's now
    assert core.parent(ops[0].author) == C
    back = sent(core.peer_up(A, 4.0))
    assert [m for m in back if isinstance(m[1], Prune) or m[1] == graft(ops[0].author)] == []
    assert core.parent(ops[0].author) == C


def test_a_stand_in_that_goes_too_keeps_the_first_parent_remembered() -> None:
    """The author's parent A goes, then its stand-in B: when A comes back, the author
    goes back to A (B was only ever a stand-in), not to whichever link came back first."""
    core, replica = make()
    for peer in (A, B, C):
        connect(core, peer)
    op = authored(1)[0]
    deliver(core, replica, A, op, 1.0)
    core.peer_down(A, 2.0)
    core.peer_down(B, 2.1)
    assert core.parent(op.author) == C
    connect(core, B)
    assert core.parent(op.author) == C
    core.peer_up(A, 3.0)
    assert core.parent(op.author) == A


def test_with_no_feeder_to_take_it_an_author_goes_to_any_other_peer() -> None:
    """A's author has no runner-up, and the feeder that takes A's place (C) is a child
    for it: it is grafted on B, a peer that does not feed us first ops, rather than left
    to pulls."""
    core, replica = make(eager_peers=1)  # A feeds us; then C, linked before B
    connect(core, A)
    connect(core, C)
    connect(core, B, feeds=False)
    op = authored(1)[0]
    deliver(core, replica, A, op, 1.0)
    core.receive(C, encode_message(graft(op.author)), 1.1)
    assert sent(core.peer_down(A, 2.0)) == [(C, Want(True, ())), (B, graft(op.author))]
    assert core.parent(op.author) == B


def every_peer_left_a_child(peer_id: bytes) -> tuple[RoomGossip, Op]:
    """A core whose parent for an author is A, and whose other peers, B and C, are both
    its children for that author."""
    core, replica = make(peer_id=peer_id)
    for peer in (A, B, C):
        connect(core, peer)
    op = authored(1)[0]
    deliver(core, replica, A, op, 1.0)
    for child in (B, C):
        core.receive(child, encode_message(graft(op.author)), 1.1)
    return core, op


def test_with_every_peer_left_a_child_an_author_goes_to_one_that_gives_way() -> None:
    """A's author has no runner-up, and B and C are both children for it: rather than
    leave our whole subtree to pull its ops, we graft it on B, whose id is lower than
    ours: B gives way (crossed grafts) and grafts it elsewhere."""
    core, op = every_peer_left_a_child(peer_id=b"\xff" * 32)
    assert sent(core.peer_down(A, 2.0)) == [(B, graft(op.author))]
    assert core.parent(op.author) == B


def test_with_every_peer_left_a_child_of_higher_id_the_author_waits_for_pulls() -> None:
    # B and C have higher ids than ours: they would not give way.
    core, op = every_peer_left_a_child(peer_id=b"\x01" * 32)
    assert sent(core.peer_down(A, 2.0)) == []
    assert core.parent(op.author) is None


def test_an_op_we_had_to_pull_moves_its_author_to_the_announcer() -> None:
    """The parent's push did not come in time (a slower path, a stall, or a cycle cut off
    from the author): the announcer, which held the op before us, becomes the parent."""
    core, replica = make(graft_timeout=0.05)
    connect(core, A)
    connect(core, B)
    ops = authored(2)
    deliver(core, replica, A, ops[0], 1.0)
    core.receive(B, encode_message(IHave((ops[1].id,))), 2.0)
    assert sent(core.handle_timer(2.1)) == [(B, Want(False, (ops[1].id,)))]
    actions = core.receive(B, encode_message(Ops(0, Mode.PULLED, (ops[1].data,))), 2.15)
    assert sent(actions)[:2] == [(A, Prune((ops[1].author,))), (B, graft(ops[1].author))]
    assert core.parent(ops[1].author) == B


def test_a_child_is_never_made_the_parent() -> None:
    """C gets the author's ops from us (it grafted the author on us): grafting the author
    on C when the parent goes would close a cycle cut off from the author."""
    core, replica = make()
    connect(core, A)
    connect(core, C)
    op = authored(1)[0]
    deliver(core, replica, A, op, 1.0)
    core.receive(C, encode_message(graft(op.author)), 1.1)
    assert sent(core.peer_down(A, 2.0)) == []  # C feeds us first ops, but is a child here
    assert core.parent(op.author) is None


def test_an_op_is_announced_to_at_most_lazy_peers_peers() -> None:
    core, replica = make(lazy_peers=2, graft_window=0.0)
    d = bytes([0xD]) * 32
    for peer in (A, B, C, d):
        connect(core, peer, feeds=False)
    ops = authored(2)
    for n, op in enumerate(ops):
        push(core, A, op, 1.0 + n, batch=n)
        out = core.ingested(n, report_for(replica, (op.data,)), 1.01 + n)
        announced = [peer for peer, _ in of_type(out, IHave)]
        assert len(announced) == 2 and set(announced) <= {B, C, d}


def test_a_graft_brings_an_ihave_of_the_authors_op_forwarded_just_before() -> None:
    """B moves the author to us (it pruned its old parent) while the author's latest op
    was on its way to us: we forwarded that op before B's graft came, and its old parent
    will not push it either, so the graft is answered with an IHAVE of it."""
    core, replica = make(graft_window=0.0)
    connect(core, A)
    connect(core, B, feeds=False)
    ops = authored(2)
    for n, op in enumerate(ops):
        push(core, A, op, 1.0 + n, batch=n)
        core.ingested(n, report_for(replica, (op.data,)), 1.01 + n)
    actions = core.receive(B, encode_message(graft(ops[0].author)), 2.1)
    assert sent(actions) == [(B, IHave((ops[1].id,)))]
    # Long after, a graft brings nothing but the pushes to come.
    assert sent(core.receive(B, encode_message(graft(ops[0].author)), 9.0)) == []


def test_a_node_cut_off_never_grafts_its_own_ops_on_anyone() -> None:
    core, replica = make()
    connect(core, A)
    op = authored(1, who=0)[0]
    replica.admit(op)
    core.authored(op, 1.0)
    core.peer_down(A, 2.0)
    assert of_type(core.peer_up(B, 3.0), Want) == [(B, Want(True, ()))]


def test_an_op_whose_announcers_all_went_is_pulled_from_other_peers() -> None:
    core, _ = make(graft_timeout=0.1, retry_timeout=0.25)
    connect(core, A)
    connect(core, B)
    op = authored(1)[0]
    core.receive(A, encode_message(IHave((op.id,))), 1.0)
    core.peer_down(A, 1.05)
    deadline = core.next_timer()
    assert deadline is not None and deadline <= 1.15
    # B never announced it, but likely holds it by now: asked, a few times at most.
    pulls = []
    for _ in range(5):
        when = core.next_timer()
        assert when is not None
        pulls += of_type(core.handle_timer(when), Want)
    assert pulls == [(B, Want(False, (op.id,)))] * 3
