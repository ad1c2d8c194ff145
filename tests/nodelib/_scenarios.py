"""Whole-node scenarios the tests run on loopback and on the simulator alike."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio

from crdt import MessageAdded

from ._attacks import NodeOpener
from ._helpers import same_room, wait_until


async def restarted_mid_sync(
    open_node: NodeOpener, data_dir: Path, stop: str, total: int, **b_options: Any
) -> None:
    """B joins a room of `total` messages, stops after the first catch-up batch (closed,
    or cancelled from outside as an embedder's timeout or Ctrl-C would), keeps what it
    had, and finishes after a restart."""
    async with open_node(data_dir / "a") as a:
        ra = await a.create_room("big")
        for n in range(total):
            await ra.send(f"message {n}")
        with trio.CancelScope() as outside:
            async with open_node(data_dir / "b", **b_options) as b:
                rb = await b.join(ra.invite())
                async with rb.events() as events:
                    async for change in events:
                        if isinstance(change, MessageAdded):
                            break  # the first catch-up batch is in: stop right here
                if stop == "cancelled":
                    outside.cancel()
                    await trio.sleep_forever()
        assert outside.cancelled_caught == (stop == "cancelled")
        await wait_until(lambda: a.status().links == ())
        async with open_node(data_dir / "b", **b_options) as b:
            (rb,) = b.rooms()
            kept = len(rb.timeline())
            assert 0 < kept < total  # it really stopped mid-sync, and kept what it had
            await wait_until(lambda: len(rb.timeline()) == total and same_room(ra, rb))
            # Redundant batches may still be on their way in; they settle too.
            await wait_until(lambda: b.status().rooms[0].synced)
