"""The inbox: how other rumor processes hand rooms to the node running on a data dir.

    inbox/*.invite       invites handed over by `rumor create` / `rumor join`
    inbox/*.failed       entries the node could not read or join, set aside for the operator

Only one process at a time opens the node's rooms: the one holding the data dir's lock
(`node._lock`; `Node.open` takes it too). Another process never touches the rooms; it
writes an invite into `inbox/` (atomically: written under a temporary name, then renamed),
and the lock holder joins it. The paths come from `node._datadir`, which owns the layout.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
import time
from pathlib import Path
from typing import Final

from .._datadir import INBOX_DIR, DataDir, default_data_dir
from .._lock import DataDirError, Holder, Lock, LockHeld, hold_lock

__all__ = [
    "NEW_ROOM_MARK",
    "DataDirError",
    "Holder",
    "Lock",
    "LockHeld",
    "default_data_dir",
    "hold_lock",
    "pending_invites",
    "queue_invite",
    "read_invite",
    "require_initialised",
    "set_aside",
]

INVITE_SUFFIX: Final = ".invite"
NEW_ROOM_MARK: Final = ".new"  # before the suffix: a room to create, not to join
FAILED_SUFFIX: Final = ".failed"  # an inbox entry that could not be joined, kept
MAX_INVITE_BYTES: Final = 64 * 1024


def require_initialised(data_dir: Path) -> None:
    if not DataDir(data_dir).is_initialised():
        raise DataDirError(
            f"{data_dir} is not a rumor data dir; run: rumor init --data-dir {data_dir}"
        )


def queue_invite(data_dir: Path, invite: str, *, new_room: bool = False) -> Path:
    """Hand an invite to the node running on `data_dir`; the file appears whole or not at all.

    `new_room`: the invite names a room we create (`rumor create`), not one we join; the
    node must know, since in a room it joins it first learns what it holds there."""
    inbox = data_dir / INBOX_DIR
    inbox.mkdir(exist_ok=True)
    stem = f"{time.time_ns():020d}-{secrets.token_hex(4)}"
    temporary = inbox / f".{stem}.tmp"
    try:
        with temporary.open("w", encoding="utf-8") as file:
            file.write(invite + "\n")
            file.flush()
            os.fsync(file.fileno())
        target = inbox / f"{stem}{NEW_ROOM_MARK if new_room else ''}{INVITE_SUFFIX}"
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)  # a disk that filled up leaves no half invite
        raise
    return target


def pending_invites(data_dir: Path) -> list[Path]:
    """The invites waiting in the inbox, oldest first (none without an inbox); OSError
    if the inbox cannot be listed."""
    inbox = data_dir / INBOX_DIR
    try:
        names = os.listdir(inbox)
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(inbox / name for name in names if name.endswith(INVITE_SUFFIX))


def read_invite(path: Path) -> str:
    """The text of an inbox entry; OSError if it is not a readable file (a directory or a
    pipe named *.invite, say), UnicodeDecodeError if it is not UTF-8."""
    # Non-blocking: opening a named pipe must not stall the reader until someone writes.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as file:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        # An invite is at most a few KiB: a bigger file is refused, not read whole.
        return file.read(MAX_INVITE_BYTES).decode("utf-8")


def set_aside(path: Path) -> Path:
    """Rename an inbox entry that cannot be joined to `<name>.failed` (`<name>.<n>.failed`
    if taken), so it is neither retried nor lost; the new path. OSError if it cannot be."""
    for n in range(100):
        target = path.with_name(f"{path.name}{f'.{n}' if n else ''}{FAILED_SUFFIX}")
        if not os.path.lexists(target):
            os.rename(path, target)
            return target
    raise OSError(errno.EEXIST, "too many entries set aside under this name", str(path))
