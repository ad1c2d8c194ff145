"""`DHTNode`: the thin trio driver around the sans-IO `DHTProtocol`.

Tasks per node, all in the node's own nursery: a sender (the only task that waits to
write to the socket) and a timer (sleeps until the core's next deadline).  Datagrams
reach the core from the run's shared `Poller` (real UDP on Linux: one task reads every
node's socket) or else from a reader task of the node's own (the simulator, other
systems); either way every datagram enters the core through `_receive`.  Output goes out at once,
from whichever task called into the core; only what the socket cannot take waits for
the sender.  Operations call into the core, then wait for its `OperationDone`.  The
same driver runs over real UDP (`UDPTransport`, IPv4 and IPv6) and over the simulator
(`SimNetwork.socket()`).  Contacts and the node id are saved as msgpack in the data dir
(never pickle) and used to bootstrap after a restart, through the injected `blocking`
runner (`THREADED`, or `INLINE` in virtual time).  The core's events become log lines:
each dropped datagram at DEBUG, the core's summary of drops (at most once a minute) at
INFO, a failed bootstrap at WARNING.

What this module must never do: decide anything about the protocol.  Any rule about
what to send, store or trust belongs in the core.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import logging
import os
import random
import socket as _stdlib_socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Generic, Protocol, TypeVar, cast

import msgpack
import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from rumor_runtime import THREADED, Blocking, SignatureCheck

from ._config import DHTConfig
from ._errors import LocalProtocolError
from ._events import (
    BootstrapFailed,
    BootstrapRecovered,
    DatagramDropped,
    DropSummary,
    LookupResult,
    Op,
    OperationDone,
)
from ._ids import (
    Address,
    Contact,
    canonical_host,
    check_node_id,
    key_digest,
    node_id_from_public_key,
)
from ._poller import Poller
from ._protocol import DHTProtocol
from ._records import PeerRecord
from ._wire import MAX_CONTACTS_PER_REPLY, MAX_DATAGRAM, Value, parse_contacts

__all__ = ["DHTHealth", "DHTNode", "DatagramTransport", "UDPTransport"]

log = logging.getLogger("dht")

STATE_FILE = "dht-state.msgpack"
_T = TypeVar("_T")
SAVED_CONTACTS = 200


class DatagramTransport(Protocol):
    """What the driver needs from a socket: real UDP or the simulator.

    Sends are synchronous when the socket has room (UDP almost always has), so the core's
    output goes out without a task switch per datagram; receives come in batches.
    """

    def send_nowait(self, data: bytes, address: Address) -> bool:
        """Send now; False if the socket would block.  OSError for a refused send."""
        ...

    async def wait_writable(self) -> None: ...

    async def receive_batch(self) -> list[tuple[bytes, Address]]:
        """Wait for at least one datagram; return all that are ready (bounded)."""
        ...

    def getsockname(self) -> Address: ...

    def close(self) -> None: ...


class UDPTransport:
    """A non-blocking UDP socket speaking canonical (host, port) addresses.

    Bound to "::" it is dual-stack: IPv4 peers arrive as IPv4-mapped addresses and are
    named as plain IPv4, so the core sees one address per peer whatever the socket.
    """

    BATCH = 64

    def __init__(self, sock: _stdlib_socket.socket) -> None:
        sock.setblocking(False)
        self._sock = sock
        self._v6 = sock.family == _stdlib_socket.AF_INET6

    @classmethod
    async def bind(cls, host: str | None = None, port: int = 0) -> UDPTransport:
        """Bind `host` ("::" dual-stack by default, falling back to IPv4) and `port`."""
        await trio.lowlevel.checkpoint()
        if host is None:
            try:
                return await cls.bind("::", port)
            except OSError:
                return await cls.bind("0.0.0.0", port)
        if canonical_host(host) is None:
            raise LocalProtocolError(f"bind to an IP literal, not {host!r}")
        family = _stdlib_socket.AF_INET6 if ":" in host else _stdlib_socket.AF_INET
        sock = _stdlib_socket.socket(family, _stdlib_socket.SOCK_DGRAM)
        try:
            if family == _stdlib_socket.AF_INET6 and host == "::":
                sock.setsockopt(_stdlib_socket.IPPROTO_IPV6, _stdlib_socket.IPV6_V6ONLY, 0)
            sock.bind((host, port))  # an IP literal: no name lookup, does not block
        except BaseException:
            sock.close()
            raise
        return cls(sock)

    def getsockname(self) -> Address:
        name = self._sock.getsockname()
        return (canonical_host(name[0]) or name[0], name[1])

    def send_nowait(self, data: bytes, address: Address) -> bool:
        host, port = address
        try:
            if self._v6:
                if ":" not in host:
                    host = "::ffff:" + host
                self._sock.sendto(data, (host, port, 0, 0))
            elif ":" in host:
                raise OSError("IPv6 destination on an IPv4 socket")
            else:
                self._sock.sendto(data, (host, port))
        except BlockingIOError:
            return False
        return True

    async def wait_writable(self) -> None:
        await trio.lowlevel.wait_writable(self._sock)

    def fileno(self) -> int:
        return self._sock.fileno()

    async def receive_batch(self) -> list[tuple[bytes, Address]]:
        # Wait first: a reader that just drained the socket would only find it empty.
        await trio.lowlevel.wait_readable(self._sock)
        return self.read_ready()

    def read_ready(self) -> list[tuple[bytes, Address]]:
        """The datagrams waiting now (at most BATCH), without blocking."""
        batch: list[tuple[bytes, Address]] = []
        while len(batch) < self.BATCH:
            try:
                # One byte over the limit, so an oversized datagram is seen as oversized.
                data, address = self._sock.recvfrom(MAX_DATAGRAM + 1)
            except BlockingIOError:
                break
            except OSError:
                # ICMP errors surface here on some systems; they are not fatal.
                continue
            if not self._v6:
                # The kernel's dotted quad is already canonical.
                batch.append((data, address))
                continue
            host = canonical_host(address[0])
            if host is not None:
                batch.append((data, (host, address[1])))
        return batch

    def close(self) -> None:
        if self._sock.fileno() != -1:
            trio.lowlevel.notify_closing(self._sock)
        self._sock.close()


@dataclass(frozen=True, slots=True)
class DHTHealth:
    """A node's health: contacts, and whether bootstrapping failed (and from where)."""

    contacts: int
    bootstrap_failed: bool
    bootstrap_addresses: tuple[Address, ...]


class _Pending:
    """The result of an operation that has not finished."""


_PENDING = _Pending()


class _Waiter(Generic[_T]):
    """An operation's caller, parked until the core reports the operation done."""

    __slots__ = ("result", "task")

    def __init__(self) -> None:
        self.result: _T | _Pending = _PENDING
        self.task: trio.lowlevel.Task | None = None  # set while parked

    def wake(self) -> None:
        if self.task is not None:
            trio.lowlevel.reschedule(self.task)
            self.task = None


class DHTNode:
    """A DHT node on UDP (or a simulated network); use as `async with DHTNode(...)`.

    The node id is, in order of preference: derived from `identity` (DESIGN.md), the
    given `node_id`, the one saved in `data_dir`, or a fresh random one.
    """

    def __init__(
        self,
        host: str | None = None,
        port: int = 0,
        *,
        identity: Ed25519PrivateKey | None = None,
        node_id: bytes | None = None,
        data_dir: str | os.PathLike[str] | None = None,
        config: DHTConfig | None = None,
        rng: random.Random | None = None,
        transport: DatagramTransport | None = None,
        save_interval: float = 600.0,
        wall_clock: Callable[[], float] = time.time,
        blocking: Blocking = THREADED,
        check_signature: SignatureCheck | None = None,
    ) -> None:
        if identity is not None and node_id is not None:
            raise LocalProtocolError("give an identity or a node id, not both")
        self._host = host
        self._port = port
        self._identity = identity
        self._node_id = check_node_id(node_id) if node_id is not None else None
        self._data_dir = Path(data_dir) if data_dir is not None else None
        self._config = config or DHTConfig()
        # Message ids and token secrets must not be predictable on a public node.
        self._rng = rng if rng is not None else random.SystemRandom()
        self._given_transport = transport
        self._save_interval = save_interval
        # Seconds since the epoch behind record expiry; a simulation passes its own.
        self._wall_clock = wall_clock
        # How the state file is read and written: on a worker thread, or (INLINE) on
        # the trio thread, as a simulated run in virtual time needs.
        self._blocking = blocking
        # Who checks peer records' signatures: Ed25519 here unless a simulation shares one
        # check (and its verdicts) among all its nodes.
        self._check_signature = check_signature
        self._transport: DatagramTransport | None = None
        self._protocol: DHTProtocol | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._nursery: trio.Nursery | None = None
        # Each waiter's type matches its operation's `Op[R]`: see `_run`.
        self._waiters: dict[int, _Waiter[Any]] = {}
        self._send_wake = trio.Event()
        self._backlog: collections.deque[tuple[bytes, Address]] = collections.deque()
        self._timer_scope: trio.CancelScope | None = None
        self._poller: Poller | None = None
        self._crashed: Exception | None = None
        self._crash_event = trio.Event()
        self._closed = False
        self.send_errors = 0

    # -- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> DHTNode:
        transport = self._given_transport or await UDPTransport.bind(self._host, self._port)
        self._transport = transport
        try:
            saved_id, saved_contacts = await self._load_state()
            node_id = self._pick_node_id(saved_id)
            now = trio.current_time()
            self._protocol = DHTProtocol(
                node_id,
                rng=self._rng,
                now=now,
                config=self._config,
                wall_offset=self._wall_clock() - now,
                check_signature=self._check_signature,
            )
            self._stack = contextlib.AsyncExitStack()
            nursery = await self._stack.enter_async_context(trio.open_nursery())
            self._nursery = nursery
            poller = Poller.for_this_run() if isinstance(transport, UDPTransport) else None
            if poller is not None:
                poller.add(cast(UDPTransport, transport).fileno(), self._on_readable)
                self._poller = poller
                nursery.start_soon(self._watchdog)
            else:
                nursery.start_soon(self._reader)
            nursery.start_soon(self._sender)
            nursery.start_soon(self._timer)
            if self._data_dir is not None:
                nursery.start_soon(self._saver)
            if saved_contacts:
                # In the background: a node whose saved contacts are gone would otherwise
                # take a full round of RPC timeouts to open.
                nursery.start_soon(self._bootstrap_saved, [c.address for c in saved_contacts])
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Save contacts, stop the tasks and close the socket.  Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._protocol is not None and self._data_dir is not None:
                with trio.CancelScope(shield=True):
                    await self._save_state()
        finally:
            try:
                if self._nursery is not None:
                    self._nursery.cancel_scope.cancel()
                if self._stack is not None:
                    # Raises Cancelled if our caller is being cancelled: close anyway.
                    await self._stack.aclose()
            finally:
                self._stop_polling()
                if self._transport is not None:
                    self._transport.close()
                for waiter in self._waiters.values():
                    waiter.wake()

    # -- properties ------------------------------------------------------------------------

    @property
    def protocol(self) -> DHTProtocol:
        if self._protocol is None:
            raise LocalProtocolError("the node is not running; use `async with DHTNode(...)`")
        return self._protocol

    @property
    def node_id(self) -> bytes:
        return self.protocol.node_id

    @property
    def address(self) -> Address:
        if self._transport is None:
            raise LocalProtocolError("the node is not running")
        return self._transport.getsockname()

    def contacts(self) -> list[Contact]:
        """The contacts in the routing table."""
        return list(self.protocol.routing)

    @property
    def bootstrap_failed(self) -> bool:
        """True while the node was given bootstrap addresses and, `bootstrap_grace`
        seconds on, still has no contact (a WARNING was logged); False once one comes."""
        return self.protocol.bootstrap_failed

    def health(self) -> DHTHealth:
        """How the node is doing, for status pages and metrics."""
        protocol = self.protocol
        return DHTHealth(
            contacts=len(protocol.routing),
            bootstrap_failed=protocol.bootstrap_failed,
            bootstrap_addresses=protocol.bootstrap_addresses,
        )

    def counters(self) -> dict[str, int]:
        """A snapshot of the node's counters (RPCs, retries, drops by reason), for metrics."""
        counters = dict(self.protocol.counters)
        counters["send errors"] = self.send_errors
        return counters

    # -- operations ------------------------------------------------------------------------

    async def bootstrap(self, addresses: Iterable[Address]) -> int:
        """Join via `addresses`; returns how many of them answered."""
        addrs = list(addresses)
        result = await self._run(functools.partial(self.protocol.start_bootstrap, addrs))
        return result.answered

    async def _bootstrap_saved(self, addresses: list[Address]) -> None:
        with contextlib.suppress(trio.ClosedResourceError):  # closed before it finished
            answered = await self.bootstrap(addresses)
            log.debug("bootstrap from saved contacts: %d of %d answered", answered, len(addresses))

    async def ping(self, address: Address) -> bytes | None:
        """The node id answering at `address`, or None if it did not answer."""
        return await self._run(functools.partial(self.protocol.start_ping, address))

    async def stun(self, address: Address | None = None) -> Address | None:
        """Our address as `address` (default: our closest contacts, in turn) sees it."""
        if address is not None:
            targets = [address]
        else:
            targets = [c.address for c in self.protocol.routing.closest(self.node_id, 3)]
        for target in targets:
            result = await self._run(functools.partial(self.protocol.start_stun, target))
            if result is not None:
                return result
        return None

    async def find_node(self, target: bytes) -> LookupResult:
        """The k closest nodes to `target` (an iterative lookup)."""
        return await self._run(functools.partial(self.protocol.start_find_node, target))

    async def get(self, key: bytes | str | int | float) -> Value | None:
        """The value under `key` (hashed like the `kademlia` package), or None."""
        dkey = key_digest(key)
        result = await self._run(functools.partial(self.protocol.start_get, dkey))
        return result.value

    async def set(self, key: bytes | str | int | float, value: Value) -> bool:
        """Store `value` under `key` on the k closest nodes; True if any took it."""
        dkey = key_digest(key)
        result = await self._run(functools.partial(self.protocol.start_set, dkey, value))
        return result.stored > 0

    async def announce(self, key: bytes, record: PeerRecord) -> int:
        """Announce a signed record under the 20-byte `key`; returns how many nodes took it.

        The node re-announces it every `announce_interval` until it expires.
        """
        result = await self._run(functools.partial(self.protocol.start_announce, key, record))
        return result.stored

    def stop_announcing(self, key: bytes) -> None:
        """Stop re-announcing our record under `key` (it lives on until it expires)."""
        self.protocol.stop_announcing(key)

    async def get_peers(self, key: bytes) -> list[PeerRecord]:
        """The verified, unexpired records under the 20-byte `key`, newest first."""
        result = await self._run(functools.partial(self.protocol.start_get_peers, key))
        return list(result.records)

    async def _run(self, start: Callable[[float], Op[_T]]) -> _T:
        """Start an operation with `start(now)` and wait for its typed result."""
        if self._closed or self._protocol is None:
            raise trio.ClosedResourceError("the DHT node is closed")
        op_id = start(trio.current_time())
        # Typed by `op_id`: the core ends an `Op[_T]` with an `OperationDone[_T]`.
        waiter: _Waiter[_T] = _Waiter()
        self._waiters[op_id] = waiter
        try:
            self._pump()
            if waiter.result is _PENDING and self._poller is not None:
                self._poller.poll_now()  # answers from nodes in this process may be in
            if waiter.result is _PENDING:
                # Parked by hand, not on a trio.Event: this is every lookup's hot path.
                waiter.task = trio.lowlevel.current_task()

                def abort(_: Any) -> trio.lowlevel.Abort:
                    waiter.task = None
                    return trio.lowlevel.Abort.SUCCEEDED

                await trio.lowlevel.wait_task_rescheduled(abort)
            else:
                await trio.lowlevel.checkpoint()  # done at once (a local value)
        finally:
            self._waiters.pop(op_id, None)
        result = waiter.result
        if isinstance(result, _Pending):
            raise trio.ClosedResourceError("the DHT node closed during the operation")
        return result

    # -- tasks -----------------------------------------------------------------------------

    def _pump(self) -> None:
        """After any call into the core: route events, wake the sender, reset the timer."""
        protocol = self.protocol
        while (event := protocol.next_event()) is not None:
            if isinstance(event, OperationDone):
                waiter = self._waiters.get(event.op_id)
                if waiter is not None:
                    waiter.result = event.result
                    waiter.wake()
            else:
                self._log_event(event)
        self._flush()
        scope = self._timer_scope
        if scope is not None:
            # Only ever bring the wake-up forward: a later timer just costs one early,
            # empty wake-up, far cheaper than moving the deadline after every datagram.
            timer = protocol.get_timer()
            if timer < scope.deadline:
                scope.deadline = timer

    def _log_event(
        self, event: DatagramDropped | DropSummary | BootstrapFailed | BootstrapRecovered
    ) -> None:
        if isinstance(event, DatagramDropped):
            # One line per datagram: debug only, or a flood would flood the log too.
            log.debug(
                "dropped input from %s: %s (%s)", event.address, event.reason.label, event.detail
            )
        elif isinstance(event, DropSummary):
            counts = ", ".join(f"{reason.label}: {n}" for reason, n in event.counts)
            since = trio.current_time() - event.since
            log.info("dropped input in the last %.0f s: %s", since, counts)
        elif isinstance(event, BootstrapFailed):
            tried = ", ".join(_show(a) for a in event.addresses)
            log.warning(
                "DHT bootstrap failed: no contacts %.0f s after bootstrapping from %s",
                self.protocol.config.bootstrap_grace,
                tried,
            )
        else:
            log.info("DHT bootstrap recovered: %d contacts", event.contacts)

    def _receive(self, batch: list[tuple[bytes, Address]]) -> None:
        """The one path every datagram takes into the core, whoever read it."""
        receive = self.protocol.receive_datagram
        now = trio.current_time()
        for data, address in batch:
            receive(data, address, now)
        self._pump()

    def _on_readable(self) -> int:
        """The run's poller saw our socket ready: read and handle what is there."""
        transport = self._transport
        assert isinstance(transport, UDPTransport)
        try:
            batch = transport.read_ready()
            if batch:
                self._receive(batch)
        except Exception as exc:  # a bug of ours: fail this node, not the poller's run
            self._stop_polling()
            self._crashed = exc
            self._crash_event.set()
            return 0
        return len(batch)

    def _stop_polling(self) -> None:
        if self._poller is not None and self._transport is not None:
            self._poller.remove(cast(UDPTransport, self._transport).fileno())
        self._poller = None

    async def _watchdog(self) -> None:
        """Raise, in the node's own nursery, what went wrong while the poller read for us."""
        await self._crash_event.wait()
        assert self._crashed is not None
        raise self._crashed

    async def _reader(self) -> None:
        transport = self._transport
        assert transport is not None
        while True:
            try:
                batch = await transport.receive_batch()
            except (trio.ClosedResourceError, OSError):
                return
            self._receive(batch)

    def _flush(self) -> None:
        """Send the core's output now; what the socket cannot take waits for the sender."""
        transport = self._transport
        assert transport is not None
        backlog = self._backlog
        for item in self.protocol.datagrams_to_send():
            if not backlog:
                try:
                    if transport.send_nowait(*item):
                        continue
                except OSError:
                    self.send_errors += 1
                    continue
                except trio.ClosedResourceError:
                    return
            backlog.append(item)
            self._send_wake.set()

    async def _sender(self) -> None:
        """The only task that waits on the socket for writing: drains the backlog."""
        transport = self._transport
        assert transport is not None
        while True:
            await self._send_wake.wait()
            self._send_wake = trio.Event()
            while self._backlog:
                await transport.wait_writable()
                while self._backlog:
                    try:
                        if not transport.send_nowait(*self._backlog[0]):
                            break
                    except OSError:
                        self.send_errors += 1
                    self._backlog.popleft()

    async def _timer(self) -> None:
        while True:
            with trio.CancelScope(deadline=self.protocol.get_timer()) as scope:
                self._timer_scope = scope
                await trio.sleep_forever()
            self._timer_scope = None
            now = trio.current_time()
            if now >= self.protocol.get_timer():
                self.protocol.handle_timer(now)
            self._pump()

    async def _saver(self) -> None:
        while True:
            await trio.sleep(self._save_interval)
            await self._save_state()

    # -- persistence -----------------------------------------------------------------------

    def _pick_node_id(self, saved_id: bytes | None) -> bytes:
        if self._identity is not None:
            public = self._identity.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
            return node_id_from_public_key(public)
        if self._node_id is not None:
            return self._node_id
        if saved_id is not None:
            return saved_id
        return self._rng.randbytes(20)

    async def _load_state(self) -> tuple[bytes | None, list[Contact]]:
        if self._data_dir is None:
            return None, []
        path = self._data_dir / STATE_FILE
        data = await self._blocking(_read_file, path)
        if data is None:
            return None, []
        try:
            state = msgpack.unpackb(data, raw=False, timestamp=0)
            if not isinstance(state, dict) or state.get("version") != 1:
                raise ValueError("unknown state version")
            node_id = state["node_id"]
            if not isinstance(node_id, bytes) or len(node_id) != 20:
                raise ValueError("bad node id")
            saved = state["contacts"]
            if not isinstance(saved, list) or len(saved) > SAVED_CONTACTS:
                raise ValueError(f"a contact list of at most {SAVED_CONTACTS}")
            # Checked as replies are, a reply's worth at a time: a reply holds at most
            # MAX_CONTACTS_PER_REPLY, and the file up to SAVED_CONTACTS (a node with more
            # than a reply's worth saved lost its id and contacts on every restart).
            contacts = [
                contact
                for start in range(0, len(saved), MAX_CONTACTS_PER_REPLY)
                for contact in parse_contacts(saved[start : start + MAX_CONTACTS_PER_REPLY])
            ]
        except Exception as exc:  # a damaged file must not keep the node down
            log.warning("ignoring damaged DHT state file %s: %s", path, exc)
            return None, []
        return node_id, contacts

    async def _save_state(self) -> None:
        if self._data_dir is None or self._protocol is None:
            return
        routing = self._protocol.routing
        contacts = routing.closest(self._protocol.node_id, SAVED_CONTACTS)
        state: dict[str, Any] = {
            "version": 1,
            "node_id": self._protocol.node_id,
            "contacts": [list(c.to_wire()) for c in contacts],
        }
        data = msgpack.packb(state, use_bin_type=True)
        await self._blocking(_write_file, self._data_dir / STATE_FILE, data)


def _read_file(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _write_file(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _show(address: Address) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
