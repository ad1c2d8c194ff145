"""Scenarios: a swarm's size, network, traffic and faults, and running one to a report.

A `Scenario` is plain data: the built-in ones are in `SCENARIOS`, and `load_scenario`
reads one from a TOML file (format in docs-swarm.md). `run_scenario` plays it on a
simulated swarm in virtual time and returns the report as a dict (see `_report`): the same
dict, key for key and float for float, for the same scenario and seed.

Time in a scenario counts from the moment traffic starts (after the room formed).
"""

from __future__ import annotations

import random
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import trio

from . import _checks as checks
from ._faults import (
    FAULTS,
    Churn,
    Fault,
    Flood,
    HostileMember,
    LateJoin,
    Offline,
    Partition,
)
from ._report import build_report
from ._swarm import Swarm, SwarmConfig
from ._traffic import Traffic

__all__ = [
    "SCENARIOS",
    "Check",
    "Progress",
    "Scenario",
    "ScenarioError",
    "ScenarioRun",
    "load_scenario",
    "run_scenario",
]

FORM_TIMEOUT = 300.0  # virtual seconds the room may take to form before traffic starts


class ScenarioError(ValueError):
    """A scenario that cannot be run (a bad TOML file, an unknown name): one line."""


@dataclass(frozen=True)
class Check:
    """One expectation and how it went."""

    name: str
    ok: bool
    detail: str = ""


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str = ""
    nodes: int = 10
    duration: float = 60.0  # virtual seconds of traffic
    settle: float = 300.0  # at most this long after traffic for the swarm to converge
    network: SwarmConfig = field(default_factory=SwarmConfig)
    traffic: Traffic = field(default_factory=Traffic)
    faults: tuple[Fault, ...] = ()

    def __post_init__(self) -> None:
        checks.text("name", self.name)
        checks.text("description", self.description)
        checks.whole("nodes", self.nodes, low=2)
        checks.number("duration", self.duration, low=0, low_open=True)
        checks.number("settle", self.settle, low=0, low_open=True)

    def sized(self, nodes: int | None = None, duration: float | None = None) -> Scenario:
        """The scenario with another node count or duration (faults scale with it)."""
        scenario = self
        if nodes is not None:
            scenario = replace(scenario, nodes=nodes)
        if duration is not None and duration != self.duration:
            factor = duration / self.duration
            faults = tuple(_scale(f, factor) for f in self.faults)
            scenario = replace(scenario, duration=duration, faults=faults)
        return scenario


def _scale(fault: Fault, factor: float) -> Fault:
    """A fault with its times stretched by `factor` (durations too)."""
    timed = {"at", "heal", "until", "downtime", "back", "seconds"}
    changes = {f.name: getattr(fault, f.name) * factor for f in fields(fault) if f.name in timed}
    return replace(fault, **changes)


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "steady",
            "a healthy room: steady chat with bursts",
            nodes=10,
            duration=60,
            traffic=Traffic(rate=2.0, burst_every=20, burst_size=10),
        ),
        Scenario(
            "partition",
            "the swarm splits in two for a minute, both sides chat, it heals",
            nodes=10,
            duration=120,
            faults=(Partition(at=20, heal=80),),
        ),
        Scenario(
            "churn",
            "nodes leave and come back, some are replaced by new ones",
            nodes=12,
            duration=120,
            faults=(Churn(at=10, until=100),),
        ),
        Scenario(
            "storm",
            "lossy, jittery links and one member flooding the room",
            nodes=10,
            duration=60,
            network=SwarmConfig(jitter=0.05, loss=0.05),
            traffic=Traffic(rate=3.0, burst_every=15, burst_size=20),
            faults=(Flood(at=10, seconds=20, rate=40),),
        ),
        Scenario(
            "hostile",
            "a member sends garbage, a forged op and an equivocating chain",
            nodes=8,
            duration=60,
            faults=(HostileMember(at=15),),
        ),
        Scenario(
            "offline",
            "a node is away for most of an hour and comes back elsewhere",
            nodes=8,
            duration=3600,
            settle=600,
            traffic=Traffic(rate=0.05),
            faults=(Offline(at=60, back=3300, count=2),),
        ),
        Scenario(
            "late-joiner",
            "new members join after a long history was written",
            nodes=8,
            duration=90,
            traffic=Traffic(rate=4.0),
            faults=(LateJoin(at=75, count=2),),
        ),
    )
}


# -- TOML -------------------------------------------------------------------------------


def load_scenario(path: Path) -> Scenario:
    """A scenario from a TOML file; ScenarioError (one line) if it cannot be used."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"cannot read {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{path}: not TOML: {exc}") from None
    try:
        return _scenario_from(data, path.stem)
    except (TypeError, ValueError) as exc:
        raise ScenarioError(f"{path}: {exc}") from None


_NOT_IN_FILES = frozenset({"gossip_config", "link_config"})  # objects, not plain values


def _take(
    cls: type[Any],
    table: object,
    where: str,
    required: tuple[str, ...] = (),
    **extra: Any,
) -> Any:
    """`cls` built from a TOML table: unknown or missing keys and bad values refused."""
    if not isinstance(table, dict):
        raise ValueError(f"{where} must be a table, not {table!r}")
    known = {f.name for f in fields(cls)} - set(extra) - _NOT_IN_FILES
    unknown = sorted(set(table) - known)
    if unknown:
        raise ValueError(f"unknown key in {where}: {', '.join(unknown)}")
    missing = [key for key in required if key not in table]
    if missing:
        raise ValueError(f"{where}: missing key {', '.join(missing)}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in table.items()}
    try:
        return cls(**values, **extra)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def _scenario_from(data: dict[str, Any], default_name: str) -> Scenario:
    top = {k: v for k, v in data.items() if k not in ("network", "traffic", "fault")}
    network = _take(SwarmConfig, data.get("network", {}), "[network]")
    traffic = _take(Traffic, data.get("traffic", {}), "[traffic]")
    tables = data.get("fault", [])
    if not isinstance(tables, list):
        raise ValueError("fault must be [[fault]] tables, one per fault")
    faults = []
    for n, table in enumerate(tables):
        where = f"[[fault]] {n + 1}"
        if not isinstance(table, dict):
            raise ValueError(f"{where} must be a table, not {table!r}")
        table = dict(table)
        kind = table.pop("kind", None)
        if kind not in FAULTS:
            raise ValueError(f"{where}: kind must be one of {', '.join(FAULTS)}, not {kind!r}")
        cls = FAULTS[kind]
        faults.append(_take(cls, table, f"{where} ({kind})", cls.required))
    top.setdefault("name", default_name)
    plain = {f.name for f in fields(Scenario)} - {"network", "traffic", "faults"}
    unknown = sorted(set(top) - plain)
    if unknown:
        raise ValueError(f"unknown key in [scenario]: {', '.join(unknown)}")
    return Scenario(**top, network=network, traffic=traffic, faults=tuple(faults))


# -- running ----------------------------------------------------------------------------

Progress = Callable[[float, int, int, int, str], None]  # (t, arrivals, due, nodes up, phase)


@dataclass
class ScenarioRun:
    """A scenario being played: the swarm, the run's generator, and what faults noted."""

    scenario: Scenario
    swarm: Swarm
    rng: random.Random
    started: float = 0.0  # virtual time traffic started
    facts: dict[int, dict[str, Any]] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    report_extra: dict[str, Any] = field(default_factory=dict)

    async def until(self, at: float) -> None:
        """Sleep until `at` seconds after traffic started."""
        await trio.sleep_until(self.started + at)

    def check(self, name: str, ok: bool, detail: str = "") -> Check:
        return Check(name, bool(ok), detail)


async def run_scenario(
    scenario: Scenario,
    seed: int,
    *,
    progress: Progress | None = None,
    every: float = 5.0,
    data_dir: Path | None = None,
) -> dict[str, Any]:
    """Play `scenario` on a simulated swarm seeded with `seed`; the report as a dict.
    Runs inside `run_simulated` (virtual time, deterministic scheduling). The nodes' data
    dirs go under `data_dir`, or a temporary dir removed afterwards (see `Swarm.simulated`)."""
    async with Swarm.simulated(
        scenario.nodes, seed=seed, config=scenario.network, data_dir=data_dir
    ) as swarm:
        swarm.recorder.bucket = max(1.0, scenario.duration / 240)
        run = ScenarioRun(scenario, swarm, random.Random(f"{seed}:faults"))
        phase = ["forming"]
        async with trio.open_nursery() as watcher:
            if progress is not None:
                watcher.start_soon(_report_progress, swarm, progress, every, phase)
            await swarm.create_room()
            formed = await swarm.settle(FORM_TIMEOUT)
            swarm.recorder.note(
                trio.current_time(), "room formed" if formed else "room never formed"
            )
            run.started = trio.current_time()
            phase[0] = "traffic"
            async with swarm.traffic(scenario.traffic), trio.open_nursery() as faults:
                for fault in scenario.faults:
                    faults.start_soon(fault.run, run)
                await run.until(scenario.duration)
            phase[0] = "settling"
            converged = await swarm.settle(scenario.settle)
            watcher.cancel_scope.cancel()
        checks = [c for fault in scenario.faults for c in fault.check(run)]
        return build_report(run, seed, formed=formed, converged=converged, checks=checks)


async def _report_progress(
    swarm: Swarm, progress: Progress, every: float, phase: list[str]
) -> None:
    while True:
        recorder = swarm.recorder
        due = sum(s.expected for s in recorder.sent.values())
        # Arrivals due, not all arrivals: a node back from away catching up on ops sent
        # while it was gone is no delivery anyone counted as due (it went past 100%).
        progress(trio.current_time(), recorder.delivered_due, due, len(swarm.live()), phase[0])
        await trio.sleep(every)
