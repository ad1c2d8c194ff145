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
