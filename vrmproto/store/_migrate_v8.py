"""Schema 7 → 8: ``events.pos`` a plain ``INTEGER PRIMARY KEY``, without ``AUTOINCREMENT``.

``AUTOINCREMENT`` keeps the largest ``pos`` ever handed out in ``sqlite_sequence``, a table of
its own, and every transaction that inserts an event rewrites that row: one more page of the
WAL per transaction, a vendor's every accepted message (a vendor on SQLite, one customer, its
WAL read with autocheckpoint off: 12.5 → 11.5 frames per ``data.share``; docs/storage.md).
A plain rowid is ``max(pos) + 1``, read from the table's last leaf, which the insert writes
anyway. The two assign the same
positions as long as the newest event is never deleted, and no event ever is: the store has no
statement deleting one (a dropped thread's events stay, a withdrawn share's are redacted in
place; :class:`~vrmproto.store.Commit` parts 15, 21, 23), so a position is still never reused
(docs/events.md). A rolled-back insert takes its position back in both.

The table is rebuilt as in version 6 (create, copy, drop, rename, the partial index again),
keeping every ``pos``. A file whose counter is beyond its newest event (events deleted at the
end by hand: the store never does) keeps its ``AUTOINCREMENT`` table — the statements of
:mod:`vrmproto.store._sqlite_events` serve both layouts — so that no position is handed out
twice.
"""

from __future__ import annotations

import sqlite3

from vrmproto.store._sqlite_events import EVENT_COLUMNS, PERSONAL_INDEX

__all__ = ["EVENTS_V8", "migrate_7_to_8"]

#: Version 8's events table (the same columns as version 6's, :mod:`._sqlite_events`).
EVENTS_V8 = """CREATE TABLE events_v8 (
        pos INTEGER PRIMARY KEY, id TEXT NOT NULL, thread BLOB NOT NULL,
        seq INTEGER NOT NULL, kind TEXT NOT NULL, msg_hash BLOB NOT NULL,
        recorded_ms INTEGER NOT NULL, data BLOB NOT NULL, personal BLOB)"""


def migrate_7_to_8(conn: sqlite3.Connection) -> None:
    """Rebuild ``events`` without ``AUTOINCREMENT`` (see the module), unless its counter has
    gone past its newest event."""
    (newest,) = conn.execute("SELECT coalesce(max(pos), 0) FROM events").fetchone()
    counter = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
    if counter is not None and counter[0] > newest:
        return
    conn.execute(EVENTS_V8)
    conn.execute(f"INSERT INTO events_v8 (pos, {EVENT_COLUMNS}) "  # noqa: S608 -- ours
                 f"SELECT pos, {EVENT_COLUMNS} FROM events ORDER BY pos")  # fmt: skip
    conn.execute("DROP TABLE events")
    conn.execute("DELETE FROM sqlite_sequence WHERE name = 'events'")
    conn.execute("ALTER TABLE events_v8 RENAME TO events")
    conn.execute(PERSONAL_INDEX)
