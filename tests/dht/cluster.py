"""An in-memory cluster of sans-IO DHT cores with instant delivery, for core tests.

No trio and no sockets: `run()` moves datagrams between cores until nothing is in
flight, and `advance()` moves a shared virtual clock and fires due timers.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from dht import DHTConfig, DHTProtocol, OperationDone
from dht._ids import Address, random_id
from rumor_runtime import SignatureCheck


class Cluster:
    def __init__(self, seed: int = 0, config: DHTConfig | None = None) -> None:
        self.rng = random.Random(seed)
        self.now = 1000.0
        self.config = config or DHTConfig()
        self.nodes: dict[Address, DHTProtocol] = {}
        self.results: dict[tuple[Address, int], object] = {}
        self.drop: Callable[[bytes, Address, Address], bool] = lambda d, s, t: False
        self.delivered = 0

    def add(
        self,
        node_id: bytes | None = None,
        host: str | None = None,
        check: SignatureCheck | None = None,
    ) -> Address:
        index = len(self.nodes) + 1
        address = (host or f"10.0.{index // 250}.{index % 250 + 1}", 4000)
        node_id = node_id or random_id(self.rng)
        self.nodes[address] = DHTProtocol(
            node_id,
            rng=random.Random(self.rng.random()),
            now=self.now,
            config=self.config,
            wall_offset=1.7e9,
            check_signature=check,
        )
        return address

    def run(self, max_steps: int = 1_000_000) -> None:
        """Deliver datagrams until quiet (timers are not fired)."""
        for _ in range(max_steps):
            moved = False
            for source, node in list(self.nodes.items()):
                for data, target in node.datagrams_to_send():
                    moved = True
                    if self.drop(data, source, target) or target not in self.nodes:
                        continue
                    self.delivered += 1
                    self.nodes[target].receive_datagram(data, source, self.now)
                self._collect(source, node)
            if not moved:
                return
        raise AssertionError("cluster did not go quiet")

    def _collect(self, address: Address, node: DHTProtocol) -> None:
        while (event := node.next_event()) is not None:
            if isinstance(event, OperationDone):
                self.results[(address, event.op_id)] = event.result

    def advance(self, seconds: float) -> None:
        """Move the clock, firing each node's timers in order, delivering in between."""
        end = self.now + seconds
        while True:
            self.run()
            due = min(node.get_timer() for node in self.nodes.values())
            if due > end:
                break
            self.now = max(self.now, due)
            for node in self.nodes.values():
                if node.get_timer() <= self.now:
                    node.handle_timer(self.now)
        self.now = end
        self.run()

    def settle(self, address: Address, op_id: int, limit: float = 120.0) -> object:
        """Run until operation `op_id` of node `address` is done; return its result."""
        waited = 0.0
        while (address, op_id) not in self.results:
            self.run()
            self._collect(address, self.nodes[address])
            if (address, op_id) in self.results:
                break
            if waited >= limit:
                raise AssertionError(f"operation {op_id} did not finish")
            self.advance(0.5)
            waited += 0.5
        return self.results.pop((address, op_id))
