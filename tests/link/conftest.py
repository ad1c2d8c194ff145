"""Shared helpers for the link tests: fixed identities, rooms and in-memory session pairs."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from crdt import Identity
from node.link import Event, LinkConfig, LinkSession

ROOM_A = bytes([0xA1]) * 32
ROOM_B = bytes([0xB2]) * 32
SECRET_A = bytes([0x5A]) * 32
SECRET_B = bytes([0x5B]) * 32
WRONG_SECRET = bytes([0x66]) * 32
FAST = LinkConfig(keepalive=5.0, idle_timeout=15.0, handshake_timeout=3.0)


def identity(n: int) -> Identity:
    """The n-th fixed test identity (deterministic, so failures reproduce)."""
    return Identity.from_seed(bytes([n + 1]) * 32)


ALICE, BOB, MALLORY = identity(0), identity(1), identity(2)


def pump(src: LinkSession, dst: LinkSession, now: float = 0.0) -> list[Event]:
    """Deliver everything ``src`` has to send to ``dst``; ``dst``'s events."""
    events: list[Event] = []
    for message in src.messages_to_send(now):
        events += dst.receive_message(message, now)
    return events


def converse(
    a: LinkSession, b: LinkSession, now: float = 0.0, rounds: int = 4
) -> tuple[list[Event], list[Event]]:
    """Exchange messages until both are quiet (bounded); the events each side saw."""
    seen_a: list[Event] = []
    seen_b: list[Event] = []
    for _ in range(rounds):
        seen_b += pump(a, b, now)
        seen_a += pump(b, a, now)
    assert a.pending_messages == 0 and b.pending_messages == 0
    return seen_a, seen_b


def session_pair(
    a: Identity = ALICE,
    b: Identity = BOB,
    *,
    config: LinkConfig | None = None,
    now: float = 0.0,
) -> tuple[LinkSession, LinkSession]:
    """An initiator and a responder, not yet connected."""
    return (
        LinkSession(a, initiator=True, now=now, config=config),
        LinkSession(b, initiator=False, now=now, config=config),
    )


def established(
    config: LinkConfig | None = None, now: float = 0.0
) -> tuple[LinkSession, LinkSession]:
    """An initiator and a responder that finished the handshake at ``now``."""
    a, b = session_pair(config=config, now=now)
    converse(a, b, now)
    assert a.is_established and b.is_established
    return a, b


@pytest.fixture(autouse=True)
def _collect_garbage() -> Iterator[None]:
    """Collect after each test, so a leaked socket's ResourceWarning fails the test that
    leaked it (pytest turns unraisable exceptions into errors) instead of a random one."""
    yield
    gc.collect()
