"""contrib/: the systemd unit, the container recipe and the Grafana dashboard are checked
against what rumor really does (its commands, options and metric names)."""

from __future__ import annotations

import configparser
import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from node import NodeStatus, RoomStatus
from node.app._args import build_parser
from node.app._metrics import NodeCollector

ROOT = Path(__file__).resolve().parents[2]
CONTRIB = ROOT / "contrib"
UNIT = CONTRIB / "systemd" / "rumor.service"
CONTAINERFILE = CONTRIB / "container" / "Containerfile"
DASHBOARD = CONTRIB / "grafana" / "rumor-dashboard.json"


def _unit() -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text())
    return parser


def test_the_unit_is_hardened_and_runs_rumor_with_options_it_takes() -> None:
    unit = _unit()
    service = unit["Service"]
    for key, value in {
        "DynamicUser": "yes",
        "StateDirectory": "rumor",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
    }.items():
        assert service[key] == value, key
    assert service["Environment"] == "RUMOR_DATA_DIR=%S/rumor"
    command = shlex.split(service["ExecStart"])
    assert command[0].endswith("/rumor")
    build_parser().parse_args(command[1:])  # argparse exits (SystemExit) on an unknown option
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_systemd_analyze_verifies_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    fake = tmp_path / "rumor"  # verify checks that the command exists and is executable
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    unit = tmp_path / "rumor.service"
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/rumor", str(fake)))
    done = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )
    problems = [
        line
        for line in done.stderr.splitlines()
        if "rumor.service" in line and "Failed to" not in line  # (no systemd as PID 1 here)
    ]
    assert not problems, done.stderr


INSTRUCTIONS = {
    "FROM", "RUN", "COPY", "USER", "ENV", "VOLUME", "EXPOSE", "STOPSIGNAL",
    "HEALTHCHECK", "ENTRYPOINT", "CMD", "WORKDIR", "ARG", "LABEL",
}  # fmt: skip


def _instructions() -> list[tuple[str, str]]:
    text = CONTAINERFILE.read_text().replace("\\\n", " ")
    result = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            result.append((keyword, rest.strip()))
    return result


def test_the_container_recipe_parses_and_runs_rumor_with_options_it_takes() -> None:
    steps = _instructions()
    assert steps[0][0] == "FROM"
    assert all(keyword in INSTRUCTIONS for keyword, _ in steps), steps
    found = dict(steps)
    assert found["USER"] != "root"
    assert "RUMOR_DATA_DIR=/data" in found["ENV"]
    entrypoint = json.loads(found["ENTRYPOINT"])
    healthcheck = json.loads(found["HEALTHCHECK"].split("CMD", 1)[1])
    assert healthcheck == ["rumor", "status"]
    script = entrypoint[2]
    for command in re.findall(r"rumor ((?:init|run)[^|;]*)", script):
        words = [w for w in shlex.split(command) if w != "$@"]
        build_parser().parse_args(words)
    assert found["COPY"].split()[0] == "."
    assert (ROOT / "pyproject.toml").exists()


def _exported_names() -> set[str]:
    room = RoomStatus(
        room_id=b"\x01" * 32,
        name="r",
        peers=(b"\x02" * 32,),
        ops=3,
        held=1,
        behind=2,
        authors=2,
        ingesting=0,
        received=5,
        penalties=1,
        sent=4,
        duplicates=1,
        rejected=(("bad_signature", 2),),
    )
    status = NodeStatus(
        peer_id=b"\x00" * 32,
        address="127.0.0.1:1",
        links=(b"\x02" * 32,),
        dht_contacts=4,
        refusals=1,
        rooms=(room,),
        failed_rooms=(("x.sqlite3", "damaged"),),
        dht_counters=(("rpc_sent", 3),),
    )
    registry = CollectorRegistry()
    registry.register(NodeCollector(lambda: status))
    text = generate_latest(registry).decode()
    return {
        line.split("{")[0].split(" ")[0]
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


def test_every_metric_the_dashboard_queries_is_one_the_node_exports() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exported = _exported_names()
    queried: set[str] = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            queried |= set(re.findall(r"\brumor_[a-z_]+", target["expr"]))
    for variable in dashboard["templating"]["list"]:
        queried |= set(re.findall(r"\brumor_[a-z_]+", str(variable.get("query", ""))))
    assert queried, "the dashboard queries nothing"
    assert queried <= exported, sorted(queried - exported)
    # And it shows what the issue asks for.
    for wanted in (
        "rumor_links",
        "rumor_dht_contacts",
        "rumor_room_sync_lag_ops",
        "rumor_room_ops_received_total",
        "rumor_room_ops_sent_total",
        "rumor_room_ops_rejected_total",
        "rumor_room_penalties_total",
    ):
        assert wanted in queried, wanted
