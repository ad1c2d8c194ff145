"""The data dir as the command line shares it between processes: its lock and its inbox.

Layout, beside what `Node` keeps there (`identity.pem`, `rooms/`, ...)::

    config.toml          the headless node's config (`node._config`)
    lock                 held (flock) by the process using the node; holds its pid and address
    inbox/*.invite       invites handed to a running node by `rumor create` / `rumor join`

Only one process at a time opens the node's rooms: the one holding `lock`. Another
process never touches the rooms; it writes an invite into `inbox/` (atomically: written
under a temporary name, then renamed), and the lock holder joins it. The lock is an
`fcntl.flock`, so a crashed holder never leaves a stale lock behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import platformdirs

from ._config import CONFIG_FILE
from ._node import IDENTITY_FILE

__all__ = [
    "DataDirError",
    "Holder",
    "LockHeld",
    "default_data_dir",
    "hold_lock",
    "pending_invites",
    "queue_invite",
    "require_initialised",
]

LOCK_FILE: Final = "lock"
INBOX_DIR: Final = "inbox"


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


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("rumor"))


def require_initialised(data_dir: Path) -> None:
    if not (data_dir / CONFIG_FILE).exists() or not (data_dir / IDENTITY_FILE).exists():
        raise DataDirError(
            f"{data_dir} is not a rumor data dir; run: rumor init --data-dir {data_dir}"
        )


class Lock:
    """A held data-dir lock; `announce` records the running node's address in it."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def announce(self, address: str) -> None:
        data = json.dumps({"pid": os.getpid(), "address": address}).encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)


@contextlib.contextmanager
def hold_lock(data_dir: Path) -> Iterator[Lock]:
    """Hold the data dir's lock for the block; raises LockHeld if another process holds it."""
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


def queue_invite(data_dir: Path, invite: str) -> Path:
    """Hand an invite to the node running on `data_dir`; the file appears whole or not at all."""
    inbox = data_dir / INBOX_DIR
    inbox.mkdir(exist_ok=True)
    stem = f"{time.time_ns():020d}-{secrets.token_hex(4)}"
    temporary = inbox / f".{stem}.tmp"
    with temporary.open("w", encoding="utf-8") as file:
        file.write(invite + "\n")
        file.flush()
        os.fsync(file.fileno())
    target = inbox / f"{stem}.invite"
    os.replace(temporary, target)
    return target


def pending_invites(data_dir: Path) -> list[Path]:
    """The invites waiting in the inbox, oldest first."""
    inbox = data_dir / INBOX_DIR
    if not inbox.is_dir():
        return []
    return sorted(inbox.glob("*.invite"))
