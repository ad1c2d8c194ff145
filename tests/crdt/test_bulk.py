"""insert_rows: many rows in few statements, with executemany's results."""

from __future__ import annotations

import sqlite3

import pytest

from crdt._bulk import ROWS_MOST, insert_rows


def flat(rows: list[tuple[int, bytes, int]]) -> list[object]:
    return [value for row in rows for value in row]


def table() -> sqlite3.Connection:
    db = sqlite3.connect(":memory:", isolation_level=None)
    db.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB NOT NULL, at INTEGER)")
    return db


@pytest.mark.parametrize("count", [0, 1, 2, 7, ROWS_MOST - 1, ROWS_MOST, ROWS_MOST + 1, 200])
def test_every_row_lands_in_order(count: int) -> None:
    rows = [(k * 3 % 1000, bytes([k % 256]) * 5, k) for k in range(count)]
    db = table()
    trace: list[str] = []
    db.set_trace_callback(trace.append)
    assert insert_rows(db, "INSERT INTO t (k, v, at)", 3, flat(rows)) == count
    db.set_trace_callback(None)
    assert db.execute("SELECT k, v, at FROM t ORDER BY at").fetchall() == rows
    # 64 rows a statement, then one statement per bit of the rest.
    assert len(trace) == count // ROWS_MOST + bin(count % ROWS_MOST).count("1")


def test_or_ignore_counts_what_was_inserted_as_executemany_does() -> None:
    rows = [(k % 40, b"x", k) for k in range(100)]  # 60 repeats of a key
    ours, theirs = table(), table()
    changed = insert_rows(ours, "INSERT OR IGNORE INTO t (k, v, at)", 3, flat(rows))
    expected = theirs.executemany("INSERT OR IGNORE INTO t (k, v, at) VALUES (?, ?, ?)", rows)
    assert changed == expected.rowcount == 40
    query = "SELECT k, v, at FROM t ORDER BY k"
    assert ours.execute(query).fetchall() == theirs.execute(query).fetchall()


def test_a_failing_row_fails_the_statement() -> None:
    db = table()
    with pytest.raises(sqlite3.IntegrityError):
        insert_rows(db, "INSERT INTO t (k, v, at)", 3, [1, b"a", 0, 1, b"b", 1])


def test_values_that_are_no_whole_rows_are_refused() -> None:
    db = table()
    with pytest.raises(ValueError, match="no whole rows of 3"):
        insert_rows(db, "INSERT INTO t (k, v, at)", 3, [1, b"a", 0, 2, b"b"])
    assert db.execute("SELECT count(*) FROM t").fetchone() == (0,)
