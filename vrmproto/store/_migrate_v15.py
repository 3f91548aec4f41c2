"""Schema 14 → 15 (PostgreSQL 10 → 11): the feed forgets, once, the values that shares dropped
before session 20 had replaced, and what relationships deleted before it said; an index finds
the events of a relationship deleted from then on.

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

A relationship that never reached an agreement is deleted ``open_relationship_ttl_ms`` after its
last message, "with its whole history and the data it holds from it" (§11.8-3; Commit part 21).
Its events outlived it whole: the intentcast's text, the terms proffered and the customer's
endpoint, copies of the history's bodies, stayed in the feed until retention trimmed them (never,
with ``trim = false``). From this version on the deletion also rewrites them without their body
(:func:`._sqlite_events.forget_threads`, :func:`._redact.forgotten`), found through a partial
index by thread of the kinds a relationship has before an agreement (``events_unagreed``: a
relationship that agreed has one or two such events, an intentcast's thread all of its own);
this step makes the index and forgets the events of relationships deleted before (their thread
has no relationship any more).
"""

from __future__ import annotations

import sqlite3

from vrmproto.store._redact import UNAGREED_SQL, UPDATED, superseded_before
from vrmproto.store._sqlite_events import UNAGREED_INDEX, forget_threads

__all__ = ["DELETED", "DROPPED", "forget_superseded_before", "migrate_14_to_15"]

#: Per thread, the positions of its dropped shares' events (both stores' SQL).
DROPPED = ("SELECT thread, pos FROM events WHERE kind = 'data.shared' AND personal IS NULL "
           "ORDER BY thread, pos")  # fmt: skip
#: The threads whose relationship was deleted before, through ``events_unagreed`` (every
#: relationship has such an event: the terms.offer or intentcast that opened it).
#: (NOT EXISTS: PostgreSQL makes an anti-join of it, where NOT IN over a large table is a
#: subplan per row once its hash no longer fits in ``work_mem``.)
DELETED = (f"SELECT DISTINCT thread FROM events e WHERE {UNAGREED_SQL} AND NOT EXISTS "  # noqa: S608
           "(SELECT 1 FROM relationships r WHERE r.thread = e.thread) ORDER BY thread")  # fmt: skip


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
    """The feed forgets the values shares dropped before had replaced and what deleted
    relationships said; ``events_unagreed`` (see the module)."""
    forget_superseded_before(conn)
    conn.execute(UNAGREED_INDEX)
    forget_threads(conn, [bytes(t) for (t,) in conn.execute(DELETED).fetchall()])
