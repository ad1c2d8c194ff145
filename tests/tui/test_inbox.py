"""`Inbox`: ids wait per room in arrival order, are fetched once, and rooms take turns."""

from __future__ import annotations

from tui._inbox import Inbox

A, B = b"a" * 32, b"b" * 32


def test_ids_come_out_in_order_once_with_what_is_new() -> None:
    inbox = Inbox()
    assert not inbox
    inbox.add(A, b"1", added=True)
    inbox.add(A, b"2", added=True)
    inbox.add(A, b"1", added=False)  # added, then edited: fetched once, still new
    inbox.add(A, b"3", added=False)  # only changed
    assert inbox.take(10) == (A, [b"1", b"2", b"3"], {b"1", b"2"})
    assert not inbox


def test_a_burst_comes_out_in_slices_and_rooms_take_turns() -> None:
    inbox = Inbox()
    for n in range(5):
        inbox.add(A, bytes([n]), added=True)
    inbox.add(B, b"x", added=True)
    assert inbox.take(2)[:2] == (A, [b"\x00", b"\x01"])
    assert inbox.take(2)[:2] == (B, [b"x"])
    assert inbox.take(2)[:2] == (A, [b"\x02", b"\x03"])
    assert inbox.take(2)[:2] == (A, [b"\x04"])
    assert not inbox
