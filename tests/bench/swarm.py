"""Benchmark: one simulated room of many whole nodes over virtual time.

The issue's run: 1,000 nodes, one hour of virtual time, 1% datagram loss (and 1% segment
loss between as many random pairs of nodes as there are nodes, costing retransmission
delays on the links among them), 10% of the nodes churning (leaving
and coming back, or replaced), one message a second across the room. Reports wall time,
peak memory per node, delivery and convergence, each target with its ratio:

    every node converges            MET / NOT MET
    wall time <= 300 s              (2-core machine)
    <= 2 MiB per simulated node     (peak RSS growth over the run / nodes)

The nodes' data dirs (their SQLite room files) go on tmpfs (/dev/shm) where there is one:
the simulation's disk, so that a thousand nodes' commits and fsyncs cost no disk waits.
Those files are RAM but not this process's RSS; their size per node is printed beside the
memory figure. `--disk` keeps them in the temporary dir instead. The cyclic garbage
collector runs less often than Python's default (`GC_THRESHOLD`): a swarm's objects are
long-lived, and the default made it walk them hundreds of times a minute. SQLite's soft
heap limit (process-wide) is set to `SQLITE_HEAP_PER_NODE` per node: past it, SQLite
recycles its page caches instead of growing them (each room file's two connections may
otherwise cache up to 40 MiB); what is read back comes from the page cache of the files.

On a machine shared with other work, wall time follows the load; the figures to compare
versions by are printed last: CPU time and trio task steps, while the room forms and
after, and per delivered op (one op held by one node; the idle cost, churn and settling
included). The hour at 1,000 nodes delivers some 3.6 million ops, so the 5-minute target
allows about 80 us of wall time each; at 100 nodes an op costs about 2.2 ms of CPU and 42
task steps (README, "Scale").

    PYTHONPATH=. python tests/bench/swarm.py            # 1,000 nodes, 3,600 s
    PYTHONPATH=. python tests/bench/swarm.py --quick    # 20 nodes, 60 s, for CI
    PYTHONPATH=. python tests/bench/swarm.py --nodes 200 --duration 600 --profile

Exits non-zero only on a crash.
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import gc
import os
import pstats
import resource
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from node.swarm import Scenario, SwarmConfig, Traffic, run_scenario, run_simulated
from node.swarm._faults import Churn, Degrade

WALL_TARGET = 300.0
MEMORY_TARGET = 2 * 1024 * 1024
TMPFS = Path("/dev/shm")
GC_THRESHOLD = (50_000, 20, 100)  # Python's default is (700, 10, 10)
SQLITE_HEAP_PER_NODE = 128 * 1024


def scenario(nodes: int, duration: float, rate: float = 1.0) -> Scenario:
    return Scenario(
        "bench",
        "the issue's scale run",
        nodes=nodes,
        duration=duration,
        settle=600.0,
        network=SwarmConfig(loss=0.01, mesh_size=4, discovery_interval=120.0),
        traffic=Traffic(rate=rate),
        faults=(
            Churn(at=duration * 0.05, until=duration * 0.9, fraction=0.1, downtime=60.0),
            Degrade(at=0.0, count=nodes, latency=0.0, jitter=0.0, loss=0.01),
        ),
    )


def rss() -> int:
    """Peak resident set size of this process, in bytes (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def verdict(ok: bool) -> str:
    return "MET" if ok else "NOT MET"


def tree_bytes(root: Path) -> int:
    """Bytes of the files under `root`."""
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


class _Steps(trio.abc.Instrument):
    """Counts trio task steps: how much scheduling a run takes, whatever the machine's load."""

    def __init__(self) -> None:
        self.count = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.count += 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 nodes, 60 s")
    parser.add_argument("--nodes", type=int)
    parser.add_argument("--duration", type=float)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--profile", action="store_true", help="print the top costs")
    parser.add_argument("--profile-out", type=Path, help="also save the profile's stats here")
    parser.add_argument(
        "--phase",
        choices=("all", "forming", "traffic"),
        default="all",
        help="profile only while the room forms, or only once traffic starts",
    )
    parser.add_argument("--rate", type=float, default=1.0, help="messages a second (1)")
    parser.add_argument("--disk", action="store_true", help="data dirs on disk, not tmpfs")
    args = parser.parse_args()
    nodes = args.nodes or (20 if args.quick else 1000)
    duration = args.duration or (60.0 if args.quick else 3600.0)
    print(f"swarm bench: {nodes} nodes, {duration:g} s virtual, 1% loss, 10% churn, "
          f"{args.rate:g} msg/s")  # fmt: skip
    profiler = cProfile.Profile() if args.profile or args.profile_out else None
    base = rss()
    started = time.perf_counter()
    last = [0.0]
    steps = _Steps()
    formed: list[tuple[float, float, int]] = []  # (virtual, CPU, steps) when traffic began

    def progress(now: float, arrived: int, due: int, up: int, phase: str) -> None:
        if phase != "forming" and not formed:
            formed.append((now, time.process_time(), steps.count))
            if profiler is not None and args.phase == "forming":
                profiler.disable()
            elif profiler is not None and args.phase == "traffic":
                profiler.enable()
        if time.perf_counter() - last[0] > 15:
            last[0] = time.perf_counter()
            wall = last[0] - started
            peak = (rss() - base) / nodes / 1024
            print(
                f"  t={now:7.0f}s {phase:<8} delivered {arrived:,}/{due:,} up {up} "
                f"wall {wall:.0f}s peak {peak:,.0f} KiB/node",
                flush=True,
            )

    tmpfs = not args.disk and TMPFS.is_dir() and os.access(TMPFS, os.W_OK)
    data_dir = Path(tempfile.mkdtemp(prefix="rumor-swarm-bench-", dir=TMPFS if tmpfs else None))
    scenario_run = functools.partial(
        run_scenario,
        scenario(nodes, duration, args.rate),
        args.seed,
        progress=progress,
        every=1.0,
        data_dir=data_dir,
    )

    async def play() -> dict[str, Any]:
        trio.lowlevel.add_instrument(steps)
        return await scenario_run()

    cpu_start = time.process_time()
    gc.set_threshold(*GC_THRESHOLD)
    limit = sqlite3.connect(":memory:")
    limit.execute(f"PRAGMA soft_heap_limit={SQLITE_HEAP_PER_NODE * nodes}")
    limit.close()
    try:
        if profiler is not None and args.phase != "traffic":
            profiler.enable()
        report = run_simulated(play, args.seed)
        if profiler is not None:
            profiler.disable()
        wall = time.perf_counter() - started
        files = tree_bytes(data_dir)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    per_node = (rss() - base) / nodes
    cpu_end = time.process_time()
    delivery = report["delivery"]
    converged = report["convergence"]["converged"]
    latency = report["latency_ms"]
    print(f"messages {delivery['messages']:,}; delivery {delivery['rate']:.2%} "
          f"({delivery['held']:,}/{delivery['due']:,}); "
          f"time to converge {report['time']['time_to_converge']} s")  # fmt: skip
    print(f"latency p50 {latency['p50']:.0f} ms, p99 {latency['p99']:.0f} ms; "
          f"{report['receptions_per_op']:.2f} receptions per op; "
          f"{report['links']['degree_mean']:.1f} links per node")  # fmt: skip
    print(f"every node converges        {'yes' if converged else 'no':>10}  target yes: "
          f"{verdict(converged)}")  # fmt: skip
    print(f"wall time                   {wall:>9.1f}s  target <= {WALL_TARGET:.0f} s: "
          f"ratio {wall / WALL_TARGET:.2f} {verdict(wall <= WALL_TARGET)}")  # fmt: skip
    print(f"peak memory per node        {per_node / 1024:>8.0f}KiB  target <= 2048 KiB: "
          f"ratio {per_node / MEMORY_TARGET:.2f} {verdict(per_node <= MEMORY_TARGET)}")  # fmt: skip
    where = "on tmpfs (RAM, not in RSS)" if tmpfs else "on disk"
    print(f"room files per node         {files / nodes / 1024:>8.0f}KiB  {where}")
    # CPU and trio task steps are steadier measures than wall time on a shared machine.
    if formed:
        at, cpu_formed, steps_formed = formed[0]
        print(f"forming (to t={at:.0f} s): {cpu_formed - cpu_start:.1f} s CPU, "
              f"{steps_formed:,} task steps")  # fmt: skip
        print(f"after forming: {cpu_end - cpu_formed:.1f} s CPU, "
              f"{steps.count - steps_formed:,} task steps")  # fmt: skip
        held = delivery["held"]
        if held:
            print(f"  per delivered op (idle, churn and settling included): "
                  f"{(cpu_end - cpu_formed) / held * 1000:.2f} ms CPU, "
                  f"{(steps.count - steps_formed) / held:.1f} task steps")  # fmt: skip
    print(f"in all: {cpu_end - cpu_start:.1f} s CPU, {steps.count:,} task steps")
    if profiler is not None and args.profile_out:
        profiler.dump_stats(args.profile_out)
    if profiler is not None and args.profile:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(20)
    return 0


if __name__ == "__main__":
    sys.exit(main())
