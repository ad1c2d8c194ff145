"""What the UI remembers between runs: read markers per room and its own settings.

Kept in ``tui.json`` in the data dir, written atomically (a temporary file, then a
rename). A missing or damaged file means "nothing remembered", never an error.
This module must never touch Textual or the node.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

__all__ = ["NOTIFY_MODES", "STATE_FILE", "UiState"]

STATE_FILE: Final = "tui.json"
NOTIFY_MODES: Final = ("bell", "desktop", "both", "off")


@dataclass
class UiState:
    """Read markers (room id hex -> hlc of the newest message read) and settings."""

    read: dict[str, int] = field(default_factory=dict)
    notify: str = "bell"
    show_members: bool = True
    last_room: str = ""  # hex id of the room on screen when the UI closed

    @classmethod
    def load(cls, path: Path) -> UiState:
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return cls()
        if not isinstance(raw, dict):
            return cls()
        state = cls()
        read = raw.get("read")
        if isinstance(read, dict):
            state.read = {
                k: v for k, v in read.items() if isinstance(k, str) and type(v) is int and v >= 0
            }
        if raw.get("notify") in NOTIFY_MODES:
            state.notify = raw["notify"]
        if isinstance(raw.get("last_room"), str):
            state.last_room = raw["last_room"]
        if isinstance(raw.get("show_members"), bool):
            state.show_members = raw["show_members"]
        return state

    def save(self, path: Path) -> None:
        """Write the file atomically; a failure (read-only dir) is ignored: markers are a
        convenience, not data."""
        data = {
            "last_room": self.last_room,
            "notify": self.notify,
            "read": self.read,
            "show_members": self.show_members,
        }
        temporary = path.with_name(path.name + ".tmp")
        with contextlib.suppress(OSError):
            temporary.write_text(json.dumps(data, sort_keys=True, indent=1), encoding="utf-8")
            os.replace(temporary, path)

    def read_hlc(self, room_id: bytes) -> int | None:
        return self.read.get(room_id.hex())

    def mark_read(self, room_id: bytes, hlc: int) -> bool:
        """Move the room's marker forward to `hlc`; True if it moved."""
        key = room_id.hex()
        if hlc > self.read.get(key, -1):
            self.read[key] = hlc
            return True
        return False
