"""The node's environment: everything it takes from the world, handed in as one value.

A `Node` never asks whether it is simulated. It gets an `Environment`: how to open link
streams and the DHT's datagram socket, where blocking work runs, how host names are looked
up, the wall clock behind op timestamps, a seeded random generator, and (in a simulation)
who checks signatures and decodes ops. `real_environment` gives the operating system's;
`node.sim.SimNetwork.environment` gives the simulated ones, under which a node runs in
virtual time, reproducibly from one seed.

This module only describes and builds environments; it holds no policy.
"""

from __future__ import annotations

import random
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from crdt import Op, decode_op
from dht import DatagramTransport, UDPTransport, canonical_host
from rumor_runtime import THREADED, Blocking, SignatureCheck

from .link import StreamTransport, TCPTransport

__all__ = ["Environment", "Resolver", "real_environment", "resolve_system"]

Resolver = Callable[[str, int, int], Awaitable[list[str]]]
"""``await resolve(host, port, socket_type)``: the IP literals a host name stands for, in
the resolver's order; OSError (or UnicodeError) when it has none."""


@dataclass(frozen=True, slots=True)
class Environment:
    """What a node runs on. Build one with `real_environment()` or
    `SimNetwork.environment(...)`."""

    streams: StreamTransport  # link streams: connects and listeners
    open_datagrams: Callable[[str, int], Awaitable[DatagramTransport]]  # the DHT's socket
    blocking: Blocking  # SQLite calls and file work
    resolve: Resolver
    wall_clock_ms: Callable[[], int]  # behind op timestamps and DHT record expiry
    rng: random.Random  # every random choice the node makes, but for the one below
    # A generator for what strangers must not guess: keys, room ids and secrets, the DHT's
    # message ids and tokens.
    unpredictable: Callable[[], random.Random] = random.SystemRandom
    # Whether signatures may be verified on worker processes (not in virtual time).
    processes: bool = True
    host: str | None = None  # the simulated host the node lives on, if simulated
    # Who checks Ed25519 signatures (ops, DHT and room address records). None: each part
    # verifies them itself, as a real node must. A simulated network hands every node one
    # shared check that remembers its verdicts: the same pure work, done once per swarm.
    check_signature: SignatureCheck | None = None
    # How op wire forms from peers are decoded (`crdt.decode_op`). A simulated network
    # hands in one that gives every node the same immutable `Op` for the same bytes.
    decode_op: Callable[[bytes], Op] = decode_op


async def resolve_system(host: str, port: int, socket_type: int) -> list[str]:
    """The system resolver's IP literals for `host`, each once, in its order."""
    infos = await trio.socket.getaddrinfo(host, port, type=socket_type)
    found: list[str] = []
    for info in infos:
        ip = canonical_host(str(info[4][0]))
        if ip is not None and ip not in found:
            found.append(ip)
    return found


async def _bind_udp(host: str, port: int) -> DatagramTransport:
    return await UDPTransport.bind(host, port)


def _system_wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def real_environment(seed: int | None = None) -> Environment:
    """The operating system's: TCP, UDP, worker threads, the system resolver and clock.
    Without `seed`, the random generator is seeded from the OS."""
    return Environment(
        streams=TCPTransport(),
        open_datagrams=_bind_udp,
        blocking=THREADED,
        resolve=resolve_system,
        wall_clock_ms=_system_wall_clock_ms,
        rng=random.Random(seed if seed is not None else secrets.randbits(64)),
    )
