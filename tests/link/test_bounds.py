"""Strangers are bounded, on real loopback sockets: a deadline from accept for the upgrade
and handshake together, a cap on handshakes per source, frame headers checked before any
body, and 500 junk connections that do not keep a real peer out."""

from __future__ import annotations

import contextlib
import random
import resource
from functools import partial
from pathlib import Path

import pytest
import trio

from crdt import Identity
from node.link import LinkConfig, LinkListener, connect_link, serve_links

from ..nodelib._helpers import open_node, same_room, wait_until

BOB = Identity.generate()
UPGRADE = (
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
HALF_UPGRADE = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"


async def idle(link: object) -> None:
    await trio.sleep_forever()


async def closed_after(stream: trio.abc.Stream, since: float) -> float:
    """Read until the server closes the connection; how long after `since` it did."""
    try:
        while await stream.receive_some(65536):
            pass
    except trio.BrokenResourceError:  # a reset: closed all the same
        pass
    return trio.current_time() - since


async def test_a_frame_header_claiming_2_40_bytes_closes_the_connection_at_once() -> None:
    async with trio.open_nursery() as nursery:
        listener: LinkListener = await nursery.start(
            partial(serve_links, idle, "127.0.0.1", 0, BOB)
        )
        stream = await trio.open_tcp_stream("127.0.0.1", listener.port)
        await stream.send_all(UPGRADE)
        response = b""
        while b"\r\n\r\n" not in response:
            response += await stream.receive_some(4096)
        assert response.startswith(b"HTTP/1.1 101")
        sent = trio.current_time()
        # A masked binary frame whose header claims 2^40 bytes; no body follows.
        await stream.send_all(b"\x82\xff" + (1 << 40).to_bytes(8, "big") + b"\x01\x02\x03\x04")
        with trio.fail_after(2):
            took = await closed_after(stream, sent)
        assert took < 0.5  # at once: not at the 5 s handshake deadline
        await stream.aclose()
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize(
    ("opening", "late"),
    [(b"", b""), (HALF_UPGRADE, b""), (UPGRADE, b""), (HALF_UPGRADE, UPGRADE[len(HALF_UPGRADE) :])],
    ids=["silent", "half-open upgrade", "upgraded then silent", "slow upgrade then silent"],
)
async def test_the_deadline_covers_the_upgrade_and_the_handshake(
    opening: bytes, late: bytes
) -> None:
    """One deadline from accept: an upgrade that ends late leaves the handshake only
    what is left of it; the connection is gone at the deadline, not after a closing
    handshake with a stranger."""
    config = LinkConfig(handshake_timeout=0.5)
    async with trio.open_nursery() as nursery:
        listener: LinkListener = await nursery.start(
            partial(serve_links, idle, "127.0.0.1", 0, BOB, config=config)
        )
        started = trio.current_time()
        stream = await trio.open_tcp_stream("127.0.0.1", listener.port)
        await stream.send_all(opening)
        if late:
            await trio.sleep(0.3)
            await stream.send_all(late)
        with trio.fail_after(3):
            took = await closed_after(stream, started)
        assert 0.45 <= took < 0.75
        await stream.aclose()
        nursery.cancel_scope.cancel()


async def test_handshakes_beyond_a_source_cap_are_closed_at_once() -> None:
    config = LinkConfig(handshake_timeout=3.0, max_handshakes=8, max_handshakes_per_source=4)
    async with trio.open_nursery() as nursery:
        listener: LinkListener = await nursery.start(
            partial(serve_links, idle, "127.0.0.1", 0, BOB, config=config)
        )
        streams = []
        for _ in range(6):
            stream = await trio.open_tcp_stream(
                "127.0.0.1", listener.port, local_address="127.0.0.2"
            )
            await stream.send_all(HALF_UPGRADE)
            streams.append(stream)
        opened = trio.current_time()
        with trio.move_on_after(0.5):  # the two beyond the cap are closed at once
            for stream in streams[4:]:
                assert await closed_after(stream, opened) < 0.5
        assert listener.gate is not None and listener.gate.pending_from("127.0.0.2") == 4
        assert listener.gate.refused == 2
        # Another source still gets in, at once.
        with trio.fail_after(1):
            async with connect_link(listener.url, Identity.generate(), config=config) as link:
                assert link.peer_id == BOB.peer_id
        for stream in streams:
            await stream.aclose()
        nursery.cancel_scope.cancel()


@pytest.fixture
def many_files() -> None:
    """Room for 500 connections at both ends (twice), and the nodes' own files."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 4096 if hard == resource.RLIM_INFINITY else min(4096, hard)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    if wanted < 2500:
        pytest.skip(f"needs about 2500 open files; the hard limit is {hard}")


@pytest.mark.usefixtures("many_files")
async def test_500_junk_connections_do_not_keep_a_real_peer_out(tmp_path: Path) -> None:
    """500 junk connections at once from 50 addresses (random bytes then silence, and
    half-open WebSocket upgrades), all held open from their side; meanwhile B joins A's
    room and syncs 200 messages within seconds, and every junk connection is closed by
    A within its handshake deadline."""
    rng = random.Random(500)
    closed: list[float] = []
    with trio.fail_after(20):
        async with open_node(tmp_path / "a") as a, open_node(tmp_path / "b") as b:
            ra = await a.create_room("under siege")
            for n in range(200):
                await ra.send(f"message {n}")
            host, port = a.address.rsplit(":", 1)
            all_open = trio.Event()
            opened: list[trio.abc.Stream] = []

            async def junk(n: int) -> None:
                stream = await trio.open_tcp_stream(
                    host, int(port), local_address=f"127.0.0.{2 + n % 50}"
                )
                opened.append(stream)
                started = trio.current_time()
                payload = HALF_UPGRADE if n % 2 else rng.randbytes(rng.randint(1, 64))
                with contextlib.suppress(trio.BrokenResourceError):
                    await stream.send_all(payload)
                if len(opened) == 500:
                    all_open.set()
                closed.append(await closed_after(stream, started))
                await stream.aclose()

            async with trio.open_nursery() as nursery:
                for n in range(500):
                    nursery.start_soon(junk, n)
                await all_open.wait()
                start = trio.current_time()
                rb = await b.join(ra.invite())
                await wait_until(lambda: len(rb.timeline()) == 200 and same_room(ra, rb))
                synced = trio.current_time() - start
            assert synced < 3.0, synced
    assert len(closed) == 500
    # Every junk connection was gone within the 5 s deadline (or at once, pushed out),
    # counted from its accept: on a loaded machine that comes a little after the connect.
    assert max(closed) < 7.0
