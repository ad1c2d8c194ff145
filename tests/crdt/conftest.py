"""Shared fixtures for the crdt tests: fixed identities and a room id."""

from __future__ import annotations

import pytest

from crdt import Identity, Replica

T0 = 1_780_000_000_000  # a wall clock reading in ms (2026)
ROOM = bytes(range(32))


def identity(n: int) -> Identity:
    """The n-th fixed test identity (deterministic, so failures reproduce)."""
    return Identity.from_seed(bytes([n + 1]) * 32)


@pytest.fixture
def alice() -> Replica:
    return Replica(ROOM, identity=identity(0))


@pytest.fixture
def bob() -> Replica:
    return Replica(ROOM, identity=identity(1))


@pytest.fixture(
    params=["ids merged when many", "ids merged every commit", "ids merged every 50 ops"]
)
def id_merges(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Runs a test three times: with the default merge of pending ids and chain entries
    into `op_ids` and `chain` (test rooms are small, so most stay pending); with a merge at
    every commit (so every lookup, set-aside and heal goes through the tables, as in a
    big room); and with a merge once 50 are pending (so reads take part of a chain from
    `chain` and the rest from the writer's tail)."""
    import crdt._applier as applier_module

    if request.param == "ids merged every commit":
        monkeypatch.setattr(applier_module, "MERGE_LEAST", 1)
        monkeypatch.setattr(applier_module, "MERGE_PART", 1 << 62)
    elif request.param == "ids merged every 50 ops":
        monkeypatch.setattr(applier_module, "MERGE_LEAST", 50)
        monkeypatch.setattr(applier_module, "MERGE_PART", 1 << 62)
    return str(request.param)
