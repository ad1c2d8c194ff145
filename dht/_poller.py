"""One reader task for every DHT socket of a trio run, through one epoll set (Linux).

Trio wakes one task per socket per datagram, and with many nodes in one process (a
local swarm, a test network, the benchmarks) that wake-up costs more than the protocol
itself: about 9 µs a datagram against 5 µs for the kernel's own work.  Here one task
waits on an epoll set holding every socket, reads whichever are ready, and polls again
before it sleeps, so a datagram that one local node sends another is handled in the
same pass, without a trip through trio's scheduler.  asyncio's loop, which the
`kademlia` package runs on, works the same way.

The task is a trio system task, one per run, living until the run ends.  A reader
callback must not raise: the node wraps its own work and reports its failures itself.
Without epoll (macOS, Windows) `for_this_run` is None and each node reads its own
socket in its own task, as over the simulator.

What this module must never do: parse or handle a datagram (a reader hands its batch to
the node's one datagram path, `DHTNode._receive`), or block the run: it only ever polls
with a zero timeout and sleeps in trio.
"""

from __future__ import annotations

import select
from collections.abc import Callable

import trio

__all__ = ["Poller"]

# Datagrams handled between two yields to the scheduler: other tasks (a caller woken by
# a finished lookup, timers) run at least this often under any load.
_YIELD_EVERY = 64
_MAX_EVENTS = 64

_RUN_POLLER: trio.lowlevel.RunVar[Poller | None] = trio.lowlevel.RunVar("dht_poller", None)


class Poller:
    """The run's shared socket reader: `add(fd, on_readable)`, later `remove(fd)`.

    `on_readable()` reads what it can from its socket without blocking and returns how
    many datagrams it handled.
    """

    def __init__(self) -> None:
        self._epoll = select.epoll()
        self._readers: dict[int, Callable[[], int]] = {}
        self._started = False

    @staticmethod
    def for_this_run() -> Poller | None:
        """The current trio run's poller (made on first use); None without epoll."""
        if not hasattr(select, "epoll"):
            return None
        poller = _RUN_POLLER.get()
        if poller is None:
            poller = Poller()
            _RUN_POLLER.set(poller)
        return poller

    def __len__(self) -> int:
        return len(self._readers)

    def add(self, fd: int, on_readable: Callable[[], int]) -> None:
        self._epoll.register(fd, select.EPOLLIN)
        self._readers[fd] = on_readable
        if not self._started:
            self._started = True
            trio.lowlevel.spawn_system_task(self._run, name="dht socket poller")

    def remove(self, fd: int) -> None:
        """Stop reading `fd`; call before closing it."""
        if self._readers.pop(fd, None) is not None and not self._epoll.closed:
            self._epoll.unregister(fd)

    def poll_now(self) -> None:
        """Handle what is ready now, up to a slice, in the calling task.

        A node that has just sent requests calls this before it sleeps: on loopback the
        answers are often ready by then, and reading them here spares two task switches.
        """
        handled = 0
        while handled < _YIELD_EVERY and (events := self._epoll.poll(0, _MAX_EVENTS)):
            handled += self._handle(events)

    def _handle(self, events: list[tuple[int, int]]) -> int:
        handled = 0
        for fd, _ in events:
            on_readable = self._readers.get(fd)
            if on_readable is not None:  # None: removed earlier in this pass
                # An error event with nothing to read still counts toward a yield.
                handled += on_readable() or 1
        return handled

    async def _run(self) -> None:
        epoll = self._epoll
        handled = 0
        try:
            while True:
                events = epoll.poll(0, _MAX_EVENTS)
                if not events:
                    handled = 0
                    await trio.lowlevel.wait_readable(epoll.fileno())
                    continue
                handled += self._handle(events)
                if handled >= _YIELD_EVERY:
                    handled = 0
                    await trio.lowlevel.checkpoint()
        finally:
            # The run is ending (system tasks are cancelled last): nothing reads any more.
            _RUN_POLLER.set(None)
            trio.lowlevel.notify_closing(epoll.fileno())
            epoll.close()
