"""Every built-in scenario at a small size: the swarm converges and the scenario's own
expectation holds; one seed gives the same report bytes twice, another seed another."""

from __future__ import annotations

import functools
from typing import Any

import pytest

from node.swarm import SCENARIOS, Scenario, run_scenario, run_simulated
from node.swarm._report import dumps

# name -> (nodes, duration): small enough for CI, long enough for the faults to matter.
SIZES = {
    "steady": (5, 30.0),
    "partition": (6, 120.0),
    "churn": (6, 120.0),
    "storm": (5, 40.0),
    "hostile": (5, 40.0),
    "offline": (5, 1200.0),
    "late-joiner": (5, 60.0),
}

# Check-name prefixes each scenario must show (and pass), beyond convergence.
OWN = {
    "steady": [],
    "partition": ["partition: both sides kept chatting", "partition: nothing crossed it"],
    "churn": ["churn: returning and new nodes caught up"],
    "storm": ["flood: the others got through"],
    "hostile": [
        "hostile: cut off after each attack",
        "hostile: nothing forged is stored",
        "hostile: every node sees the equivocation",
    ],
    "offline": ["offline: returning nodes got what they missed"],
    "late-joiner": ["late joiners got the whole history"],
}


def play(scenario: Scenario, seed: int) -> dict[str, Any]:
    report: dict[str, Any] = run_simulated(functools.partial(run_scenario, scenario, seed), seed)
    return report


def test_every_scenario_is_tested() -> None:
    assert set(SIZES) == set(SCENARIOS) == set(OWN)


@pytest.mark.parametrize("name", list(SIZES))
def test_scenario_converges_and_meets_its_expectation(name: str) -> None:
    nodes, duration = SIZES[name]
    report = play(SCENARIOS[name].sized(nodes, duration), seed=3)
    failed = [c for c in report["checks"] if not c["ok"]]
    assert not failed, failed
    assert report["passed"]
    assert report["convergence"]["converged"] and report["convergence"]["distinct_digests"] == 1
    assert report["delivery"]["rate"] == 1.0 and report["delivery"]["messages"] > 0
    names = [c["name"] for c in report["checks"]]
    for expected in OWN[name]:
        assert expected in names


def test_hostile_member_is_cut_off_and_penalised() -> None:
    report = play(SCENARIOS["hostile"].sized(5, 40.0), seed=4)
    assert report["ops"]["penalties"] >= 2  # garbage and the forged op each cost a link
    assert report["rejected"].get("bad_signature", 0) >= 1
    attacks = {a["attack"]: a for a in report["hostile"]}
    assert attacks["garbage"]["cut_off"] and attacks["forged"]["cut_off"]


def test_one_seed_gives_the_same_report_bytes_and_another_seed_another() -> None:
    scenario = SCENARIOS["churn"].sized(5, 60.0)
    first = dumps(play(scenario, seed=11))
    second = dumps(play(scenario, seed=11))
    assert first == second
    other = dumps(play(scenario, seed=12))
    assert other != first
