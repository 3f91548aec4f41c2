"""SQLite tables of the event feed (schema v4, :class:`~vrmproto.store.EventRecord`): DDL, the
statements applying a :class:`~vrmproto.store.Commit`'s event parts, and the queries.

``events.pos`` is an ``AUTOINCREMENT`` rowid: assigned in insertion order, never reused, so a
consumer's cursor (the last pos it has) stays valid whatever is deleted.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from vrmproto.store._base import Commit
from vrmproto.store._rows import DeadLetter, EventRecord

__all__ = [
    "EVENT_COLUMNS",
    "SCHEMA_V4",
    "SCHEMA_V6",
    "apply_events",
    "event_record",
    "event_row",
    "has_event_parts",
    "migrate_3_to_4",
    "migrate_5_to_6",
]

SCHEMA_V4 = (
    """CREATE TABLE events (
        pos INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, thread BLOB NOT NULL,
        seq INTEGER NOT NULL, kind TEXT NOT NULL, msg_hash BLOB NOT NULL,
        recorded_ms INTEGER NOT NULL, data BLOB NOT NULL, personal BLOB)""",
    "CREATE INDEX events_by_share ON events(thread, msg_hash)",
    "CREATE TABLE event_cursors (name TEXT PRIMARY KEY, pos INTEGER NOT NULL)",
    """CREATE TABLE dead_letters (
        name TEXT NOT NULL, pos INTEGER NOT NULL, failed_ms INTEGER NOT NULL,
        error TEXT NOT NULL, PRIMARY KEY (name, pos))""",
)


def migrate_3_to_4(conn: sqlite3.Connection) -> None:
    """Add the event feed's tables (empty: messages stored before have no events)."""
    for statement in SCHEMA_V4:
        conn.execute(statement)


#: Version 6: only events that carry personal data are indexed by share (see migrate_5_to_6).
SCHEMA_V6 = (
    "DROP INDEX IF EXISTS events_by_share",
    "CREATE INDEX IF NOT EXISTS events_with_personal ON events(thread, msg_hash) "
    "WHERE personal IS NOT NULL",
)


def migrate_5_to_6(conn: sqlite3.Connection) -> None:
    """Index by share only the events that carry personal data.

    The index serves one statement, :func:`redact`, which clears an event's personal data when
    its share goes; an event without any has nothing to clear. Keyed by a random thread id, the
    full index cost a write to a random page per event (most events — terms, intentcasts,
    offers, receipts' replies — carry none), as ``history``'s hash index did before version 2.
    """
    for statement in SCHEMA_V6:
        conn.execute(statement)


EVENT_COLUMNS = "id, thread, seq, kind, msg_hash, recorded_ms, data, personal"
INSERT_EVENTS = f"INSERT INTO events ({EVENT_COLUMNS}) VALUES "  # noqa: S608
SELECT_EVENT = f"SELECT {EVENT_COLUMNS}, pos FROM events "  # noqa: S608


def event_row(e: EventRecord) -> tuple[object, ...]:
    return (e.id, e.thread, e.seq, e.kind, e.msg_hash, e.recorded_ms, e.data, e.personal)


def event_record(row: Sequence[Any]) -> EventRecord:
    personal = None if row[7] is None else bytes(row[7])
    return EventRecord(row[0], bytes(row[1]), row[2], row[3], bytes(row[4]), row[5],
                       bytes(row[6]), personal, row[8])  # fmt: skip


def has_event_parts(c: Commit) -> bool:
    """Whether ``c`` writes the feed's bookkeeping (cursors, dead letters)."""
    return bool(c.event_cursors or c.dead_letters or c.dead_letters_done)


def redact(conn: sqlite3.Connection, held_drop: Sequence[tuple[bytes, bytes]]) -> None:
    """Part 15 for the feed: the personal data of the dropped shares' events goes."""
    if held_drop:
        conn.executemany(  # the personal condition lets SQLite use the partial index
            "UPDATE events SET personal = NULL "
            "WHERE thread = ? AND msg_hash = ? AND personal IS NOT NULL",
            held_drop,
        )


def apply_events(conn: sqlite3.Connection, c: Commit) -> None:
    """Parts 23–26 of a Commit (see :class:`~vrmproto.store.Commit`), in order."""
    if c.events:
        one = "(?, ?, ?, ?, ?, ?, ?, ?)"
        conn.executemany(INSERT_EVENTS + one, [event_row(e) for e in c.events])
    if not has_event_parts(c):
        return
    conn.executemany(
        "INSERT INTO event_cursors (name, pos) VALUES (?, ?) "
        "ON CONFLICT (name) DO UPDATE SET pos = excluded.pos",
        c.event_cursors,
    )
    conn.executemany("DELETE FROM dead_letters WHERE name = ? AND pos = ?", c.dead_letters_done)
    conn.executemany(
        "INSERT INTO dead_letters (name, pos, failed_ms, error) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (name, pos) DO UPDATE SET failed_ms = excluded.failed_ms, "
        "error = excluded.error",
        [(d.name, d.pos, d.failed_ms, d.error) for d in c.dead_letters],
    )


def read_events(
    conn: sqlite3.Connection, after: int, limit: int, thread: bytes | None
) -> list[EventRecord]:
    if thread is None:
        rows = conn.execute(SELECT_EVENT + "WHERE pos > ? ORDER BY pos LIMIT ?", (after, limit))
    else:
        rows = conn.execute(
            SELECT_EVENT + "WHERE pos > ? AND thread = ? ORDER BY pos LIMIT ?",
            (after, thread, limit),
        )
    return [event_record(r) for r in rows.fetchall()]


def read_event(conn: sqlite3.Connection, event_id: str) -> EventRecord | None:
    row = conn.execute(SELECT_EVENT + "WHERE id = ?", (event_id,)).fetchone()
    return None if row is None else event_record(row)


def read_cursor(conn: sqlite3.Connection, name: str) -> int:
    row = conn.execute("SELECT pos FROM event_cursors WHERE name = ?", (name,)).fetchone()
    return 0 if row is None else int(row[0])


def read_dead_letters(conn: sqlite3.Connection, name: str | None) -> list[DeadLetter]:
    sql = "SELECT name, pos, failed_ms, error FROM dead_letters "
    if name is None:
        rows = conn.execute(sql + "ORDER BY name, pos")
    else:
        rows = conn.execute(sql + "WHERE name = ? ORDER BY pos", (name,))
    return [DeadLetter(*r) for r in rows.fetchall()]
