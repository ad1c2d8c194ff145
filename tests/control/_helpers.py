"""A control API server over a real node on loopback, for the control tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from node import Node
from node.app._control import ControlLimits, ensure_token, open_control_listeners, serve_control
from node.client import LocalClient
from node.client._remote import ControlAddress

from ..nodelib._helpers import open_node

LOOPBACK = ControlAddress(host="127.0.0.1", port=0)


@dataclass
class Served:
    node: Node
    local: LocalClient
    address: str
    token: str
    scope: trio.CancelScope  # cancel it to stop the server (the node stays)


@asynccontextmanager
async def serving(
    data_dir: Path,
    *,
    at: ControlAddress = LOOPBACK,
    allow_remote: bool = False,
    **limits: Any,
) -> AsyncIterator[Served]:
    async with open_node(data_dir) as node, trio.open_nursery() as nursery:
        local = LocalClient(node)
        token = ensure_token(data_dir)
        listeners, bound = await open_control_listeners(at)
        scope = trio.CancelScope()

        async def serve(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            with scope:
                await serve_control(
                    local,
                    listeners,
                    token,
                    allow_remote=allow_remote,
                    limits=ControlLimits(**limits),
                    task_status=task_status,
                )

        await nursery.start(serve)
        try:
            yield Served(node, local, str(bound), token, scope)
        finally:
            nursery.cancel_scope.cancel()
