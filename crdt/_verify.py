"""Ed25519 verification of ops on every core: one worker process per core.

Why processes and not threads: pyca/cryptography (>= 50) releases the GIL inside `verify`,
but a verifying thread must take the GIL back after each signature, and while the trio
thread runs Python (decoding and applying the previous chunk) it waits up to the switch
interval (5 ms) for it. Measured on 2 cores: two verifying threads fall from 26,000 to
1,100 signatures per second while a third thread runs Python. Worker processes have no
such coupling.

Workers run `_verify_worker.py` as a script, speaking length-prefixed msgpack on their
stdin and stdout: nothing depends on `multiprocessing` re-importing the caller's main
module, and a worker loads only msgpack and cryptography. Small batches, and any batch
whose worker died, are verified in-process.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress

import msgpack
import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from rumor_runtime import SignatureCheck, open_unwrapping_nursery

from . import _verify_worker
from ._op import SIGNING_CONTEXT, Op
from ._verify_worker import LENGTH, verify_signatures

__all__ = ["Verifier", "verify_signatures"]

INLINE_BELOW = 32
STARTUP_TIMEOUT = 30
PIPE_BYTES = 1 << 20  # smaller batches are cheaper to verify than to ship to a worker


class _WorkerBroken(Exception):
    pass


class _Reply:
    __slots__ = ("done", "error", "value")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.value = b""
        self.error: str | None = None


class _Worker:
    """One verification child process. Requests are pipelined: the next one waits in the
    pipe while the current one is verified, so the child never idles between batches."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        assert process.stdin is not None
        assert process.stdout is not None
        self._stdin = process.stdin
        self._stdout = process.stdout
        self._send_lock = trio.Lock()
        self._pending: collections.deque[_Reply] = collections.deque()
        self.broken: str | None = None
        self.load = 0  # requests given to this worker and not yet answered

    @classmethod
    async def start(cls) -> _Worker:
        process = await trio.lowlevel.open_process(
            [sys.executable, _verify_worker.__file__, SIGNING_CONTEXT.hex()],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        # A whole batch fits in the pipe: one write per batch instead of several, each
        # waking the worker for a part of it. (Linux only; elsewhere the default stays.)
        fileno = getattr(process.stdin, "fileno", None)
        if fileno is not None and hasattr(fcntl, "F_SETPIPE_SZ"):
            with contextlib.suppress(OSError):
                fcntl.fcntl(fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        return cls(process)

    async def verify(self, items: list[bytes]) -> bytes:
        if self.broken is not None:
            raise _WorkerBroken(self.broken)
        request = msgpack.packb(items)
        reply = _Reply()
        self.load += 1
        try:
            async with self._send_lock:
                # Replies come back in the order requests were written: queue the slot for
                # this one in the same step as writing it.
                self._pending.append(reply)
                try:
                    await self._stdin.send_all(LENGTH.pack(len(request)) + request)
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                    self._fail(f"cannot write to worker: {exc}")
            await reply.done.wait()
        finally:
            self.load -= 1
        if reply.error is not None:
            raise _WorkerBroken(reply.error)
        if len(reply.value) != len(items) // 2:
            raise _WorkerBroken("reply of the wrong length")
        return reply.value

    async def read_replies(self) -> None:
        """Runs for the worker's life: hands each reply to the request it answers."""
        buffer = bytearray()
        try:
            while True:
                while len(buffer) >= LENGTH.size:
                    (length,) = LENGTH.unpack_from(buffer)
                    if len(buffer) < LENGTH.size + length:
                        break
                    value = bytes(buffer[LENGTH.size : LENGTH.size + length])
                    del buffer[: LENGTH.size + length]
                    if not self._pending:
                        raise _WorkerBroken("unrequested reply")
                    reply = self._pending.popleft()
                    reply.value = value
                    reply.done.set()
                chunk = await self._stdout.receive_some(1 << 16)
                if not chunk:
                    raise _WorkerBroken("worker exited")
                buffer += chunk
        except (_WorkerBroken, trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self._fail(str(exc) or type(exc).__name__)

    def _fail(self, why: str) -> None:
        self.broken = self.broken or why
        while self._pending:
            reply = self._pending.popleft()
            reply.error = self.broken
            reply.done.set()

    async def close(self) -> None:
        with trio.CancelScope(shield=True):
            with trio.move_on_after(5):
                with suppress(trio.BrokenResourceError, OSError):
                    await self._stdin.aclose()
                await self.process.wait()
            if self.process.returncode is None:
                self.process.kill()
                await self.process.wait()
            await self._stdout.aclose()


class Verifier:
    """Verifies op signatures on worker processes. Open with `async with Verifier.open()`.

    `workers` defaults to one per core; with `workers=0`, or where processes cannot be
    started, everything is verified in-process. One verifier serves every room of a node.
    `check`, if given, is what verifies in-process instead of Ed25519 here (a simulated
    network's shared check: see `rumor_runtime.SignatureCheck`).
    """

    def __init__(self, nursery: trio.Nursery, check: SignatureCheck | None = None) -> None:
        self._nursery = nursery
        self._check = check
        self._workers: list[_Worker] = []
        self._keys: dict[bytes, Ed25519PublicKey | None] = {}
        self.restarts = 0  # workers that died and were replaced

    @property
    def workers(self) -> int:
        return len(self._workers)

    @property
    def parallelism(self) -> int:
        """How many batches should be in flight to keep every worker busy."""
        return max(1, 2 * len(self._workers))

    @classmethod
    @asynccontextmanager
    async def open(
        cls, workers: int | None = None, *, check: SignatureCheck | None = None
    ) -> AsyncIterator[Verifier]:
        count = (os.cpu_count() or 1) if workers is None else workers
        async with open_unwrapping_nursery() as nursery:
            verifier = cls(nursery, check)
            try:
                for _ in range(count):
                    await verifier._add_worker()
                yield verifier
            finally:
                with trio.CancelScope(shield=True):
                    for worker in verifier._workers:
                        await worker.close()
                nursery.cancel_scope.cancel()

    async def _add_worker(self) -> bool:
        try:
            worker = await _Worker.start()
        except OSError:
            return False  # cannot start processes here: verify in-process
        self._nursery.start_soon(worker.read_replies)
        try:
            # An empty request answers once the child has imported everything.
            with trio.fail_after(STARTUP_TIMEOUT):
                await worker.verify([])
        except (_WorkerBroken, trio.TooSlowError):
            worker.process.kill()
            await worker.close()
            return False
        self._workers.append(worker)
        return True

    async def verify(self, ops: Sequence[Op]) -> list[bool]:
        """One verdict per op, in order."""
        inline = len(ops) < INLINE_BELOW or not self._workers
        check = self._check
        if inline and check is not None:
            return [check(op.author, op.signature, SIGNING_CONTEXT + op.payload) for op in ops]
        items: list[bytes] = []
        for op in ops:
            items += (op.author, op.data)
        if inline:
            return [bool(v) for v in verify_signatures(items, SIGNING_CONTEXT, self._keys)]
        worker = min(self._workers, key=lambda w: w.load)
        try:
            verdicts = await worker.verify(items)
        except _WorkerBroken:
            await self._replace(worker)
            verdicts = verify_signatures(items, SIGNING_CONTEXT, self._keys)
        return [bool(v) for v in verdicts]

    async def _replace(self, broken: _Worker) -> None:
        if broken not in self._workers:
            return
        self._workers.remove(broken)
        broken.process.kill()
        await broken.close()
        self.restarts += 1
        await self._add_worker()
