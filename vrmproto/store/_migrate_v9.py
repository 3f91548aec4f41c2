"""Schema 8 → 9: the outbox without the index ``outbox_by_due``.

Every message a customer's agent sends is inserted into the outbox before it leaves and deleted
when the vendor's receipt is in, and each of those writes changed a page of every index of the
outbox: ``outbox_by_due (next_attempt_ms, item_id)`` cost two pages of the WAL per
``data.share`` (23.4 → 21.4 frames, the agent's WAL read with autocheckpoint off, #12). It
served only :meth:`~vrmproto.store.SQLiteStore.outbox_due`, which nothing in the library calls
(the agent's outbox runs read ``outbox_all`` and a thread's queue through ``outbox_by_thread``),
over a table that holds only what is not yet delivered; without it that query reads the table
and sorts what is due. The version only drops the index: the rows are unchanged.
"""

from __future__ import annotations

import sqlite3

__all__ = ["migrate_8_to_9"]


def migrate_8_to_9(conn: sqlite3.Connection) -> None:
    """Drop ``outbox_by_due`` (see the module)."""
    conn.execute("DROP INDEX IF EXISTS outbox_by_due")
