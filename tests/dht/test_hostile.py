"""Hostile input: fuzzed and mutated datagrams, forged records, stolen tokens, floods.

The bar: nothing escapes the core or the driver, limits hold, and the node keeps
answering pings.
"""

from __future__ import annotations

import contextlib
import random
from typing import Any

import msgpack
import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dht import DHTConfig, DHTNode, DHTProtocol, PeerRecord, RemoteProtocolError, StorageLimits
from dht._ids import Address, Contact, int_to_id
from dht._wire import (
    Request,
    decode_datagram,
    encode_request,
    parse_contacts,
    parse_find_value_reply,
    parse_get_peers_reply,
    parse_request,
    parse_stun_reply,
)

WALL = 1.7e9
KEY = int_to_id(12345)
ME = int_to_id(1)
ALICE: Address = ("10.0.0.2", 4000)
MALLORY: Address = ("10.6.6.6", 4000)


def make_node(**config: Any) -> DHTProtocol:
    return DHTProtocol(
        ME, rng=random.Random(0), now=0.0, config=DHTConfig(**config), wall_offset=WALL
    )


def call(node: DHTProtocol, source: Address, name: str, *args: Any, now: float = 0.0) -> Any:
    """Send one request to `node` and return the decoded reply (None if no reply)."""
    msg_id = random.Random(name).randbytes(20)
    node.receive_datagram(encode_request(msg_id, name, args), source, now)
    replies = [d for d, a in node.datagrams_to_send() if a == source and d[:1] == b"\x01"]
    if not replies:
        return None
    assert replies[0][1:21] == msg_id
    return msgpack.unpackb(replies[-1][21:], raw=False)


def pings_answered(node: DHTProtocol, source: Address, now: float) -> bool:
    reply = call(node, source, "ping", int_to_id(99), now=now)
    return isinstance(reply, bytes) and reply == ME


# -- fuzzing ------------------------------------------------------------------------------

texts = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=20)
msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | texts
    | st.binary(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=12,
)


def valid_datagrams() -> st.SearchStrategy[bytes]:
    names = st.sampled_from(
        ["ping", "stun", "store", "find_node", "find_value", "get_peers", "announce", "x"]
    )
    args = st.lists(st.binary(min_size=20, max_size=20) | msgpack_values, max_size=5)
    return st.builds(
        lambda kind, msg_id, body: bytes([kind]) + msg_id + msgpack.packb(body),
        st.sampled_from([0, 1]),
        st.binary(min_size=20, max_size=20),
        st.tuples(names, args).map(list) | msgpack_values,
    )


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(valid_datagrams()))
    for _ in range(draw(st.integers(0, 4))):
        i = draw(st.integers(0, max(0, len(data) - 1)))
        op = draw(st.sampled_from(["flip", "cut", "insert"]))
        if op == "flip" and data:
            data[i] ^= draw(st.integers(1, 255))
        elif op == "cut":
            del data[i:]
        else:
            data[i:i] = draw(st.binary(max_size=8))
    return bytes(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=300) | valid_datagrams() | mutated())
def test_any_bytes_decode_or_raise_the_remote_error(data: bytes) -> None:
    try:
        message = decode_datagram(data)
        if isinstance(message, Request):
            parse_request(message)
    except RemoteProtocolError:
        pass


@settings(max_examples=300, deadline=None)
@given(value=msgpack_values)
def test_reply_parsers_accept_or_raise_the_remote_error(value: Any) -> None:
    for parse in (parse_contacts, parse_find_value_reply, parse_get_peers_reply, parse_stun_reply):
        with contextlib.suppress(RemoteProtocolError):
            parse(value)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(datagrams=st.lists(st.binary(max_size=200) | valid_datagrams() | mutated(), max_size=20))
def test_core_survives_garbage_and_keeps_answering(datagrams: list[bytes]) -> None:
    node = make_node()
    for data in datagrams:
        node.receive_datagram(data, MALLORY, 1.0)  # must not raise
        node.datagrams_to_send()
    node.handle_timer(node.get_timer())
    assert pings_answered(node, ALICE, 2.0)


# -- records and tokens -------------------------------------------------------------------


def record_for(address: Address, key: bytes = KEY, **kw: Any) -> PeerRecord:
    sk = kw.pop("sk", None) or Ed25519PrivateKey.generate()
    return PeerRecord.create(sk, key, [address], kw.pop("expires", int(WALL) + 3600))


def get_token(node: DHTProtocol, source: Address, key: bytes = KEY) -> bytes:
    reply = call(node, source, "get_peers", int_to_id(2), key)
    token: bytes = reply["token"]
    return token


def test_announce_with_a_good_token_stores_and_get_peers_returns_it() -> None:
    node = make_node()
    record = record_for(ALICE)
    token = get_token(node, ALICE)
    assert call(node, ALICE, "announce", int_to_id(2), KEY, token, record.encode()) is True
    reply = call(node, ("10.0.0.3", 4000), "get_peers", int_to_id(3), KEY)
    assert [PeerRecord.decode(r) for r in reply["peers"]] == [record]


def test_token_from_another_address_fails() -> None:
    node = make_node()
    token = get_token(node, ALICE)
    record = record_for(MALLORY)
    assert call(node, MALLORY, "announce", int_to_id(6), KEY, token, record.encode()) is False
    # Same host, another port: still another address.
    other_port = (ALICE[0], 4001)
    assert call(node, other_port, "announce", int_to_id(2), KEY, token, record.encode()) is False
    # A token for another key does not work either.
    token_b = get_token(node, ALICE, int_to_id(777))
    assert call(node, ALICE, "announce", int_to_id(2), KEY, token_b, record.encode()) is False
    assert node.storage.get_records(KEY, WALL) == []
    assert node.counters["dropped: bad token"] == 3


def test_tokens_rotate_and_expire() -> None:
    node = make_node(token_rotation=300.0, maintenance_interval=60.0)
    token = get_token(node, ALICE)
    record = record_for(ALICE)
    node.handle_timer(360.0)  # rotated once: the previous secret still counts
    assert call(node, ALICE, "announce", int_to_id(2), KEY, token, record.encode(), now=360.0)
    node.handle_timer(720.0)  # rotated twice: the old token is dead
    newer = record_for(ALICE, expires=int(WALL) + 7200)
    reply = call(node, ALICE, "announce", int_to_id(2), KEY, token, newer.encode(), now=720.0)
    assert reply is False


def test_forged_records_are_never_stored_or_returned() -> None:
    node = make_node()
    token = get_token(node, ALICE)
    honest_key = Ed25519PrivateKey.generate()
    good = record_for(ALICE, sk=honest_key)
    forgeries = [
        # Someone else's signature over a different address list.
        PeerRecord(good.peer_id, ((ALICE[0], 9999),), good.expires, good.signature),
        # A later expiry than was signed.
        PeerRecord(good.peer_id, good.addresses, good.expires + 10, good.signature),
        # Signed for another key.
        record_for(ALICE, key=int_to_id(5)),
        # Expired.
        record_for(ALICE, expires=int(WALL) - 1),
    ]
    for forged in forgeries:
        reply = call(node, ALICE, "announce", int_to_id(2), KEY, token, forged.encode())
        assert reply is None  # the datagram was dropped as a remote error
    for junk in [b"", b"\x93\x01\x02\x03", b"\xff" * 40]:
        assert call(node, ALICE, "announce", int_to_id(2), KEY, token, junk) is None
    assert node.storage.get_records(KEY, WALL) == []
    assert call(node, ALICE, "get_peers", int_to_id(2), KEY)["peers"] == []
    assert pings_answered(node, ALICE, 0.0)


def test_nobody_can_announce_an_address_that_is_not_theirs() -> None:
    node = make_node()
    token = get_token(node, MALLORY)
    # A genuine record, but naming Alice's host, announced from Mallory's.
    lie = record_for(ALICE)
    assert call(node, MALLORY, "announce", int_to_id(6), KEY, token, lie.encode()) is False
    assert node.storage.get_records(KEY, WALL) == []


# -- floods and limits --------------------------------------------------------------------


def test_flood_from_one_address_is_rate_limited_and_others_are_served() -> None:
    node = make_node(rate_limit=50.0, rate_burst=100.0)
    served = 0
    for i in range(5000):
        reply = call(
            node, MALLORY, "store", int_to_id(6), int_to_id(10_000 + i), b"x", now=i / 5000
        )
        served += reply is not None
    assert served <= 100 + 50 + 1  # the burst plus one second of the sustained rate
    assert node.counters["rate limited"] >= 4800
    assert pings_answered(node, ALICE, 1.0)
    # The flooder is served again once its bucket refills.
    assert pings_answered(node, MALLORY, 10.0)


def test_storage_limits_hold_under_a_slow_flood() -> None:
    limits = StorageLimits(max_keys_per_source=50, max_value_bytes=100)
    node = make_node(limits=limits, rate_limit=1e9, rate_burst=1e9)
    accepted = 0
    for i in range(500):
        accepted += call(node, MALLORY, "store", int_to_id(6), int_to_id(20_000 + i), b"v") is True
    assert accepted == 50
    assert node.storage.keys_of(MALLORY[0]) == 50
    assert call(node, MALLORY, "store", int_to_id(6), int_to_id(20_000), b"v" * 101) is False
    # Another source still has its own quota.
    assert call(node, ALICE, "store", int_to_id(2), int_to_id(5), b"v") is True
    # Oversized datagrams are refused outright.
    node.receive_datagram(b"\x00" + bytes(20) + b"\xc4" + b"x" * 9000, MALLORY, 0.0)
    assert node.counters["dropped: datagram of N bytes is over N"] == 1


def test_unknown_rpcs_are_ignored() -> None:
    node = make_node()
    assert call(node, ALICE, "launch_missiles", 1, 2) is None
    assert node.counters["unknown rpc"] == 1
    assert pings_answered(node, ALICE, 0.0)


# -- the driver on real UDP ---------------------------------------------------------------


async def test_driver_survives_garbage_on_a_real_socket() -> None:
    rng = random.Random(5)
    async with DHTNode("127.0.0.1") as node, DHTNode("127.0.0.1") as friend:
        sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
        with sock:
            await sock.bind(("127.0.0.1", 0))
            for i in range(500):
                size = rng.choice([0, 1, 21, 22, 100, 9000])
                data = bytes([rng.choice([0, 1, 2])]) + rng.randbytes(size)
                if i % 5 == 0:
                    data = encode_request(rng.randbytes(20), "store", (rng.randbytes(20),) * 3)
                await sock.sendto(data, node.address)
            with trio.fail_after(5):
                assert await friend.ping(node.address) == node.node_id
        counters = node.counters()
        assert counters["datagrams in"] >= 400
        dropped = sum(v for k, v in counters.items() if k.startswith("dropped: "))
        assert dropped >= 250  # the other garbage decodes, e.g. as stray responses


def test_spoofed_source_flood_keeps_the_rate_table_bounded() -> None:
    from dht._serve import RATE_HOSTS as _RATE_HOSTS

    node = make_node()
    ping = encode_request(bytes(20), "ping", (int_to_id(5),))
    for i in range(_RATE_HOSTS + 5000):
        node.receive_datagram(ping, (f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", 9), 0.0)
    node.datagrams_to_send()
    assert len(node._rate) <= _RATE_HOSTS
    assert pings_answered(node, ALICE, 1.0)


def test_get_peers_reply_stays_in_one_datagram_with_a_full_key() -> None:
    node = make_node(rate_limit=1e9, rate_burst=1e9)
    for i in range(64):
        host = f"10.1.{i}.1"
        record = PeerRecord.create(
            Ed25519PrivateKey.generate(),
            KEY,
            [(host, p) for p in range(1000, 1008)],
            int(WALL) + 60,
        )
        token = get_token(node, (host, 4000))
        assert call(node, (host, 4000), "announce", int_to_id(i + 10), KEY, token, record.encode())
    for i in range(40):  # and a full list of nodes
        node.routing.observe(Contact(int_to_id(1000 + i), f"10.2.{i}.1", 4000), 0.0)
    msg_id = bytes(20)
    node.receive_datagram(
        encode_request(msg_id, "get_peers", (int_to_id(3), KEY)), ("10.3.0.1", 4000), 0.0
    )
    [(reply, _)] = node.datagrams_to_send()
    assert len(reply) <= 8192
    body = msgpack.unpackb(reply[21:], raw=False)
    assert 10 <= len(body["peers"]) < 64
    assert len(body["nodes"]) == 20


async def test_driver_under_a_flood_from_one_address_keeps_answering() -> None:
    limits = StorageLimits(max_keys_per_source=100)
    async with (
        DHTNode("127.0.0.1", config=DHTConfig(limits=limits)) as node,
        DHTNode("127.0.0.1") as friend,
    ):
        flooder = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
        with flooder:
            await flooder.bind(("127.0.0.1", 0))
            source = f"127.0.0.1:{flooder.getsockname()[1]}"

            async def flood() -> None:
                rng = random.Random(9)
                for _ in range(5000):
                    request = encode_request(
                        rng.randbytes(20), "store", (rng.randbytes(20), rng.randbytes(20), b"v")
                    )
                    await flooder.sendto(request, node.address)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(flood)
                with trio.fail_after(5):
                    for _ in range(20):
                        assert await friend.ping(node.address) == node.node_id
        counters = node.counters()
        assert counters["rate limited"] > 0  # the flood outran the per-source rate
        assert node.protocol.storage.keys_of(source) <= 100
        assert counters["served store"] <= 200 + 50 * 10  # burst plus the sustained rate
