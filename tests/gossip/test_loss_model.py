"""The in-memory network's stream loss models (tests/gossip/cluster.py): when a lost link
message and the ones behind it are delivered, in exact virtual times."""

from __future__ import annotations

import random

import pytest

from node.gossip import Prune, Send, encode_message
from tests.gossip.cluster import Cluster

LOST, KEPT = 0.0, 0.999  # draws below / above the loss probability


class _Script(random.Random):
    """Loss draws from a script (then kept); latencies and jitter stay as configured."""

    def __init__(self, draws: list[float]) -> None:
        super().__init__(0)
        self.draws = draws

    def random(self) -> float:
        return self.draws.pop(0) if self.draws else KEPT

    def uniform(self, a: float, b: float) -> float:
        return (a + b) / 2  # the jitter, none here: not a loss draw


class _Recording(Cluster):
    delivered: list[tuple[float, bytes]]

    def _on_deliver(self, src: int, dst: int, data: bytes, kind: int | None, count: int) -> None:
        self.delivered.append((round(self.now, 6), data))


def _pair(model: str, draws: list[float]) -> _Recording:
    """Two nodes on a 30 ms link, no jitter; the link's own HELLOs and vectors delivered."""
    cluster = _Recording(2, loss=0.05, loss_model=model, latency=(0.03, 0.03), jitter=0.0)
    cluster.delivered = []
    cluster.link(0, 1)
    cluster.run(1.0)
    cluster.delivered.clear()
    cluster.rng = _Script(draws)
    return cluster


def _send(cluster: Cluster, at: float, message: bytes) -> None:
    cluster.run(at - cluster.now)
    peer = cluster.nodes[1].peer_id
    cluster._perform(0, [Send(peer, message)])


A, B = (encode_message(Prune((bytes([n]) * 32,))) for n in (1, 2))


def _times(cluster: _Recording) -> list[tuple[float, bytes]]:
    cluster.run(2.0)
    return [(round(t - 1.0, 6), data) for t, data in cluster.delivered]


def test_rto_model_every_loss_waits_for_the_timeout() -> None:
    cluster = _pair("rto", [LOST, KEPT, KEPT])
    _send(cluster, 1.0, A)
    _send(cluster, 1.01, B)  # behind it: waits (head-of-line blocking)
    assert _times(cluster) == [(0.23, A), (0.23, B)]


def test_tcp_model_a_later_message_brings_fast_recovery() -> None:
    """RACK: B, sent 10 ms after A, is SACKed at 10 + 60 ms; A is sent again at
    max(70 ms, RTT + min_rtt / 4 = 75 ms) and arrives 30 ms later; B waits behind it."""
    cluster = _pair("tcp", [LOST, KEPT, KEPT])
    _send(cluster, 1.0, A)
    _send(cluster, 1.01, B)
    assert _times(cluster) == [(0.105, A), (0.105, B)]


def test_tcp_model_a_lone_tail_loss_waits_for_the_probe_with_the_minimum_rto() -> None:
    """Nothing else in flight: the probe waits 2 x SRTT + 200 ms, capped by the RTO
    (200 ms here)."""
    cluster = _pair("tcp", [LOST, KEPT])
    _send(cluster, 1.0, A)
    assert _times(cluster) == [(0.23, A)]


def test_tcp_model_a_tail_loss_behind_a_packet_in_flight_is_probed_after_two_srtt() -> None:
    cluster = _pair("tcp", [KEPT, LOST, KEPT])
    _send(cluster, 1.0, B)
    _send(cluster, 1.01, A)  # lost, and the last: probed 120 ms (+ 2 ms) after
    assert _times(cluster) == [(0.03, B), (0.162, A)]


def test_tcp_model_a_lost_retransmission_waits_for_the_rto() -> None:
    cluster = _pair("tcp", [LOST, LOST, KEPT, KEPT])
    _send(cluster, 1.0, A)
    _send(cluster, 1.01, B)
    # Sent again at 75 ms, lost again: the RTO (200 ms) later, then 30 ms on the wire.
    assert _times(cluster) == [(0.305, A), (0.305, B)]


def test_an_unknown_loss_model_is_refused() -> None:
    with pytest.raises(ValueError, match="loss_model"):
        Cluster(2, loss_model="udp")
