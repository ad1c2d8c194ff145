"""The trio driver under MockClock over memory streams: exact keepalive, idle and handshake
times, backpressure, and what a misbehaving peer gets."""

from __future__ import annotations

import functools
import random

import pytest
import trio
import trio.testing
from trio_websocket import ConnectionClosed, WebSocketConnection

from crdt import Identity
from node.link import (
    MAX_MESSAGE,
    Link,
    LinkClosed,
    LinkConfig,
    LinkLocalError,
    LinkRemoteError,
    LinkSession,
    Message,
    RoomAuthorized,
    connect_link,
    open_link,
    serve_links,
)
from node.link._frames import Data
from node.sim import SimNetwork

from ._wire import close_code, drive_handshake, join_both, memory_links, memory_websockets
from .conftest import ALICE, BOB, FAST, ROOM_A, SECRET_A

Arrival = float | tuple[str, float, int]


async def _record(ws: WebSocketConnection, session: LinkSession, log: list[Arrival]) -> None:
    """Log when each message arrives (asserting it carries no event), then the close."""
    try:
        while True:
            data = await ws.get_message()
            assert isinstance(data, bytes)
            assert session.receive_message(data, trio.current_time()) == []
            log.append(trio.current_time())
    except ConnectionClosed as closed:
        log.append(("closed", trio.current_time(), close_code(closed)))


async def test_keepalive_pings_then_idle_timeout_at_exact_times(
    autojump_clock: trio.testing.MockClock,
) -> None:
    t0 = trio.current_time()
    arrivals: list[Arrival] = []
    async with memory_websockets() as (client, server), trio.open_nursery() as nursery:
        peer = LinkSession(BOB, initiator=False, now=t0)  # never calls handle_timer: silent

        async def silent_peer() -> None:
            await drive_handshake(server, peer)
            await _record(server, peer, arrivals)

        nursery.start_soon(silent_peer)
        async with open_link(client, ALICE, initiator=True, config=FAST) as link:
            with pytest.raises(LinkClosed) as caught:
                await link.receive()
            assert trio.current_time() - t0 == 15.0
            assert caught.value.reason == "idle"
    assert arrivals == [t0 + 5.0, t0 + 10.0, ("closed", t0 + 15.0, 4002)]


async def test_any_received_frame_pushes_the_idle_timeout_back(
    autojump_clock: trio.testing.MockClock,
) -> None:
    t0 = trio.current_time()
    arrivals: list[Arrival] = []
    async with memory_websockets() as (client, server), trio.open_nursery() as nursery:
        config = LinkConfig(keepalive=12.0, idle_timeout=100.0)
        peer = LinkSession(BOB, initiator=False, now=t0, config=config)

        async def one_ping_peer() -> None:
            await drive_handshake(server, peer)
            nursery.start_soon(_record, server, peer, arrivals)
            await trio.sleep_until(t0 + 12.0)
            peer.handle_timer(trio.current_time())  # its keepalive is due: one ping
            (ping,) = peer.messages_to_send(trio.current_time())
            await server.send_message(ping)

        nursery.start_soon(one_ping_peer)
        async with open_link(client, ALICE, initiator=True, config=FAST) as link:
            with pytest.raises(LinkClosed):
                await link.receive()
            assert trio.current_time() - t0 == 27.0
    assert arrivals == [t0 + t for t in (5.0, 10.0, 15.0, 20.0, 25.0)] + [
        ("closed", t0 + 27.0, 4002)
    ]


async def test_two_links_keep_each_other_alive(autojump_clock: trio.testing.MockClock) -> None:
    async with memory_links(ALICE, BOB, config_a=FAST, config_b=FAST) as (a, b):
        t0 = trio.current_time()
        await trio.sleep(200.0)
        assert a.closed is None and b.closed is None
        assert await join_both(a, b, ROOM_A, SECRET_A, SECRET_A) == (True, True)
        await a.send(ROOM_A, b"still here")
        assert await b.receive() == RoomAuthorized(ROOM_A)
        assert await b.receive() == Message(ROOM_A, b"still here")
        assert trio.current_time() - t0 == 200.0


async def test_initiator_handshake_timeout_is_exact(
    autojump_clock: trio.testing.MockClock,
) -> None:
    t0 = trio.current_time()
    async with memory_websockets() as (client, server):
        with pytest.raises(LinkClosed) as caught:
            async with open_link(client, ALICE, initiator=True, config=FAST):
                pytest.fail("the link must not open")
        assert caught.value.reason == "handshake-timeout"
        assert trio.current_time() - t0 == 3.0
        assert len(await server.get_message()) == 32  # message 1 went out
        with pytest.raises(ConnectionClosed) as closed:
            await server.get_message()
        assert close_code(closed.value) == 4003


async def test_responder_handshake_timeout_counts_from_started_at(
    autojump_clock: trio.testing.MockClock,
) -> None:
    t0 = trio.current_time()
    async with memory_websockets() as (_client, server):
        await trio.sleep(1.0)
        with pytest.raises(LinkClosed) as caught:
            async with open_link(server, BOB, initiator=False, config=FAST, started_at=t0):
                pytest.fail("the link must not open")
        assert caught.value.reason == "handshake-timeout"
        assert trio.current_time() - t0 == 3.0


async def test_an_unread_event_buffer_is_backpressure_not_idleness(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with memory_links(ALICE, BOB, config_a=FAST, config_b=FAST, event_buffer_b=1) as (a, b):
        assert await join_both(a, b, ROOM_A, SECRET_A, SECRET_A) == (True, True)
        for i in range(5):
            await a.send(ROOM_A, b"%d" % i)
        await trio.sleep(100.0)  # b's application reads nothing; far past idle_timeout
        assert a.closed is None and b.closed is None
        assert await b.receive() == RoomAuthorized(ROOM_A)
        for i in range(5):
            assert await b.receive() == Message(ROOM_A, b"%d" % i)


async def test_a_cancelled_send_is_still_sent_in_order(
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = LinkConfig(keepalive=50.0, idle_timeout=150.0)
    async with memory_links(
        ALICE, BOB, config_a=config, config_b=config, event_buffer_b=1, lockstep=True
    ) as (a, b):
        assert await join_both(a, b, ROOM_A, SECRET_A, SECRET_A) == (True, True)
        # b's application reads nothing, so b's buffers fill and a's writes block.
        sent, t0 = 0, trio.current_time()
        with trio.move_on_after(10.0) as blocked:
            for sent in range(1, 20):
                await a.send(ROOM_A, b"%d" % sent)
        assert blocked.cancelled_caught and 1 <= sent < 19
        assert trio.current_time() - t0 == 10.0
        assert await b.receive() == RoomAuthorized(ROOM_A)
        for i in range(1, sent + 1):  # including the send that was cancelled
            assert await b.receive() == Message(ROOM_A, b"%d" % i)
        await a.send(ROOM_A, b"after")
        assert await b.receive() == Message(ROOM_A, b"after")
        assert a.closed is None and b.closed is None


async def test_a_broken_connection_is_a_transport_close(
    autojump_clock: trio.testing.MockClock,
) -> None:
    streams: list[trio.abc.Stream] = []
    async with (
        memory_websockets(streams=streams) as (client, server),
        trio.open_nursery() as nursery,
    ):
        peer = LinkSession(BOB, initiator=False, now=trio.current_time())

        async def vanishing_peer() -> None:
            await drive_handshake(server, peer)
            await trio.sleep(1.0)
            await trio.aclose_forcefully(streams[1])  # no WebSocket close: the wire is cut

        nursery.start_soon(vanishing_peer)
        async with open_link(client, ALICE, initiator=True) as link:
            with pytest.raises(LinkClosed) as caught:
                await link.receive()
            assert caught.value.reason == "transport"
            with pytest.raises(LinkClosed):
                await link.join_room(ROOM_A, SECRET_A)


async def _hostile(payload: bytes | str) -> tuple[Link, LinkClosed, int]:
    """A hand-driven peer completes the handshake, then sends ``payload``."""
    async with memory_websockets() as (client, server), trio.open_nursery() as nursery:
        peer = LinkSession(BOB, initiator=False, now=trio.current_time())
        codes: list[int] = []

        async def hostile_peer() -> None:
            await drive_handshake(server, peer)
            await server.send_message(payload)
            try:
                while True:
                    await server.get_message()
            except ConnectionClosed as closed:
                codes.append(close_code(closed))

        nursery.start_soon(hostile_peer)
        async with open_link(client, ALICE, initiator=True) as link:
            with pytest.raises(LinkClosed) as caught:
                await link.receive()
        await trio.testing.wait_all_tasks_blocked()
        return link, caught.value, codes[0]


@pytest.mark.parametrize(
    ("payload", "cause"),
    [(b"\x00" * 40, "decrypt"), (b"", "decrypt"), (b"\x01" * (MAX_MESSAGE + 1), None)],
)
async def test_a_bad_frame_closes_the_link_as_a_protocol_error(
    autojump_clock: trio.testing.MockClock, payload: bytes, cause: str | None
) -> None:
    link, error, code = await _hostile(payload)
    assert error.reason == "protocol" and link.closed is not None
    assert link.closed.reason == "protocol"
    if cause is None:  # over the WebSocket limit: trio-websocket closes with 1009
        assert code == 1009
    else:
        assert isinstance(error.__cause__, LinkRemoteError) and error.__cause__.reason == cause
        assert code == 4001


async def test_a_text_message_is_a_protocol_error(autojump_clock: trio.testing.MockClock) -> None:
    _, error, code = await _hostile("hello")
    assert error.reason == "protocol" and code == 4001


async def test_data_for_an_unproven_room_closes_the_link(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with memory_websockets() as (client, server), trio.open_nursery() as nursery:
        peer = LinkSession(BOB, initiator=False, now=trio.current_time())

        async def sneaky_peer() -> None:
            await drive_handshake(server, peer)
            peer._queue(Data(ROOM_A, b"unproven"))
            for message in peer.messages_to_send(trio.current_time()):
                await server.send_message(message)

        nursery.start_soon(sneaky_peer)
        async with open_link(client, ALICE, initiator=True) as link:
            with pytest.raises(LinkClosed):
                await link.receive()
            with pytest.raises(LinkClosed):
                await link.join_room(ROOM_A, SECRET_A)
    assert link.closed is not None and link.closed.reason == "protocol"
    assert isinstance(link.closed.__cause__, LinkRemoteError)
    assert link.closed.__cause__.reason == "unauthorized-room"


async def test_an_error_in_the_body_comes_out_unwrapped(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with memory_websockets() as (client, server), trio.open_nursery() as nursery:
        nursery.start_soon(drive_handshake, server, LinkSession(BOB, initiator=False, now=0.0))
        with pytest.raises(KeyError):
            async with open_link(client, ALICE, initiator=True):
                raise KeyError("mine")


async def test_byte_counters_count_websocket_messages_both_ways(
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = LinkConfig(keepalive=50.0, idle_timeout=150.0)
    async with memory_links(ALICE, BOB, config_a=config, config_b=config) as (a, b):
        # The handshake: a wrote messages 1 and 3, b wrote message 2, and each was read.
        assert a.bytes_sent > 0 and b.bytes_sent > 0
        assert (a.bytes_sent, a.bytes_received) == (b.bytes_received, b.bytes_sent)
        assert await join_both(a, b, ROOM_A, SECRET_A, SECRET_A) == (True, True)
        assert await b.receive() == RoomAuthorized(ROOM_A)
        assert await a.receive() == RoomAuthorized(ROOM_A)
        sent, received = a.bytes_sent, b.bytes_received
        assert sent == received
        await a.send(ROOM_A, b"x" * 1000)
        assert await b.receive() == Message(ROOM_A, b"x" * 1000)
        # One Noise transport message: the payload, its frame header and the 16-byte tag.
        assert a.bytes_sent - sent == b.bytes_received - received
        assert 1000 + 16 < a.bytes_sent - sent < 1000 + 80


@pytest.mark.parametrize(
    "url", ["ws://..:17001/", f"ws://{'x' * 64}.example:17001/", "http://127.0.0.1:1/", "ws:///"]
)
async def test_a_url_no_resolver_could_use_is_the_callers_error(url: str) -> None:
    """Refused before any lookup (getaddrinfo would raise UnicodeError for empty or long
    labels), as the caller's error: dial loops stop instead of crashing or retrying."""
    with pytest.raises(LinkLocalError):
        async with connect_link(url, Identity.generate()):
            pass


async def test_a_peer_that_stops_reading_is_dropped_past_the_send_budget(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Over the simulated network, whose streams block a sender once a window of bytes
    # waits unread, as TCP does.
    net = SimNetwork(random.Random(1), latency=(0.01, 0.01), jitter=0.0, window=4_096)
    config = LinkConfig(keepalive=50.0, idle_timeout=150.0, send_budget=10_000)
    stalled: list[Link] = []

    async def never_read(link: Link) -> None:
        await link.join_room(ROOM_A, SECRET_A)
        stalled.append(link)
        await trio.sleep_forever()  # b's application reads nothing

    async with trio.open_nursery() as nursery:
        server, client = net.host(), net.host()
        listener = await nursery.start(
            functools.partial(
                serve_links, config=config, event_buffer=1, transport=net.transport(server)
            ),
            never_read,
            server,
            0,
            BOB,
        )
        url = f"ws://{server}:{listener.port}/"
        async with connect_link(url, ALICE, config=config, transport=net.transport(client)) as a:
            assert await a.join_room(ROOM_A, SECRET_A)
            # b's buffers fill, a's sender blocks, and what a queues without waiting
            # piles up until it passes the budget.
            waiting: list[int] = []
            closed: LinkClosed | None = None
            for _ in range(100):
                waiting.append(a._queued)
                try:
                    a.send_nowait(ROOM_A, bytes(1_000))
                except LinkClosed as error:
                    closed = error
                    break
                await trio.testing.wait_all_tasks_blocked()
            assert closed is not None and closed.reason == "slow"
            assert a.closed is not None and a.closed.reason == "slow"
            # Dropped by the first send that took the bytes waiting past 10,000, not before.
            assert waiting[-1] + 1_000 > 10_000
            assert all(queued + 1_000 <= 10_000 for queued in waiting[:-1])
            assert len(waiting) >= 10
            with pytest.raises(LinkClosed):  # after that, sends fail at once
                a.send_nowait(ROOM_A, bytes(10))
        assert stalled
        nursery.cancel_scope.cancel()


async def test_send_nowait_writes_in_order_and_flush_waits_for_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with memory_links(ALICE, BOB, config_a=FAST, config_b=FAST) as (a, b):
        assert await join_both(a, b, ROOM_A, SECRET_A, SECRET_A) == (True, True)
        for i in range(20):
            a.send_nowait(ROOM_A, b"%d" % i)
        await a.flush()
        assert a._written == a._taken and a._session.pending_messages == 0
        assert await b.receive() == RoomAuthorized(ROOM_A)
        for i in range(20):
            assert await b.receive() == Message(ROOM_A, b"%d" % i)


class _SenderSteps(trio.abc.Instrument):
    """Counts the task steps of one link's sender task."""

    def __init__(self, link: Link) -> None:
        self.link = link
        self.steps = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        frame = getattr(task.coro, "cr_frame", None)
        ours = frame is not None and frame.f_locals.get("self") is self.link
        if ours and task.name.endswith("Link._sender"):
            self.steps += 1


async def test_a_received_message_that_queues_nothing_leaves_the_sender_asleep(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with memory_links(ALICE, BOB, config_a=FAST, config_b=FAST) as (a, b):
        assert await join_both(a, b, ROOM_A, SECRET_A, SECRET_A) == (True, True)
        assert await b.receive() == RoomAuthorized(ROOM_A)
        await trio.testing.wait_all_tasks_blocked()
        counter = _SenderSteps(b)
        trio.lowlevel.add_instrument(counter)
        try:
            for i in range(20):
                a.send_nowait(ROOM_A, b"%d" % i)
            for i in range(20):
                assert await b.receive() == Message(ROOM_A, b"%d" % i)
            await trio.testing.wait_all_tasks_blocked()
        finally:
            trio.lowlevel.remove_instrument(counter)
        # b answered nothing: its sender had nothing to write and was never woken.
        assert counter.steps == 0
        b.send_nowait(ROOM_A, b"answer")  # but a queued message wakes it
        assert await a.receive() == RoomAuthorized(ROOM_A)
        assert await a.receive() == Message(ROOM_A, b"answer")


async def test_a_sink_takes_messages_in_the_readers_task_and_never_overtakes_the_queue(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """`deliver_to`: messages go to the sink while nothing waits in the event queue; one
    it refuses is queued, and so is every later one until `receive` has taken the queue,
    so a consumer sees the events in the order they came, whichever way each went."""
    async with memory_links(ALICE, BOB, config_a=FAST, config_b=FAST) as (a, b):
        taken: list[bytes] = []
        refuse = {b"2"}

        def sink(message: Message) -> bool:
            if message.payload in refuse:
                return False
            taken.append(message.payload)
            return True

        b.deliver_to(sink)
        assert await join_both(a, b, ROOM_A, SECRET_A, SECRET_A) == (True, True)
        a.send_nowait(ROOM_A, b"0")  # the RoomAuthorized is still queued: so is this
        await trio.testing.wait_all_tasks_blocked()
        assert taken == []
        assert await b.receive() == RoomAuthorized(ROOM_A)
        assert await b.receive() == Message(ROOM_A, b"0")
        for i in range(1, 5):
            a.send_nowait(ROOM_A, b"%d" % i)
        await trio.testing.wait_all_tasks_blocked()
        assert taken == [b"1"]  # "2" was refused, and "3" and "4" queued behind it
        assert [await b.receive() for _ in range(3)] == [
            Message(ROOM_A, b"%d" % i) for i in (2, 3, 4)
        ]
        a.send_nowait(ROOM_A, b"5")
        await trio.testing.wait_all_tasks_blocked()
        assert taken == [b"1", b"5"]
        b.deliver_to(None)
        a.send_nowait(ROOM_A, b"6")
        assert await b.receive() == Message(ROOM_A, b"6")
        assert taken == [b"1", b"5"]


async def test_a_sink_never_overtakes_an_event_handed_to_a_waiting_receiver(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A refused message handed straight to a task waiting in `receive` (the queue's
    buffer stays empty) still holds back the next ones until that task has it."""
    async with memory_links(ALICE, BOB, config_a=FAST, config_b=FAST) as (a, b):
        assert await join_both(a, b, ROOM_A, SECRET_A, SECRET_A) == (True, True)
        assert await b.receive() == RoomAuthorized(ROOM_A)
        seen: list[bytes] = []

        def sink(message: Message) -> bool:
            if int(message.payload) % 3 == 0:
                return False
            seen.append(message.payload)
            return True

        async def consumer() -> None:
            while True:
                event = await b.receive()
                assert isinstance(event, Message)
                seen.append(event.payload)

        b.deliver_to(sink)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(consumer)
            await trio.testing.wait_all_tasks_blocked()
            for i in range(60):
                a.send_nowait(ROOM_A, b"%d" % i)
                if i % 7 == 0:
                    await trio.sleep(0.01)
            await trio.sleep(1.0)
            nursery.cancel_scope.cancel()
        assert seen == [b"%d" % i for i in range(60)]
