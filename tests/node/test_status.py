"""The operator's "caught up" line: figures that add up."""

from __future__ import annotations

import dataclasses

from node._status import RoomStatus, caught_up_line

ROOM = bytes.fromhex("1a2b3c4d") + b"\x00" * 28


def status(**fields: object) -> RoomStatus:
    base: dict[str, object] = dict(
        room_id=ROOM, name="r", peers=(b"p" * 32, b"q" * 32), ops=0, held=0, behind=0,
        authors=3, ingesting=0, received=0, penalties=0,
    )  # fmt: skip
    base.update(fields)
    return RoomStatus(**base)  # type: ignore[arg-type]


def test_received_is_new_plus_already_held_plus_refused() -> None:
    first = status(ops=6, received=7, duplicates=1, added=5)
    assert caught_up_line(first) == (
        "room 1a2b3c4d caught up: 6 ops, 7 received (5 new, 2 already held), 3 authors, 2 peers"
    )
    later = dataclasses.replace(
        first, ops=16, received=20, duplicates=2, added=14, rejected=(("bad-signature", 1),)
    )
    line = caught_up_line(later, first)
    assert "16 ops, 13 received (9 new, 3 already held, 1 refused)" in line
