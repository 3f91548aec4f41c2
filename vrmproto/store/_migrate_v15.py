"""Schema 14 → 15 (PostgreSQL 10 → 11): no table changes; the feed forgets, once, the values that
shares dropped before session 20 had replaced.

Since session 20 (8bab3bf) a share that is withdrawn or expires also takes out of every event of
its relationship the values it had replaced of the fields the vendor then holds no more
(Commit part 15, :mod:`._redact`): a reader of the whole feed — a CRM resynchronised from
scratch, a webhook added later, ``vrm vendor events`` — ends with what the vendor holds. A share
dropped before the upgrade did not, and its own event no longer says what it carried: the old
phone a withdrawn share had replaced stayed in the feed for any reader from its start.

This step takes them out (:func:`._redact.superseded_before`), in the step's one transaction
(:func:`._sqlite._migrate`, :func:`._pg_schema.migrate`): a crash leaves version 14 whole and
the next open runs the step again; once at 15, it never runs again. It is a schema step rather
than a command for the vendor to run because every store written before holds such values if a
share was ever withdrawn or expired, and a vendor upgrading expects the privacy rule of the new
code to hold for its feed without knowing of a command: the step reads only the threads that
have a dropped share (a data.shared event without ``personal``), as the step to 13 did.
"""

from __future__ import annotations

import sqlite3

from vrmproto.store._redact import UPDATED, superseded_before

__all__ = ["forget_superseded_before", "migrate_14_to_15"]

#: Per thread, the positions of its dropped shares' events (both stores' SQL).
DROPPED = ("SELECT thread, pos FROM events WHERE kind = 'data.shared' AND personal IS NULL "
           "ORDER BY thread, pos")  # fmt: skip


def forget_superseded_before(conn: sqlite3.Connection) -> None:
    """Take out of the feed the values shares dropped before had replaced (see the module)."""
    dropped: dict[bytes, list[int]] = {}
    for thread, pos in conn.execute(DROPPED):
        dropped.setdefault(bytes(thread), []).append(pos)
    if not dropped:
        return
    sources = {(bytes(t), bytes(h)): pos for pos, t, h in conn.execute(
        "SELECT pos, thread, msg_hash FROM events WHERE kind IN ('data.shared', ?)", (UPDATED,))
        if bytes(t) in dropped}  # fmt: skip
    holds = {(bytes(t), field): bytes(share) for t, field, share in conn.execute(
        "SELECT thread, field, share FROM held") if bytes(t) in dropped}  # fmt: skip
    found: list[tuple[int, bytes, bytes]] = []
    for thread in dropped:  # along the partial index events_with_personal, by thread
        found.extend((pos, thread, bytes(personal)) for pos, personal in conn.execute(
            "SELECT pos, personal FROM events WHERE thread = ? AND personal IS NOT NULL",
            (thread,)))  # fmt: skip
    conn.executemany("UPDATE events SET personal = ? WHERE pos = ?",
                     [(after, pos) for pos, after in superseded_before(dropped, sources, holds,
                                                                       found)])  # fmt: skip


def migrate_14_to_15(conn: sqlite3.Connection) -> None:
    """The feed forgets the values shares dropped before had replaced (see the module)."""
    forget_superseded_before(conn)
