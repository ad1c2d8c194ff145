"""The data dir's layout: every path in it, and the file moves that change it.

One module owns the layout, so the node, the inbox and the command line agree on it::

    identity.pem                the node's Ed25519 key (0600)
    settings.json               the nickname
    config.toml                 the headless node's config (`node.app`)
    lock                        held (flock) by the one process using the node (`node._lock`)
    inbox/*.invite              rooms handed to a running node by other rumor processes
    rooms/<room id hex>.sqlite3 one room's history; its secret, name and peers in the meta
    rooms/left/                 rooms we left, kept (joining again takes the file back)
    dht-state.msgpack           DHT node id and contacts (written by the DHT node)

Everything here is plain blocking file work: callers run it through a `Blocking` runner.
Nothing here ever deletes a room file: rooms are only moved, and only whole (the SQLite
file with its WAL files).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import platformdirs

from crdt import Identity, Kind, check_body

__all__ = [
    "CONFIG_FILE",
    "IDENTITY_FILE",
    "INBOX_DIR",
    "LEFT_DIR",
    "ROOMS_DIR",
    "SETTINGS_FILE",
    "DataDir",
    "default_data_dir",
]

log = logging.getLogger("node")

IDENTITY_FILE: Final = "identity.pem"
SETTINGS_FILE: Final = "settings.json"
CONFIG_FILE: Final = "config.toml"
INBOX_DIR: Final = "inbox"
ROOMS_DIR: Final = "rooms"
LEFT_DIR: Final = "left"  # under rooms/
ROOM_SUFFIX: Final = ".sqlite3"
_ROOM_FILE_PARTS: Final = ("-wal", "-shm", "")  # the main file last: it is what marks a room


def default_data_dir() -> Path:
    """The platform's data dir for rumor (`~/.local/share/rumor` on Linux)."""
    return Path(platformdirs.user_data_dir("rumor"))


@dataclass(frozen=True, slots=True)
class DataDir:
    """The paths of one data dir, and the file work on them."""

    root: Path

    @property
    def identity(self) -> Path:
        return self.root / IDENTITY_FILE

    @property
    def settings(self) -> Path:
        return self.root / SETTINGS_FILE

    @property
    def config(self) -> Path:
        return self.root / CONFIG_FILE

    @property
    def inbox(self) -> Path:
        return self.root / INBOX_DIR

    @property
    def rooms(self) -> Path:
        return self.root / ROOMS_DIR

    @property
    def left(self) -> Path:
        return self.rooms / LEFT_DIR

    def room_file(self, room_id: bytes) -> Path:
        return self.rooms / f"{room_id.hex()}{ROOM_SUFFIX}"

    def prepare(self) -> Identity:
        """Make the rooms folder and load the identity (creating both when new)."""
        self.rooms.mkdir(parents=True, exist_ok=True)
        return Identity.load_or_create(self.identity)

    def is_initialised(self) -> bool:
        return self.config.exists() and self.identity.exists()

    def room_files(self) -> tuple[list[Path], list[Path]]:
        """The room files, sorted: those with content, and the empty ones (opening an
        empty one would write a schema into it)."""
        paths = sorted(self.rooms.glob(f"*{ROOM_SUFFIX}"))
        sizes = [path.stat().st_size for path in paths]
        full = [p for p, n in zip(paths, sizes, strict=True) if n]
        return full, [p for p, n in zip(paths, sizes, strict=True) if not n]

    def shelve(self, path: Path) -> None:
        """Move a room we left into rooms/left/, kept for a later join."""
        _move_room_file(path, self.left)

    def unshelve(self, room_id: bytes) -> None:
        """Take a left room's file back (nothing if there is none): joining again
        continues our own chain of ops instead of forking it."""
        _move_room_file(self.left / self.room_file(room_id).name, self.rooms)

    def read_nick(self) -> str:
        """The saved nickname; a damaged settings file or an unusable nick is logged and
        ignored (the node runs without a nick rather than not at all)."""
        path = self.settings
        try:
            if not path.exists():
                return ""
            nick = json.loads(path.read_text("utf-8")).get("nick", "")
            check_body(Kind.NICK, (nick,))
        except (OSError, ValueError, AttributeError) as exc:  # ValueError: JSON or the nick
            log.warning("ignoring the nickname in %s: %s", path, exc)
            return ""
        return str(nick)

    def write_nick(self, nick: str) -> None:
        temporary = self.settings.with_suffix(".tmp")
        temporary.write_text(json.dumps({"nick": nick}), "utf-8")
        temporary.replace(self.settings)


def _move_room_file(path: Path, directory: Path) -> None:
    """Move a room's SQLite file (and any WAL files beside it) into `directory`."""
    if not path.exists():
        return
    directory.mkdir(exist_ok=True)
    for suffix in _ROOM_FILE_PARTS:
        source = path.with_name(path.name + suffix)
        if source.exists():
            source.replace(directory / source.name)
