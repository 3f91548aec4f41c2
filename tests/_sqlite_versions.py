"""An agent or vendor SQLite file at an older schema version, for the migration tests."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from vrmproto.store._sqlite import _MIGRATIONS


def sqlite_at_version(path: Path, version: int) -> sqlite3.Connection:
    """A file at schema ``version``, as the release that stopped there left it: its migrations
    run by hand, in autocommit; the connection stays open for the test to fill the file."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA foreign_keys = ON")
    for step in _MIGRATIONS[:version]:
        step(conn)
    conn.execute(f"PRAGMA user_version = {int(version)}")
    return conn
