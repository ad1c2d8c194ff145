"""What an operator sees: drop counters labelled from `DropReason` only, dropped input
summed up at INFO at most once a minute (details at DEBUG), a failed bootstrap as one
WARNING and a health flag that clears when contacts come; and the environment the node
is given: one datagram path for every transport, the injected blocking runner."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import msgpack
import pytest
import trio
import trio.testing
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dht import (
    DatagramDropped,
    DHTConfig,
    DHTNode,
    DHTProtocol,
    DropReason,
    DropSummary,
    PeerRecord,
    SimNetwork,
    StorageLimits,
)
from dht._ids import Address, int_to_id
from dht._wire import MAX_DATAGRAM, encode_request
from rumor_runtime import INLINE

from .test_hostile import mutated, valid_datagrams

T = TypeVar("T")
WALL = 1.7e9
ME = int_to_id(1)
KEY = int_to_id(12345)
DROP_LABELS = {reason.value for reason in DropReason}
RPCS = ("ping", "stun", "store", "find_node", "find_value", "get_peers", "announce")
# Every other counter the core keeps: a fixed set too.
OTHER_LABELS = (
    {"datagrams in", "rpc retry", "rpc timeout", "rpc not sent: too many pending"}
    | {"welcome store", "own record refused", "bootstrap failed"}
    | {"served " + name for name in RPCS}
    | {"rpc " + name for name in RPCS}
)


def make_node(**config: Any) -> DHTProtocol:
    return DHTProtocol(
        ME, rng=random.Random(0), now=0.0, config=DHTConfig(**config), wall_offset=WALL
    )


def request(name: str, *args: Any, msg_id: bytes = bytes(20)) -> bytes:
    return encode_request(msg_id, name, args)


def drop_reasons(node: DHTProtocol) -> list[DropReason]:
    reasons = []
    while (event := node.next_event()) is not None:
        if isinstance(event, DatagramDropped):
            reasons.append(event.reason)
    return reasons


def test_hostile_datagrams_of_every_kind_are_counted_under_fixed_labels() -> None:
    node = make_node(limits=StorageLimits(max_value_bytes=10), rate_limit=1.0, rate_burst=30.0)
    alice: Address = ("10.0.0.2", 4000)
    mallory: Address = ("10.6.6.6", 4000)
    sk = Ed25519PrivateKey.generate()
    hostile = [
        b"\x00" + bytes(20) + b"\xc4" + b"x" * MAX_DATAGRAM,  # oversize
        b"\x00\x01",  # too short
        b"\x05" + bytes(20) + b"\x90",  # unknown kind
        b"\x0a" + bytes(20) + b"\x90",  # unknown kind, a hex letter in it
        b"\x00" + bytes(20) + b"\xc1",  # not msgpack
        b"\x00" + bytes(20) + msgpack.packb([1, 2, 3]),  # not [name, args]
        request("ping", b"short id"),  # bad arguments
        request("store", ME, KEY, [1, 2]),  # a value of the wrong type
        request("launch_missiles", 1),  # unknown rpc
        request("store", int_to_id(6), KEY, b"x" * 11),  # refused: too large
        request("announce", int_to_id(6), KEY, b"stolen", b"record"),  # bad token
        b"\x01" + b"\x07" * 20 + msgpack.packb(True),  # a response to nothing
    ]
    for data in hostile:
        node.receive_datagram(data, mallory, 0.0)
    # A token, then a forged record and a record naming another host.
    node.receive_datagram(request("get_peers", int_to_id(6), KEY), mallory, 0.0)
    [(reply, _)] = [d for d in node.datagrams_to_send() if d[0][:1] == b"\x01"][-1:]
    token = msgpack.unpackb(reply[21:])["token"]
    theirs = PeerRecord.create(sk, KEY, [alice], int(WALL) + 60)
    forged = PeerRecord(theirs.peer_id, theirs.addresses, theirs.expires + 1, theirs.signature)
    for record in (forged, theirs):
        node.receive_datagram(
            request("announce", int_to_id(6), KEY, token, record.encode()), mallory, 0.0
        )
    # From Alice herself: a newer record of hers, then an older one (refused).
    node.receive_datagram(request("get_peers", int_to_id(2), KEY), alice, 0.0)
    token = msgpack.unpackb(node.datagrams_to_send()[-1][0][21:])["token"]
    newer = PeerRecord.create(sk, KEY, [alice], int(WALL) + 120)
    for record in (newer, theirs):
        node.receive_datagram(
            request("announce", int_to_id(2), KEY, token, record.encode()), alice, 0.0
        )
    node.datagrams_to_send()
    # Replies from the wrong address, and a reply that is nonsense.
    node.start_ping(alice, 0.0)
    node.start_ping(("10.0.0.3", 4000), 0.0)
    (ping_a, _), (ping_b, to_b) = node.datagrams_to_send()
    node.receive_datagram(b"\x01" + ping_a[1:21] + msgpack.packb(ME), mallory, 0.0)
    node.receive_datagram(b"\x01" + ping_b[1:21] + msgpack.packb("nonsense"), to_b, 0.0)
    for _ in range(40):  # a flood
        node.receive_datagram(request("ping", int_to_id(6)), mallory, 0.0)

    reasons = drop_reasons(node)
    assert set(reasons) == set(DropReason)  # every kind of drop was met ...
    assert set(node.counters) <= DROP_LABELS | OTHER_LABELS  # ... and counted by label only
    for reason in DropReason:
        assert node.counters[reason.value] == reasons.count(reason)
    assert node.counters[DropReason.UNKNOWN_KIND.value] == 2


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(datagrams=st.lists(st.binary(max_size=200) | valid_datagrams() | mutated(), max_size=30))
def test_fuzzed_input_only_ever_uses_fixed_labels(datagrams: list[bytes]) -> None:
    node = make_node(rate_burst=10.0)
    for i, data in enumerate(datagrams):
        node.receive_datagram(data, (f"10.0.0.{i % 3 + 1}", 4000), 1.0)
    node.handle_timer(node.get_timer())
    assert set(node.counters) <= DROP_LABELS | OTHER_LABELS
    assert all(isinstance(reason, DropReason) for reason in drop_reasons(node))


def test_drops_are_summed_up_by_reason_at_most_once_per_interval() -> None:
    node = make_node(drop_summary_interval=60.0, maintenance_interval=1000.0)
    assert node.get_timer() == 1000.0  # nothing dropped: no summary is owed
    node.receive_datagram(b"\x05" + bytes(21), ("10.0.0.9", 1), 10.0)
    assert node.get_timer() == 60.0
    node.receive_datagram(b"junk", ("10.0.0.9", 1), 20.0)
    node.receive_datagram(b"\x05" + bytes(21), ("10.0.0.8", 1), 30.0)
    node.handle_timer(60.0)
    summaries = [e for e in iter(node.next_event, None) if isinstance(e, DropSummary)]
    assert [(s.since, s.counts) for s in summaries] == [
        (0.0, ((DropReason.MALFORMED, 1), (DropReason.UNKNOWN_KIND, 2)))
    ]
    node.receive_datagram(b"junk", ("10.0.0.9", 1), 61.0)
    assert node.get_timer() == 120.0  # a minute after the last summary, not at once


# -- logs and health, in virtual time on the simulator -------------------------------------


def quiet_network() -> SimNetwork:
    return SimNetwork(random.Random(0), latency=(0.0, 0.0), jitter=0.0)


def dht_records(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "dht" and r.levelno == level]


async def test_dropped_input_is_logged_as_a_summary_once_a_minute(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="dht")
    net = quiet_network()
    sources = [net.socket(f"10.0.1.{i}") for i in range(1, 11)]
    async with DHTNode(transport=net.socket("10.0.0.1"), rng=random.Random(1)) as node:
        start = trio.current_time()
        sent = 0
        # Two kinds of garbage from ten hosts, every second for three minutes.
        while trio.current_time() - start < 179.5:
            for sock in sources:
                sock.send_nowait(b"\x05" + bytes(21), node.address)
                sock.send_nowait(b"garbage", node.address)
                sent += 2
            await trio.sleep(1.0)
        await trio.sleep(1.0)
    summaries = [r for r in dht_records(caplog, logging.INFO) if "dropped" in r.getMessage()]
    assert len(summaries) == 3  # at 60, 120 and 180 s: not one per host and reason
    counted = 0
    for record in summaries:
        message = record.getMessage()
        assert "dropped: unknown datagram kind: " in message
        assert "dropped: malformed datagram: " in message
        counts = message.split(" s: ")[1].split(", ")
        counted += sum(int(part.rsplit(": ", 1)[1]) for part in counts)
    assert counted == sent
    details = [r for r in dht_records(caplog, logging.DEBUG) if "dropped input" in r.getMessage()]
    assert len(details) == sent  # every datagram, at DEBUG only


async def test_a_failed_bootstrap_warns_once_and_clears_when_contacts_come(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="dht")
    net = quiet_network()
    nobody: Address = ("10.0.0.7", 4000)  # no socket there
    cut_off = net.socket("10.0.0.8")
    net.block("10.0.0.1", "10.0.0.8")
    config = DHTConfig(bootstrap_grace=20.0)
    async with (
        DHTNode(transport=net.socket("10.0.0.1"), rng=random.Random(1), config=config) as node,
        DHTNode(transport=cut_off, rng=random.Random(2)) as other,
    ):
        start = trio.current_time()
        assert node.health().bootstrap_failed is False
        assert await node.bootstrap([nobody, other.address]) == 0
        await trio.sleep_until(start + 19.9)
        assert not node.bootstrap_failed
        assert dht_records(caplog, logging.WARNING) == []
        await trio.sleep_until(start + 20.1)
        assert node.bootstrap_failed
        health = node.health()
        assert (health.contacts, health.bootstrap_addresses) == (0, (nobody, other.address))
        [warning] = dht_records(caplog, logging.WARNING)
        assert "10.0.0.7:4000" in warning.getMessage()
        assert "10.0.0.8:4000" in warning.getMessage()
        assert node.counters()["bootstrap failed"] == 1
        # Retrying while it is down does not warn again.
        assert await node.bootstrap([nobody]) == 0
        await trio.sleep(60.0)
        assert len(dht_records(caplog, logging.WARNING)) == 1
        assert node.bootstrap_failed
        # The link heals and the other node says hello: contacts have come.
        net.unblock("10.0.0.1", "10.0.0.8")
        assert await other.ping(node.address) == node.node_id
        assert not node.bootstrap_failed
        assert node.health().contacts == 1
        assert any("recovered" in r.getMessage() for r in dht_records(caplog, logging.INFO))


async def test_a_node_that_joins_in_time_reports_no_failure(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    net = quiet_network()
    async with (
        DHTNode(transport=net.socket("10.0.0.1"), rng=random.Random(1)) as node,
        DHTNode(transport=net.socket("10.0.0.2"), rng=random.Random(2)) as other,
    ):
        assert await node.bootstrap([other.address]) == 1
        await trio.sleep(100.0)
        assert not node.bootstrap_failed
        assert "bootstrap failed" not in node.counters()
    assert dht_records(caplog, logging.WARNING) == []


# -- the injected environment ---------------------------------------------------------------


def count_receives(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record the size of every batch that enters a node's core."""
    received: list[int] = []
    original = DHTNode._receive

    def counting(self: DHTNode, batch: list[tuple[bytes, Address]]) -> None:
        received.append(len(batch))
        original(self, batch)

    monkeypatch.setattr(DHTNode, "_receive", counting)
    return received


async def test_udp_datagrams_enter_the_core_through_the_one_datagram_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    received = count_receives(monkeypatch)
    async with DHTNode("127.0.0.1") as a, DHTNode("127.0.0.1") as b:
        assert await a.ping(b.address) == b.node_id
    assert sum(received) == 2  # the request at b, the reply at a


async def test_simulated_datagrams_take_the_same_path(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    received = count_receives(monkeypatch)
    net = quiet_network()
    async with (
        DHTNode(transport=net.socket("10.0.0.1"), rng=random.Random(1)) as a,
        DHTNode(transport=net.socket("10.0.0.2"), rng=random.Random(2)) as b,
    ):
        assert await a.ping(b.address) == b.node_id
    assert sum(received) == 2


async def test_the_state_file_is_read_and_written_by_the_injected_runner(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    calls: list[str] = []

    async def recording(fn: Callable[..., T], *args: object, limiter: object = None) -> T:
        calls.append(fn.__name__)
        return await INLINE(fn, *args)

    net = quiet_network()
    sock = net.socket("10.0.0.1")
    async with DHTNode(transport=sock, rng=random.Random(1), data_dir=tmp_path, blocking=recording):
        pass
    assert calls == ["_read_file", "_write_file"]
