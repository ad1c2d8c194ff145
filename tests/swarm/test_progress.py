"""The progress line's delivered/due: an op counts once per node it was due to (a member
when it was sent), so a node back from offline catching up never pushes it past 100%."""

from __future__ import annotations

import functools

import trio

from node.swarm import Recorder, Scenario, Swarm, run_scenario, run_simulated
from node.swarm._faults import HostileMember, Offline, Partition


def test_catch_ups_after_an_offline_move_never_count_past_due() -> None:
    # The tester's run: partition, hostile member, a node offline that comes back moved.
    scenario = Scenario(
        "mixed",
        nodes=6,
        duration=60,
        faults=(
            Partition(at=10, heal=30),
            HostileMember(at=15),
            Offline(at=20, back=40, count=1, move=True),
        ),
    )
    seen: list[tuple[float, int, int]] = []

    def progress(now: float, arrived: int, due: int, up: int, phase: str) -> None:
        seen.append((now, arrived, due))

    play = functools.partial(run_scenario, scenario, 3, progress=progress, every=1.0)
    report = run_simulated(play, 3)
    assert report["passed"], report["checks"]
    assert report["latency_ms"]["catch_ups"] > 0  # the returning node did catch up
    over = [(t, a, d) for t, a, d in seen if a > d]
    assert not over, over[:3]
    assert seen[-1][1] > 0


def test_the_recorder_counts_an_op_only_for_nodes_that_were_members_when_it_was_sent() -> None:
    recorder = Recorder()
    recorder.joined(0)
    recorder.joined(1)
    recorder.on_sent(b"a", 0, 1.0, 2)  # due to node 1
    recorder.left(1)
    recorder.on_sent(b"b", 0, 2.0, 1)  # node 1 away: due to nobody
    recorder.joined(1)
    recorder.on_sent(b"c", 0, 3.0, 2)
    for op in (b"b", b"a", b"c"):  # node 1 back: catches up on b, gets a late, then c
        recorder.on_arrived(1, op, 4.0, since=3.5)
    assert recorder.arrivals == 3
    assert recorder.delivered_due == 2 and sum(s.expected for s in recorder.sent.values()) == 2


def test_a_node_being_stopped_is_no_writer_from_the_moment_it_starts_closing() -> None:
    async def main() -> None:
        async with Swarm.simulated(3, seed=2, config=None) as swarm:
            await swarm.create_room()
            leaving = swarm.nodes[2]
            async with trio.open_nursery() as nursery:
                nursery.start_soon(swarm.stop, leaving)
                await trio.lowlevel.checkpoint()  # stop() began: the node is closing
                assert leaving not in swarm.writers()
            assert not leaving.up

    run_simulated(main, 2)
