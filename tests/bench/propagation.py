"""Benchmark: how ops spread through a room with the gossip core (Plumtree + catch-up).

Simulates a room of N nodes (seeded, in memory: tests/gossip/cluster.py) on a random
connected mesh of average degree D with 10-50 ms links, in which M messages are written by
random members at random times. Reports, for the gossip core and for plain flooding over
the same mesh (the core with `flood=True`):
  - delivery: the share of (member, op) pairs that arrived (must be 100%);
  - receptions of an op's full bytes per member (target <= 1.5 on average; flooding gives
    about D): every copy that arrives in an OPS batch, pushed, pulled or caught up, from
    the first message on (the mesh starts with up to 4 eager links per node and is pruned
    by the traffic itself, so the warm-up is counted);
  - delivery latency in hops and in virtual milliseconds (p50, p99);
  - control traffic: IHAVE ids, WANTs, PRUNEs and GRAFTs per op.
Exits non-zero only on a crash.

    python tests/bench/propagation.py           # 200 nodes, 1,000 messages
    python tests/bench/propagation.py --quick   # 40 nodes, 150 messages, for CI
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from node.gossip import GossipConfig
from tests.gossip.cluster import Cluster

TARGET_RECEPTIONS = 1.5


def build(nodes: int, degree: int, seed: int, config: GossipConfig) -> Cluster:
    """A connected random mesh: a random tree, then random extra links up to `degree`."""
    cluster = Cluster(nodes, seed=seed, config=config, cache_signatures=True)
    rng = random.Random(seed)
    for i in range(1, nodes):
        cluster.link(i, rng.randrange(i))
    while len(cluster.links) < nodes * degree // 2:
        a, b = rng.sample(range(nodes), 2)
        if frozenset((a, b)) not in cluster.links:
            cluster.link(a, b)
    cluster.run(1.0)  # the links' HELLOs and vectors
    return cluster


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def simulate(nodes: int, messages: int, degree: int, seed: int, flood: bool) -> dict[str, float]:
    config = GossipConfig(eager_peers=4, flood=flood)
    cluster = build(nodes, degree, seed, config)
    rng = random.Random(seed + 1)
    start = cluster.now
    span = messages / 20  # 20 messages a second across the room
    authors: dict[int, int] = {}
    for n in range(messages):
        when = start + rng.uniform(0, span)
        authors[n] = rng.randrange(nodes)
        cluster.author_at(when, authors[n], f"message {n}")
    stats_before = [node.receptions for node in cluster.nodes]
    cluster.run(span + 10.0)
    ops = {
        op.id: (author, op)
        for author in set(authors.values())
        for op in cluster.nodes[author].replica.ops()
        if op.author == cluster.nodes[author].peer_id
    }
    assert len(ops) == messages, (len(ops), messages)
    delivered = 0
    hop_list: list[float] = []
    latencies: list[float] = []
    for node in cluster.nodes:
        for op_id, (author, _) in ops.items():
            if author == node.index:
                continue
            if op_id in node.replica:
                delivered += 1
                hop_list.append(node.hops[op_id])
                origin = cluster.nodes[author].arrived[op_id]
                latencies.append((node.arrived[op_id] - origin) * 1000)
    pairs = messages * (nodes - 1)
    receptions = sum(n.receptions - b for n, b in zip(cluster.nodes, stats_before, strict=True))
    control = {
        name: sum(getattr(n.core.stats, name) for n in cluster.nodes) / messages
        for name in ("ihave_sent", "wants_sent", "prunes_sent", "grafts_sent")
    }
    return {
        "delivery": delivered / pairs,
        "receptions": receptions / pairs,
        "hops_p50": percentile(hop_list, 0.5),
        "hops_p99": percentile(hop_list, 0.99),
        "ms_p50": percentile(latencies, 0.5),
        "ms_p99": percentile(latencies, 0.99),
        "degree": 2 * len(cluster.links) / nodes,
        "max_outstanding": cluster.max_outstanding,
        **control,
    }


def report(name: str, figures: dict[str, float]) -> None:
    print(f"{name}:")
    delivered = "met" if figures["delivery"] == 1.0 else "NOT MET"
    print(f"  delivery            {figures['delivery']:.2%}  (target 100%: {delivered})")
    ratio = figures["receptions"] / TARGET_RECEPTIONS
    met = "met" if ratio <= 1.0 else "not met"
    print(
        f"  receptions per op   {figures['receptions']:.3f} per member  "
        f"(target <= {TARGET_RECEPTIONS}: ratio {ratio:.2f}, {met})"
    )
    print(f"  latency in hops     p50 {figures['hops_p50']:.0f}, p99 {figures['hops_p99']:.0f}")
    print(f"  latency in ms       p50 {figures['ms_p50']:.0f}, p99 {figures['ms_p99']:.0f}")
    print(
        f"  control per op      {figures['ihave_sent']:.1f} IHAVE ids, "
        f"{figures['wants_sent']:.2f} WANT ids, {figures['prunes_sent']:.2f} PRUNEs, "
        f"{figures['grafts_sent']:.2f} GRAFTs"
    )
    print(f"  most batches unacked on a link: {figures['max_outstanding']:.0f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="40 nodes, 150 messages")
    parser.add_argument("--nodes", type=int)
    parser.add_argument("--messages", type=int)
    parser.add_argument("--degree", type=int, default=6)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    nodes = args.nodes or (40 if args.quick else 200)
    messages = args.messages or (150 if args.quick else 1000)
    print(
        f"propagation: {nodes} nodes, {messages} messages, mesh degree {args.degree}, "
        f"seed {args.seed}"
    )
    started = time.perf_counter()
    gossip = simulate(nodes, messages, args.degree, args.seed, flood=False)
    print(f"(mean degree of the mesh: {gossip['degree']:.2f})")
    report("gossip (Plumtree + catch-up)", gossip)
    flood = simulate(nodes, messages, args.degree, args.seed, flood=True)
    report("plain flooding over the same mesh", flood)
    print(
        f"receptions: gossip {gossip['receptions']:.3f} vs flooding {flood['receptions']:.3f} "
        f"({flood['receptions'] / gossip['receptions']:.1f}x fewer)"
    )
    print(f"wall time {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
