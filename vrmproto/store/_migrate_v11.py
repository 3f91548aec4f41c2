"""Schema 10 → 11: a thread record keeps when the vendor's discovery document expires.

A sender MUST NOT use a discovery document after its ``expires`` (spec §13.1-8). The agent
kept that time only in memory, so a restarted agent — and the ``vrm`` command line is a new
process for every command — or another process on the same data went on using the inbox of
an expired document until the inbox happened to answer that it was not there
(:mod:`vrmproto.client._moved`). Version 11 adds ``threads.doc_expires_ms``
(:attr:`~vrmproto.store.ThreadRecord.doc_expires_ms`): an ``INTEGER``, NULL in the rows of
older files (the expiry is unknown; the agent reads the document again before it next
delivers in such a thread, and stores what it read). SQLite adds a column without a default
by changing the table's definition only: no row is rewritten, and a NULL costs a row no byte
but its header's.
"""

from __future__ import annotations

import sqlite3

__all__ = ["migrate_10_to_11"]


def migrate_10_to_11(conn: sqlite3.Connection) -> None:
    """Add ``threads.doc_expires_ms`` (see the module)."""
    conn.execute("ALTER TABLE threads ADD COLUMN doc_expires_ms INTEGER")
