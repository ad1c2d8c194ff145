"""A peer that stops reading is dropped once its outbox passes the byte budget."""

from __future__ import annotations

import trio
import trio.testing

from node._node import _LinkHandle


class StalledLink:
    """Stands in for a Link whose peer stopped reading: every send blocks."""

    peer_id = b"\x05" * 32
    initiator = True

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.closed = False

    async def send(self, room_id: bytes, payload: bytes) -> None:
        self.sent.append(payload)
        await trio.sleep_forever()

    async def aclose(self) -> None:
        self.closed = True


async def test_a_stalled_peer_is_dropped_past_the_budget() -> None:
    link = StalledLink()
    handle = _LinkHandle(link, outbox_bytes=10_000)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(handle.writer)
        for _ in range(9):
            handle.send(b"r" * 32, bytes(1_000))
        await trio.testing.wait_all_tasks_blocked()
        assert not handle.overflowed and not link.closed
        assert len(link.sent) == 1  # the writer is stuck in the first send
        handle.send(b"r" * 32, bytes(1_001))  # 10,001 bytes waiting: over the budget
        assert handle.overflowed
    # The writer was cut loose from its stuck send and closed the link.
    assert link.closed
    handle.send(b"r" * 32, bytes(10))  # after that, sends are dropped quietly
    assert len(link.sent) == 1
