"""The sans-IO core driven by hand: exact timers, retransmission, refresh, republish,
re-announce and eviction, in an in-memory cluster with a hand-moved clock."""

from __future__ import annotations

import random

import msgpack
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from crdt import verify_signature
from dht import (
    DHTConfig,
    DHTProtocol,
    GetPeersResult,
    GetResult,
    OperationDone,
    PeerRecord,
    SetResult,
)
from dht._ids import Contact, int_to_id, key_digest
from tests.dht.cluster import Cluster

ME = int_to_id(1)
DEAD = ("10.9.9.9", 4000)
KEY_OF_RECORD = int_to_id(0xABC)


def test_timers_are_exact_and_a_lost_rpc_is_retried_then_given_up() -> None:
    # Binary-exact times, so the timers compare exactly.
    config = DHTConfig(rpc_timeout=0.5, rpc_attempts=3, maintenance_interval=60.0)
    node = DHTProtocol(ME, rng=random.Random(0), now=1000.0, config=config)
    assert node.get_timer() == 1060.0
    op = node.start_ping(DEAD, 1000.0)
    [(first, to)] = node.datagrams_to_send()
    assert to == DEAD
    assert first[:1] == b"\x00"
    assert msgpack.unpackb(first[21:]) == ["ping", [ME]]
    assert node.get_timer() == 1000.5
    node.handle_timer(1000.25)
    assert node.datagrams_to_send() == []
    node.handle_timer(1000.5)
    assert node.datagrams_to_send() == [(first, DEAD)]  # same message id, same bytes
    assert node.get_timer() == 1001.0
    node.handle_timer(1001.0)
    assert node.datagrams_to_send() == [(first, DEAD)]
    assert node.next_event() is None
    node.handle_timer(1001.5)
    assert node.next_event() == OperationDone(op, None)
    assert node.get_timer() == 1060.0


def test_a_late_reply_to_a_retransmission_still_counts() -> None:
    c = Cluster(3)
    a, b = c.add(), c.add()
    lost = {"left": 1}

    def drop_first(data: bytes, source: object, target: object) -> bool:
        if lost["left"] and data[:1] == b"\x00":
            lost["left"] -= 1
            return True
        return False

    c.drop = drop_first
    op = c.nodes[a].start_ping(b, c.now)
    start = c.now
    assert c.settle(a, op) == c.nodes[b].node_id
    assert c.now - start == 1.0  # one retransmission after 0.8 s (settle steps by 0.5 s)


def test_replies_from_the_wrong_address_are_dropped() -> None:
    node = DHTProtocol(ME, rng=random.Random(0), now=0.0)
    op = node.start_ping(("10.0.0.2", 4000), 0.0)
    [(request, _)] = node.datagrams_to_send()
    forged = b"\x01" + request[1:21] + msgpack.packb(int_to_id(66))
    node.receive_datagram(forged, ("10.6.6.6", 4000), 0.1)
    event = node.next_event()
    assert not isinstance(event, OperationDone)
    assert node.counters["dropped: response from the wrong address"] == 1
    genuine = b"\x01" + request[1:21] + msgpack.packb(int_to_id(2))
    node.receive_datagram(genuine, ("10.0.0.2", 4000), 0.2)
    assert node.next_event() == OperationDone(op, int_to_id(2))


def build(c: Cluster, count: int) -> list[tuple[str, int]]:
    addrs = [c.add() for _ in range(count)]
    for i, address in enumerate(addrs[1:], 1):
        c.settle(address, c.nodes[address].start_bootstrap([addrs[c.rng.randrange(i)]], c.now))
    return addrs


def test_buckets_are_refreshed_after_an_hour_without_lookups() -> None:
    c = Cluster(4)
    addrs = build(c, 30)
    node = c.nodes[addrs[5]]
    before = node.counters["rpc find_node"]
    c.advance(3000.0)
    assert node.counters["rpc find_node"] == before
    c.advance(700.0)
    assert node.counters["rpc find_node"] > before


def test_a_newcomer_is_handed_the_values_it_should_hold() -> None:
    c = Cluster(5)
    addrs = build(c, 30)
    key = key_digest("handed over")
    result = c.settle(addrs[0], c.nodes[addrs[0]].start_set(key, b"v", c.now))
    assert isinstance(result, SetResult)
    assert result.stored == 20

    # A newcomer whose id is the key itself: the closest node from now on.  Kademlia
    # §2.5: the closest old holder stores the value there as soon as it sees it.
    def handed() -> int:
        return sum(n.counters["welcome store"] for n in c.nodes.values())

    before = handed()
    newcomer = c.add(node_id=key)
    c.settle(newcomer, c.nodes[newcomer].start_bootstrap([addrs[3]], c.now))
    assert c.nodes[newcomer].storage.get_value(key, c.now) == b"v"
    assert handed() - before == 1  # one node hands it over, not all k


def test_values_are_republished_after_an_hour() -> None:
    c = Cluster(5)
    addrs = build(c, 30)
    key = key_digest("republished")
    c.settle(addrs[0], c.nodes[addrs[0]].start_set(key, b"v", c.now))
    holders = [a for a in addrs if c.nodes[a].storage.get_value(key, c.now) is not None]
    assert len(holders) >= 20
    lost = holders[5]
    c.nodes[lost].storage._drop_value(key)  # a holder loses it (e.g. restarted)

    def stores() -> int:
        return sum(n.counters["served store"] for n in c.nodes.values())

    before = stores()
    c.advance(3500.0)
    assert stores() == before
    c.advance(300.0)
    assert stores() > before
    assert c.nodes[lost].storage.get_value(key, c.now) == b"v"
    got = c.settle(addrs[7], c.nodes[addrs[7]].start_get(key, c.now))
    assert isinstance(got, GetResult)
    assert got.value == b"v"


def test_own_records_are_reannounced_until_stopped_or_expired() -> None:
    c = Cluster(6, DHTConfig(announce_interval=600.0))
    addrs = build(c, 30)
    key = int_to_id(0xABCDEF)
    announcer = c.nodes[addrs[2]]
    expires = int(announcer.wall(c.now)) + 1500
    record = PeerRecord.create(Ed25519PrivateKey.generate(), key, [addrs[2]], expires)
    c.settle(addrs[2], announcer.start_announce(key, record, c.now))
    newcomer = c.add(node_id=key)
    c.settle(newcomer, c.nodes[newcomer].start_bootstrap([addrs[4]], c.now))
    wall = announcer.wall(c.now)
    assert c.nodes[newcomer].storage.get_records(key, wall) == []
    c.advance(700.0)
    assert c.nodes[newcomer].storage.get_records(key, announcer.wall(c.now)) == [record]
    # Stopped before its next re-announce (due at 1200 s, before the 1500 s expiry).
    announcer.stop_announcing(key)
    announced = announcer.counters["rpc announce"]
    c.advance(620.0)
    assert announcer.counters["rpc announce"] == announced
    c.advance(400.0)  # past its expiry: gone everywhere
    found = c.settle(addrs[9], c.nodes[addrs[9]].start_get_peers(key, c.now))
    assert isinstance(found, GetPeersResult)
    assert found.records == ()


def test_a_lookup_checks_each_record_once_however_many_nodes_return_it() -> None:
    c = Cluster(8)
    addrs = build(c, 30)
    key = int_to_id(0x5EED)
    records = []
    for announcer in addrs[:4]:
        node = c.nodes[announcer]
        expires = int(node.wall(c.now)) + 1500
        record = PeerRecord.create(Ed25519PrivateKey.generate(), key, [announcer], expires)
        c.settle(announcer, node.start_announce(key, record, c.now))
        records.append(record)
    checked: list[bytes] = []

    def check(public_key: bytes, signature: bytes, message: bytes) -> bool:
        checked.append(signature)
        return verify_signature(public_key, signature, message)

    asker = c.add(check=check)
    c.settle(asker, c.nodes[asker].start_bootstrap([addrs[5]], c.now))
    found = c.settle(asker, c.nodes[asker].start_get_peers(key, c.now))
    assert isinstance(found, GetPeersResult)
    assert set(found.records) == set(records)
    # Every one of the k closest nodes holds the four records and sends them all.
    assert c.nodes[asker].counters["rpc get_peers"] > 4
    assert sorted(checked) == sorted(r.signature for r in records)


def test_a_record_is_encoded_once() -> None:
    record = PeerRecord.create(Ed25519PrivateKey.generate(), KEY_OF_RECORD, [("10.0.0.1", 9)], 9)
    wire = record.encode()
    assert record.encode() is wire
    assert PeerRecord.decode(wire) == record
    assert PeerRecord.decode(wire).encode() == wire


def test_full_bucket_evicts_a_dead_contact_for_a_live_newcomer() -> None:
    c = Cluster(7, DHTConfig(k=2))
    me = c.add(node_id=int_to_id(0))
    far = [c.add(node_id=int_to_id((1 << 159) + i)) for i in (1, 2, 3)]
    node = c.nodes[me]
    for address in far[:2]:
        c.settle(me, node.start_ping(address, c.now))
    assert len(node.routing) == 2
    del c.nodes[far[0]]  # the least-recently seen one dies
    # While both contacts are fresh, a newcomer waits and nobody is pinged.
    pings = node.counters["rpc ping"]
    c.settle(far[2], c.nodes[far[2]].start_ping(me, c.now))  # a newcomer says hello
    assert node.counters["rpc ping"] == pings
    c.advance(DHTConfig().fresh_for)
    c.settle(far[1], c.nodes[far[1]].start_ping(me, c.now))  # far[1] is fresh again
    c.settle(far[2], c.nodes[far[2]].start_ping(me, c.now))  # far[0] is now questionable
    assert node.counters["rpc ping"] == pings + 1
    assert int_to_id((1 << 159) + 3) not in node.routing  # waiting for the ping
    c.advance(10.0)
    ids = {contact.node_id for contact in node.routing}
    assert ids == {int_to_id((1 << 159) + 2), int_to_id((1 << 159) + 3)}


def test_find_node_reply_offers_only_the_requesters_address_family() -> None:
    node = DHTProtocol(ME, rng=random.Random(0), now=0.0)
    v4 = [Contact(int_to_id(10 + i), f"10.0.0.{i + 1}", 4000) for i in range(3)]
    v6 = [Contact(int_to_id(20 + i), f"2001:db8::{i + 1}", 4000) for i in range(3)]
    for contact in v4 + v6:
        node.routing.observe(contact, 0.0)
    request = b"\x00" + bytes(20) + msgpack.packb(["find_node", [int_to_id(7), int_to_id(8)]])
    node.receive_datagram(request, ("2001:db8::99", 4000), 0.0)
    [(reply, _)] = node.datagrams_to_send()
    hosts = [host for _, host, _ in msgpack.unpackb(reply[21:])]
    assert sorted(hosts) == sorted(c.host for c in v6)


def test_replies_after_a_value_was_found_are_not_read_but_show_the_node_alive() -> None:
    node = DHTProtocol(ME, rng=random.Random(0), now=0.0)
    peers = [Contact(int_to_id(10 + i), f"10.0.0.{i + 1}", 4000) for i in range(3)]
    for contact in peers:
        node.routing.observe(contact, 0.0)
    op = node.start_get(key_digest("k"), 1.0)
    requests = node.datagrams_to_send()
    assert len(requests) == 3  # alpha

    def reply(index: int, result: object, now: float) -> None:
        datagram, address = requests[index]
        node.receive_datagram(b"\x01" + datagram[1:21] + msgpack.packb(result), address, now)

    reply(0, {"value": "v"}, 2.0)
    done = node.next_event()
    assert isinstance(done, OperationDone) and done.op_id == op
    assert isinstance(done.result, GetResult) and done.result.value == "v"
    # Nonsense that would be dropped (and blamed) if the lookup still wanted it.
    reply(1, {"no": "such reply"}, 3.0)
    assert node.next_event() is None
    assert not any(name.startswith("dropped") for name in node.counters)
    answered = requests[1][1]
    entry = node.routing._entries[next(c.node_id for c in peers if c.address == answered)]
    assert entry.last_seen == 3.0
