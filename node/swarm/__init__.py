"""Swarms for testers: many rumor nodes, traffic, faults, and a report.

`Swarm.simulated(n, seed=...)` runs n whole nodes in one process on a simulated network in
virtual time, reproducible bit for bit from the seed (run it with `run_simulated`); scenarios
(`SCENARIOS`, or a TOML file) script faults and expectations; `main(argv)` is the
`rumor swarm` command.
"""

from ._determinism import deterministic_scheduling, run_simulated
from ._measure import Recorder, room_digest
from ._swarm import Swarm, SwarmConfig, SwarmNode
from ._traffic import Traffic

__all__ = [
    "Recorder",
    "Swarm",
    "SwarmConfig",
    "SwarmNode",
    "Traffic",
    "deterministic_scheduling",
    "room_digest",
    "run_simulated",
]
