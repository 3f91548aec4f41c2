"""SQLite tables of the event feed (schema v4, :class:`~vrmproto.store.EventRecord`): DDL, the
statements applying a :class:`~vrmproto.store.Commit`'s event parts, and the queries.

``events.pos`` is the rowid: assigned in insertion order and never reused — the store deletes
events only from the oldest end, and never the newest (:mod:`vrmproto.store._trim`) — so a
consumer's cursor (the last pos it has) stays valid. Versions 4 to 7 made it
``AUTOINCREMENT``; version 8 drops that (:mod:`vrmproto.store._migrate_v8`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Sequence
from typing import Any

from vrmproto.store._base import Commit
from vrmproto.store._redact import (
    LEGACY,
    NEVER,
    UNAGREED_SQL,
    UPDATED,
    Redaction,
    carried,
    dropped_before,
    forgotten,
    governed,
    needle,
    stripped,
)
from vrmproto.store._rows import DeadLetter, EventRecord, FailingEvent
from vrmproto.store._trim import FLOOR_KEY, floor_value, trim_plan

__all__ = [
    "EVENT_COLUMNS",
    "FORGOTTEN",
    "LAST_POS",
    "PERSONAL_INDEX",
    "SCHEMA_V4",
    "UNAGREED_INDEX",
    "apply_events",
    "event_record",
    "event_row",
    "forget",
    "forget_dropped_before",
    "forget_threads",
    "has_event_parts",
    "migrate_3_to_4",
    "migrate_5_to_6",
    "read_cursors",
    "read_failing",
    "read_floor",
    "trim",
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


#: Version 6's events table: no UNIQUE on ``id`` (see :func:`migrate_5_to_6`).
_EVENTS_V6 = """CREATE TABLE events_v6 (
        pos INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL, thread BLOB NOT NULL,
        seq INTEGER NOT NULL, kind TEXT NOT NULL, msg_hash BLOB NOT NULL,
        recorded_ms INTEGER NOT NULL, data BLOB NOT NULL, personal BLOB)"""
PERSONAL_INDEX = ("CREATE INDEX events_with_personal ON events(thread, msg_hash) "
                   "WHERE personal IS NOT NULL")  # fmt: skip


def migrate_5_to_6(conn: sqlite3.Connection) -> None:
    """Rebuild ``events`` without its two indexes keyed by random values; index by share only
    the events that carry personal data.

    - ``UNIQUE (id)``: an event's id is its message's hash, and a message is written once
      (its history slot and dedupe key, in the same Commit, are the store's rules; §8.2-2 is
      the engine's), so the rule was the engine's already — as ``history``'s hash index was,
      dropped in version 2 for the same cost: a write to a random page per row, here per event.
      Measured, it was most of what writing the feed cost (``bench/events.py``: ``events_cost``
      ~0.10 with it, ~0.035 without). Looking an event up by id (``--since ID``) now reads the
      feed from its newest event back, which finds a recent one at once.
    - ``(thread, msg_hash)`` serves one statement, :func:`redact`, which clears a dropped
      share's personal data; an event without any has nothing to clear, and most events
      (terms, intentcasts, offers) carry none: a partial index.

    SQLite cannot drop a constraint, so the table is rebuilt (create, copy, drop, rename, as in
    version 2), keeping every ``pos`` and the AUTOINCREMENT counter (a position is never
    reused, even of events deleted at the end)."""
    conn.execute(_EVENTS_V6)
    conn.execute(f"INSERT INTO events_v6 (pos, {EVENT_COLUMNS}) "  # noqa: S608
                 f"SELECT pos, {EVENT_COLUMNS} FROM events ORDER BY pos")  # fmt: skip
    conn.execute("DELETE FROM sqlite_sequence WHERE name = 'events_v6'")
    conn.execute("UPDATE sqlite_sequence SET name = 'events_v6' WHERE name = 'events'")
    conn.execute("DROP TABLE events")
    conn.execute("ALTER TABLE events_v6 RENAME TO events")
    conn.execute(PERSONAL_INDEX)


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
    """Whether ``c`` writes the feed's bookkeeping (cursors, dead letters, failing events)."""
    return bool(c.event_cursors or c.dead_letters or c.dead_letters_done or c.failing
                or c.failing_done)  # fmt: skip


def redact(conn: sqlite3.Connection, held_drop: Sequence[tuple[bytes, bytes]]) -> None:
    """Part 15 for the feed: the personal data of the dropped shares' events goes, and the
    fields held under them from the address updates of their threads; then, of the fields they
    governed, those the vendor holds no more (part 15 deleted their ``held`` rows just before)
    from every event of the thread: the values the dropped ones had replaced (§12.10-1;
    :mod:`._redact`)."""
    if not held_drop:
        return
    shared = [conn.execute(  # each share's own event, before its personal data goes
        "SELECT pos, personal FROM events "
        "WHERE thread = ? AND msg_hash = ? AND personal IS NOT NULL", pair).fetchone()
        for pair in held_drop]  # fmt: skip
    conn.executemany(  # the personal condition lets SQLite use the partial index
        "UPDATE events SET personal = NULL "
        "WHERE thread = ? AND msg_hash = ? AND personal IS NOT NULL",
        held_drop,
    )
    plan = Redaction()
    governs: dict[bytes, set[str]] = {}  # per thread, the fields the dropped shares governed
    for (thread, share), own in zip(held_drop, shared, strict=True):
        since, fields = (NEVER, frozenset()) if own is None else (own[0], carried(own[1]))
        gone = governs.setdefault(thread, set())
        gone.update(fields)
        for pos, personal in conn.execute(  # along the partial index, by thread
            "SELECT pos, personal FROM events WHERE thread = ? AND personal IS NOT NULL "
            "AND kind = ? AND (instr(personal, ?) > 0 OR (pos > ? AND instr(personal, ?) = 0))",
            (thread, UPDATED, needle(share), since, LEGACY),
        ):  # fmt: skip
            plan.found(pos, bytes(personal), share, since, fields)
            gone.update(governed(bytes(personal), share, fields if pos > since else ()))
    conn.executemany("UPDATE events SET personal = ? WHERE pos = ?",
                     [(after, pos) for pos, after in plan.changes()])  # fmt: skip
    for thread, then in sorted(governs.items()):  # part 15 deleted their held rows before
        unheld = then.difference(field for (field,) in conn.execute(
            "SELECT field FROM held WHERE thread = ?", (thread,)))  # fmt: skip
        if unheld:
            conn.executemany("UPDATE events SET personal = ? WHERE pos = ?", [
                (after, pos) for pos, personal in conn.execute(  # along the partial index
                    "SELECT pos, personal FROM events WHERE thread = ? AND personal IS NOT NULL",
                    (thread,)).fetchall()
                if (after := stripped(bytes(personal), unheld)) != personal])  # fmt: skip


#: The events of the kinds a relationship has before an agreement, by thread (schema 15): what
#: :func:`forget_threads` rewrites when a relationship that never reached one is deleted. A
#: relationship has one ``relationship.opened`` and few others of them once it agreed; an
#: intentcast's thread (one per intentcast) all of its events.
UNAGREED_INDEX = f"CREATE INDEX events_unagreed ON events(thread) WHERE {UNAGREED_SQL}"


def forget_threads(conn: sqlite3.Connection, threads: Sequence[bytes]) -> None:
    """Part 21 for the feed: the events of each deleted thread keep their place and kind but not
    what the message said (:func:`._redact.forgotten`): a relationship that expires without an
    agreement goes with the data the vendor holds from it (§11.8-3), and its events are copies
    of its history's bodies. Only the kinds a relationship has before an agreement: the library
    deletes no other (``_expiry``), and these are found through ``events_unagreed``."""
    for thread in threads:
        conn.executemany("UPDATE events SET data = ? WHERE pos = ?", [
            (after, pos) for pos, data in conn.execute(
                f"SELECT pos, data FROM events WHERE thread = ? AND {UNAGREED_SQL}",  # noqa: S608
                (thread,)).fetchall()
            if (after := forgotten(bytes(data))) != data])  # fmt: skip


def forget_dropped_before(conn: sqlite3.Connection) -> None:
    """Take the values of shares dropped before the feed named ``field_shares`` out of the
    address.updated events written before it (:func:`._redact.dropped_before`): once, in the
    schema step that brings a store to version 13 (:mod:`._migrate_v13`). Three reads of the
    feed, one of ``held``."""
    first = {bytes(t): pos for t, pos in conn.execute(
        "SELECT thread, min(pos) FROM events WHERE kind = 'data.shared' AND personal IS NULL "
        "GROUP BY thread")}  # fmt: skip
    if not first:
        return
    sources = {(bytes(t), bytes(h)): pos for pos, t, h in conn.execute(
        "SELECT pos, thread, msg_hash FROM events WHERE kind IN ('data.shared', ?)", (UPDATED,))
        if bytes(t) in first}  # fmt: skip
    holds = {(bytes(t), field): bytes(share) for t, field, share in conn.execute(
        "SELECT thread, field, share FROM held") if bytes(t) in first}  # fmt: skip
    legacy = [(pos, bytes(t), bytes(personal)) for pos, t, personal in conn.execute(
        "SELECT pos, thread, personal FROM events WHERE kind = ? AND personal IS NOT NULL "
        "AND pos > ? AND instr(personal, ?) = 0", (UPDATED, min(first.values()), LEGACY))
        if bytes(t) in first]  # fmt: skip
    conn.executemany("UPDATE events SET personal = ? WHERE pos = ?",
                     [(after, pos) for pos, after in dropped_before(first, sources, holds,
                                                                    legacy)])  # fmt: skip


def apply_events(conn: sqlite3.Connection, c: Commit) -> None:
    """Parts 23–28 of a Commit (see :class:`~vrmproto.store.Commit`), in order."""
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
    conn.executemany("DELETE FROM webhook_failing WHERE name = ? AND pos = ?", c.failing_done)
    conn.executemany(UPSERT_FAILING.replace("$", "?"), [failing_row(f) for f in c.failing])


#: Upsert a :class:`FailingEvent` (``$n``: PostgreSQL's; SQLite's ``?`` by replacing ``$``).
UPSERT_FAILING = (
    "INSERT INTO webhook_failing (name, pos, since_ms, attempts, error, gone) "
    "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (name, pos) DO UPDATE SET "
    "since_ms = excluded.since_ms, attempts = excluded.attempts, error = excluded.error, "
    "gone = excluded.gone"
)
SELECT_FAILING = "SELECT name, pos, since_ms, attempts, error, gone FROM webhook_failing "


def failing_row(f: FailingEvent) -> tuple[object, ...]:
    return (f.name, f.pos, f.since_ms, f.attempts, f.error, int(f.gone))


def failing_record(row: Sequence[Any]) -> FailingEvent:
    return FailingEvent(row[0], row[1], row[2], row[3], row[4], bool(row[5]))


def read_failing(conn: sqlite3.Connection, name: str | None) -> list[FailingEvent]:
    if name is None:
        rows = conn.execute(SELECT_FAILING + "ORDER BY name, pos")
    else:
        rows = conn.execute(SELECT_FAILING + "WHERE name = ? ORDER BY pos", (name,))
    return [failing_record(r) for r in rows.fetchall()]


#: The highest position a store can hand out (a signed 64-bit integer, SQLite's and
#: PostgreSQL's): a reader after it (``vrm vendor events --since 99999999999999999999``) is
#: after every event, not an error of the database's.
LAST_POS = 2**63 - 1


def read_events(
    conn: sqlite3.Connection, after: int, limit: int, thread: bytes | None
) -> list[EventRecord]:
    after = min(after, LAST_POS)
    if thread is None:
        rows = conn.execute(SELECT_EVENT + "WHERE pos > ? ORDER BY pos LIMIT ?", (after, limit))
    else:
        rows = conn.execute(
            SELECT_EVENT + "WHERE pos > ? AND thread = ? ORDER BY pos LIMIT ?",
            (after, thread, limit),
        )
    return [event_record(r) for r in rows.fetchall()]


def read_event(conn: sqlite3.Connection, event_id: str) -> EventRecord | None:
    """The event ``event_id``, looked for from the newest (no index on ids: see
    :func:`migrate_5_to_6`)."""
    row = conn.execute(SELECT_EVENT + "WHERE id = ? ORDER BY pos DESC LIMIT 1",
                       (event_id,)).fetchone()  # fmt: skip
    return None if row is None else event_record(row)


def read_cursor(conn: sqlite3.Connection, name: str) -> int:
    row = conn.execute("SELECT pos FROM event_cursors WHERE name = ?", (name,)).fetchone()
    return 0 if row is None else int(row[0])


def read_head(conn: sqlite3.Connection) -> int:
    """The newest event's pos (0 if none), along the rowid."""
    row = conn.execute("SELECT max(pos) FROM events").fetchone()
    return int(row[0] or 0)


def read_dead_letters(conn: sqlite3.Connection, name: str | None) -> list[DeadLetter]:
    sql = "SELECT name, pos, failed_ms, error FROM dead_letters "
    if name is None:
        rows = conn.execute(sql + "ORDER BY name, pos")
    else:
        rows = conn.execute(sql + "WHERE name = ? ORDER BY pos", (name,))
    return [DeadLetter(*r) for r in rows.fetchall()]


def read_cursors(conn: sqlite3.Connection) -> dict[str, int]:
    return {name: int(pos) for name, pos in
            conn.execute("SELECT name, pos FROM event_cursors ORDER BY name")}  # fmt: skip


def read_floor(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (FLOOR_KEY,)).fetchone()
    return floor_value(None if row is None else bytes(row[0]))


#: The tables that hold a consumer's rows, by its name (:meth:`Store.forget_consumer`).
FORGOTTEN = ("event_cursors", "dead_letters", "webhook_failing")


def forget(conn: sqlite3.Connection, name: str) -> bool:
    """Consumer ``name``'s cursor, dead letters and events being retried deleted, in the
    writer's transaction; whether there were any."""
    return sum(conn.execute(f"DELETE FROM {table} WHERE name = ?", (name,)).rowcount  # noqa: S608
               for table in FORGOTTEN) > 0


def trim(conn: sqlite3.Connection, upto: int, recorded_before: int, keep: Collection[int],
         limit: int) -> int:  # fmt: skip
    """One step of trimming (:mod:`vrmproto.store._trim`), in the writer's transaction: the
    events deleted, and the floor moved past them; how many."""
    floor = read_floor(conn)
    rows = conn.execute("SELECT pos, recorded_ms FROM events WHERE pos > ? ORDER BY pos LIMIT ?",
                        (floor, limit)).fetchall()  # fmt: skip
    below = conn.execute("SELECT pos, recorded_ms FROM events WHERE pos <= ?",
                         (floor,)).fetchall()  # fmt: skip
    plan = trim_plan(rows, below, floor=floor, upto=upto, head=read_head(conn),
                     recorded_before=recorded_before, keep=keep)  # fmt: skip
    if plan is None:
        return 0
    last, doomed = plan
    conn.executemany("DELETE FROM events WHERE pos = ?", [(pos,) for pos in doomed])
    conn.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE "
                 "SET value = excluded.value", (FLOOR_KEY, str(last).encode("ascii")))  # fmt: skip
    return len(doomed)
