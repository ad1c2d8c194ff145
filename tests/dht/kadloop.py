"""Run nodes of the `kademlia` package (asyncio-only) on their own loop in a thread.

Trio code calls `await kad.run(coro_factory)`: the coroutine runs on the asyncio loop
and the trio task waits in a worker thread, so neither loop blocks the other.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import trio
from kademlia.network import Server

logging.getLogger("kademlia").setLevel(logging.CRITICAL)
logging.getLogger("rpcudp").setLevel(logging.CRITICAL)


class KademliaLoop:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.servers: list[Server] = []

    def call(self, factory: Callable[[], Awaitable[Any]], timeout: float = 60.0) -> Any:
        async def wrapped() -> Any:
            return await factory()

        return asyncio.run_coroutine_threadsafe(wrapped(), self.loop).result(timeout)

    async def run(self, factory: Callable[[], Awaitable[Any]]) -> Any:
        # The thread waits at most 60 s, so the trio side never hangs on a lost reply.
        return await trio.to_thread.run_sync(self.call, factory)

    async def start_server(self, ksize: int = 20, alpha: int = 3) -> tuple[Server, int]:
        """A listening package node on 127.0.0.1; returns it and its port."""

        async def start() -> tuple[Server, int]:
            server = Server(ksize=ksize, alpha=alpha)
            await server.listen(0, interface="127.0.0.1")
            assert server.transport is not None
            return server, server.transport.get_extra_info("sockname")[1]

        server, port = await self.run(start)
        self.servers.append(server)
        return server, port

    def close(self) -> None:
        async def stop() -> None:
            for server in self.servers:
                server.stop()
            # Transports close their sockets in a callback on the next loop iteration.
            await asyncio.sleep(0)
            await asyncio.sleep(0)

        self.call(stop)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()
