"""Schema 9 → 10: the two indexes no query uses, each a page of the agent's WAL per share (#12).

An agent's ``data.share`` is two inline transactions (the send and the lazy close), and each
b-tree page either one changes is a frame of the WAL: written (two ``pwrite``), checksummed,
later checkpointed. Version 10 drops two indexes from that path:

- ``share_notes_by_thread``: no query used it. :meth:`~vrmproto.store.SQLiteStore.share_notes`
  asks ``?1 IS NULL OR thread = ?1``, which SQLite answers by scanning the table (its query
  plan says ``SCAN share_notes``), and nothing else reads notes by thread; each share's note
  inserted wrote a page of it.
- ``outbox_by_thread``: the outbox holds only what is not yet delivered, at most the one
  message in flight per thread and the receipts waiting with it (spec §8.2), and only a
  customer's agent inserts into it (the library's other readers, ``outbox_all``, read it
  whole). :meth:`~vrmproto.store.SQLiteStore.outbox_for` now reads that small table; each item
  inserted and deleted wrote a page of the index.

The agent's WAL, frames mapped to b-trees with ``dbstat`` (``bench/e2e.py --agent-store sqlite
--k 4 --m 125``): 24.7 → 21.7 frames per share. The rows are unchanged.
"""

from __future__ import annotations

import sqlite3

__all__ = ["migrate_9_to_10"]


def migrate_9_to_10(conn: sqlite3.Connection) -> None:
    """Drop ``share_notes_by_thread`` and ``outbox_by_thread`` (see the module)."""
    conn.execute("DROP INDEX IF EXISTS share_notes_by_thread")
    conn.execute("DROP INDEX IF EXISTS outbox_by_thread")
