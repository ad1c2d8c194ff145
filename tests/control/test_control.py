"""The control API end to end: a `RemoteClient` against a real server over a real loopback
socket, and hostile clients against the same server. Every wait is bounded."""

from __future__ import annotations

import logging
import random
import socket
import stat
from pathlib import Path

import msgpack
import pytest
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket, wrap_client_stream

from crdt import MessageAdded, TopicChanged
from node.app._control import ControlLimits, _Gate, ensure_token, peer_allowed
from node.client import ClientError, RoomChanged, RoomsChanged
from node.client._remote import ConnectionLost, ControlAddress, RemoteClient
from node.client._wire import (
    MAX_CLIENT_FRAME,
    Call,
    Hello,
    Refusal,
    RefusalCode,
    Result,
    Welcome,
    decode_server_frame,
    encode_frame,
)

from ..nodelib._helpers import open_node, wait_until
from ._helpers import serving

DEADLINE = 30


async def test_every_operation_through_the_remote_client_matches_the_local_one(
    tmp_path: Path,
) -> None:
    with trio.fail_after(DEADLINE):
        async with (
            serving(tmp_path / "a") as served,
            open_node(tmp_path / "b") as node_b,
            RemoteClient.connect(served.address, token=served.token) as remote,
        ):
            local = served.local
            assert remote.peer_id == served.node.peer_id
            assert await remote.me() == await local.me()
            async with remote.events() as events:
                await remote.set_nick("alice")
                info = await remote.create_room("plans")
                assert info == await local.room(info.id)
                assert isinstance(await events.receive(), RoomsChanged)
                first = await remote.send(info.id, "hello")
                second = await remote.send(info.id, "reply", reply_to=first)
                await remote.edit(info.id, first, "hello, edited")
                await remote.react(info.id, first, "👍")
                await remote.react(info.id, second, "🎉")
                await remote.unreact(info.id, second, "🎉")
                await remote.delete(info.id, second)
                await remote.set_topic(info.id, "weekend")
                added: list[bytes] = []
                while len(added) < 2:
                    event = await events.receive()
                    if isinstance(event, RoomChanged) and isinstance(event.change, MessageAdded):
                        added.append(event.change.id)
                assert added == [first, second]

            # Joined through the control API: a room of another node, and a link to it.
            room_b = await node_b.create_room("b's room")
            await room_b.send("from b")
            joined = await remote.join(room_b.invite())
            assert joined.id == room_b.id
            await wait_until(lambda: len(served.node.room(room_b.id).timeline()) == 1)

            for room_id in (info.id, room_b.id):
                assert await remote.room(room_id) == await local.room(room_id)
                assert await remote.members(room_id) == await local.members(room_id)
                assert await remote.invite(room_id) == await local.invite(room_id)
                assert await remote.diagnostics(room_id) == await local.diagnostics(room_id)
                page = await remote.history(room_id, limit=1)
                assert page == await local.history(room_id, limit=1)
            assert await remote.rooms() == await local.rooms()
            assert await remote.status() == await local.status()
            older = await remote.history(info.id, before=second, limit=10)
            assert [m.text for m in older.messages] == ["hello, edited"]
            assert older.messages[0].reactions == (("👍", (served.node.peer_id,)),)
            by_time = await remote.history(info.id, before_ms=0, limit=10)
            assert by_time.messages == ()
            assert await remote.message(info.id, first) == await local.message(info.id, first)
            assert await remote.message(info.id, b"\x00" * 32) is None
            assert (await remote.room(info.id)).topic == "weekend"

            await remote.leave(room_b.id)
            assert [r.id for r in await remote.rooms()] == [info.id]


async def test_refusals_arrive_as_client_errors_and_the_connection_stays(tmp_path: Path) -> None:
    with trio.fail_after(DEADLINE):
        async with (
            serving(tmp_path / "a") as served,
            RemoteClient.connect(served.address, token=served.token) as remote,
        ):
            with pytest.raises(ClientError, match="no room"):
                await remote.send(b"\x01" * 32, "hello")
            with pytest.raises(ClientError, match="invite"):
                await remote.join("rumor://invite/garbage")
            room = await remote.create_room("r")
            with pytest.raises(ClientError, match="1 to"):
                await remote.history(room.id, limit=0)
            assert (await remote.me()).peer_id == served.node.peer_id


async def test_connect_through_the_data_dir_and_over_a_unix_socket(tmp_path: Path) -> None:
    from node.app._control import record_control_address

    path = tmp_path / "control.sock"
    with trio.fail_after(DEADLINE):
        async with serving(tmp_path / "a", at=ControlAddress(unix=str(path))) as served:
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
            record_control_address(tmp_path / "a", ControlAddress(unix=str(path)))
            async with RemoteClient.connect(tmp_path / "a") as remote:
                assert (await remote.me()).peer_id == served.node.peer_id
            async with RemoteClient.connect(f"unix:{path}", token=served.token) as remote:
                assert await remote.rooms() == []


def test_the_token_file_is_private_and_kept(tmp_path: Path) -> None:
    token = ensure_token(tmp_path)
    path = tmp_path / "control.token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(token) == 64
    assert ensure_token(tmp_path) == token
    path.chmod(0o644)
    assert ensure_token(tmp_path) == token
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


async def test_a_wrong_or_missing_token_is_refused(tmp_path: Path) -> None:
    with trio.fail_after(DEADLINE):
        async with serving(tmp_path / "a") as served:
            with pytest.raises(ConnectionLost, match="refused us: wrong token"):
                async with RemoteClient.connect(served.address, token="x" * 64):
                    pass
            # A call before any hello: refused, not served.
            async with open_websocket("127.0.0.1", _port(served.address), "/", use_ssl=False) as ws:
                await ws.send_message(encode_frame(Call(1, "me")))
                frame = decode_server_frame(_bytes(await ws.get_message()))
                assert frame == Refusal(RefusalCode.UNAUTHORIZED, "say hello with the token first")
                with pytest.raises(ConnectionClosed):
                    await ws.get_message()
                assert ws.closed is not None and ws.closed.code == 1008


def test_only_loopback_peers_are_allowed_unless_the_operator_says_so() -> None:
    assert peer_allowed(("127.0.0.1", 5000), allow_remote=False)
    assert peer_allowed(("::1", 5000, 0, 0), allow_remote=False)
    assert peer_allowed("", allow_remote=False)  # a Unix socket
    assert not peer_allowed(("192.0.2.7", 5000), allow_remote=False)
    assert not peer_allowed(("::ffff:192.0.2.7", 5000, 0, 0), allow_remote=False)
    assert not peer_allowed(None, allow_remote=False)
    assert peer_allowed(("192.0.2.7", 5000), allow_remote=True)


def _non_loopback_address() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet is sent: this only picks a route
            host = str(probe.getsockname()[0])
        except OSError:
            return None
    return None if host.startswith("127.") or host == "0.0.0.0" else host


async def test_a_client_not_on_loopback_is_refused(tmp_path: Path) -> None:
    host = _non_loopback_address()
    if host is None:
        pytest.skip("this machine has no non-loopback IPv4 address")
    with trio.fail_after(DEADLINE):
        async with serving(tmp_path / "a", at=ControlAddress(host=host, port=0)) as served:
            with pytest.raises(ConnectionLost, match="must connect from loopback"):
                async with RemoteClient.connect(served.address, token=served.token):
                    pass
        async with (
            serving(
                tmp_path / "b", at=ControlAddress(host=host, port=0), allow_remote=True
            ) as served,
            RemoteClient.connect(served.address, token=served.token) as remote,
        ):
            assert (await remote.me()).peer_id == served.node.peer_id


def _port(address: str) -> int:
    return int(address.rpartition(":")[2])


async def _refusal_for(address: str, *frames: bytes | str) -> tuple[Refusal | None, int | None]:
    """Send `frames` after a good hello... or instead of it; the refusal and close code."""
    async with open_websocket(
        "127.0.0.1", _port(address), "/", use_ssl=False, max_message_size=1 << 26
    ) as ws:
        refusal = None
        try:
            for frame in frames:
                await ws.send_message(frame)
            while True:
                got = decode_server_frame(_bytes(await ws.get_message()))
                if isinstance(got, Refusal):
                    refusal = got
        except ConnectionClosed:
            pass
        return refusal, ws.closed.code if ws.closed is not None else None


async def test_bad_frames_get_a_refusal_then_a_close_and_the_server_keeps_serving(
    tmp_path: Path,
) -> None:
    rng = random.Random(12)
    with trio.fail_after(60):
        async with serving(tmp_path / "a") as served:
            hello = encode_frame(Hello(served.token))
            cases: list[tuple[list[bytes | str], RefusalCode | None, int]] = [
                ([b"\x00junk"], RefusalCode.BAD_FRAME, 1008),
                (["text"], RefusalCode.BAD_FRAME, 1008),
                ([msgpack.packb([2, "hello", served.token])], RefusalCode.VERSION, 1008),
                ([hello, msgpack.packb([1, "call", 1, "send", {}])], RefusalCode.BAD_FRAME, 1008),
                ([hello, hello], RefusalCode.BAD_FRAME, 1008),
                ([hello, b"\xc1" * (MAX_CLIENT_FRAME + 1)], RefusalCode.TOO_LARGE, 1009),
                # Past what the WebSocket layer accepts at all: closed as too big (1009).
                ([hello, b"\x00" * (8 * MAX_CLIENT_FRAME)], None, 1009),
            ]
            for _ in range(40):  # random junk, before and after the hello
                junk = rng.randbytes(rng.randrange(1, 200))
                cases.append(([junk] if rng.random() < 0.5 else [hello, junk], None, 1008))
            for frames, code, close in cases:
                refusal, closed = await _refusal_for(served.address, *frames)
                if code is not None:
                    assert refusal is not None and refusal.code is code, (frames[-1][:20], refusal)
                assert closed == close, (frames[-1][:20], refusal, closed)
            async with RemoteClient.connect(served.address, token=served.token) as remote:
                assert (await remote.me()).peer_id == served.node.peer_id


async def test_a_silent_connection_is_closed_at_the_handshake_deadline(tmp_path: Path) -> None:
    with trio.fail_after(DEADLINE):
        async with serving(tmp_path / "a", handshake_timeout=0.5) as served:
            stream = await trio.open_tcp_stream("127.0.0.1", _port(served.address))
            start = trio.current_time()
            assert await stream.receive_some() == b""  # closed by the server
            assert 0.4 <= trio.current_time() - start < 3
            await stream.aclose()
            # Upgraded but silent: a refusal saying so.
            refusal, code = await _refusal_for(served.address)
            assert refusal is not None and refusal.code is RefusalCode.TIMEOUT and code == 1008


async def test_connections_in_handshake_are_capped(tmp_path: Path) -> None:
    with trio.fail_after(DEADLINE):
        async with serving(tmp_path / "a", max_handshaking=2, handshake_timeout=30) as served:
            port = _port(served.address)
            silent = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(2)]
            # The server counts them as it accepts them: once every task here is waiting,
            # it has (the kernel completed the connections before connect returned).
            await trio.testing.wait_all_tasks_blocked()
            third = await trio.open_tcp_stream("127.0.0.1", port)
            with trio.fail_after(2):  # the oldest is pushed out at once, not at 30 s
                assert await silent[0].receive_some() == b""
            with trio.move_on_after(0.3) as waited:  # the others stay
                await third.receive_some()
            assert waited.cancelled_caught
            for stream in (*silent, third):
                await stream.aclose()
            async with RemoteClient.connect(served.address, token=served.token) as remote:
                assert (await remote.me()).peer_id == served.node.peer_id


async def test_idle_connections_cannot_lock_a_client_out(tmp_path: Path) -> None:
    """The hostile tester's 6: loopback is one host, so idle sockets filled its cap and
    every client after them was refused until the handshake deadline."""
    with trio.fail_after(DEADLINE):
        async with serving(tmp_path / "a") as served:  # the default limits and deadline
            port = _port(served.address)
            idle = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(20)]
            await trio.testing.wait_all_tasks_blocked()
            with trio.fail_after(2):
                async with RemoteClient.connect(served.address, token=served.token) as remote:
                    assert (await remote.me()).peer_id == served.node.peer_id
            for stream in idle:
                await stream.aclose()


def test_the_gate_pushes_out_the_oldest_handshake_of_the_busiest_host() -> None:
    gate = _Gate(ControlLimits(max_handshaking=4, max_handshaking_per_host=2))
    assert [gate.admit(n, "a") for n in (1, 2)] == [None, None]
    assert gate.admit(3, "a") == 1  # a at its own cap: a's oldest goes
    assert gate.admit(4, "b") is None
    assert gate.admit(5, "c") is None
    assert gate.admit(6, "d") == 2  # all full: the oldest of a, which holds the most
    gate.leave(3)
    gate.leave(3)  # (idempotent)
    assert gate.admit(7, "e") is None


async def test_a_client_that_stops_reading_is_dropped_and_others_keep_working(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="rumor")
    with trio.fail_after(60):
        async with (
            serving(tmp_path / "a", queue_frames=8) as served,
            RemoteClient.connect(served.address, token=served.token) as good,
            trio.open_nursery() as nursery,
        ):
            room = await served.local.create_room("busy")
            sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
            await sock.connect(("127.0.0.1", _port(served.address)))
            slow = await wrap_client_stream(
                nursery, trio.SocketStream(sock), "127.0.0.1", "/", message_queue_size=1
            )
            await slow.send_message(encode_frame(Hello(served.token)))
            assert isinstance(decode_server_frame(_bytes(await slow.get_message())), Welcome)
            await slow.send_message(encode_frame(Call(1, "subscribe")))
            assert decode_server_frame(_bytes(await slow.get_message())) == Result(1, None)
            # From here on the slow client reads nothing.
            async with good.events() as events:
                topics = 0
                while "dropped" not in caplog.text:
                    topics += 1
                    await served.local.set_topic(room.id, f"{topics:04d} " + "x" * 1000)
                    assert topics < 3000, "the slow client was never dropped"
                seen = 0
                while seen < topics:  # the good client got every change
                    event = await events.receive()
                    if isinstance(event, RoomChanged) and isinstance(event.change, TopicChanged):
                        seen += 1
                        assert event.change.topic.startswith(f"{seen:04d} ")
            assert (await good.room(room.id)).topic.startswith(f"{topics:04d} ")
            with pytest.raises(ConnectionClosed):  # what it had in buffers, then the end
                await _read_all(slow)
            nursery.cancel_scope.cancel()


async def _read_all(ws: WebSocketConnection) -> None:
    while True:
        await ws.get_message()


async def test_calls_and_streams_fail_with_connection_lost_when_the_server_goes(
    tmp_path: Path,
) -> None:
    with trio.fail_after(DEADLINE):
        async with serving(tmp_path / "a") as served:
            async with RemoteClient.connect(served.address, token=served.token) as remote:
                async with remote.events() as events:
                    served.scope.cancel()
                    with pytest.raises(ConnectionLost):
                        await events.receive()
                with pytest.raises(ConnectionLost):
                    await remote.me()
            with pytest.raises(ConnectionLost, match="cannot connect"):
                async with RemoteClient.connect(served.address, token=served.token):
                    pass


def _bytes(message: str | bytes) -> bytes:
    assert isinstance(message, bytes), message
    return message
