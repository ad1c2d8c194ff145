"""Clusters of gossip cores over real replicas, in a seeded in-memory network."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from crdt import Replica
from node.gossip import Fault, GossipConfig, Mode, Ops, encode_message
from tests.gossip.cluster import ROOM, T0_MS, Cluster, identity


def test_two_nodes_converge() -> None:
    cluster = Cluster(2, seed=1)
    for n in range(5):
        cluster.author(0, f"a{n}")
        cluster.author(1, f"b{n}")
    cluster.link(0, 1)
    cluster.run(1.0)
    assert cluster.converged()
    assert len(cluster.nodes[0].replica.timeline()) == 10
    # Live messages after the link is up take one hop.
    op = cluster.author(1, "live")
    cluster.run(0.2)
    assert cluster.nodes[0].hops[op.id] == 1


def test_line_carries_messages_end_to_end() -> None:
    cluster = Cluster(3, seed=2)
    cluster.link(0, 1)
    cluster.link(1, 2)
    cluster.run(0.5)
    first = cluster.author(0, "from A")
    last = cluster.author(2, "from C")
    cluster.run(1.0)
    assert cluster.converged()
    assert cluster.nodes[2].hops[first.id] == 2 and cluster.nodes[0].hops[last.id] == 2


def test_late_joiner_receives_the_whole_history_in_bounded_batches() -> None:
    config = GossipConfig(batch_ops=20, window=2)
    cluster = Cluster(4, seed=3, config=config)
    for a, b in ((0, 1), (1, 2), (2, 0)):
        cluster.link(a, b)
    rng = random.Random(3)
    for n in range(120):
        cluster.author(rng.randrange(3), f"m{n}")
        cluster.run(0.05)
    cluster.run(2.0)
    assert cluster.converged([0, 1, 2])
    cluster.max_outstanding = 0
    before = cluster.nodes[3].receptions
    cluster.link(3, 1)
    cluster.run(5.0)
    assert cluster.converged()
    assert len(cluster.nodes[3].replica) == 120
    assert cluster.max_outstanding <= 2  # never more than the window unacked
    assert cluster.nodes[3].receptions - before == 120  # each op's bytes exactly once


def test_node_offline_for_long_catches_up_with_the_window_respected() -> None:
    config = GossipConfig(batch_ops=50, window=2, sync_interval=600.0)
    cluster = Cluster(3, seed=4, config=config)
    cluster.link(0, 1)
    cluster.link(1, 2)
    cluster.run(0.5)
    cluster.author(2, "before")
    cluster.run(1.0)
    cluster.unlink(1, 2)
    for n in range(600):  # a week of chat, two authors
        cluster.author(n % 2, f"while away {n}")
    cluster.run(1.0)
    cluster.author(2, "written offline")
    cluster.max_outstanding = 0
    cluster.link(1, 2)
    cluster.run(3.0)
    assert cluster.converged()
    assert len(cluster.nodes[2].replica) == 602
    assert 1 <= cluster.max_outstanding <= 2
    stats = cluster.nodes[1].core.stats
    assert stats.batches_sent >= 600 // 50  # it came in bounded batches


def test_partition_heals_through_a_middle_node() -> None:
    # A - B - C: A and B part, A writes, they meet again; C gets A's ops from B, which
    # caught up by catch-up (not pushes) and then swaps vectors with its other peers.
    cluster = Cluster(3, seed=5, config=GossipConfig(sync_interval=600.0))
    cluster.link(0, 1)
    cluster.link(1, 2)
    cluster.run(0.5)
    cluster.unlink(0, 1)
    for n in range(30):
        cluster.author(0, f"alone {n}")
    cluster.link(0, 1)
    cluster.run(5.0)
    assert cluster.converged()


def test_duplicates_are_dropped_before_ingest() -> None:
    cluster = Cluster(5, seed=6, config=GossipConfig(flood=True))
    for a in range(5):
        for b in range(a + 1, 5):
            cluster.link(a, b)
    cluster.run(0.5)
    for n in range(20):
        cluster.author(n % 5, f"m{n}")
    cluster.run(2.0)
    assert cluster.converged()
    for node in cluster.nodes:
        assert node.receptions > 16  # flooding a full mesh: many copies arrive ...
        assert node.ingested == 16  # ... but each op is verified once per node


def test_garbage_closes_the_link_and_loses_nothing() -> None:
    cluster = Cluster(3, seed=7)
    cluster.link(0, 1)
    cluster.link(0, 2)
    for n in range(10):
        cluster.author(n % 3, f"m{n}")
    cluster.run(1.0)
    before = cluster.nodes[0].replica.render()
    cluster.inject(1, 0, b"\xc1\xc1 not msgpack")
    cluster.run(0.5)
    assert [p.fault for p in cluster.nodes[0].penalties] == [Fault.GARBAGE]
    assert frozenset((0, 1)) not in cluster.links
    assert cluster.nodes[0].replica.render() == before
    # Node 0 keeps serving its other peer.
    op = cluster.author(2, "still here")
    cluster.run(0.5)
    assert op.id in cluster.nodes[0].replica


def test_bad_signatures_penalise_and_store_nothing() -> None:
    cluster = Cluster(3, seed=8)
    cluster.link(0, 1)
    cluster.link(0, 2)
    cluster.author(2, "hello")
    cluster.run(1.0)
    outsider = Replica(ROOM, identity=identity(1))
    genuine = outsider.new_message("signed", now_ms=T0_MS)
    forged = genuine.data[:-64] + bytes(64)
    before = len(cluster.nodes[0].replica)
    cluster.inject(1, 0, encode_message(Ops(0, Mode.PUSH, (forged,))))
    cluster.run(0.5)
    assert [p.fault for p in cluster.nodes[0].penalties] == [Fault.BAD_OP]
    assert len(cluster.nodes[0].replica) == before
    assert genuine.id not in cluster.nodes[0].replica
    assert frozenset((0, 1)) not in cluster.links


def test_oversized_batches_penalise() -> None:
    cluster = Cluster(2, seed=9)
    cluster.link(0, 1)
    cluster.author(1, "hello")
    cluster.run(1.0)
    before = cluster.nodes[0].replica.render()
    cluster.inject(1, 0, b"\x94" + b"\x00" * (61 * 1024))
    cluster.run(0.5)
    assert [p.fault for p in cluster.nodes[0].penalties] == [Fault.OVERSIZED]
    assert cluster.nodes[0].replica.render() == before


def test_tree_forms_and_each_op_arrives_about_once() -> None:
    # One tree per author: each author's first op shapes its tree (duplicates prune it),
    # so the later ops of the same authors arrive about once.
    cluster = Cluster(30, seed=10, config=GossipConfig())
    rng = random.Random(10)
    for i in range(1, 30):
        cluster.link(i, rng.randrange(i))
    while len(cluster.links) < 90:
        a, b = rng.sample(range(30), 2)
        if frozenset((a, b)) not in cluster.links:
            cluster.link(a, b)
    cluster.run(0.5)
    authors = rng.sample(range(30), 5)
    for n in range(10):  # warm-up: duplicates prune the mesh down to a tree per author
        cluster.author(authors[n % 5], f"warm {n}")
        cluster.run(2.0)
    before = sum(node.receptions for node in cluster.nodes)
    for n in range(10):
        cluster.author(authors[n % 5], f"m{n}")
        cluster.run(2.0)
    assert cluster.converged()
    receptions = sum(node.receptions for node in cluster.nodes) - before
    assert receptions <= 10 * 29 * 1.1  # flooding this mesh would take about 6 x


def test_same_seed_same_run() -> None:
    def run(seed: int) -> tuple[int, bytes]:
        cluster = Cluster(6, seed=seed)
        for a, b in ((0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (5, 0), (0, 3)):
            cluster.link(a, b)
        for n in range(12):
            cluster.author_at(0.1 * n, n % 6, f"m{n}")
        cluster.run(3.0)
        assert cluster.converged()
        return cluster.messages, cluster.nodes[0].replica.render()

    assert run(11) == run(11)


def test_churn_then_calm_converges() -> None:
    # Links open and close under traffic (losing what is on them); once the network is
    # connected again, vector swaps and pulls bring every node to the same history.
    cluster = Cluster(8, seed=12, config=GossipConfig(sync_interval=5.0))
    rng = random.Random(12)
    for step in range(60):
        a, b = rng.sample(range(8), 2)
        if frozenset((a, b)) in cluster.links:
            cluster.unlink(a, b)
        else:
            cluster.link(a, b)
        cluster.author(rng.randrange(8), f"m{step}")
        cluster.run(rng.uniform(0.0, 0.3))
    for a in range(8):
        b = (a + 1) % 8
        if frozenset((a, b)) not in cluster.links:
            cluster.link(a, b)
    cluster.run(10.0)
    assert cluster.converged()
    assert len(cluster.nodes[0].replica) == 60
    assert all(not node.penalties for node in cluster.nodes)  # honest churn is no fault


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 2**32), st.integers(3, 9), st.floats(0.0, 1.0))
def test_any_connected_mesh_delivers_everything(seed: int, size: int, density: float) -> None:
    cluster = Cluster(size, seed=seed)
    rng = random.Random(seed)
    for i in range(1, size):
        cluster.link(i, rng.randrange(i))
    for a in range(size):
        for b in range(a + 1, size):
            if frozenset((a, b)) not in cluster.links and rng.random() < density / 2:
                cluster.link(a, b)
    for n in range(3 * size):
        cluster.author_at(rng.uniform(0.0, 2.0), rng.randrange(size), f"m{n}")
    cluster.run(6.0)
    assert cluster.converged()
    assert len(cluster.nodes[0].replica) == 3 * size


def test_joiner_on_several_links_gets_the_history_about_once() -> None:
    # Four links open at once and every peer starts streaming the same history: the
    # joiner keeps the stream that is ahead and pauses the others.
    cluster = Cluster(5, seed=13, config=GossipConfig(batch_ops=20, window=2))
    for a, b in ((0, 1), (1, 2), (2, 3), (3, 0)):
        cluster.link(a, b)
    rng = random.Random(13)
    for n in range(400):
        cluster.author(rng.randrange(4), f"m{n}")
    cluster.run(3.0)
    for peer in range(4):
        cluster.link(4, peer)
    cluster.run(10.0)
    assert cluster.converged()
    joiner = cluster.nodes[4]
    assert joiner.ingested == 400
    assert joiner.receptions < 1.5 * 400  # without pausing: 4 x 400


def equivocate(cluster: Cluster, author: int, twin_text: str) -> bytes:
    """`author` signs a second op at the seq of its last one (a fork) and pushes it to
    no one: the caller delivers it. Returns the twin's wire form."""
    node = cluster.nodes[author]
    twin = Replica(ROOM, identity=node.identity)
    for op in node.replica.ops():
        if op.seq < node.replica.head(node.peer_id):
            assert twin.admit(op).added
    forked = twin.new_message(twin_text, now_ms=T0_MS + int(cluster.now * 1000) + 1)
    assert forked.seq == node.replica.head(node.peer_id)
    return forked.data


def test_a_fork_reaches_every_member_live_and_by_catch_up() -> None:
    """A hostile member equivocates: one op to everyone, a twin with the same seq to one
    member only. Version vectors cannot tell the twins apart, yet every member ends up
    holding both, and sees the author as forked: those online through the live push,
    a member offline meanwhile when its link comes up."""
    cluster = Cluster(6, seed=21)
    for a, b in ((0, 1), (1, 2), (2, 3), (3, 0), (4, 0), (4, 2), (5, 3)):
        cluster.link(a, b)
    cluster.run(1.0)
    cluster.author(4, "before")
    cluster.author(4, "to everyone")
    cluster.run(1.0)
    cluster.unlink(5, 3)  # node 5 goes away holding the first twin
    twin = equivocate(cluster, 4, "to node 2 alone")
    cluster.inject(4, 2, encode_message(Ops(7, Mode.PUSH, (twin,))))
    cluster.run(2.0)
    author = cluster.nodes[4].peer_id
    for i in (0, 1, 2, 3):
        assert cluster.nodes[i].replica.forked_authors() == [author], i
    assert cluster.converged([0, 1, 2, 3])
    # Node 5 comes back to another member. Its vector already counts the seq of the
    # twins, so only the announcement of the fork's ops on the new link brings the other.
    assert cluster.nodes[5].replica.forked_authors() == []
    cluster.link(5, 1)
    cluster.run(3.0)
    assert cluster.nodes[5].replica.forked_authors() == [author]
    assert cluster.converged([0, 1, 2, 3, 5])
