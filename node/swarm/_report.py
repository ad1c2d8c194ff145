"""The report of a swarm run, as data: a dict with a fixed key order that becomes
report.json (and, drawn, report.html).

A simulated run's report carries nothing that depends on the machine or on chance the
seed does not reach: no wall-clock time, no temporary paths, no ciphertext. Byte counts
are lengths, and Noise's ephemeral keys change a frame's bytes but never its length.
Floats are rounded so that their text is short and stable.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Final

from ._measure import percentile

if TYPE_CHECKING:
    from ._scenario import Check, ScenarioRun
    from ._swarm import Swarm

__all__ = ["FORMAT", "build_report", "dumps", "scenario_dict"]

FORMAT: Final = "rumor-swarm-report/1"


def dumps(report: dict[str, Any]) -> str:
    """The report as JSON text: the same bytes for the same report."""
    return json.dumps(report, indent=1, ensure_ascii=False) + "\n"


def _r(value: float) -> float:
    return round(value, 3)


def scenario_dict(scenario: Any) -> dict[str, Any]:
    """The scenario as plain data (its faults with their kinds)."""
    from dataclasses import asdict

    network = {
        k: v
        for k, v in asdict(scenario.network).items()
        if k not in ("gossip_config", "link_config")
    }
    return {
        "name": scenario.name,
        "description": scenario.description,
        "nodes": scenario.nodes,
        "duration": scenario.duration,
        "settle": scenario.settle,
        "network": {k: list(v) if isinstance(v, tuple) else v for k, v in network.items()},
        "traffic": asdict(scenario.traffic),
        "faults": [
            {
                "kind": f.kind,
                **{k: list(v) if isinstance(v, tuple) else v for k, v in asdict(f).items()},
            }
            for f in scenario.faults
        ],
    }


def _delivery(swarm: Swarm) -> dict[str, Any]:
    """Every live member against every message the swarm sent."""
    ops = list(swarm.recorder.sent)
    members = [m for m in swarm.writers() if m.room is not None]
    held = due = 0
    missing: dict[str, int] = {}
    for member in members:
        room = member.room
        assert room is not None
        have = sum(1 for op in ops if room.message(op) is not None)
        held += have
        due += len(ops)
        if have < len(ops):
            missing[member.name] = len(ops) - have
    return {
        "messages": len(ops),
        "members": len(members),
        "held": held,
        "due": due,
        "rate": _r(held / due) if due else 1.0,
        "missing_by_node": missing,
    }


def _nodes(swarm: Swarm) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Per node: bytes by kind, counters, links; and the swarm's totals."""
    traffic = swarm.network.traffic
    per_node: dict[str, Any] = {}
    rejected: dict[str, int] = {}
    totals = {"received": 0, "sent": 0, "duplicates": 0, "penalties": 0}
    names = swarm.peer_names()
    for member in swarm.nodes:
        counters = dict(member.totals)
        reasons = dict(member.rejected)
        links: list[str] = []
        dht_contacts = None
        if member.node is not None:
            status = member.node.status()
            links = sorted(names.get(p, "outsider") for p in status.links)
            dht_contacts = status.dht_contacts
            for room in status.rooms:
                for key in totals:
                    counters[key] = counters.get(key, 0) + getattr(room, key)
                for reason, count in room.rejected:
                    reasons[reason] = reasons.get(reason, 0) + count
        for key in totals:
            totals[key] += counters.get(key, 0)
        for reason, count in reasons.items():
            rejected[reason] = rejected.get(reason, 0) + count
        link_out, link_in, dht_out, dht_in = traffic.get(member.host, [0, 0, 0, 0])
        per_node[member.name] = {
            "peer": swarm.short_id(member),
            "up": member.up,
            "retired": member.retired,
            "starts": member.incarnation,
            "links": links,
            "dht_contacts": dht_contacts,
            "bytes": {
                "link_sent": link_out,
                "link_received": link_in,
                "dht_sent": dht_out,
                "dht_received": dht_in,
            },
            "ops": {k: counters.get(k, 0) for k in totals},
        }
    return per_node, totals, dict(sorted(rejected.items()))


def _mesh(per_node: dict[str, Any]) -> dict[str, Any]:
    edges = sorted(
        {
            tuple(sorted((name, peer)))
            for name, node in per_node.items()
            for peer in node["links"]
            if peer in per_node
        }
    )
    up = [n for n in per_node.values() if n["up"]]
    degrees = sorted(len(n["links"]) for n in up)
    contacts = sorted(n["dht_contacts"] or 0 for n in up)
    return {
        "links": {
            "edges": [list(e) for e in edges],
            "degree_min": degrees[0] if degrees else 0,
            "degree_mean": _r(sum(degrees) / len(degrees)) if degrees else 0.0,
            "degree_max": degrees[-1] if degrees else 0,
            "isolated": sorted(k for k, n in per_node.items() if n["up"] and not n["links"]),
        },
        "dht": {
            "contacts_min": contacts[0] if contacts else 0,
            "contacts_median": percentile(contacts, 0.5),
            "contacts_max": contacts[-1] if contacts else 0,
            "without_contacts": sum(1 for c in contacts if c == 0),
        },
    }


def build_report(
    run: ScenarioRun, seed: int, *, formed: bool, converged: bool, checks: list[Check]
) -> dict[str, Any]:
    """The whole report of a finished run (its swarm still open)."""
    from ._scenario import Check

    swarm = run.swarm
    recorder = swarm.recorder
    digests = swarm.digests()
    distinct = sorted(set(digests.values()))
    delivery = _delivery(swarm)
    per_node, totals, rejected = _nodes(swarm)
    pairs = delivery["due"] - delivery["messages"]  # others than the author
    all_checks = [
        Check("the room formed", formed),
        Check(
            "converged: every live node shows the same room",
            converged and len(distinct) == 1,
            f"{len(distinct)} distinct digest(s) over {len(digests)} nodes",
        ),
        Check(
            "every live node holds every message",
            delivery["held"] == delivery["due"],
            f"{delivery['held']}/{delivery['due']}",
        ),
        *checks,
    ]
    end = swarm.converged_at or 0.0
    traffic_end = swarm.traffic_ended_at or run.started
    return {
        "format": FORMAT,
        "mode": "simulated",
        "seed": seed,
        "scenario": scenario_dict(run.scenario),
        "passed": all(c.ok for c in all_checks),
        "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in all_checks],
        "time": {
            "traffic_start": _r(run.started),
            "traffic_end": _r(traffic_end),
            "converged_at": _r(end) if converged else None,
            "time_to_converge": _r(max(0.0, end - traffic_end)) if converged else None,
        },
        "delivery": delivery,
        "latency_ms": recorder.latency_figures(),
        "receptions_per_op": _r(totals["received"] / pairs) if pairs > 0 else 0.0,
        "ops": totals,
        "rejected": rejected,
        "convergence": {
            "converged": converged and len(distinct) == 1,
            "distinct_digests": len(distinct),
            "digests": digests,
        },
        **_mesh(per_node),
        "dht_network": {
            "datagrams_sent": swarm.network.dht.sent,
            "datagrams_dropped": swarm.network.dht.dropped,
        },
        "nodes": per_node,
        "events": [[t, what] for t, what in recorder.events],
        "delivery_over_time": recorder.delivery_series(traffic_end if not converged else end),
        **run.report_extra,
    }
