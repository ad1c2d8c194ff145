"""The data dir's lock: one process at a time uses a node's data dir.

The lock is an `fcntl.flock` on `lock` in the data dir, so a crashed holder never leaves
a stale lock behind; the file names the holder (pid, and the address of its node once
running) for the message another process shows. Within one process the lock nests: the
command line holds it around `Node.open`, which holds it too.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

__all__ = ["LOCK_FILE", "DataDirError", "Holder", "Lock", "LockHeld", "hold_lock"]

LOCK_FILE: Final = "lock"


class DataDirError(Exception):
    """A data dir that cannot be used as asked; the message is one line for people."""


@dataclass(frozen=True, slots=True)
class Holder:
    """Who holds a data dir's lock, as far as its lock file says."""

    pid: int | None
    address: str  # "" until (or unless) the holder runs a listening node


class LockHeld(DataDirError):
    def __init__(self, data_dir: Path, holder: Holder) -> None:
        pid = f" (pid {holder.pid})" if holder.pid else ""
        super().__init__(f"data dir {data_dir} is in use by another rumor process{pid}")
        self.holder = holder


class Lock:
    """A held data-dir lock; `announce` records the running node's address in it."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def announce(self, address: str) -> None:
        data = json.dumps({"pid": os.getpid(), "address": address}).encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)


# Data dirs this process holds the lock of, and how deeply: a nested hold reuses the lock.
_HELD: dict[Path, tuple[Lock, int]] = {}


@contextlib.contextmanager
def hold_lock(data_dir: Path) -> Iterator[Lock]:
    """Hold the data dir's lock for the block; raises LockHeld if another process holds it.

    Held already by this process (an outer block), it is shared, not taken twice."""
    key = data_dir.resolve()
    held = _HELD.get(key)
    if held is not None:
        _HELD[key] = (held[0], held[1] + 1)
        try:
            yield held[0]
        finally:
            lock, depth = _HELD[key]
            _HELD[key] = (lock, depth - 1)
        return
    with _take_lock(data_dir) as lock:
        _HELD[key] = (lock, 1)
        try:
            yield lock
        finally:
            del _HELD[key]


@contextlib.contextmanager
def _take_lock(data_dir: Path) -> Iterator[Lock]:
    fd = os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockHeld(data_dir, _read_holder(fd)) from None
        lock = Lock(fd)
        lock.announce("")
        try:
            yield lock
        finally:
            os.ftruncate(fd, 0)  # an unlocked file names nobody
    finally:
        os.close(fd)  # releases the flock


def _read_holder(fd: int) -> Holder:
    try:
        data = json.loads(os.pread(fd, 4096, 0) or b"{}")
        pid, address = data.get("pid"), data.get("address", "")
    except (ValueError, AttributeError):
        return Holder(None, "")
    return Holder(
        pid if isinstance(pid, int) else None, address if isinstance(address, str) else ""
    )
