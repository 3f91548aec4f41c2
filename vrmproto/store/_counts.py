"""The statements behind :meth:`~vrmproto.store.Store.counts`, the same on SQLite and PostgreSQL.

Each counts in the database (``count(*)``, ``GROUP BY``), so that what a ``/metrics`` scrape
moves into the process is a handful of rows, however many records the store holds. SQLite
answers ``GROUP BY state`` by scanning ``relationships`` in C (there is no index on ``state``:
it would cost a write on every change of state, on the path that accepts messages), without a
Python object per row; it reads no overflow page of a state blob, which comes after ``state``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import Any

from vrmproto.store._base import StoreCounts

__all__ = ["STATEMENTS", "counts_of", "read_counts"]

#: In the order :func:`counts_of` takes their rows.
STATEMENTS = (
    "SELECT state, count(*) FROM relationships GROUP BY state",
    "SELECT count(*) FROM outbox",
    "SELECT count(*) FROM drafts",
    "SELECT name, count(*) FROM dead_letters GROUP BY name",
    "SELECT name, count(*), sum(gone) FROM webhook_failing GROUP BY name",
)


def counts_of(results: Iterable[list[tuple[Any, ...]]]) -> StoreCounts:
    """The :class:`StoreCounts` of the rows :data:`STATEMENTS` returned, in order."""
    states, outbox, drafts, dead, failing = results
    return StoreCounts({str(s): int(n) for s, n in states}, int(outbox[0][0]),
                       int(drafts[0][0]), {str(k): int(n) for k, n in dead},
                       {str(k): int(n) for k, n, _ in failing},
                       {str(k): int(g) for k, _, g in failing if g})  # fmt: skip


def read_counts(conn: sqlite3.Connection) -> StoreCounts:
    """:data:`STATEMENTS` on a SQLite reader connection, in one read transaction (one
    snapshot: a Commit that moves a relationship and its outbox item is seen whole or not)."""
    conn.execute("BEGIN")
    try:
        return counts_of([conn.execute(sql).fetchall() for sql in STATEMENTS])
    finally:
        conn.execute("COMMIT")
