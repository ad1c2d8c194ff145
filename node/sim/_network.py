"""A simulated network for whole nodes: DHT datagrams and link streams, all in memory.

`SimNetwork` owns a `dht.SimNetwork` for the DHT's datagrams and adds what links need:
byte streams between simulated hosts, with a seeded latency per host pair, connects that
are refused where nobody listens, and partitions (`block`) that break open streams and
fail new connects. `Node.open(..., network=sim)` runs a whole node on it: its links
through `sim.transport(host)` (a `node.link.StreamTransport`), its DHT on
`sim.datagram_socket(host)`. All timing is trio's clock, so under
`trio.testing.MockClock(autojump_threshold=0)` a swarm of nodes runs in virtual time.

Streams keep trio's semantics: `send_all`, `receive_some` and `aclose` are checkpoints
(`send_all` a cancellation point that yields only when it must wait: see its comment);
a stream closed here raises `ClosedResourceError`, one whose other end is gone or cut
off raises `BrokenResourceError`; `receive_some` returns ``b""`` once the other end
closed and everything it sent has arrived. Latency delays bytes but never reorders them,
and a sender blocks once `window` bytes wait unread, as on a full TCP window.

Every node of a network checks signatures through one `SignatureVerdicts`, which checks
each (key, signature, message) for real once and remembers the verdict for the others,
and decodes ops from peers through one `SharedOps`, which hands every node the same
immutable `Op` for the same bytes.

What this module must never do: touch a socket, a thread or the OS clock, or decide
anything about links or the DHT. It only moves bytes, late (and remembers verdicts and
decoded ops, which are pure functions of bytes).
"""

from __future__ import annotations

import collections
import errno
import ipaddress
import math
import random
from dataclasses import dataclass
from typing import Final

import trio

import dht
from crdt import Op, decode_op, verify_signature
from rumor_runtime import INLINE

from .._env import Environment

__all__ = ["SimListener", "SimNetwork", "SimStream", "SimTransport"]

_LINK: Final = 0  # index of link-stream bytes in a host's traffic counters
_DHT: Final = 2  # index of DHT datagram bytes
RETRANSMIT: Final = 0.2  # seconds a lost segment of a stream costs (TCP's minimum RTO)
WINDOW: Final = 256 * 1024  # unread bytes a sender may have in flight before it blocks
EPOCH_MS: Final = 1_767_225_600_000  # 2026-01-01 00:00 UTC: simulated wall clocks start here
FIRST_PORT: Final = 49152  # ports handed out for port 0 (the IANA ephemeral range)
VERDICTS: Final = 1 << 16  # signature verdicts a network remembers (the oldest go first)
SHARED_OPS: Final = 4096  # decoded ops a network keeps for its nodes to share


class SignatureVerdicts:
    """Ed25519 verdicts shared by every node of one simulated network.

    In a swarm every node checks the same signatures: each op, each DHT peer record, each
    room address record reaches a thousand nodes. A verdict is a pure function of the public
    key, the signature and the message, so the first check is done for real and the others
    reuse it. Entries are keyed by the signature and hold the key and message they were
    computed for: any other key or message (a forgery reusing a signature) is checked for
    real. Bounded: the oldest verdicts are forgotten first.
    """

    def __init__(self, limit: int = VERDICTS) -> None:
        self._limit = limit
        self._verdicts: collections.OrderedDict[bytes, tuple[bytes, bytes, bool]] = (
            collections.OrderedDict()
        )
        self.checked = 0  # checks done for real
        self.reused = 0  # checks answered from a remembered verdict

    def check(self, public_key: bytes, signature: bytes, message: bytes) -> bool:
        """A `rumor_runtime.SignatureCheck`: True if `signature` is `public_key`'s Ed25519
        signature of `message`."""
        known = self._verdicts.get(signature)
        if known is not None and known[0] == public_key and known[1] == message:
            self.reused += 1
            return known[2]
        verdict = verify_signature(public_key, signature, message)
        self.checked += 1
        self._verdicts[signature] = (public_key, message, verdict)
        if len(self._verdicts) > self._limit:
            self._verdicts.popitem(last=False)
        return verdict


class SharedOps:
    """Decoded ops shared by every node of one simulated network.

    Each op reaches every node of a swarm as the same bytes, and `crdt.decode_op` is a pure
    function of them that returns an immutable `Op`: the first node to receive an op
    decodes it for real, and later ones get the same object. So a swarm holds one copy of
    each recent op, not one per node (each node's caches of recent ops point at it).
    Bytes that do not decode raise `InvalidOp` each time (nothing is kept of them).
    Bounded: the oldest ops are forgotten first (and decoded again if they come back).
    """

    def __init__(self, limit: int = SHARED_OPS) -> None:
        self._limit = limit
        self._ops: collections.OrderedDict[bytes, Op] = collections.OrderedDict()
        self.decoded = 0  # wire forms decoded for real
        self.shared = 0  # wire forms answered with an op decoded before

    def decode(self, data: bytes) -> Op:
        """`crdt.decode_op(data)`, or the op it returned for the same bytes before."""
        if type(data) is not bytes:  # not a key; decode_op says what is wrong with it
            return decode_op(data)
        op = self._ops.get(data)
        if op is not None:
            self.shared += 1
            return op
        op = decode_op(data)
        self.decoded += 1
        self._ops[op.data] = op
        if len(self._ops) > self._limit:
            self._ops.popitem(last=False)
        return op


class _Pipe:
    """One direction of a connection: bytes in order, each chunk due after its latency."""

    def __init__(self, src: str, dst: str) -> None:
        self.src, self.dst = src, dst
        self.chunks: collections.deque[tuple[float, bytes]] = collections.deque()
        self.unread = 0  # bytes written and not yet read
        self.last_due = -math.inf
        self.eof_due: float | None = None  # set when the writer closed
        self.broken = False  # cut off: everything in flight is lost
        self.reader_gone = False  # the receiving end closed: writes are refused
        self.readable = trio.Event()
        self.writable = trio.Event()
        self.sleep: trio.CancelScope | None = None  # the reader's wait for a chunk's due time

    def arrives(self, due: float) -> None:
        """A chunk due at `due` was written: a sleeping reader wakes then, not now (waking
        it to sleep again until then cost a task step per chunk)."""
        sleep = self.sleep
        if sleep is not None and due < sleep.deadline:
            sleep.deadline = due

    def due(self, delay: float) -> float:
        # Never before what was sent earlier: latency must not reorder a stream.
        self.last_due = max(trio.current_time() + delay, self.last_due)
        return self.last_due

    def wake(self) -> None:
        self.readable.set()
        self.writable.set()

    def break_(self) -> None:
        self.broken = True
        self.chunks.clear()
        self.unread = 0
        self.wake()


class _Connection:
    """Both directions between two endpoints, tracked so a partition can break it."""

    def __init__(self, a: str, b: str) -> None:
        self.hosts = frozenset((a, b))
        self.forward = _Pipe(a, b)
        self.backward = _Pipe(b, a)
        self.open_ends = 2

    def break_(self) -> None:
        self.forward.break_()
        self.backward.break_()


class SimStream(trio.abc.Stream):
    """One end of a simulated connection (made by `SimTransport` and `SimListener`)."""

    def __init__(
        self,
        network: SimNetwork,
        connection: _Connection,
        local: dht.Address,
        remote: dht.Address,
        outgoing: _Pipe,
        incoming: _Pipe,
    ) -> None:
        self._network = network
        self._connection = connection
        self.local = local
        self.remote = remote
        self._out = outgoing
        self._in = incoming
        self._closed = False
        self._sending = False
        self._receiving = False

    def __repr__(self) -> str:
        # trio-websocket names a non-socket stream's peer by its repr: make that host:port.
        host, port = self.remote
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self._sending:
            raise trio.BusyResourceError("another task is sending on this stream")
        self._sending = True
        try:
            # A cancellation point, but a schedule point only when the window is full:
            # nothing is waited for when the bytes fit, and a yield per write cost a task
            # step per link message (every one of them already yields on the WebSocket's
            # send lock). What is written, and when it is due, is the same either way.
            await trio.lowlevel.checkpoint_if_cancelled()
            pipe = self._out
            while True:
                if self._closed:
                    raise trio.ClosedResourceError("this stream is closed")
                if pipe.broken or pipe.reader_gone:
                    raise trio.BrokenResourceError("the connection is gone")
                if pipe.unread < self._network.window:
                    break
                pipe.writable = trio.Event()
                await pipe.writable.wait()
            if data:
                chunk = bytes(data)
                self._network._count(pipe.src, pipe.dst, len(chunk), _LINK)
                due = pipe.due(self._network._delay(pipe.src, pipe.dst))
                # A reader already waits for the earlier chunk's due time, which comes first
                # (chunks never reorder): only a reader of an empty pipe needs its wait cut.
                if not pipe.chunks:
                    pipe.arrives(due)
                pipe.chunks.append((due, chunk))
                pipe.unread += len(chunk)
        finally:
            self._sending = False

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()
        pipe = self._out
        while not (self._closed or pipe.broken or pipe.reader_gone):
            if pipe.unread < self._network.window:
                return
            pipe.writable = trio.Event()
            await pipe.writable.wait()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if max_bytes is not None and max_bytes < 1:
            raise ValueError("max_bytes must be positive")
        if self._receiving:
            raise trio.BusyResourceError("another task is receiving on this stream")
        self._receiving = True
        try:
            pipe = self._in
            slept = False
            while True:
                if self._closed:
                    raise trio.ClosedResourceError("this stream is closed")
                if pipe.broken:
                    raise trio.BrokenResourceError("the connection is gone")
                now = trio.current_time()
                if pipe.chunks and pipe.chunks[0][0] <= now:
                    if not slept:  # a checkpoint, as every trio receive is
                        await trio.lowlevel.checkpoint()
                        if self._closed or pipe.broken:
                            continue
                        now = trio.current_time()
                    return self._take(pipe, now, max_bytes)
                if not pipe.chunks and pipe.eof_due is not None and pipe.eof_due <= now:
                    if not slept:
                        await trio.lowlevel.checkpoint()
                    return b""
                deadline = pipe.chunks[0][0] if pipe.chunks else pipe.eof_due or math.inf
                pipe.readable = trio.Event()
                try:
                    with trio.move_on_at(deadline) as pipe.sleep:
                        await pipe.readable.wait()
                finally:
                    pipe.sleep = None
                slept = True
        finally:
            self._receiving = False

    def _take(self, pipe: _Pipe, now: float, max_bytes: int | None) -> bytes:
        limit = max_bytes if max_bytes is not None else self._network.window
        parts: list[bytes] = []
        taken = 0
        while pipe.chunks and pipe.chunks[0][0] <= now and taken < limit:
            due, chunk = pipe.chunks.popleft()
            if taken + len(chunk) > limit:
                cut = limit - taken
                pipe.chunks.appendleft((due, chunk[cut:]))
                chunk = chunk[:cut]
            parts.append(chunk)
            taken += len(chunk)
        pipe.unread -= taken
        pipe.writable.set()
        return b"".join(parts)

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            out, incoming = self._out, self._in
            if not out.broken:
                out.eof_due = out.due(self._network._delay(out.src, out.dst))
            incoming.reader_gone = True
            incoming.chunks.clear()
            incoming.unread = 0
            out.wake()  # the other end's reader sees the EOF when it is due
            incoming.wake()  # the other end's writer sees us gone; our own waiters wake
            self._connection.open_ends -= 1
            if self._connection.open_ends == 0:
                self._network._connections.pop(self._connection, None)
        await trio.lowlevel.checkpoint()


class SimListener(trio.abc.Listener[trio.abc.Stream]):
    """Accepts simulated connections to one host:port until closed."""

    def __init__(self, network: SimNetwork, address: dht.Address) -> None:
        self._network = network
        self.address = address
        self._pending_in, self._pending_out = trio.open_memory_channel[SimStream](math.inf)
        self._closed = False

    @property
    def port(self) -> int:
        return self.address[1]

    def _offer(self, stream: SimStream) -> None:
        self._pending_in.send_nowait(stream)

    async def accept(self) -> trio.abc.Stream:
        try:
            return await self._pending_out.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise trio.ClosedResourceError("this listener is closed") from None

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            if self._network._listeners.get(self.address) is self:
                del self._network._listeners[self.address]
            self._pending_in.close()
            while True:  # connections nobody accepted are reset, as a kernel would
                try:
                    stream = self._pending_out.receive_nowait()
                except (trio.WouldBlock, trio.EndOfChannel):
                    break
                self._network._cut(stream._connection)
            self._pending_out.close()
        await trio.lowlevel.checkpoint()


class SimTransport:
    """A `node.link.StreamTransport` for one simulated host: connects go out from it,
    listeners listen on it."""

    def __init__(self, network: SimNetwork, host: str) -> None:
        self.network = network
        self.host = host

    async def open_stream(self, host: str, port: int) -> trio.abc.Stream:
        return await self.network._connect(self.host, (host, port))

    async def open_listeners(
        self, host: str, port: int
    ) -> tuple[list[trio.abc.Listener[trio.abc.Stream]], int]:
        if host != self.host:
            raise OSError(errno.EADDRNOTAVAIL, f"{host} is not this host ({self.host})")
        listener = self.network._listen(self.host, port)
        return [listener], listener.port


@dataclass(frozen=True, slots=True)
class _LinkFault:
    jitter: float
    loss: float


class _CountingSocket:
    """A node's DHT socket that counts its datagrams' bytes in the network's traffic."""

    def __init__(self, network: SimNetwork, socket: dht.SimSocket) -> None:
        self._network = network
        self._socket = socket

    def getsockname(self) -> dht.Address:
        return self._socket.getsockname()

    def send_nowait(self, data: bytes, address: dht.Address) -> bool:
        self._network._counters(self._socket.address[0])[_DHT] += len(data)
        return self._socket.send_nowait(data, address)

    async def wait_writable(self) -> None:
        await self._socket.wait_writable()

    async def receive_batch(self) -> list[tuple[bytes, dht.Address]]:
        batch = await self._socket.receive_batch()
        self._network._counters(self._socket.address[0])[_DHT + 1] += sum(len(d) for d, _ in batch)
        return batch

    def close(self) -> None:
        self._socket.close()


class SimNetwork:
    """Seeded in-memory network of hosts: link streams here, DHT datagrams in `dht`.

    Each host gets a random one-way latency share from `latency` (half of a value drawn
    in that range); a chunk of bytes from host a to host b takes a's share plus b's plus
    any `set_latency` extra plus up to `jitter`. The DHT network draws its own latencies
    in the same ranges, and `loss` applies to datagrams only (a stream retransmits).
    """

    def __init__(
        self,
        rng: random.Random,
        *,
        latency: tuple[float, float] = (0.005, 0.05),
        jitter: float = 0.005,
        loss: float = 0.0,
        window: int = WINDOW,
        epoch_ms: int = EPOCH_MS,
    ) -> None:
        self.rng = rng
        self.epoch_ms = epoch_ms  # the simulated wall clock at virtual time 0
        self.latency = latency
        self.jitter = jitter
        self.window = window
        self.dht = dht.SimNetwork(
            random.Random(rng.getrandbits(64)), latency=latency, jitter=jitter, loss=loss
        )
        self.signatures = SignatureVerdicts()  # every node's signature checks
        self.ops = SharedOps()  # every node's decoding of ops from peers
        self.connects = 0  # connects attempted
        self.refused = 0  # of those, refused (nobody listening) or cut off (blocked)
        self._blocked: set[frozenset[str]] = set()
        self._host_latency: dict[str, float] = {}
        self._extra: dict[tuple[str, str], float] = {}
        self._links: dict[tuple[str, str], _LinkFault] = {}
        self._listeners: dict[dht.Address, SimListener] = {}
        # A dict, not a set: connections hash by id(), and a partition must cut them in an
        # order that does not depend on memory addresses (one seed, one run).
        self._connections: dict[_Connection, None] = {}
        # Per host: link bytes sent, received, DHT bytes sent, received.
        self.traffic: dict[str, list[int]] = {}
        self._next_port: dict[str, int] = {}

    # -- hosts -------------------------------------------------------------------------

    def new_host(self) -> str:
        """A fresh IPv4 literal, never handed out before."""
        return self.dht.new_host()

    def host(self, requested: str | None = None) -> str:
        """The host a node runs on: `requested` if it names one, or a fresh host for None,
        a wildcard or a loopback address (every node its own machine)."""
        if requested is None or requested == "":
            return self.new_host()
        try:
            address = ipaddress.ip_address(requested)
        except ValueError:
            raise ValueError(f"a simulated host is an IP literal, not {requested!r}") from None
        if address.is_unspecified or address.is_loopback:
            return self.new_host()
        return str(address)

    def transport(self, host: str) -> SimTransport:
        """The stream transport of a node on `host`, for `connect_link` and `serve_links`."""
        return SimTransport(self, host)

    def environment(self, host: str, seed: int | None = None) -> Environment:
        """A node's environment on simulated host `host`: its links and DHT socket there,
        blocking work inline, no name resolver, a wall clock that is trio's clock plus
        `epoch_ms`, a generator seeded with `seed` (else from the network's), and the
        network's shared signature verdicts and decoded ops (`SignatureVerdicts`,
        `SharedOps`)."""

        async def open_datagrams(_host: str, port: int) -> dht.DatagramTransport:
            return _CountingSocket(self, self.datagram_socket(host, port))

        async def resolve(name: str, port: int, socket_type: int) -> list[str]:
            raise OSError(errno.EHOSTUNREACH, f"no name resolver on a simulated network: {name}")

        def wall_clock_ms() -> int:
            return self.epoch_ms + int(trio.current_time() * 1000)

        rng = random.Random(seed if seed is not None else self.rng.getrandbits(64))
        return Environment(
            streams=self.transport(host),
            open_datagrams=open_datagrams,
            blocking=INLINE,
            resolve=resolve,
            wall_clock_ms=wall_clock_ms,
            rng=rng,
            # In a simulation nothing is secret, and everything must come from the seed.
            unpredictable=lambda: random.Random(rng.getrandbits(64)),
            processes=False,
            host=host,
            check_signature=self.signatures.check,
            decode_op=self.ops.decode,
        )

    def datagram_socket(self, host: str, port: int = 0) -> dht.SimSocket:
        """A DHT socket on `host` (port 0: a free one), for `DHTNode(transport=...)`."""
        return self.dht.socket(host, port or self._free_port(host))

    # -- conditions --------------------------------------------------------------------

    def set_latency(self, a: str, b: str, seconds: float) -> None:
        """Extra latency from host `a` to host `b` (one direction), streams and datagrams."""
        self._extra[(a, b)] = seconds
        spec = self.dht.links.get((a, b))
        self.dht.set_link(a, b, dht.LinkSpec(latency=seconds, loss=spec.loss if spec else 0.0))

    def set_link(
        self,
        a: str,
        b: str,
        *,
        latency: float = 0.0,
        jitter: float = 0.0,
        loss: float = 0.0,
    ) -> None:
        """Faults from host `a` to host `b` (one direction), on top of the network's own:
        extra `latency`, up to `jitter` more, and `loss`. A datagram is lost with that
        probability; a stream loses nothing but each lost segment arrives `RETRANSMIT`
        seconds late (and holds up what follows it, as TCP does)."""
        self._extra[(a, b)] = latency
        self._links[(a, b)] = _LinkFault(jitter, loss)
        self.dht.set_link(a, b, dht.LinkSpec(latency=latency + jitter / 2, loss=loss))

    def set_host_latency(self, host: str, one_way: float) -> None:
        """Make `host` slow (or fast): its access link adds `one_way` seconds to every
        stream chunk and datagram to or from it."""
        self._host_latency[host] = one_way
        self.dht._host_latency[host] = one_way

    def block(self, a: str, b: str) -> None:
        """Partition hosts `a` and `b`: open streams between them break, new connects
        fail, datagrams are lost."""
        self._blocked.add(frozenset((a, b)))
        self.dht.block(a, b)
        for connection in [c for c in self._connections if c.hosts == {a, b}]:
            self._cut(connection)

    def unblock(self, a: str, b: str) -> None:
        """Heal the partition between `a` and `b` (streams it broke stay broken)."""
        self._blocked.discard(frozenset((a, b)))
        self.dht.unblock(a, b)

    def blocked(self, a: str, b: str) -> bool:
        return frozenset((a, b)) in self._blocked

    def open_streams(self, host: str) -> int:
        """Connections of `host` that are not closed at both ends, for tests."""
        return sum(1 for c in self._connections if host in c.hosts)

    # -- internals ---------------------------------------------------------------------

    def _free_port(self, host: str) -> int:
        port = self._next_port.get(host, FIRST_PORT)
        while (host, port) in self._listeners:
            port += 1
        self._next_port[host] = port + 1
        return port

    def _share(self, host: str) -> float:
        share = self._host_latency.get(host)
        if share is None:
            low, high = self.latency
            share = self._host_latency[host] = self.rng.uniform(low, high) / 2
        return share

    def _delay(self, src: str, dst: str) -> float:
        base = self._share(src) + self._share(dst) + self._extra.get((src, dst), 0.0)
        delay = base + self.rng.uniform(0, self.jitter)
        fault = self._links.get((src, dst))
        if fault is not None:
            delay += self.rng.uniform(0, fault.jitter) if fault.jitter else 0.0
            while fault.loss and self.rng.random() < fault.loss:
                delay += RETRANSMIT
        return delay

    def _counters(self, host: str) -> list[int]:
        counters = self.traffic.get(host)
        if counters is None:
            counters = self.traffic[host] = [0, 0, 0, 0]
        return counters

    def _count(self, src: str, dst: str, size: int, kind: int) -> None:
        self._counters(src)[kind] += size
        self._counters(dst)[kind + 1] += size

    def _cut(self, connection: _Connection) -> None:
        connection.break_()
        self._connections.pop(connection, None)

    def _listen(self, host: str, port: int) -> SimListener:
        address = (host, port or self._free_port(host))
        if address in self._listeners:
            raise OSError(errno.EADDRINUSE, f"{address[0]}:{address[1]} is in use")
        listener = SimListener(self, address)
        self._listeners[address] = listener
        return listener

    async def _connect(self, src: str, address: dht.Address) -> SimStream:
        self.connects += 1
        dst = address[0]
        # The SYN goes out and the answer (SYN-ACK, or a reset) comes back.
        await trio.sleep(self._delay(src, dst) + self._delay(dst, src))
        if self.blocked(src, dst):
            self.refused += 1
            raise OSError(errno.EHOSTUNREACH, f"no route to {dst} (partitioned)")
        listener = self._listeners.get(address)
        if listener is None:
            self.refused += 1
            raise ConnectionRefusedError(errno.ECONNREFUSED, f"nobody listens on {address}")
        local = (src, self._free_port(src))
        connection = _Connection(src, dst)
        self._connections[connection] = None
        forward, backward = connection.forward, connection.backward
        client = SimStream(self, connection, local, address, forward, backward)
        server = SimStream(self, connection, address, local, backward, forward)
        listener._offer(server)
        return client
