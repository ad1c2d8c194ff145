"""An in-memory datagram network for running many DHT nodes in one process.

Each simulated socket has the same methods as the driver's UDP transport
(`send_nowait`, `receive_batch`, ...), so `DHTNode` runs over it unchanged.  Delivery
takes a per-link latency (a per-host component plus seeded jitter) and may drop
datagrams (global or per-link loss, or a blocked link); a closed socket's datagrams
vanish, so nodes that come and go are just sockets opened and closed.  All timing is
trio's clock, so under `trio.testing.MockClock(autojump_threshold=0)` a thousand nodes
run in virtual time.

There is no central pump task: a send pushes onto the receiver's own heap, and the
receiver sleeps until its earliest datagram is due.  A node reads its `SimSocket` with
the driver's own reader task, and its datagrams enter the core through the same
`DHTNode._receive` as those read from real sockets.

What this module must never do: decide anything about the DHT, read the OS clock, or
draw randomness but from the seeded `random.Random` it is given; and the driver must
never ask whether it runs here (no `if simulated:` anywhere).
"""

from __future__ import annotations

import heapq
import math
import random
from dataclasses import dataclass

import trio

from ._config import DHTConfig
from ._driver import DHTNode
from ._errors import LocalProtocolError
from ._ids import Address, canonical_host

__all__ = ["LinkSpec", "SimNetwork", "SimSocket", "SimSwarm"]


@dataclass(frozen=True, slots=True)
class LinkSpec:
    """Overrides for one direction of one link: extra latency and loss probability."""

    latency: float = 0.0
    loss: float = 0.0


class SimSocket:
    """One node's datagram endpoint on a SimNetwork."""

    def __init__(self, network: SimNetwork, address: Address, buffer: int) -> None:
        self._network = network
        self.address = address
        self._heap: list[tuple[float, int, bytes, Address]] = []
        self._wake = trio.Event()  # set on close
        self._sleep: trio.CancelScope | None = None  # the reader's wait, while it waits
        self._buffer = buffer
        self.closed = False

    def getsockname(self) -> Address:
        return self.address

    def send_nowait(self, data: bytes, address: Address) -> bool:
        if self.closed:
            raise trio.ClosedResourceError("socket is closed")
        self._network._send(self, bytes(data), address)
        return True

    async def wait_writable(self) -> None:
        await trio.lowlevel.checkpoint()

    async def receive_batch(self) -> list[tuple[bytes, Address]]:
        slept = False
        while True:
            if self.closed:
                raise trio.ClosedResourceError("socket is closed")
            now = trio.current_time()
            heap = self._heap
            if heap and heap[0][0] <= now:
                batch = []
                while heap and heap[0][0] <= now:
                    _, _, data, source = heapq.heappop(heap)
                    batch.append((data, source))
                if not slept:  # a checkpoint, as every trio receive is
                    await trio.lowlevel.checkpoint()
                return batch
            self._wake = trio.Event()
            try:
                with trio.move_on_at(heap[0][0] if heap else math.inf) as self._sleep:
                    await self._wake.wait()
            finally:
                self._sleep = None
            slept = True

    def _deliver(self, due: float, seq: int, data: bytes, source: Address) -> None:
        if len(self._heap) >= self._buffer:
            self._network.dropped += 1  # a full receive buffer drops, as UDP does
            return
        heapq.heappush(self._heap, (due, seq, data, source))
        # A sleeping reader is woken when the datagram is due, not now: waking it to
        # sleep again until then cost a task step per datagram.
        sleep = self._sleep
        if sleep is not None and due < sleep.deadline:
            sleep.deadline = due

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._network._sockets.pop(self.address, None)
            self._wake.set()


class SimNetwork:
    """Seeded datagram network: per-link latency and loss, blocked links, churn."""

    def __init__(
        self,
        rng: random.Random,
        *,
        latency: tuple[float, float] = (0.005, 0.05),
        jitter: float = 0.005,
        loss: float = 0.0,
        buffer: int = 4096,
    ) -> None:
        self.rng = rng
        self.latency = latency
        self.jitter = jitter
        self.loss = loss
        self.buffer = buffer
        self.links: dict[tuple[str, str], LinkSpec] = {}
        self.blocked: set[tuple[str, str]] = set()
        self._sockets: dict[Address, SimSocket] = {}
        self._host_latency: dict[str, float] = {}
        self._next_host = 1
        self._seq = 0
        self.sent = 0
        self.delivered = 0
        self.dropped = 0

    def new_host(self) -> str:
        """A fresh IPv4 literal, never handed out before (10.0.0.0/8)."""
        n = self._next_host
        self._next_host += 1
        return f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"

    def socket(self, host: str | None = None, port: int = 4000) -> SimSocket:
        """Open a socket at (host, port); a fresh host if none is given."""
        host = host or self.new_host()
        if canonical_host(host) != host:
            raise LocalProtocolError(f"{host!r} is not a canonical IP literal")
        address = (host, port)
        if address in self._sockets:
            raise LocalProtocolError(f"{address} is already bound")
        if host not in self._host_latency:
            low, high = self.latency
            # Half the one-way latency belongs to each end (its access link).
            self._host_latency[host] = self.rng.uniform(low, high) / 2
        sock = SimSocket(self, address, self.buffer)
        self._sockets[address] = sock
        return sock

    def set_link(self, a: str, b: str, spec: LinkSpec) -> None:
        """Override latency/loss from host `a` to host `b` (one direction)."""
        self.links[(a, b)] = spec

    def block(self, a: str, b: str) -> None:
        """Partition: nothing passes between hosts `a` and `b`, either way."""
        self.blocked |= {(a, b), (b, a)}

    def unblock(self, a: str, b: str) -> None:
        self.blocked -= {(a, b), (b, a)}

    def _send(self, sender: SimSocket, data: bytes, address: Address) -> None:
        self.sent += 1
        src, dst = sender.address[0], address[0]
        spec = self.links.get((src, dst))
        loss = self.loss + (spec.loss if spec else 0.0)
        if (src, dst) in self.blocked or (loss > 0 and self.rng.random() < loss):
            self.dropped += 1
            return
        target = self._sockets.get(address)
        if target is None:
            self.dropped += 1
            return
        delay = self._host_latency.get(src, 0.0) + self._host_latency.get(dst, 0.0)
        delay += (spec.latency if spec else 0.0) + self.rng.uniform(0, self.jitter)
        self._seq += 1
        self.delivered += 1
        target._deliver(trio.current_time() + delay, self._seq, data, sender.address)


class SimSwarm:
    """Many `DHTNode`s on one SimNetwork, started and stopped inside a caller's nursery.

    For tests, benchmarks and testers: `spawn()` adds a node, `kill()` removes one (its
    socket closes, so datagrams to it vanish), `join()` bootstraps nodes in waves, each
    wave seeded only from nodes that already joined, as a growing network would be.
    """

    def __init__(
        self,
        network: SimNetwork,
        nursery: trio.Nursery,
        *,
        rng: random.Random,
        config: DHTConfig | None = None,
    ) -> None:
        self.network = network
        self.nursery = nursery
        self.rng = rng
        self.config = config
        self.nodes: list[DHTNode] = []
        self._scopes: dict[int, trio.CancelScope] = {}

    async def spawn(self) -> DHTNode:
        """Start one node on a fresh host; it is not bootstrapped yet."""
        node: DHTNode = await self.nursery.start(self._run_node)
        self.nodes.append(node)
        return node

    async def _run_node(self, task_status: trio.TaskStatus[DHTNode]) -> None:
        with trio.CancelScope() as scope:
            rng = random.Random(self.rng.getrandbits(64))
            node = DHTNode(transport=self.network.socket(), rng=rng, config=self.config)
            async with node:
                self._scopes[id(node)] = scope
                task_status.started(node)
                await trio.sleep_forever()

    def kill(self, node: DHTNode) -> None:
        """Stop `node` at once, as a crash would (no goodbye)."""
        self.nodes.remove(node)
        self._scopes.pop(id(node)).cancel()

    async def join(self, nodes: list[DHTNode], seeds: list[DHTNode], attempts: int = 3) -> None:
        """Bootstrap `nodes` in waves that double the joined set; retry a node that got no
        answer (an operator would), up to `attempts` times."""
        if not seeds:
            raise LocalProtocolError("joining needs at least one joined node")
        joined = list(seeds)
        todo = list(nodes)
        while todo:
            wave, todo = todo[: len(joined)], todo[len(joined) :]
            async with trio.open_nursery() as nursery:
                for node in wave:
                    nursery.start_soon(self._join_one, node, joined, attempts)
            joined.extend(wave)

    async def _join_one(self, node: DHTNode, joined: list[DHTNode], attempts: int) -> None:
        for _ in range(attempts):
            seed = joined[self.rng.randrange(len(joined))]
            if await node.bootstrap([seed.address]) > 0:
                return
