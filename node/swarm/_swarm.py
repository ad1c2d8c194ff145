"""`Swarm`: N whole nodes on one simulated network, one room, traffic, faults, figures.

    async with Swarm.simulated(8, seed=1) as swarm:    # inside run_simulated(...)
        await swarm.create_room()
        async with swarm.traffic(Traffic(rate=2.0)):
            await trio.sleep(60)
            swarm.split()                                 # a partition ...
            await trio.sleep(60)
            swarm.heal()                                  # ... that heals
        assert await swarm.settle(300)
        report = swarm.report()

Every node is a real `node.Node` on `node.sim.SimNetwork`, in virtual time; its seed,
its address and its data dir name come from the swarm's seed and its index, never from
the machine, so `report()` is the same dict for the same seed. The swarm runs a DHT
bootstrap node of its own (on its own simulated host), so nodes also find each other as
real ones do.

This module drives nodes only through their public API (`Node`, `Room`, `status()`);
it never decides anything a node decides.
"""

from __future__ import annotations

import contextlib
import random
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import trio
import trio.testing

from crdt import MessageAdded, format_peer_id
from dht import DHTNode

from .._invite import Invite
from .._node import Node
from .._room import Room
from ..gossip import GossipConfig
from ..link import LinkConfig
from ..sim import SimNetwork
from . import _checks as checks
from ._measure import Recorder, room_digest
from ._traffic import Traffic, message_text

__all__ = ["Swarm", "SwarmConfig", "SwarmNode"]

BOOTSTRAP_PORT: Final = 4000
POLL: Final = 0.5  # virtual seconds between looks at convergence while settling


@dataclass(frozen=True)
class SwarmConfig:
    """How a simulated swarm's network and nodes are set up."""

    latency: tuple[float, float] = (0.01, 0.08)  # one-way seconds, drawn per host pair share
    jitter: float = 0.005  # extra seconds, up to, per chunk or datagram
    loss: float = 0.0  # datagram loss everywhere (streams: retransmission delay per link)
    dht: bool = True  # nodes run a DHT node and find each other through it too
    mesh_size: int = 4  # room members discovery keeps links to, per node
    discovery_interval: float = 30.0
    dial_backoff: float = 1.0
    invite_peers: int = 3  # addresses in the invite a joining node gets (random members)
    gossip_config: GossipConfig | None = None
    link_config: LinkConfig | None = None

    def __post_init__(self) -> None:
        latency = self.latency
        if not isinstance(latency, tuple | list) or len(latency) != 2:
            raise ValueError(f"latency must be a pair [low, high] of seconds, not {latency!r}")
        for value in latency:
            checks.number("latency", value, low=0)
        if latency[0] > latency[1]:
            raise ValueError(f"latency must be [low, high] with low <= high, not {latency!r}")
        checks.number("jitter", self.jitter, low=0)
        checks.number("loss", self.loss, low=0, high=1, high_open=True)
        checks.flag("dht", self.dht)
        checks.whole("mesh_size", self.mesh_size, low=1)
        checks.number("discovery_interval", self.discovery_interval, low=0, low_open=True)
        checks.number("dial_backoff", self.dial_backoff, low=0, low_open=True)
        checks.whole("invite_peers", self.invite_peers, low=1)


@dataclass(eq=False)
class SwarmNode:
    """One member of the swarm, across its restarts. `node` and `room` are None while
    it is down."""

    index: int
    name: str
    data_dir: Path
    incarnation: int = 0
    address: str = ""  # host:port it listens on (kept across restarts unless moved)
    peer_id: bytes = b""
    node: Node | None = None
    room: Room | None = None
    retired: bool = False  # replaced by a new node: gone for good
    started_at: float = 0.0  # virtual time of its latest start
    # Counters of incarnations that have stopped (a node's own start from zero).
    totals: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)
    _stop: trio.Event = field(default_factory=trio.Event)
    _done: trio.Event = field(default_factory=trio.Event)

    @property
    def up(self) -> bool:
        return self.node is not None

    @property
    def host(self) -> str:
        return self.address.rpartition(":")[0]

    def seed(self, swarm_seed: int) -> int:
        # A str seed is hashed with SHA-512 by `random`: the same on every machine.
        return random.Random(f"{swarm_seed}:{self.index}:{self.incarnation}").getrandbits(64)


class Swarm:
    """A simulated swarm: see the module docstring. Build one with `Swarm.simulated`."""

    def __init__(
        self,
        nursery: trio.Nursery,
        network: SimNetwork,
        base_dir: Path,
        seed: int,
        config: SwarmConfig,
        bootstrap: list[str],
    ) -> None:
        self.network = network
        self.seed = seed
        self.config = config
        self.rng = random.Random(f"{seed}:swarm")  # the swarm's own choices (writers, faults)
        self.recorder = Recorder()
        self.nodes: list[SwarmNode] = []
        self.invite: Invite | None = None
        self.traffic_ended_at: float | None = None
        self.converged_at: float | None = None
        self._nursery = nursery
        self._base_dir = base_dir
        self._bootstrap = bootstrap
        self._blocked: list[tuple[str, str]] = []

    # -- building ----------------------------------------------------------------------

    @classmethod
    @asynccontextmanager
    async def simulated(
        cls,
        nodes: int,
        *,
        seed: int,
        config: SwarmConfig | None = None,
        data_dir: Path | None = None,
    ) -> AsyncIterator[Swarm]:
        """Start `nodes` nodes on a new simulated network seeded with `seed`; stop them all
        when the block exits. Must run under a `MockClock` (use `run_simulated`). Data
        dirs go in a temporary dir removed afterwards, unless `data_dir` is given."""
        if not isinstance(trio.lowlevel.current_clock(), trio.testing.MockClock):
            raise RuntimeError("a simulated swarm runs in virtual time: use run_simulated()")
        config = config or SwarmConfig()
        network = SimNetwork(
            random.Random(f"{seed}:network"),
            latency=config.latency,
            jitter=config.jitter,
            loss=config.loss,
        )
        owned = data_dir is None
        base = Path(tempfile.mkdtemp(prefix="rumor-swarm-")) if owned else Path(data_dir or ".")
        try:
            async with trio.open_nursery() as nursery:
                bootstrap: list[str] = []
                if config.dht:
                    host = network.new_host()
                    await nursery.start(cls._run_bootstrap, network, host, seed)
                    bootstrap = [f"{host}:{BOOTSTRAP_PORT}"]
                swarm = cls(nursery, network, base, seed, config, bootstrap)
                try:
                    for _ in range(nodes):
                        await swarm.add_node()
                    yield swarm
                finally:
                    with trio.CancelScope(shield=True):
                        await swarm._stop_all()
                    nursery.cancel_scope.cancel()
        finally:
            if owned:
                shutil.rmtree(base, ignore_errors=True)

    @staticmethod
    async def _run_bootstrap(
        network: SimNetwork, host: str, seed: int, task_status: trio.TaskStatus[None]
    ) -> None:
        socket = network.datagram_socket(host, BOOTSTRAP_PORT)
        async with DHTNode(transport=socket, rng=random.Random(f"{seed}:bootstrap")):
            task_status.started()
            await trio.sleep_forever()

    async def add_node(self) -> SwarmNode:
        """A new node (fresh identity and data dir), started, and joined to the room if
        the swarm has one: a late joiner, or a replacement."""
        index = len(self.nodes)
        name = f"n{index:03d}"
        member = SwarmNode(index, name, self._base_dir / name)
        self.nodes.append(member)
        await self.start(member)
        return member

    # -- the room ----------------------------------------------------------------------

    async def create_room(self, name: str = "swarm") -> Invite:
        """The first live node creates the room; every other live node joins it (each
        with an invite naming a few random members already in)."""
        creator = self.live()[0]
        assert creator.node is not None
        room = await creator.node.create_room(name)
        self.invite = Invite(room.id, _secret(room), name, ())
        self._joined(creator, room)
        for member in self.live()[1:]:
            await self._join(member)
        return self.invite

    async def _join(self, member: SwarmNode) -> None:
        assert member.node is not None and self.invite is not None
        if any(r.id == self.invite.room for r in member.node.rooms()):
            self._joined(member, member.node.room(self.invite.room))
            return
        others = [m.address for m in self.live() if m.room is not None and m is not member]
        peers = self.rng.sample(others, min(self.config.invite_peers, len(others)))
        invite = Invite(self.invite.room, self.invite.secret, self.invite.name, tuple(peers))
        self._joined(member, await member.node.join(invite))

    def _joined(self, member: SwarmNode, room: Room) -> None:
        member.room = room
        self.recorder.joined(member.index)
        self._nursery.start_soon(self._watch, member, room)

    async def _watch(self, member: SwarmNode, room: Room) -> None:
        recorder, index, since = self.recorder, member.index, member.started_at
        async with room.events() as events:
            async for change in events:
                if isinstance(change, MessageAdded):
                    recorder.on_arrived(index, change.id, trio.current_time(), since)

    # -- membership: start, stop, replace ----------------------------------------------

    def live(self) -> list[SwarmNode]:
        """The nodes up now, in index order."""
        return [m for m in self.nodes if m.up]

    async def start(self, member: SwarmNode, *, move: bool = False) -> None:
        """Start a node that is down (at its old address unless `move`); it rejoins the
        room from its own file, or joins it if it never held it."""
        if member.up or member.retired:
            raise RuntimeError(f"{member.name} is up or retired")
        member._stop, member._done = trio.Event(), trio.Event()
        listen = member.address if member.address and not move else "0.0.0.0:0"
        await self._nursery.start(self._run_node, member, listen)
        member.incarnation += 1
        if self.invite is not None:
            await self._join(member)

    async def stop(self, member: SwarmNode) -> None:
        """Stop a node (it keeps its data dir and may `start` again)."""
        if not member.up:
            return
        if member.room is not None:
            # Leaving from now on: a node closing is no writer (an op sent through it
            # while it closes may never leave it) and nothing sent from now is due to it.
            self.recorder.left(member.index)
            member.room = None
        member._stop.set()
        await member._done.wait()

    async def replace(self, member: SwarmNode) -> SwarmNode:
        """Stop `member` for good and start a new node (new identity) in its place."""
        await self.stop(member)
        member.retired = True
        return await self.add_node()

    async def _run_node(self, member: SwarmNode, listen: str, task_status: Any) -> None:
        config = self.config
        try:
            async with Node.open(
                member.data_dir,
                network=self.network,
                listen=listen,
                dht_port=0 if config.dht else None,
                bootstrap=self._bootstrap,
                seed=member.seed(self.seed),
                mesh_size=config.mesh_size,
                discovery_interval=config.discovery_interval,
                dial_backoff=config.dial_backoff,
                gossip_config=config.gossip_config,
                link_config=config.link_config,
            ) as node:
                member.node, member.address, member.peer_id = node, node.address, node.peer_id
                member.started_at = trio.current_time()
                task_status.started()
                await member._stop.wait()
                _retire_counters(member, node)
        finally:
            if member.room is not None:
                self.recorder.left(member.index)
            member.node = member.room = None
            member._done.set()

    async def _stop_all(self) -> None:
        for member in self.nodes:
            if member.up:
                member._stop.set()
        for member in self.nodes:
            if member.up:
                await member._done.wait()

    # -- faults ------------------------------------------------------------------------

    def split(self, fraction: float = 0.5) -> tuple[list[SwarmNode], list[SwarmNode]]:
        """Partition the live nodes in two random sides (`fraction` of them on the first):
        nothing passes between the sides until `heal()`."""
        live = self.live()
        side = set(self.rng.sample(range(len(live)), max(1, round(fraction * len(live)))))
        first = [m for i, m in enumerate(live) if i in side]
        second = [m for i, m in enumerate(live) if i not in side]
        self.partition(first, second)
        return first, second

    def partition(self, *sides: Sequence[SwarmNode]) -> None:
        """Nothing passes between nodes on different sides until `heal()`."""
        for i, side in enumerate(sides):
            for other in sides[i + 1 :]:
                for a in side:
                    for b in other:
                        self.network.block(a.host, b.host)
                        self._blocked.append((a.host, b.host))
        self.recorder.note(trio.current_time(), "partition " + "|".join(str(len(s)) for s in sides))

    def heal(self) -> None:
        """Undo every partition."""
        for a, b in self._blocked:
            self.network.unblock(a, b)
        self._blocked.clear()
        self.recorder.note(trio.current_time(), "healed")

    def isolate(self, member: SwarmNode) -> None:
        """Cut one node off from every other (until `heal()`)."""
        self.partition([member], [m for m in self.nodes if m is not member and m.address])

    def slow(self, member: SwarmNode, one_way: float) -> None:
        """Make a node slow: `one_way` seconds more on everything to or from it."""
        self.network.set_host_latency(member.host, one_way)
        self.recorder.note(trio.current_time(), f"{member.name} slow (+{one_way:g} s)")

    def degrade(
        self,
        a: SwarmNode,
        b: SwarmNode,
        *,
        latency: float = 0.0,
        jitter: float = 0.0,
        loss: float = 0.0,
    ) -> None:
        """Faults on the link between two nodes, both ways (see `SimNetwork.set_link`)."""
        for x, y in ((a, b), (b, a)):
            self.network.set_link(x.host, y.host, latency=latency, jitter=jitter, loss=loss)

    # -- traffic -----------------------------------------------------------------------

    async def send(self, member: SwarmNode, text: str) -> bytes:
        """`member` posts a message; recorded for delivery and latency."""
        assert member.room is not None
        op_id = await member.room.send(text)
        self.recorder.on_sent(op_id, member.index, trio.current_time(), len(self.writers()))
        return op_id

    def writers(self) -> list[SwarmNode]:
        """Live nodes in the room (who may write, and who should receive)."""
        return [m for m in self.nodes if m.room is not None]

    @asynccontextmanager
    async def traffic(
        self, traffic: Traffic, writers: Callable[[], list[SwarmNode]] | None = None
    ) -> AsyncIterator[None]:
        """Messages at `traffic`'s rate from random writers while the block runs."""
        choose = writers or self.writers
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._drive, traffic, choose)
            try:
                yield
            finally:
                nursery.cancel_scope.cancel()
                self.traffic_ended_at = trio.current_time()

    async def _drive(self, traffic: Traffic, choose: Callable[[], list[SwarmNode]]) -> None:
        rng = random.Random(f"{self.seed}:traffic")
        pool_size = traffic.writers
        count = 0
        next_burst = traffic.burst_every or None
        start = trio.current_time()
        while True:
            await trio.sleep(rng.expovariate(traffic.rate))
            batch = 1
            if next_burst is not None and trio.current_time() - start >= next_burst:
                batch = traffic.burst_size
                next_burst += traffic.burst_every
            for _ in range(batch):
                candidates = choose()
                if pool_size:  # only the first `writers` nodes write
                    candidates = [m for m in candidates if m.index < pool_size]
                if not candidates:
                    break
                writer = rng.choice(candidates)
                size = traffic.draw_size(rng)
                with contextlib.suppress(trio.ClosedResourceError):
                    await self.send(writer, message_text(count, writer.name, size))
                count += 1

    async def flood(self, member: SwarmNode, rate: float, seconds: float) -> int:
        """`member` writes `rate` messages a second for `seconds`: a flood of valid ops."""
        self.recorder.note(trio.current_time(), f"{member.name} floods {rate:g}/s")
        sent = 0
        end = trio.current_time() + seconds
        while trio.current_time() < end and member.room is not None:
            with contextlib.suppress(trio.ClosedResourceError):
                await self.send(member, message_text(sent, member.name + "-flood", 64))
            sent += 1
            await trio.sleep(1 / rate)
        return sent

    # -- measuring ---------------------------------------------------------------------

    def digests(self) -> dict[str, str]:
        """Each live member's room digest, by name."""
        return {m.name: room_digest(m.room) for m in self.writers() if m.room is not None}

    def converged(self) -> bool:
        """Every live member holds the same views of the room (and nothing is pending)."""
        rooms = [m.room for m in self.writers() if m.room is not None]
        if not rooms:
            return False
        counts = {(r.message_count(), len(r.members())) for r in rooms}
        if len(counts) != 1:
            return False
        return len(set(self.digests().values())) == 1

    async def settle(self, within: float, *, poll: float = POLL) -> bool:
        """Wait (up to `within` virtual seconds) until the swarm has converged; True if it
        did. Records when, for the report."""
        with trio.move_on_after(within):
            # Polling: convergence is a view over every node, with no one event to wait on.
            while not self.converged():  # noqa: ASYNC110
                await trio.sleep(poll)
            self.converged_at = trio.current_time()
            return True
        return False

    def peer_names(self) -> dict[bytes, str]:
        return {m.peer_id: m.name for m in self.nodes if m.peer_id}

    def short_id(self, member: SwarmNode) -> str:
        return format_peer_id(member.peer_id)[:8] if member.peer_id else ""


def _secret(room: Room) -> bytes:
    # The invite is the public way to the secret.
    from .._invite import parse_invite

    return parse_invite(room.invite()).secret


def _retire_counters(member: SwarmNode, node: Node) -> None:
    """Add a stopping incarnation's room counters to the member's totals."""
    for room in node.status().rooms:
        for key, value in (
            ("received", room.received),
            ("sent", room.sent),
            ("duplicates", room.duplicates),
            ("penalties", room.penalties),
        ):
            member.totals[key] = member.totals.get(key, 0) + value
        for reason, count in room.rejected:
            member.rejected[reason] = member.rejected.get(reason, 0) + count
