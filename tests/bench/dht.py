"""Benchmark of dht/: lookup cost in simulation, and speed against the `kademlia` package.

Reports, in one run:

(a) in the simulated network (1,000 nodes; virtual time), RPCs and rounds per lookup,
    mean and p99, without loss and with 10% datagram loss;
(b) on real UDP sockets on loopback, 64 of our nodes and, beside them, 64 nodes of the
    `kademlia` package with the same k and alpha: set+get latency (p50, p99), lookups
    per second and success rate for each, and the ratio against the target (ours at
    least 2x the package's lookups per second, with 100% success).

The two real networks are measured one after the other (the package's on its own
asyncio loop in a thread, ours on trio in the main thread), so neither steals CPU from
the other.  A "lookup" is a `get` of a stored key from a node that does not hold it
itself, so both implementations do a full iterative find_value.

`--quick` shrinks every size so the run takes seconds (CI runs it).  The script exits
non-zero only if it crashes, never for missing a target.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio
import trio.testing

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from dht import DHTConfig, DHTNode, SimNetwork, SimSwarm, key_digest
from dht._ids import random_id

K, ALPHA = 20, 3
TARGET_RATIO = 2.0


@dataclass
class Sizes:
    sim_nodes: int
    sim_lookups: int
    udp_nodes: int
    keys: int
    lookups: int
    concurrency: int


FULL = Sizes(sim_nodes=1000, sim_lookups=300, udp_nodes=64, keys=100, lookups=1000, concurrency=16)
QUICK = Sizes(sim_nodes=150, sim_lookups=50, udp_nodes=32, keys=20, lookups=200, concurrency=8)


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


# -- (a) simulation -----------------------------------------------------------------------


def bench_sim(sizes: Sizes, loss: float) -> dict[str, float]:
    async def main() -> dict[str, float]:
        rng = random.Random(42)
        async with trio.open_nursery() as nursery:
            swarm = SimSwarm(SimNetwork(random.Random(43), loss=loss), nursery, rng=rng)
            for _ in range(sizes.sim_nodes):
                await swarm.spawn()
            await swarm.join(swarm.nodes[1:], swarm.nodes[:1])
            rpcs: list[float] = []
            rounds: list[float] = []
            for _ in range(sizes.sim_lookups):
                node = swarm.nodes[rng.randrange(len(swarm.nodes))]
                result = await node.find_node(random_id(rng))
                rpcs.append(result.stats.rpcs)
                rounds.append(result.stats.rounds)
            nursery.cancel_scope.cancel()
        return {
            "rpcs_mean": statistics.mean(rpcs),
            "rpcs_p99": pct(rpcs, 99),
            "rounds_mean": statistics.mean(rounds),
            "rounds_p99": pct(rounds, 99),
        }

    return trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


# -- (b) real UDP: the kademlia package -----------------------------------------------------


def bench_package(sizes: Sizes) -> dict[str, float]:
    from kademlia.network import Server

    logging.getLogger("kademlia").setLevel(logging.CRITICAL)
    logging.getLogger("rpcudp").setLevel(logging.CRITICAL)

    async def main() -> dict[str, float]:
        rng = random.Random(7)
        servers: list[Any] = []
        ports = []
        for _ in range(sizes.udp_nodes):
            server = Server(ksize=K, alpha=ALPHA)
            await server.listen(0, interface="127.0.0.1")
            servers.append(server)
            ports.append(server.transport.get_extra_info("sockname")[1])
        for i in range(1, len(servers)):
            await servers[i].bootstrap([("127.0.0.1", ports[rng.randrange(i)])])
        try:
            return await measure_package(servers, sizes, rng)
        finally:
            for server in servers:
                server.stop()

    return asyncio.run(main())


async def measure_package(servers: list[Any], sizes: Sizes, rng: random.Random) -> dict[str, float]:
    latencies = []
    keys = [f"bench-key-{i}" for i in range(sizes.keys)]
    for key in keys:
        a, b = rng.sample(servers, 2)
        start = time.perf_counter()
        await a.set(key, key)
        got = await b.get(key)
        latencies.append(time.perf_counter() - start)
        assert got == key, "package set+get failed"
    jobs = []
    for _ in range(sizes.lookups):
        key = rng.choice(keys)
        holders = [s for s in servers if s.storage.get(key_digest(key)) is None]
        jobs.append((rng.choice(holders or servers), key))
    gate = asyncio.Semaphore(sizes.concurrency)
    ok = 0

    async def one(server: Any, key: str) -> None:
        nonlocal ok
        async with gate:
            got = await server.get(key)
            ok += got == key

    start = time.perf_counter()
    await asyncio.gather(*(one(s, k) for s, k in jobs))
    elapsed = time.perf_counter() - start
    return summary(latencies, ok, len(jobs), elapsed)


def summary(latencies: list[float], ok: int, total: int, elapsed: float) -> dict[str, float]:
    return {
        "setget_p50_ms": 1000 * pct(latencies, 50),
        "setget_p99_ms": 1000 * pct(latencies, 99),
        "lookups_per_s": total / elapsed,
        "success": ok / total,
    }


# -- (b) real UDP: ours --------------------------------------------------------------------


def bench_ours(sizes: Sizes) -> dict[str, float]:
    async def main() -> dict[str, float]:
        rng = random.Random(7)
        config = DHTConfig(k=K, alpha=ALPHA)
        async with trio.open_nursery() as nursery:
            nodes: list[DHTNode] = []

            async def run(task_status: trio.TaskStatus[DHTNode]) -> None:
                async with DHTNode("127.0.0.1", config=config) as node:
                    task_status.started(node)
                    await trio.sleep_forever()

            for i in range(sizes.udp_nodes):
                node: DHTNode = await nursery.start(run)
                if nodes:
                    await node.bootstrap([nodes[rng.randrange(i)].address])
                nodes.append(node)
            latencies = []
            keys = [f"bench-key-{i}" for i in range(sizes.keys)]
            for key in keys:
                a, b = rng.sample(nodes, 2)
                start = time.perf_counter()
                await a.set(key, key)
                got = await b.get(key)
                latencies.append(time.perf_counter() - start)
                assert got == key, "our set+get failed"
            jobs = []
            for _ in range(sizes.lookups):
                key = rng.choice(keys)
                dkey = key_digest(key)
                lacking = [n for n in nodes if n.protocol.storage.get_value(dkey, 0.0) is None]
                jobs.append((rng.choice(lacking or nodes), key))
            limiter = trio.CapacityLimiter(sizes.concurrency)
            ok = 0

            async def one(node: DHTNode, key: str) -> None:
                nonlocal ok
                async with limiter:
                    got = await node.get(key)
                    ok += got == key

            start = time.perf_counter()
            async with trio.open_nursery() as lookups:
                for node, key in jobs:
                    lookups.start_soon(one, node, key)
            elapsed = time.perf_counter() - start
            nursery.cancel_scope.cancel()
        return summary(latencies, ok, len(jobs), elapsed)

    return trio.run(main)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for CI")
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    began = time.perf_counter()

    print(f"dht benchmark ({'quick' if args.quick else 'full'})")
    print(f"(a) simulated network, {sizes.sim_nodes} nodes, {sizes.sim_lookups} lookups")
    for loss in (0.0, 0.10):
        r = bench_sim(sizes, loss)
        print(
            f"    loss {loss:4.0%}: RPCs/lookup mean {r['rpcs_mean']:.1f} p99 {r['rpcs_p99']:.0f};"
            f" rounds/lookup mean {r['rounds_mean']:.2f} p99 {r['rounds_p99']:.0f}"
        )
    print(
        f"(b) loopback UDP, {sizes.udp_nodes} nodes each, k={K} alpha={ALPHA},"
        f" {sizes.keys} set+get, {sizes.lookups} lookups ({sizes.concurrency} at a time)"
    )
    theirs = bench_package(sizes)
    ours = bench_ours(sizes)
    for name, r in (("kademlia pkg", theirs), ("rumor dht", ours)):
        print(
            f"    {name:12}: set+get p50 {r['setget_p50_ms']:7.2f} ms"
            f"  p99 {r['setget_p99_ms']:7.2f} ms"
            f"  lookups/s {r['lookups_per_s']:8.1f}  success {r['success']:.1%}"
        )
    ratio = ours["lookups_per_s"] / theirs["lookups_per_s"]
    met = ratio >= TARGET_RATIO and ours["success"] == 1.0
    print(
        f"    ratio ours/package lookups/s: {ratio:.2f}x (target {TARGET_RATIO:.1f}x:"
        f" {ratio / TARGET_RATIO:.0%} of target; success 100% required)"
        f" -> {'MET' if met else 'NOT MET'}"
    )
    print(f"total {time.perf_counter() - began:.1f} s")


if __name__ == "__main__":
    main()
