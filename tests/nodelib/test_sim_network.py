"""The simulated network's streams in virtual time: exact latency, order, EOF, refusals,
partitions, backpressure, and trio's stream semantics; then a link over them."""

from __future__ import annotations

import random
from functools import partial

import pytest
import trio
import trio.testing

from crdt import Identity
from node import SimNetwork
from node.link import Link, LinkClosed, Message, connect_link, serve_links

ROOM, SECRET = b"\x01" * 32, b"\x02" * 32


def fixed_network(one_way: float = 0.05, window: int = 256 * 1024) -> SimNetwork:
    """Every host pair `one_way` seconds apart, no jitter: times are exact."""
    return SimNetwork(random.Random(0), latency=(one_way, one_way), jitter=0.0, window=window)


async def echo_once(listener: trio.abc.Listener[trio.abc.Stream]) -> None:
    stream = await listener.accept()
    async with stream:
        while data := await stream.receive_some():
            await stream.send_all(data)


async def stream_pair(
    net: SimNetwork, a: str, b: str
) -> tuple[trio.abc.Listener[trio.abc.Stream], trio.abc.Stream, trio.abc.Stream]:
    """A listener on host `b`, and a stream to it from host `a`: (listener, `a`'s end,
    `b`'s end)."""
    (listener,), port = await net.transport(b).open_listeners(b, 0)
    client = await net.transport(a).open_stream(b, port)
    return listener, client, await listener.accept()


async def test_connect_send_and_echo_take_exact_round_trips(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = fixed_network(0.05)
    a, b = net.new_host(), net.new_host()
    (listener,), port = await net.transport(b).open_listeners(b, 0)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(echo_once, listener)
        t0 = trio.current_time()
        stream = await net.transport(a).open_stream(b, port)
        assert trio.current_time() - t0 == pytest.approx(0.1)  # SYN and SYN-ACK
        assert repr(stream) == f"{b}:{port}"
        t1 = trio.current_time()
        await stream.send_all(b"hello")
        assert await stream.receive_some() == b"hello"
        assert trio.current_time() - t1 == pytest.approx(0.1)
        await stream.aclose()
        with pytest.raises(trio.ClosedResourceError):
            await stream.receive_some()
        with pytest.raises(trio.ClosedResourceError):
            await stream.send_all(b"late")
    await listener.aclose()


async def test_jitter_never_reorders_bytes(autojump_clock: trio.testing.MockClock) -> None:
    net = SimNetwork(random.Random(3), latency=(0.01, 0.2), jitter=0.5)
    a, b = net.new_host(), net.new_host()
    listener, client, server = await stream_pair(net, a, b)
    sent = b"".join(bytes([n % 256]) * (n % 7 + 1) for n in range(500))
    for at in range(0, len(sent), 13):
        await client.send_all(sent[at : at + 13])
        await trio.sleep(0.001)  # jitter (up to 0.5 s) is far larger than the spacing
    await client.aclose()
    received = bytearray()
    while data := await server.receive_some(100):
        assert len(data) <= 100
        received += data
    assert bytes(received) == sent
    await server.aclose()
    await listener.aclose()


async def test_eof_arrives_after_the_data_and_a_closed_reader_breaks_the_writer(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = fixed_network(0.05)
    a, b = net.new_host(), net.new_host()
    listener, client, server = await stream_pair(net, a, b)
    await client.send_all(b"last words")
    t0 = trio.current_time()
    await client.aclose()
    assert await server.receive_some() == b"last words"
    assert await server.receive_some() == b""
    assert trio.current_time() - t0 == pytest.approx(0.05)  # one way, behind the data
    assert await server.receive_some() == b""  # EOF stays EOF
    with pytest.raises(trio.BrokenResourceError):
        await server.send_all(b"anyone?")  # the other end is gone
    await server.aclose()
    assert net.open_streams(a) == 0
    await listener.aclose()


async def test_refused_where_nobody_listens_and_after_the_listener_closes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = fixed_network(0.05)
    a, b = net.new_host(), net.new_host()
    transport = net.transport(a)
    t0 = trio.current_time()
    with pytest.raises(ConnectionRefusedError):
        await transport.open_stream(b, 4433)
    assert trio.current_time() - t0 == pytest.approx(0.1)  # the reset takes a round trip
    (listener,), port = await net.transport(b).open_listeners(b, 4433)
    assert port == 4433
    with pytest.raises(OSError, match="in use"):
        await net.transport(b).open_listeners(b, 4433)
    with pytest.raises(OSError, match="not this host"):
        await net.transport(b).open_listeners(a, 0)
    unaccepted = await transport.open_stream(b, port)
    await listener.aclose()
    with pytest.raises(trio.BrokenResourceError):  # reset by the closing listener
        await unaccepted.receive_some()
    with pytest.raises(ConnectionRefusedError):
        await transport.open_stream(b, port)
    with pytest.raises(trio.ClosedResourceError):
        await listener.accept()
    assert (net.connects, net.refused) == (3, 2)
    await unaccepted.aclose()


async def test_a_partition_breaks_streams_and_fails_connects_until_healed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = fixed_network(0.05)
    a, b, c = net.new_host(), net.new_host(), net.new_host()
    (listener,), port = await net.transport(b).open_listeners(b, 0)
    ab = await net.transport(a).open_stream(b, port)
    ba = await listener.accept()
    cb = await net.transport(c).open_stream(b, port)
    bc = await listener.accept()
    async with trio.open_nursery() as nursery:
        broken = trio.Event()

        async def read_until_broken() -> None:
            with pytest.raises(trio.BrokenResourceError):
                await ba.receive_some()
            broken.set()

        nursery.start_soon(read_until_broken)
        await trio.sleep(1)
        net.block(a, b)
        await broken.wait()
    with pytest.raises(trio.BrokenResourceError):
        await ab.send_all(b"x")
    with pytest.raises(OSError, match="partitioned"):
        await net.transport(a).open_stream(b, port)
    await cb.send_all(b"c is not cut off")  # only the blocked pair is
    assert await bc.receive_some() == b"c is not cut off"
    net.unblock(a, b)
    fresh = await net.transport(a).open_stream(b, port)
    assert net.open_streams(b) == 2  # c's, and the fresh one; the broken pair is gone
    for stream in (ab, ba, cb, bc, fresh):
        await stream.aclose()
    await listener.aclose()


async def test_a_full_window_blocks_the_writer_until_the_reader_reads(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = fixed_network(0.05, window=1000)
    a, b = net.new_host(), net.new_host()
    listener, client, server = await stream_pair(net, a, b)
    await client.send_all(bytes(1000))  # fills the window
    with trio.move_on_after(60) as waited:
        await client.send_all(b"more")
    assert waited.cancelled_caught  # nobody reads: the writer waits, however long
    await trio.sleep(0.05)  # the first bytes arrive
    assert len(await server.receive_some(400)) == 400
    await client.send_all(b"more")  # 600 unread now: room again
    with pytest.RaisesGroup(trio.BusyResourceError):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.receive_some)
            nursery.start_soon(server.receive_some)
    await client.aclose()
    await server.aclose()
    await listener.aclose()


async def test_a_write_that_fits_is_a_cancellation_point_that_never_yields(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = fixed_network(0.05)
    a, b = net.new_host(), net.new_host()
    listener, client, server = await stream_pair(net, a, b)
    ran: list[str] = []

    async def other() -> None:
        ran.append("other")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(other)
        await client.send_all(b"one")  # fits the window: no other task runs meanwhile
        assert ran == []
        with trio.CancelScope() as scope:
            scope.cancel()
            await client.send_all(b"never")  # but a cancelled write raises, unsent
        assert scope.cancelled_caught
    assert ran == ["other"]
    assert await server.receive_some() == b"one"
    await client.aclose()
    assert await server.receive_some() == b""
    await server.aclose()
    await listener.aclose()


async def test_a_link_runs_over_the_simulator(autojump_clock: trio.testing.MockClock) -> None:
    """connect_link and serve_links over the simulated transport: the Noise handshake,
    a room, a message; then the server's host is cut off and the link breaks."""
    net = fixed_network(0.05)
    a, b = net.new_host(), net.new_host()
    alice, bob = Identity.generate(), Identity.generate()
    received: list[bytes] = []

    async def handler(link: Link) -> None:
        assert await link.join_room(ROOM, SECRET)
        async for event in link:
            if isinstance(event, Message):
                received.append(event.payload)

    async with trio.open_nursery() as nursery:
        listener = await nursery.start(
            partial(serve_links, handler, b, 0, bob, transport=net.transport(b))
        )
        assert listener.url == f"ws://{b}:{listener.port}/"
        t0 = trio.current_time()
        async with connect_link(listener.url, alice, transport=net.transport(a)) as link:
            # TCP, the WebSocket upgrade, then Noise XX: three round trips.
            assert trio.current_time() - t0 == pytest.approx(0.3)
            assert link.peer_id == bob.peer_id and link.remote == f"{b}:{listener.port}"
            assert await link.join_room(ROOM, SECRET)
            await link.send(ROOM, b"over the simulator")
            await trio.sleep(1)
            assert received == [b"over the simulator"]
            net.block(a, b)
            cut = trio.current_time()
            async for event in link:  # the room's authorization, then nothing
                assert not isinstance(event, Message)
            assert link.closed is not None and link.closed.reason == "transport"
            assert trio.current_time() == cut  # broken at once, no idle timeout
        with pytest.raises(LinkClosed) as refused:
            async with connect_link(listener.url, alice, transport=net.transport(a)):
                pass
        assert refused.value.reason == "transport"
        nursery.cancel_scope.cancel()


def test_signature_verdicts_are_ed25519s_and_reused_only_for_the_same_bytes() -> None:
    from node.sim._network import SignatureVerdicts

    alice, bob = Identity.generate(), Identity.generate()
    message = b"hello"
    signature = alice.sign(message)
    verdicts = SignatureVerdicts(limit=2)
    assert verdicts.check(alice.peer_id, signature, message)
    assert verdicts.check(alice.peer_id, signature, message)
    assert (verdicts.checked, verdicts.reused) == (1, 1)
    # The same signature over other bytes, or under another key, is checked for real.
    assert not verdicts.check(alice.peer_id, signature, b"hellO")
    assert not verdicts.check(bob.peer_id, signature, message)
    assert not verdicts.check(b"\x00" * 31, signature, message)  # not a key at all
    assert (verdicts.checked, verdicts.reused) == (4, 1)
    # Bounded: the oldest verdicts go first.
    for text in (b"a", b"b", b"c"):
        assert verdicts.check(alice.peer_id, alice.sign(text), text)
    assert len(verdicts._verdicts) == 2


def test_nodes_of_one_network_share_signature_verdicts() -> None:
    net = fixed_network()
    first, second = net.environment(net.new_host()), net.environment(net.new_host())
    assert first.check_signature is not None
    assert first.check_signature == second.check_signature == net.signatures.check


def test_shared_ops_decode_once_and_refuse_what_decode_op_refuses() -> None:
    from crdt import InvalidOp, Kind, decode_op, encode_op, make_hlc
    from node.sim._network import SharedOps

    author = Identity.generate()
    hlc = make_hlc(1_767_225_600_000)
    nick = encode_op(author, room=ROOM, seq=1, prev=None, hlc=hlc, kind=Kind.NICK, body=("a",))
    data = nick.data
    ops = SharedOps(limit=1)
    first = ops.decode(bytes(data))
    assert first == decode_op(data) and ops.decode(bytes(data)) is first
    assert (ops.decoded, ops.shared) == (1, 1)
    with pytest.raises(InvalidOp):
        ops.decode(data[:-1])
    assert ops.decode(bytearray(data)) == first  # type: ignore[arg-type]  # decoded, not kept
    assert (ops.decoded, ops.shared) == (1, 1)
    # Bounded: the oldest op goes first.
    ops.decode(
        encode_op(
            author, room=ROOM, seq=2, prev=nick.id, hlc=hlc + 1, kind=Kind.NICK, body=("b",)
        ).data
    )
    assert ops.decode(bytes(data)) is not first
