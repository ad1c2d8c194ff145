"""Swarms for testers: many rumor nodes, traffic, faults, and a report.

`Swarm.simulated(n, seed=...)` runs n whole nodes in one process on a simulated network in
virtual time, reproducible bit for bit from the seed (run it with `run_simulated`); scenarios
(`SCENARIOS`, or a TOML file) script faults and expectations; `main(argv)` is the
`rumor swarm` command.
"""

from ._cli import main
from ._determinism import deterministic_scheduling, run_simulated
from ._measure import Recorder, room_digest
from ._scenario import SCENARIOS, Scenario, ScenarioError, load_scenario, run_scenario
from ._swarm import Swarm, SwarmConfig, SwarmNode
from ._traffic import Traffic

__all__ = [
    "SCENARIOS",
    "Recorder",
    "Scenario",
    "ScenarioError",
    "Swarm",
    "SwarmConfig",
    "SwarmNode",
    "Traffic",
    "deterministic_scheduling",
    "load_scenario",
    "main",
    "room_digest",
    "run_scenario",
    "run_simulated",
]
