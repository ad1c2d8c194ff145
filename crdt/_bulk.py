"""Inserting many rows with few statements.

`executemany` runs one statement step per row, and `sqlite3` lets go of the interpreter
lock around every step: on a writer thread beside a busy trio thread, each of those is a
hand-over of the lock between the two (measured: 4-6 against 3-4 us of wall per row). A
statement of many `VALUES` rows is one step, and binds its rows in one call.

The rows come as one flat list of values: a tuple per row is one more object for the
cyclic garbage collector to walk, and a merge of 65,536 ids made as many, enough to set
off collections of every generation.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

__all__ = ["insert_rows"]

ROWS_MOST = 64  # rows in one statement (its variables stay under SQLite's old 999 limit)
_statements: dict[tuple[str, int, int], str] = {}


def _statement(head: str, width: int, rows: int) -> str:
    key = (head, width, rows)
    text = _statements.get(key)
    if text is None:
        row = "(" + ", ".join("?" * width) + ")"
        text = _statements[key] = f"{head} VALUES {', '.join([row] * rows)}"
    return text


def insert_rows(db: sqlite3.Connection, head: str, width: int, values: Sequence[Any]) -> int:
    """Run `head VALUES (...), (...)` over `values`, rows of `width` values one after the
    other, in order, as `executemany` would over the rows; returns the rows changed.

    Statements take 64 rows, then 32, 16, ... 1 for the rest: at most seven texts per
    head, so that SQLite's statement cache keeps them all.
    """
    if len(values) % width:
        raise ValueError(f"{len(values)} values are no whole rows of {width}")
    rows = len(values) // width
    changed = 0
    at = 0
    size = ROWS_MOST
    while at < rows:
        while at + size > rows:
            size //= 2
        part = values[at * width : (at + size) * width]
        changed += db.execute(_statement(head, width, size), part).rowcount
        at += size
    return changed
