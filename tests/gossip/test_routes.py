"""Distance-vector repair of the per-author trees (`_routes.py`): exact pings, distances,
grafts and prunes of one `RoomGossip` core driven by hand."""

from __future__ import annotations

import pytest

from crdt import Op, Replica
from node.gossip import Prune, RoomGossip, Want, _routes, encode_message
from node.gossip._wire import TAG_BYTES, Dist, Ping, Pong
from tests.gossip._core import A, B, C, authored, connect, deliver, make, of_type, sent


def linked() -> tuple[RoomGossip, Replica, Op]:
    """A core linked to A (20 ms away) and B (10 ms), with A the parent of an author
    whose first op it pushed, and 50 ms from that author: our distance is 72 ms (the
    link, and 2 ms for the hop)."""
    core, replica = make(distances=True)
    assert of_type(connect(core, A), Ping) == [(A, Ping(1))]  # measured as the link opens
    assert of_type(connect(core, B), Ping) == [(B, Ping(2))]
    assert core.receive(B, encode_message(Pong(2)), 0.02) == []
    assert core.receive(A, encode_message(Pong(1)), 0.04) == []
    op = authored(2)[0]
    deliver(core, replica, A, op, 1.0)
    assert core.parent(op.author) == A
    core.receive(A, encode_message(Dist(op.author[:TAG_BYTES], (50,))), 1.02)
    return core, replica, op


def test_a_ping_is_echoed() -> None:
    core, _ = make(distances=True)
    connect(core, A)
    assert sent(core.receive(A, encode_message(Ping(7)), 1.0)) == [(A, Pong(7))]


def test_our_distance_goes_to_the_peers_it_may_help() -> None:
    """Ours is the parent's plus the link's: told to B, not to A (our parent, closer)."""
    core, _, op = linked()
    tag = op.author[:TAG_BYTES]
    assert sent(core.handle_timer(1.04)) == [(B, Dist(tag, (72,)))]


def test_a_shorter_path_moves_the_author_before_its_next_op() -> None:
    """B offers 40 ms over a 10 ms link: 52 ms against our 72, by more than the 10 ms
    margin. B becomes the parent (graft), A is pruned; our shorter distance is told to
    nobody: both peers are closer to the author than we are."""
    core, _, op = linked()
    core.handle_timer(1.04)
    tag = op.author[:TAG_BYTES]
    out = core.receive(B, encode_message(Dist(tag, (40,))), 1.1)
    assert sent(out) == [(A, Prune((op.author,))), (B, Want(False, (), (op.author,)))]
    assert core.parent(op.author) == B
    assert sent(core.handle_timer(1.1)) == []
    assert sent(core.handle_timer(1.2)) == []
    # Not by the margin: a path 9 ms shorter (21 + 22 ms) leaves the parent alone.
    assert sent(core.receive(A, encode_message(Dist(tag, (21,))), 1.3)) == []
    assert core.parent(op.author) == B


def test_after_our_distance_grew_only_a_feasible_peer_is_taken_until_the_hold_ends() -> None:
    """B, our parent, grows to 100 ms (a relay upstream left): ours is 112. A offers 60 ms
    (82 with its link), shorter by more than the margin, but not below the least we had
    (52 ms): A may have taken its distance from ours, and grafting on it could close a
    cycle. It is taken once the hold (1 s) is over and A has told us otherwise."""
    core, _, op = linked()
    core.handle_timer(1.04)
    tag = op.author[:TAG_BYTES]
    core.receive(B, encode_message(Dist(tag, (40,))), 1.1)
    core.handle_timer(1.1)
    assert sent(core.receive(A, encode_message(Dist(tag, (60,))), 1.3)) == []
    assert sent(core.receive(B, encode_message(Dist(tag, (100,))), 1.4)) == []
    # A longer distance goes to every peer; the others are looked at 100 ms later.
    assert sent(core.handle_timer(1.42)) == [(A, Dist(tag, (112,))), (B, Dist(tag, (112,)))]
    assert sent(core.handle_timer(1.5)) == []
    assert core.parent(op.author) == B
    assert core.next_timer() == pytest.approx(2.4)
    out = core.handle_timer(2.4)
    assert sent(out) == [(B, Prune((op.author,))), (A, Want(False, (), (op.author,)))]
    assert core.parent(op.author) == A


def test_our_own_ops_make_us_zero_from_ourselves() -> None:
    core, replica = make(distances=True)
    connect(core, A)
    op = authored(1, who=0)[0]
    replica.admit(op)
    core.authored(op, 1.0)
    assert core.next_timer() == 0.0  # at once: the distance follows
    assert of_type(core.handle_timer(1.0), Dist) == []  # gathered 20 ms
    assert of_type(core.handle_timer(1.02), Dist) == [(A, Dist(op.author[:TAG_BYTES], (0,)))]


def test_a_lost_parent_hands_its_author_to_the_shortest_feasible_peer() -> None:
    """B, our parent by distances (52 ms), goes. C offers 45 ms over a 5 ms link (52: not
    shorter than B's path by the margin, so it did not move the author), A 50 ms over
    20 ms (72). C gets the author, not A, the first of the spares the trees would take
    without distances; an author distances moved before is no exception."""
    core, _, op = linked()
    tag = op.author[:TAG_BYTES]
    assert of_type(connect(core, C, now=1.03), Ping) == [(C, Ping(3))]
    assert core.receive(C, encode_message(Pong(3)), 1.04) == []
    core.handle_timer(1.04)
    core.receive(B, encode_message(Dist(tag, (40,))), 1.1)
    core.handle_timer(1.1)
    assert core.parent(op.author) == B
    assert sent(core.receive(C, encode_message(Dist(tag, (45,))), 1.2)) == []
    assert core.parent(op.author) == B
    out = core.peer_down(B, 1.3)
    assert sent(out) == [(C, Want(False, (), (op.author,)))]
    assert core.parent(op.author) == C


def test_a_peer_naming_made_up_authors_cannot_grow_our_table_of_its_distances(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Distances of authors we do not forward are kept up to a room's worth (here 3); the
    real author's still count past that, and move the tree."""
    monkeypatch.setattr(_routes, "MAX_TAGS", 3)
    core, _, op = linked()  # A's table: the real author
    made_up = b"".join(bytes([n]) * TAG_BYTES for n in range(1, 6))
    core.receive(A, encode_message(Dist(made_up, (9,) * 5)), 1.03)
    assert core._routes is not None
    assert len(core._routes._theirs[A]) == 3  # the author and two made-up ones
    core.handle_timer(1.04)
    out = core.receive(B, encode_message(Dist(made_up + op.author[:TAG_BYTES], (9,) * 6)), 1.1)
    assert len(core._routes._theirs[B]) == 4  # three made-up, and the author past the cap
    assert sent(out) == [(A, Prune((op.author,))), (B, Want(False, (), (op.author,)))]
