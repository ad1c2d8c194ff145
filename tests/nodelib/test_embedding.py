"""The README's embedding example, run as written (a separate process), and the public API."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import node

EXAMPLE = Path(__file__).with_name("embedding_example.py")
ROOT = Path(__file__).parents[2]


def test_embedding_example_runs_as_written(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # this checkout, not an installed copy
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "bob: hike on saturday?",
        "bob sees topic 'saturday' and 2 messages",
        "alice is linked to 1 peer(s)",
        "after reopening: 'weekend plans', ['hike on saturday?', 'yes! 9am at the station']",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alice", "bob"]
    alice = tmp_path / "alice"
    assert (alice / "identity.pem").stat().st_mode & 0o077 == 0
    assert len(list((alice / "rooms").glob("*.sqlite3"))) == 1
    assert (alice / "dht-state.msgpack").exists()


def test_public_surface() -> None:
    assert set(node.__all__) == {
        "DataDirError",
        "Invite",
        "InviteError",
        "Node",
        "NodeStatus",
        "Room",
        "RoomEvents",
        "RoomStatus",
        "SimNetwork",
        "parse_invite",
        "room_dht_key",
    }
    public = {n for n in vars(node) if not n.startswith("_")}
    # Subpackages are modules, not names the package promises.
    assert public - set(node.__all__) <= {"app", "client", "gossip", "link", "noise", "sim"}
