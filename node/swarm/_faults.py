"""Faults a scenario schedules, each with the expectation it brings.

A fault is a frozen dataclass of plain values (so a TOML file can spell it): `at` is the
virtual second after traffic starts when it strikes. `run` performs it on a running
scenario; `check` returns the expectations it adds, judged after the swarm settled.
Every random choice comes from the run's seeded generator.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import trio

from . import _checks as checks
from ._hostile import ATTACKS, FORGED_TEXT, Hostile
from ._swarm import SwarmNode

if TYPE_CHECKING:
    from ._scenario import Check, ScenarioRun

__all__ = [
    "FAULTS",
    "Churn",
    "Degrade",
    "Fault",
    "Flood",
    "HostileMember",
    "LateJoin",
    "Offline",
    "Partition",
    "Slow",
]


def _holds_all(member: SwarmNode, ops: list[bytes]) -> int:
    """How many of `ops` the member's room holds (0 when it is down)."""
    room = member.room
    return 0 if room is None else sum(1 for op in ops if room.message(op) is not None)


@dataclass(frozen=True)
class Fault:
    kind: ClassVar[str] = ""
    required: ClassVar[tuple[str, ...]] = ("at",)  # keys a scenario file must spell out
    at: float = 10.0

    def __post_init__(self) -> None:
        checks.number("at", self.at, low=0)

    async def run(self, run: ScenarioRun) -> None:
        raise NotImplementedError

    def check(self, run: ScenarioRun) -> list[Check]:
        return []

    def facts(self, run: ScenarioRun) -> dict[str, Any]:
        return run.facts.setdefault(id(self), {})


@dataclass(frozen=True)
class Partition(Fault):
    """Split the live nodes in two random sides at `at`, heal at `heal`. Expected: each
    side keeps chatting (what a side wrote in the partition's first half reached that
    whole side by the heal), nothing crossed, and after healing everyone has everything."""

    kind: ClassVar[str] = "partition"
    required: ClassVar[tuple[str, ...]] = ("at", "heal")
    heal: float = 60.0
    fraction: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        checks.number("heal", self.heal, low=0)
        checks.later("heal", self.heal, "at", self.at)
        # Both sides must hold someone: 1 would be no partition at all.
        checks.number("fraction", self.fraction, low=0, high=1, low_open=True, high_open=True)

    async def run(self, run: ScenarioRun) -> None:
        facts = self.facts(run)
        await run.until(self.at)
        sides = run.swarm.split(self.fraction)
        start = trio.current_time()
        await run.until(self.heal)
        midway = start + (trio.current_time() - start) / 2
        outcome = []
        for mine, theirs in (sides, sides[::-1]):
            names = {m.index for m in mine}
            ops = [
                op
                for op, s in run.swarm.recorder.sent.items()
                if start <= s.at <= midway and s.author in names
            ]
            live = [m for m in mine if m.room is not None]
            within = sum(_holds_all(m, ops) for m in live)
            crossed = sum(_holds_all(m, ops) for m in theirs if m.room is not None)
            outcome.append((len(mine), len(ops), within, len(ops) * len(live), crossed))
        facts["sides"] = outcome
        run.swarm.heal()

    def check(self, run: ScenarioRun) -> list[Check]:
        sides = self.facts(run).get("sides", [])
        chatted = all(ops > 0 and within == due for _, ops, within, due, _ in sides)
        crossed = sum(c for *_, c in sides)
        detail = "; ".join(
            f"side of {n}: {ops} ops written, {within}/{due} held within the side"
            for n, ops, within, due, _ in sides
        )
        return [
            run.check("partition: both sides kept chatting", bool(sides) and chatted, detail),
            run.check("partition: nothing crossed it", crossed == 0, f"{crossed} ops crossed"),
        ]


@dataclass(frozen=True)
class Churn(Fault):
    """Between `at` and `until`, a `fraction` of the nodes leave, each for `downtime`
    seconds; a `replace` share of them never return and a new node takes their place.
    Expected: returning nodes and replacements catch up with every op."""

    kind: ClassVar[str] = "churn"
    required: ClassVar[tuple[str, ...]] = ("at", "until")
    until: float = 60.0
    fraction: float = 0.3
    downtime: float = 15.0
    replace: float = 0.3

    def __post_init__(self) -> None:
        super().__post_init__()
        checks.number("until", self.until, low=0)
        checks.later("until", self.until, "at", self.at)
        checks.number("fraction", self.fraction, low=0, high=1, low_open=True)
        checks.number("downtime", self.downtime, low=0, low_open=True)
        checks.number("replace", self.replace, low=0, high=1)

    async def run(self, run: ScenarioRun) -> None:
        facts = self.facts(run)
        facts.update(returned=[], replacements=[])
        await run.until(self.at)
        candidates = run.swarm.writers()[1:]  # the room's creator stays: someone must
        count = min(len(candidates), max(1, round(self.fraction * len(run.swarm.nodes))))
        chosen = run.rng.sample(candidates, count)
        span = max(0.0, self.until - self.at - self.downtime)
        plan = sorted((self.at + run.rng.uniform(0, span), m.index, m) for m in chosen)
        replaced = {m.index for m in chosen[: round(self.replace * count)]}
        async with trio.open_nursery() as nursery:
            for when, _, member in plan:
                nursery.start_soon(self._cycle, run, when, member, member.index in replaced)

    async def _cycle(self, run: ScenarioRun, when: float, member: SwarmNode, replace: bool) -> None:
        facts = self.facts(run)
        await run.until(when)
        swarm = run.swarm
        if replace:
            swarm.recorder.note(trio.current_time(), f"{member.name} leaves for good")
            await swarm.stop(member)
            member.retired = True
            await trio.sleep(self.downtime)
            new = await swarm.add_node()
            swarm.recorder.note(trio.current_time(), f"{new.name} replaces {member.name}")
            facts["replacements"].append(new.index)
        else:
            swarm.recorder.note(trio.current_time(), f"{member.name} leaves")
            await swarm.stop(member)
            await trio.sleep(self.downtime)
            await swarm.start(member)
            swarm.recorder.note(trio.current_time(), f"{member.name} returns")
            facts["returned"].append(member.index)

    def check(self, run: ScenarioRun) -> list[Check]:
        facts = self.facts(run)
        back = [
            run.swarm.nodes[i] for i in facts.get("returned", []) + facts.get("replacements", [])
        ]
        ops = list(run.swarm.recorder.sent)
        caught = [m for m in back if _holds_all(m, ops) == len(ops)]
        detail = (
            f"{len(facts.get('returned', []))} returned, "
            f"{len(facts.get('replacements', []))} replaced; {len(caught)}/{len(back)} "
            f"hold all {len(ops)} ops"
        )
        return [
            run.check(
                "churn: returning and new nodes caught up", len(caught) == len(back) > 0, detail
            )
        ]


@dataclass(frozen=True)
class Offline(Fault):
    """`count` nodes go offline at `at` and come back at `back` (on a new address when
    `move`). Expected: they receive everything written while they were away."""

    kind: ClassVar[str] = "offline"
    required: ClassVar[tuple[str, ...]] = ("at", "back")
    back: float = 300.0
    count: int = 1
    move: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        checks.number("back", self.back, low=0)
        checks.later("back", self.back, "at", self.at)
        checks.whole("count", self.count, low=1)
        checks.flag("move", self.move)

    async def run(self, run: ScenarioRun) -> None:
        facts = self.facts(run)
        await run.until(self.at)
        candidates = run.swarm.writers()[1:]  # the room's creator stays
        away = run.rng.sample(candidates, min(self.count, len(candidates)))
        start = trio.current_time()
        for member in away:
            run.swarm.recorder.note(start, f"{member.name} goes offline")
            await run.swarm.stop(member)
        await run.until(self.back)
        facts["missed"] = [op for op, s in run.swarm.recorder.sent.items() if s.at >= start]
        for member in away:
            await run.swarm.start(member, move=self.move)
            run.swarm.recorder.note(trio.current_time(), f"{member.name} is back")
        facts["away"] = [m.index for m in away]

    def check(self, run: ScenarioRun) -> list[Check]:
        facts = self.facts(run)
        missed = facts.get("missed", [])
        away = [run.swarm.nodes[i] for i in facts.get("away", [])]
        held = [_holds_all(m, missed) for m in away]
        ok = bool(away) and all(h == len(missed) for h in held)
        detail = (
            f"{len(away)} back after {self.back - self.at:g} s; "
            f"held {held} of {len(missed)} missed ops"
        )
        return [run.check("offline: returning nodes got what they missed", ok, detail)]


@dataclass(frozen=True)
class Slow(Fault):
    """`count` nodes get `one_way` seconds more on everything to or from them."""

    kind: ClassVar[str] = "slow"
    count: int = 2
    one_way: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        checks.whole("count", self.count, low=1)
        checks.number("one_way", self.one_way, low=0, low_open=True)

    async def run(self, run: ScenarioRun) -> None:
        await run.until(self.at)
        chosen = run.rng.sample(run.swarm.writers(), min(self.count, len(run.swarm.writers())))
        for member in chosen:
            run.swarm.slow(member, self.one_way)
        self.facts(run)["slow"] = [m.index for m in chosen]

    def check(self, run: ScenarioRun) -> list[Check]:
        slow = [run.swarm.nodes[i] for i in self.facts(run).get("slow", [])]
        ops = list(run.swarm.recorder.sent)
        held = [_holds_all(m, ops) for m in slow]
        ok = bool(slow) and all(h == len(ops) for h in held)
        return [run.check("slow: slow nodes caught up", ok, f"held {held} of {len(ops)}")]


@dataclass(frozen=True)
class Degrade(Fault):
    """`count` random pairs of nodes get extra `latency`, `jitter` and `loss` between them."""

    kind: ClassVar[str] = "degrade"
    count: int = 5
    latency: float = 0.1
    jitter: float = 0.05
    loss: float = 0.05

    def __post_init__(self) -> None:
        super().__post_init__()
        checks.whole("count", self.count, low=1)
        checks.number("latency", self.latency, low=0)
        checks.number("jitter", self.jitter, low=0)
        checks.number("loss", self.loss, low=0, high=1, high_open=True)

    async def run(self, run: ScenarioRun) -> None:
        await run.until(self.at)
        live = run.swarm.writers()
        for _ in range(self.count):
            a, b = run.rng.sample(live, 2)
            run.swarm.degrade(a, b, latency=self.latency, jitter=self.jitter, loss=self.loss)
        run.swarm.recorder.note(trio.current_time(), f"{self.count} links degraded")


@dataclass(frozen=True)
class Flood(Fault):
    """One member writes `rate` valid messages a second for `seconds`. Expected: the
    others' messages written meanwhile still reach everyone."""

    kind: ClassVar[str] = "flood"
    seconds: float = 20.0
    rate: float = 50.0

    def __post_init__(self) -> None:
        super().__post_init__()
        checks.number("seconds", self.seconds, low=0, low_open=True)
        checks.number("rate", self.rate, low=0, low_open=True)

    async def run(self, run: ScenarioRun) -> None:
        await run.until(self.at)
        flooder = run.rng.choice(run.swarm.writers())
        start = trio.current_time()
        facts = self.facts(run)
        facts["flooder"] = flooder.index
        facts["sent"] = await run.swarm.flood(flooder, self.rate, self.seconds)
        facts["window"] = (start, trio.current_time())

    def check(self, run: ScenarioRun) -> list[Check]:
        facts = self.facts(run)
        if "window" not in facts:
            return [run.check("flood: the others got through", False, "the flood never ran")]
        start, end = facts["window"]
        others = [
            op
            for op, s in run.swarm.recorder.sent.items()
            if start <= s.at <= end and s.author != facts["flooder"]
        ]
        live = run.swarm.writers()
        held = sum(_holds_all(m, others) for m in live)
        detail = (
            f"{facts['sent']} flood ops; {len(others)} others' ops, "
            f"{held}/{len(others) * len(live)} held"
        )
        return [run.check("flood: the others got through", held == len(others) * len(live), detail)]


@dataclass(frozen=True)
class HostileMember(Fault):
    """A member with the secret sends garbage to one node, a forged op to another, and an
    equivocating pair of ops to two more. Expected: it is cut off on each link, nothing
    forged is stored anywhere, and every node sees it forked alike."""

    kind: ClassVar[str] = "hostile"
    attacks: tuple[str, ...] = ("garbage", "forged", "equivocate")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.attacks, tuple | list) or not self.attacks:
            raise ValueError(
                f"attacks must be a list of {', '.join(ATTACKS)}, not {self.attacks!r}"
            )
        for attack in self.attacks:
            checks.choice("attacks", attack, ATTACKS)

    async def run(self, run: ScenarioRun) -> None:
        await run.until(self.at)
        hostile = Hostile(run.swarm)
        self.facts(run)["hostile"] = hostile
        live = run.swarm.writers()
        targets = run.rng.sample(live, min(len(live), 4))
        for n, attack in enumerate(self.attacks):
            if attack == "equivocate":
                await hostile.equivocate(targets[n % len(targets)], targets[(n + 1) % len(targets)])
            else:
                await hostile.attack(targets[n % len(targets)], attack)

    def check(self, run: ScenarioRun) -> list[Check]:
        hostile: Hostile | None = self.facts(run).get("hostile")
        if hostile is None:
            return [run.check("hostile: cut off", False, "the attack never ran")]
        run.report_extra["hostile"] = hostile.attacks
        cuts = [a for a in hostile.attacks if a["cut_off"] is not None]
        cut = all(a["cut_off"] for a in cuts)
        rooms = [m.room for m in run.swarm.writers() if m.room is not None]
        forged = sum(1 for room in rooms for msg in room.timeline() if msg.text == FORGED_TEXT)
        checks = [
            run.check(
                "hostile: cut off after each attack",
                bool(cuts) and cut,
                f"{sum(1 for a in cuts if a['cut_off'])}/{len(cuts)} links closed by the node",
            ),
            run.check("hostile: nothing forged is stored", forged == 0, f"{forged} forged copies"),
        ]
        if hostile.twins:
            seen = sum(1 for room in rooms if hostile.peer_id in room.forked_authors())
            checks.append(
                run.check(
                    "hostile: every node sees the equivocation",
                    seen == len(rooms),
                    f"{seen}/{len(rooms)} see the author forked",
                )
            )
        return checks


@dataclass(frozen=True)
class LateJoin(Fault):
    """`count` new nodes join at `at`. Expected: each gets the whole history."""

    kind: ClassVar[str] = "late-join"
    count: int = 2

    def __post_init__(self) -> None:
        super().__post_init__()
        checks.whole("count", self.count, low=1)

    async def run(self, run: ScenarioRun) -> None:
        await run.until(self.at)
        facts = self.facts(run)
        facts["before"] = list(run.swarm.recorder.sent)
        facts["late"] = []
        for _ in range(self.count):
            member = await run.swarm.add_node()
            run.swarm.recorder.note(trio.current_time(), f"{member.name} joins late")
            facts["late"].append(member.index)

    def check(self, run: ScenarioRun) -> list[Check]:
        facts = self.facts(run)
        before = facts.get("before", [])
        late = [run.swarm.nodes[i] for i in facts.get("late", [])]
        held = [_holds_all(m, before) for m in late]
        ok = bool(late) and all(h == len(before) for h in held)
        return [
            run.check(
                "late joiners got the whole history",
                ok,
                f"held {held} of the {len(before)} ops written before they came",
            )
        ]


FAULTS: dict[str, type[Fault]] = {
    cls.kind: cls
    for cls in (Partition, Churn, Offline, Slow, Degrade, Flood, HostileMember, LateJoin)
}
