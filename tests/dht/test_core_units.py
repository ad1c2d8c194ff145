"""Unit tests of the pure pieces: ids, wire, records, routing table, storage, lookup."""

from __future__ import annotations

import random

import msgpack
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

import dht
from dht import LocalProtocolError, PeerRecord, RecordError, RemoteProtocolError
from dht._ids import Contact, distance, int_to_id, key_digest, node_id_from_public_key
from dht._lookup import Lookup
from dht._routing import RoutingTable
from dht._storage import StorageLimits, StoreRefused, ValueStore
from dht._wire import (
    MAX_DATAGRAM,
    FindValue,
    FoundValue,
    Ping,
    Request,
    Response,
    UnknownRpc,
    decode_datagram,
    encode_request,
    encode_response,
    parse_find_value_reply,
    parse_request,
)

KEY = bytes(range(20))
NOW_WALL = 1_700_000_000


def contact(value: int, host: str | None = None) -> Contact:
    return Contact(int_to_id(value), host or f"10.{value % 250}.{(value >> 8) % 250}.1", 4000)


def test_public_surface() -> None:
    assert sorted(dht.__all__) == sorted(set(dht.__all__))
    assert {"DHTNode", "SimNetwork", "DHTProtocol", "PeerRecord", "key_digest"} <= set(dht.__all__)
    for name in dht.__all__:
        assert getattr(dht, name) is not None


def test_key_digest_matches_the_kademlia_package() -> None:
    from kademlia.utils import digest

    keys: list[bytes | str | int | float] = [b"abc", "abc", "ünï", 42, 1.5]
    for key in keys:
        assert key_digest(key) == digest(key)


def test_node_id_is_blake2b_prefix_of_the_public_key() -> None:
    import hashlib

    pk = bytes(range(32))
    assert node_id_from_public_key(pk) == hashlib.blake2b(pk).digest()[:20]
    with pytest.raises(LocalProtocolError):
        node_id_from_public_key(b"short")


def test_wire_round_trip_in_the_package_format() -> None:
    msg_id = bytes(20)
    data = encode_request(msg_id, "find_value", (KEY, KEY))
    # rpcudp framing: 0x00, message id, msgpack [name, args]
    assert data[:1] == b"\x00"
    assert data[1:21] == msg_id
    assert msgpack.unpackb(data[21:]) == ["find_value", [KEY, KEY]]
    request = decode_datagram(data)
    assert isinstance(request, Request)
    assert parse_request(request) == FindValue(KEY, KEY)
    reply = decode_datagram(encode_response(msg_id, {"value": b"v"}))
    assert isinstance(reply, Response)
    assert parse_find_value_reply(reply.result) == FoundValue(b"v")


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00" * 21,
        b"\x02" + bytes(20) + b"\x90",
        b"\x00" + bytes(20) + b"\xc1",
        b"\x00" + bytes(20) + msgpack.packb(["ping"]),
        b"\x00" + bytes(20) + msgpack.packb([1, []]),
        b"\x00" + bytes(20) + b"\xd4\x05\x00",  # an ext type
        b"\x00" + bytes(20) + b"\x92" * 200_000,  # deep nesting, over the limit too
    ],
)
def test_bad_datagrams_raise_the_remote_error(data: bytes) -> None:
    def decode_and_parse(data: bytes) -> object:
        request = decode_datagram(data)
        return parse_request(request) if isinstance(request, Request) else request

    with pytest.raises(RemoteProtocolError):
        decode_and_parse(data)


def test_request_arguments_are_checked() -> None:
    def req(name: str, *args: object) -> Request:
        return Request(bytes(20), name, args)

    assert parse_request(req("ping", KEY)) == Ping(KEY)
    assert parse_request(req("frobnicate", 1)) == UnknownRpc("frobnicate")
    for bad in [req("ping"), req("ping", b"short"), req("store", KEY, KEY, [1]), req("stun", 1)]:
        with pytest.raises(RemoteProtocolError):
            parse_request(bad)


def test_oversized_datagram_is_refused_and_cannot_be_sent() -> None:
    with pytest.raises(RemoteProtocolError, match="over"):
        decode_datagram(b"\x00" + bytes(20) + msgpack.packb(["ping", [b"x" * MAX_DATAGRAM]]))
    with pytest.raises(LocalProtocolError):
        encode_request(bytes(20), "store", (KEY, KEY, b"x" * MAX_DATAGRAM))


# -- records ------------------------------------------------------------------------------


def test_record_signs_verifies_and_round_trips() -> None:
    sk = Ed25519PrivateKey.generate()
    record = PeerRecord.create(sk, KEY, [("10.0.0.1", 7000)], NOW_WALL + 60)
    decoded = PeerRecord.decode(record.encode())
    assert decoded == record
    decoded.verify(KEY, NOW_WALL)
    with pytest.raises(RecordError, match="expired"):
        decoded.verify(KEY, NOW_WALL + 60)
    with pytest.raises(RecordError, match="signature"):
        decoded.verify(bytes(20), NOW_WALL)  # signed for another key


def test_forged_records_do_not_verify() -> None:
    sk = Ed25519PrivateKey.generate()
    record = PeerRecord.create(sk, KEY, [("10.0.0.1", 7000)], NOW_WALL + 60)
    moved = PeerRecord(record.peer_id, (("10.6.6.6", 7000),), record.expires, record.signature)
    later = PeerRecord(record.peer_id, record.addresses, record.expires + 1, record.signature)
    other = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    stolen = PeerRecord(other, record.addresses, record.expires, record.signature)
    for forged in (moved, later, stolen):
        with pytest.raises(RecordError):
            PeerRecord.decode(forged.encode()).verify(KEY, NOW_WALL)
    for junk in [b"", b"\x95\x01", msgpack.packb([2, b"", [], 0, b""]), b"\xff" * 600]:
        with pytest.raises(RecordError):
            PeerRecord.decode(junk)
    with pytest.raises(RecordError):
        PeerRecord.decode(msgpack.packb([1, bytes(32), [["example.com", 1]], 5, bytes(64)]))


# -- routing ------------------------------------------------------------------------------


def test_buckets_split_around_own_id_only() -> None:
    table = RoutingTable(int_to_id(0), k=2)
    # Far half (top bit set): fills one bucket, which is not ours, so it never splits.
    far = [contact((1 << 159) + i) for i in range(1, 4)]
    near = [contact(i) for i in range(1, 5)]
    assert table.observe(far[0], 1.0) is None
    assert table.observe(far[1], 2.0) is None
    assert table.observe(far[2], 3.0) == far[0]  # full: ping the least-recently seen
    for c in near:
        table.observe(c, 4.0)
    assert len(table.buckets) > 2
    assert {c.node_id for c in table} >= {far[0].node_id, far[1].node_id}
    for bucket in table.buckets:
        assert len(bucket) <= 2


def test_ping_before_evict_and_replacement_cache() -> None:
    table = RoutingTable(int_to_id(0), k=2)
    a, b, c = (contact((1 << 159) + i) for i in (1, 2, 3))
    table.observe(a, 1.0)
    table.observe(b, 2.0)
    assert table.observe(c, 3.0) == a
    # While the ping is out, more newcomers do not trigger more pings.
    assert table.observe(contact((1 << 159) + 4), 3.5) is None
    # a answered: it stays and moves to the tail; c waits.
    table.observe(a, 4.0)
    assert [x.node_id for x in table] == [b.node_id, a.node_id]
    assert table.observe(c, 5.0) == b
    table.failed(b.node_id)  # b did not answer: the freshest replacement takes its place
    assert c.node_id in table
    assert b.node_id not in table


def test_no_eviction_ping_while_the_oldest_contact_is_fresh() -> None:
    table = RoutingTable(int_to_id(0), k=2, fresh_for=60.0)
    a, b, c = (contact((1 << 159) + i) for i in (1, 2, 3))
    table.observe(a, 1.0)
    table.observe(b, 2.0)
    assert table.observe(c, 50.0) is None  # a was heard from 49 s ago: alive
    assert c.node_id not in table
    assert table.observe(c, 61.0) == a  # now a is questionable
    table.failed(a.node_id)
    assert c.node_id in table


def test_one_node_id_per_address() -> None:
    table = RoutingTable(int_to_id(0), k=20)
    table.observe(Contact(int_to_id(5), "10.0.0.1", 4000), 1.0)
    table.observe(Contact(int_to_id(6), "10.0.0.1", 4000), 1.0)
    assert len(table) == 1


@given(
    own=st.integers(0, (1 << 160) - 1),
    ids=st.lists(st.integers(0, (1 << 160) - 1), max_size=120, unique=True),
    target=st.integers(0, (1 << 160) - 1),
    count=st.integers(1, 30),
    k=st.integers(1, 8),
    drop=st.integers(0, 200),
)
def test_closest_walks_buckets_yet_matches_brute_force(
    own: int, ids: list[int], target: int, count: int, k: int, drop: int
) -> None:
    table = RoutingTable(int_to_id(own), k=k)
    for i, value in enumerate(ids):
        table.observe(Contact(int_to_id(value), "10.0.0.1", 1000 + i), 0.0)
    known = sorted(table, key=lambda c: distance(c.node_id, int_to_id(target)))
    assert table.closest(int_to_id(target), count) == known[:count]
    # Leaving out one address (a requester's) leaves the rest in order.
    excluded = ("10.0.0.1", 1000 + drop)
    kept = [c for c in known if c.address != excluded]
    assert table.closest(int_to_id(target), count, exclude=excluded) == kept[:count]


def test_closest_and_refresh() -> None:
    rng = random.Random(1)
    table = RoutingTable(int_to_id(0), k=20, now=0.0)
    contacts = [contact(rng.getrandbits(160)) for _ in range(300)]
    for c in contacts:
        table.observe(c, 0.0)
    target = int_to_id(rng.getrandbits(160))
    got = table.closest(target, 5)
    known = sorted(table, key=lambda c: distance(c.node_id, target))
    assert got == known[:5]
    assert table.refresh_targets(10.0, 3600.0, rng) == []
    targets = table.refresh_targets(3600.0, 3600.0, rng)
    assert len(targets) == len(table.buckets)
    for t, bucket in zip(targets, table.buckets, strict=True):
        assert bucket.covers(int.from_bytes(t, "big"))


# -- storage ------------------------------------------------------------------------------


def test_value_limits_and_expiry() -> None:
    store = ValueStore(StorageLimits(max_value_bytes=9, max_keys_per_source=2, value_ttl=100))
    store.put_value(int_to_id(1), b"123456789", "10.0.0.1", 0.0)
    with pytest.raises(StoreRefused, match="too large"):
        store.put_value(int_to_id(2), b"1234567890", "10.0.0.1", 0.0)
    store.put_value(int_to_id(2), 5, "10.0.0.1", 0.0)
    with pytest.raises(StoreRefused, match="too many keys"):
        store.put_value(int_to_id(3), 5, "10.0.0.1", 0.0)
    store.put_value(int_to_id(3), 5, "10.0.0.2", 0.0)  # another source has its own quota
    store.put_value(int_to_id(1), b"new", "10.0.0.1", 0.0)  # overwriting is no new key
    assert store.get_value(int_to_id(1), 99.0) == b"new"
    assert store.get_value(int_to_id(1), 100.0) is None
    assert store.keys_of("10.0.0.1") == 1


def test_republish_after_an_hour_unless_stored_meanwhile() -> None:
    store = ValueStore(StorageLimits(republish_interval=3600))
    store.put_value(int_to_id(1), b"a", "10.0.0.1", 0.0)
    store.put_value(int_to_id(2), b"b", "10.0.0.1", 0.0)
    store.put_value(int_to_id(2), b"b", "10.0.0.1", 1800.0)
    assert store.values_to_republish(3599.0) == []
    assert store.values_to_republish(3600.0) == [(int_to_id(1), b"a")]
    assert store.values_to_republish(5400.0) == [(int_to_id(2), b"b")]


def test_records_per_key_limit_and_newer_replaces_older() -> None:
    store = ValueStore(StorageLimits(max_records_per_key=2))
    keys = [Ed25519PrivateKey.generate() for _ in range(3)]
    recs = [PeerRecord.create(k, KEY, [], NOW_WALL + 100) for k in keys]
    store.put_record(KEY, recs[0], "10.0.0.1", NOW_WALL)
    store.put_record(KEY, recs[1], "10.0.0.2", NOW_WALL)
    with pytest.raises(StoreRefused, match="too many records"):
        store.put_record(KEY, recs[2], "10.0.0.3", NOW_WALL)
    newer = PeerRecord.create(keys[0], KEY, [], NOW_WALL + 200)
    store.put_record(KEY, newer, "10.0.0.1", NOW_WALL)
    with pytest.raises(StoreRefused, match="older"):
        store.put_record(KEY, recs[0], "10.0.0.1", NOW_WALL)
    assert store.get_records(KEY, NOW_WALL) == [newer, recs[1]]
    assert store.get_records(KEY, NOW_WALL + 150) == [newer]
    assert store.keys_of("10.0.0.2") == 0


# -- lookup -------------------------------------------------------------------------------


def test_lookup_keeps_alpha_in_flight_and_ends_when_k_closest_answered() -> None:
    rng = random.Random(3)
    network = [contact(rng.getrandbits(160)) for _ in range(200)]
    target = int_to_id(rng.getrandbits(160))
    truth = sorted(network, key=lambda c: distance(c.node_id, target))

    def neighbours(c: Contact) -> list[Contact]:
        # Each node knows a random 60 of the others: enough to converge.
        known = random.Random(c.node_id).sample(network, 60)
        return sorted(known, key=lambda x: distance(x.node_id, target))[:20]

    lookup = Lookup(target, network[:3], k=20, alpha=3)
    queried = 0
    while not lookup.done:
        batch = lookup.next_queries()
        assert len(batch) <= 3
        assert lookup.in_flight <= 3
        assert batch, "not done, yet nothing to query"
        for c in batch:
            if c == truth[0]:
                lookup.on_failure(c.node_id)
            else:
                lookup.on_response(c.node_id, neighbours(c))
        queried += len(batch)
    assert lookup.result() == truth[1:21]
    stats = lookup.stats()
    assert stats.failures == 1
    assert stats.rpcs == queried
    assert stats.rounds >= 2


def test_stalled_query_frees_its_slot_but_is_still_awaited() -> None:
    seeds = [contact(i) for i in range(1, 6)]
    lookup = Lookup(int_to_id(0), seeds, k=5, alpha=1)
    (first,) = lookup.next_queries()
    assert lookup.next_queries() == []
    lookup.on_stall(first.node_id)
    (second,) = lookup.next_queries()
    for c in seeds[1:]:
        if c != second:
            lookup.on_stall(second.node_id)
    for _ in range(10):
        for c in lookup.next_queries():
            lookup.on_response(c.node_id)
    lookup.on_response(second.node_id)
    assert not lookup.done  # the first, stalled, has not answered yet
    lookup.on_response(first.node_id)
    assert lookup.done
    assert lookup.result() == seeds


def test_own_values_are_exempt_from_the_per_source_quota_but_not_the_total() -> None:
    from dht._storage import LOCAL_SOURCE

    store = ValueStore(StorageLimits(max_keys_per_source=2, max_keys=5))
    for i in range(5):
        store.put_value(int_to_id(i), b"v", LOCAL_SOURCE, 0.0, original=True)
    with pytest.raises(StoreRefused, match="store full"):
        store.put_value(int_to_id(99), b"v", LOCAL_SOURCE, 0.0, original=True)


def test_total_records_are_capped() -> None:
    store = ValueStore(StorageLimits(max_records=3))
    for i in range(3):
        record = PeerRecord.create(Ed25519PrivateKey.generate(), int_to_id(i), [], NOW_WALL + 9)
        store.put_record(int_to_id(i), record, f"10.0.0.{i + 1}", NOW_WALL)
    late = PeerRecord.create(Ed25519PrivateKey.generate(), int_to_id(7), [], NOW_WALL + 9)
    with pytest.raises(StoreRefused, match="store full"):
        store.put_record(int_to_id(7), late, "10.0.0.9", NOW_WALL)
    assert store.get_records(int_to_id(0), NOW_WALL + 10) == []  # expiry frees room
    store.put_record(int_to_id(7), late, "10.0.0.9", NOW_WALL)


def test_one_host_cannot_fill_the_table() -> None:
    table = RoutingTable(int_to_id(0), k=20, max_per_host=3)
    rng = random.Random(2)
    for port in range(1000, 1100):
        table.observe(Contact(int_to_id(rng.getrandbits(160)), "203.0.113.9", port), 0.0)
    assert len(table) == 3
    # Loopback is exempt: local swarms put every node on 127.0.0.1.
    for port in range(2000, 2050):
        table.observe(Contact(int_to_id(rng.getrandbits(160)), "127.0.0.1", port), 0.0)
    loopback = sum(c.host == "127.0.0.1" for c in table)
    assert loopback > 3  # limited by the k-buckets only
    assert len(table) == 3 + loopback
    # A slot frees up when a contact goes.
    gone = next(c for c in table if c.host == "203.0.113.9")
    table.remove(gone.node_id)
    table.observe(Contact(gone.node_id, "203.0.113.9", 3000), 0.0)  # same bucket: room
    assert sum(c.host == "203.0.113.9" for c in table) == 3


def test_the_largest_allowed_value_fits_a_find_value_reply() -> None:
    from dht._storage import MAX_VALUE_BYTES

    with pytest.raises(LocalProtocolError):
        StorageLimits(max_value_bytes=MAX_VALUE_BYTES + 1)
    assert len(encode_response(bytes(20), {"value": "x" * MAX_VALUE_BYTES})) <= MAX_DATAGRAM
