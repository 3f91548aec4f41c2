"""Schema 12 → 13: ``share_notes`` keyed by ``(thread, share)``, so one thread's notes are a
range of the table's key.

:meth:`~vrmproto.store.SQLiteStore.share_notes` of one thread (``vrm data VENDOR``, ``vrm
history VENDOR``, the UI's relationship page, the agent's withdrawal of a thread's shares) read
the whole table: version 3 keyed it by ``share`` (a rowid table and its key index) with
``share_notes_by_thread`` beside it, which version 10 dropped as unused — the one statement for
both cases, ``?1 IS NULL OR thread = ?1``, could not use it. 0.26 / 0.86 / 8.0 ms at 1k / 10k /
100k notes, 10 per thread (docs/storage.md, "Schema 13").

The table's statements and what serves them:

- a thread's notes (``WHERE thread = ?``): the primary key ``(thread, share)`` of a ``WITHOUT
  ROWID`` table, whose rows are stored in key order — one thread's notes on one or two pages;
- the upsert of a note by ``share`` (:class:`~vrmproto.store.Commit` part 19, the customer's
  agent, twice per share: queued, then with its outcome), whose ``ON CONFLICT (share)`` needs a
  unique index on ``share``: ``share_notes_by_share``, which also keeps a share in one note when
  a note is written again under another thread (``tests/test_store.py``);
- every note (``share_notes()``): the whole table, as before.

Two b-trees, as before (the rows and the key index on ``share``), and a note written again
still writes one page (its row; the kept upsert, :func:`._sqlite_rows.upsert_kept`, sets no key
column). An inserted note lands inside both trees where the rowid table appended: 2.4 → 3.2 WAL
frames and ~10 µs more per share on the agent (docs/storage.md) — the price of every query
indexed, since a unique index on ``share`` and a key leading with ``thread`` are both needed.
A ``WITHOUT ROWID`` row keeps at most about 1,000 bytes in its cell (4,096-byte pages) before it
spills to an overflow page, against about 4,000 in a rowid table; a note (its shared fields'
names and values, purposes, categories) is a few hundred.

The table is rebuilt as versions 2 and 8 rebuilt theirs (create, copy, drop, rename, the index
again), every note kept, inside the step's one transaction (:func:`._sqlite._migrate`): a crash
leaves version 12 whole, and the next open runs the step again. Nothing references
``share_notes``.

The same step takes the values of shares withdrawn or expired before the upgrade out of the
address.updated events that replaced them, once (:func:`._sqlite_events.forget_dropped_before`,
:mod:`._redact`): the store's ``held_drop`` does so from version 13 on, but a share dropped
before reached none of the events written before.
"""

from __future__ import annotations

import sqlite3

from vrmproto.store._sqlite_events import forget_dropped_before
from vrmproto.store._sqlite_rows import NOTE_COLUMNS

__all__ = ["NOTES_BY_SHARE", "NOTES_V13", "migrate_12_to_13"]

#: Version 13's table: version 3's columns, in the same order.
NOTES_V13 = """CREATE TABLE share_notes_v13 (
        share BLOB NOT NULL, thread BLOB NOT NULL, vendor TEXT NOT NULL,
        fields TEXT NOT NULL, purposes TEXT NOT NULL, categories TEXT NOT NULL,
        expires_ms INTEGER NOT NULL, shared_ms INTEGER NOT NULL, status TEXT NOT NULL,
        withdrawn_ms INTEGER, PRIMARY KEY (thread, share)) WITHOUT ROWID"""

#: The upsert's conflict target (a share is in one note).
NOTES_BY_SHARE = "CREATE UNIQUE INDEX share_notes_by_share ON share_notes(share)"


def migrate_12_to_13(conn: sqlite3.Connection) -> None:
    """Rebuild ``share_notes`` keyed by ``(thread, share)``; forget in the feed the values of
    the shares dropped before (see the module)."""
    conn.execute(NOTES_V13)
    conn.execute(f"INSERT INTO share_notes_v13 ({NOTE_COLUMNS}) "  # noqa: S608 -- ours
                 f"SELECT {NOTE_COLUMNS} FROM share_notes ORDER BY thread, share")  # fmt: skip
    conn.execute("DROP TABLE share_notes")
    conn.execute("ALTER TABLE share_notes_v13 RENAME TO share_notes")
    conn.execute(NOTES_BY_SHARE)
    forget_dropped_before(conn)
