"""The run's shared socket poller: nodes join and leave it, a failure stays with its
node, a flood does not starve other tasks, and nodes still work without it."""

from __future__ import annotations

import select
import socket

import pytest
import trio

from dht import DHTNode
from dht._poller import Poller

from .test_driver import check_set_get_ping_stun, udp_nodes


def shared() -> Poller:
    poller = Poller.for_this_run()
    if poller is None:
        pytest.skip("no epoll here: every node reads its own socket")
    return poller


async def test_the_nodes_of_a_run_share_one_poller_and_leave_it_when_closed() -> None:
    poller = shared()
    async with udp_nodes(6) as nodes:
        assert len(poller) == 6
        await check_set_get_ping_stun(nodes)
        async with DHTNode("127.0.0.1") as late:
            assert len(poller) == 7
            assert await late.ping(nodes[0].address) == nodes[0].node_id
        assert len(poller) == 6
    assert len(poller) == 0


async def test_nodes_read_their_own_sockets_where_there_is_no_poller(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(Poller, "for_this_run", staticmethod(lambda: None))
    async with udp_nodes() as nodes:
        await check_set_get_ping_stun(nodes)


async def test_a_failure_while_polling_stops_that_node_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    poller = shared()

    def boom(*args: object) -> None:
        raise RuntimeError("boom")

    async def run_a_broken_node() -> None:
        async with DHTNode("127.0.0.1") as broken:
            monkeypatch.setattr(broken.protocol, "receive_datagram", boom)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.sendto(b"\x00" * 30, broken.address)
            await trio.sleep_forever()

    with trio.fail_after(10):
        async with DHTNode("127.0.0.1") as a, DHTNode("127.0.0.1") as c:
            with pytest.raises(ExceptionGroup) as caught:
                await run_a_broken_node()
            assert caught.group_contains(RuntimeError, match="boom")
            assert len(poller) == 2
            assert await a.ping(c.address) == c.node_id


async def test_a_flood_is_read_in_slices_between_which_other_tasks_run() -> None:
    shared()
    flood = 120  # fits a default socket buffer, so none is lost before it is read
    async with DHTNode("127.0.0.1") as node, DHTNode("127.0.0.1") as other:
        read = node.protocol.counters

        class Slices(trio.abc.Instrument):
            """How many separate steps of the poller task read some of the flood."""

            def __init__(self) -> None:
                self.count = 0
                self.before = 0

            def before_task_step(self, task: trio.lowlevel.Task) -> None:
                self.before = read["datagrams in"]

            def after_task_step(self, task: trio.lowlevel.Task) -> None:
                if task.name == "dht socket poller" and read["datagrams in"] > self.before:
                    self.count += 1

        slices = Slices()
        trio.lowlevel.add_instrument(slices)
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                for _ in range(flood):
                    sock.sendto(b"\x00" * 30, node.address)
            with trio.fail_after(10):
                while read["datagrams in"] < flood:
                    await trio.lowlevel.checkpoint()
        finally:
            trio.lowlevel.remove_instrument(slices)
        # All 120 were waiting at once, yet the poller gave the scheduler a turn between.
        assert slices.count >= 2
        assert await other.ping(node.address) == node.node_id


async def test_poll_now_handles_what_is_ready_in_the_calling_task() -> None:
    poller = shared()
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender,
    ):
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        calls: list[bytes] = []

        def on_readable() -> int:
            data = sock.recv(100)
            calls.append(data)
            return 1

        poller.add(sock.fileno(), on_readable)
        try:
            poller.poll_now()
            assert calls == []  # nothing ready: returns at once
            sender.sendto(b"ready", sock.getsockname())
            select.select([sock], [], [], 5)  # it is in the socket's queue now
            poller.poll_now()
            assert calls == [b"ready"]  # read here, without a turn of the scheduler
        finally:
            poller.remove(sock.fileno())
