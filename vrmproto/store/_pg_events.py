"""PostgreSQL tables of the event feed (schema version 3): the SQLite store's
(:mod:`vrmproto.store._sqlite_events`) with PostgreSQL types, and its queries.

``pos`` is an identity column. Identity values are taken at insert and become visible at commit,
so two transactions could commit their events out of ``pos`` order and a reader at the later
one's ``pos`` would never see the earlier one's. So every transaction that writes events takes
one transaction-level advisory lock just before (held to its COMMIT): events become visible in
``pos`` order, whichever process wrote them. The lock is the schema's
(``_ORDER_AND_NOTIFY``). They are written last in a transaction, so the lock is held only for
the insert and the commit. The statement that takes it also notifies
every process's feed readers, when the transaction commits (:mod:`vrmproto.store._pg_notify`).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any

from vrmproto.store import _sqlite_events as lite
from vrmproto.store._base import Commit
from vrmproto.store._migrate_v15 import DELETED, DROPPED
from vrmproto.store._pg_notify import CHANNEL
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
    superseded_before,
)
from vrmproto.store._rows import DeadLetter, EventRecord, FailingEvent
from vrmproto.store._trim import FLOOR_KEY, floor_value, trim_plan

if TYPE_CHECKING:
    from asyncpg import Connection

__all__ = ["SCHEMA_V3", "SCHEMA_V5", "EventReads", "apply_events", "forget",
           "forget_dropped_before", "forget_superseded_before", "forget_threads",
           "migrate_10_to_11", "redact", "trim"]  # fmt: skip

SCHEMA_V3 = (
    """CREATE TABLE events (
        pos bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, id text NOT NULL UNIQUE,
        thread bytea NOT NULL, seq integer NOT NULL, kind text NOT NULL,
        msg_hash bytea NOT NULL, recorded_ms bigint NOT NULL, data bytea NOT NULL,
        personal bytea)""",
    "CREATE INDEX events_by_share ON events (thread, msg_hash)",
    "CREATE TABLE event_cursors (name text PRIMARY KEY, pos bigint NOT NULL)",
    """CREATE TABLE dead_letters (
        name text NOT NULL, pos bigint NOT NULL, failed_ms bigint NOT NULL,
        error text NOT NULL, PRIMARY KEY (name, pos))""",
)

#: Version 5 (SQLite's version 6; :func:`vrmproto.store._sqlite_events.migrate_5_to_6` says
#: why): no UNIQUE on ``id``, and only events that carry personal data indexed by share.
SCHEMA_V5 = (
    "ALTER TABLE events DROP CONSTRAINT IF EXISTS events_id_key",
    "DROP INDEX IF EXISTS events_by_share",
    "CREATE INDEX IF NOT EXISTS events_with_personal ON events (thread, msg_hash) "
    "WHERE personal IS NOT NULL",
)

#: What an event-writing transaction runs first: the advisory lock that orders the feed's
#: writers (held to its COMMIT), and the notification of its readers (:mod:`._pg_notify`). The
#: lock is the schema's: advisory locks belong to the database, and two vendors in two schemas
#: of one database have two feeds whose orders are their own, so neither waits for the other's
#: transactions. Two 32-bit keys (a constant, ``"vrm_"``, and the schema's name hashed): a key
#: space of its own, apart from the one 64-bit keys of :func:`._pg_schema.advisory_key`; two
#: schemas whose names hash alike only take turns, as all did before.
_ORDER_AND_NOTIFY = ("SELECT pg_advisory_xact_lock(1987210591, hashtext(current_schema())), "
                     "pg_notify($1, current_schema())")  # fmt: skip

_INSERT = (
    f"INSERT INTO events ({lite.EVENT_COLUMNS}) SELECT * FROM unnest($1::text[], $2::bytea[], "  # noqa: S608
    "$3::int4[], $4::text[], $5::bytea[], $6::int8[], $7::bytea[], $8::bytea[])"
)


async def redact(conn: Connection, held_drop: Sequence[tuple[bytes, bytes]]) -> None:
    """Part 15 for the feed: the personal data of the dropped shares' events goes, and the
    fields held under them from the address updates of their threads; then, of the fields they
    governed, those the vendor holds no more from every event of the thread
    (:func:`_forget_unheld`). The events' rows are locked as they are read, so a rewrite
    replaces what it read."""
    if not held_drop:
        return
    first, second = zip(*held_drop, strict=True)
    dropped = ("personal IS NOT NULL AND (thread, msg_hash) IN "
               "(SELECT * FROM unnest($1::bytea[], $2::bytea[]))")  # fmt: skip
    own = {(bytes(t), bytes(h)): (int(pos), carried(bytes(personal))) for t, h, pos, personal in
           await conn.fetch(  # each share's own event, before its personal data goes
               f"SELECT thread, msg_hash, pos, personal FROM events WHERE {dropped}",  # noqa: S608
               list(first), list(second))}  # fmt: skip
    await conn.execute(f"UPDATE events SET personal = NULL WHERE {dropped}",  # noqa: S608
                       list(first), list(second))  # fmt: skip
    since = [own.get(pair, (NEVER, frozenset()))[0] for pair in held_drop]
    plan = Redaction()
    governs: dict[bytes, set[str]] = {}  # per thread, the fields the dropped shares governed
    for (thread, _), (_, fields) in own.items():
        governs.setdefault(thread, set()).update(fields)
    for pos, personal, thread, share in await conn.fetch(
        "SELECT e.pos, e.personal, d.thread, d.share FROM events e JOIN unnest($1::bytea[], "
        "$2::bytea[], $3::bytea[], $4::int8[]) AS d(thread, share, needle, since) "
        "ON e.thread = d.thread WHERE e.personal IS NOT NULL AND e.kind = $5 AND "
        "(position(d.needle IN e.personal) > 0 "
        " OR (e.pos > d.since AND position($6::bytea IN e.personal) = 0)) FOR UPDATE OF e",
        list(first), list(second), [needle(share) for share in second], since, UPDATED, LEGACY,
    ):  # fmt: skip
        key = (bytes(thread), bytes(share))
        start, fields = own.get(key, (NEVER, frozenset()))
        plan.found(int(pos), bytes(personal), key[1], start, fields)
        governs.setdefault(key[0], set()).update(
            governed(bytes(personal), key[1], fields if pos > start else ()))
    await _rewrite(conn, plan.changes())
    await _forget_unheld(conn, governs)


async def _forget_unheld(conn: Connection, governs: dict[bytes, set[str]]) -> None:
    """Of the fields ``governs`` names per thread (those dropped shares governed), those the
    vendor holds no more (part 15 deleted their ``held`` rows just before) go from every event
    of the thread: the values the dropped ones had replaced (§12.10-1; :mod:`._redact`)."""
    threads = sorted(thread for thread, fields in governs.items() if fields)
    if not threads:
        return
    unheld = {thread: set(governs[thread]) for thread in threads}
    for thread, field in await conn.fetch(
            "SELECT thread, field FROM held WHERE thread = ANY($1::bytea[])", threads):
        unheld[bytes(thread)].discard(field)
    threads = [thread for thread in threads if unheld[thread]]
    if not threads:
        return
    await _rewrite(conn, [
        (int(pos), after) for pos, thread, personal in await conn.fetch(
            "SELECT pos, thread, personal FROM events WHERE thread = ANY($1::bytea[]) "
            "AND personal IS NOT NULL FOR UPDATE", threads)
        if (after := stripped(bytes(personal), unheld[bytes(thread)])) != bytes(personal)])


async def forget_dropped_before(conn: Connection) -> None:
    """Take the values of shares dropped before the feed named ``field_shares`` out of the
    address.updated events written before it (:func:`._redact.dropped_before`): once, in
    schema step 8 → 9 (:mod:`._pg_schema`), as SQLite's step to 13 does
    (:func:`._sqlite_events.forget_dropped_before`)."""
    first = {bytes(t): int(pos) for t, pos in await conn.fetch(
        "SELECT thread, min(pos) FROM events WHERE kind = 'data.shared' AND personal IS NULL "
        "GROUP BY thread")}  # fmt: skip
    if not first:
        return
    threads = list(first)
    sources, holds = await _sources_and_holds(conn, threads)
    legacy = [(int(pos), bytes(t), bytes(personal)) for pos, t, personal in await conn.fetch(
        "SELECT pos, thread, personal FROM events WHERE kind = $1 AND personal IS NOT NULL "
        "AND thread = ANY($2::bytea[]) AND position($3::bytea IN personal) = 0 FOR UPDATE",
        UPDATED, threads, LEGACY)]  # fmt: skip
    await _rewrite(conn, dropped_before(first, sources, holds, legacy))


async def _sources_and_holds(conn: Connection, threads: list[bytes]
                             ) -> tuple[dict[tuple[bytes, bytes], int],
                                        dict[tuple[bytes, str], bytes]]:  # fmt: skip
    """Of ``threads``: the position of each share's and address update's event, by (thread,
    message hash); and the share each held field is held under, by (thread, field)."""
    sources = {(bytes(t), bytes(h)): int(pos) for pos, t, h in await conn.fetch(
        "SELECT pos, thread, msg_hash FROM events WHERE kind IN ('data.shared', $1) "
        "AND thread = ANY($2::bytea[])", UPDATED, threads)}  # fmt: skip
    holds = {(bytes(t), field): bytes(share) for t, field, share in await conn.fetch(
        "SELECT thread, field, share FROM held WHERE thread = ANY($1::bytea[])",
        threads)}  # fmt: skip
    return sources, holds


async def forget_threads(conn: Connection, threads: Sequence[bytes]) -> None:
    """Part 21 for the feed, as SQLite's :func:`._sqlite_events.forget_threads`: the events of
    the kinds a relationship has before an agreement, of each deleted thread, keep their place
    and kind but not what the message said (§11.8-3), found through ``events_unagreed``."""
    if threads:
        await _rewrite_data(conn, [
            (int(pos), after) for pos, data in await conn.fetch(
                f"SELECT pos, data FROM events WHERE thread = ANY($1::bytea[]) "  # noqa: S608
                f"AND {UNAGREED_SQL} FOR UPDATE", list(threads))
            if (after := forgotten(bytes(data))) != bytes(data)])  # fmt: skip


async def _rewrite_data(conn: Connection, changed: Sequence[tuple[int, bytes]]) -> None:
    """Set the ``data`` of each event ``(pos, data)`` of ``changed``."""
    if changed:
        positions, datas = zip(*changed, strict=True)
        await conn.execute(
            "UPDATE events SET data = d.data FROM unnest($1::int8[], $2::bytea[]) "
            "AS d(pos, data) WHERE events.pos = d.pos", list(positions), list(datas))


async def forget_superseded_before(conn: Connection) -> None:
    """Take out of the feed the values that shares dropped before session 20 had replaced
    (:func:`._redact.superseded_before`): once, in schema step 10 → 11 (:mod:`._pg_schema`),
    as SQLite's step to 15 does (:mod:`._migrate_v15`)."""
    dropped: dict[bytes, list[int]] = {}
    for thread, pos in await conn.fetch(DROPPED):
        dropped.setdefault(bytes(thread), []).append(int(pos))
    if not dropped:
        return
    threads = list(dropped)
    sources, holds = await _sources_and_holds(conn, threads)
    found = [(int(pos), bytes(t), bytes(personal)) for pos, t, personal in await conn.fetch(
        "SELECT pos, thread, personal FROM events WHERE personal IS NOT NULL "
        "AND thread = ANY($1::bytea[]) FOR UPDATE", threads)]  # fmt: skip
    await _rewrite(conn, superseded_before(dropped, sources, holds, found))


async def migrate_10_to_11(conn: Connection) -> None:
    """Schema step 10 → 11 (SQLite's 14 → 15, :mod:`._migrate_v15`): the values shares dropped
    before had replaced go from the feed, ``events_unagreed`` is made, and the events of
    relationships deleted before forget what they said."""
    await forget_superseded_before(conn)
    await conn.execute(f"CREATE INDEX events_unagreed ON events (thread) WHERE {UNAGREED_SQL}")
    await forget_threads(conn, [bytes(t) for (t,) in await conn.fetch(DELETED)])


async def _rewrite(conn: Connection, changed: Sequence[tuple[int, bytes | None]]) -> None:
    """Set the ``personal`` of each event ``(pos, personal)`` of ``changed``."""
    if changed:
        positions, personals = zip(*changed, strict=True)
        await conn.execute(
            "UPDATE events SET personal = d.personal FROM unnest($1::int8[], $2::bytea[]) "
            "AS d(pos, personal) WHERE events.pos = d.pos",
            list(positions), list(personals),
        )  # fmt: skip


async def apply_events(conn: Connection, commits: Sequence[Commit]) -> None:
    """Parts 23–28 of ``commits``, in order (events in Commit order)."""
    events = [lite.event_row(e) for c in commits for e in c.events]
    if events:  # in order; and every process's feed readers wake at COMMIT (_pg_notify)
        await conn.execute(_ORDER_AND_NOTIFY, CHANNEL)
        await conn.execute(_INSERT, *(list(col) for col in zip(*events, strict=True)))
    for c in commits:
        if not lite.has_event_parts(c):
            continue
        await conn.executemany(
            "INSERT INTO event_cursors (name, pos) VALUES ($1, $2) "
            "ON CONFLICT (name) DO UPDATE SET pos = excluded.pos",
            c.event_cursors,
        )
        await conn.executemany(
            "DELETE FROM dead_letters WHERE name = $1 AND pos = $2", c.dead_letters_done
        )
        await conn.executemany(
            "INSERT INTO dead_letters (name, pos, failed_ms, error) VALUES ($1, $2, $3, $4) "
            "ON CONFLICT (name, pos) DO UPDATE SET failed_ms = excluded.failed_ms, "
            "error = excluded.error",
            [(d.name, d.pos, d.failed_ms, d.error) for d in c.dead_letters],
        )
        await conn.executemany(
            "DELETE FROM webhook_failing WHERE name = $1 AND pos = $2", c.failing_done
        )
        await conn.executemany(lite.UPSERT_FAILING, [lite.failing_row(f) for f in c.failing])


class EventReads:
    """The feed's queries of :class:`~vrmproto.store.PostgresStore`."""

    async def _rows(self, sql: str, *args: object) -> list[tuple[Any, ...]]:
        raise NotImplementedError  # the store's

    async def events(
        self, after: int = 0, limit: int = 100, *, thread: bytes | None = None
    ) -> list[EventRecord]:
        after = min(after, lite.LAST_POS)  # after every event (lite.LAST_POS)
        if thread is None:
            found = await self._rows(
                lite.SELECT_EVENT + "WHERE pos > $1 ORDER BY pos LIMIT $2", after, limit
            )
        else:
            found = await self._rows(
                lite.SELECT_EVENT + "WHERE pos > $1 AND thread = $2 ORDER BY pos LIMIT $3",
                after, thread, limit,
            )  # fmt: skip
        return [lite.event_record(row) for row in found]

    async def event(self, event_id: str) -> EventRecord | None:
        found = await self._rows(  # the newest first, along the primary key: no index on ids
            lite.SELECT_EVENT + "WHERE id = $1 ORDER BY pos DESC LIMIT 1", event_id)
        return lite.event_record(found[0]) if found else None

    async def event_cursor(self, name: str) -> int:
        found = await self._rows("SELECT pos FROM event_cursors WHERE name = $1", name)
        return int(found[0][0]) if found else 0

    async def feed_head(self) -> int:
        found = await self._rows("SELECT max(pos) FROM events")  # along the primary key
        return int(found[0][0] or 0)

    async def dead_letters(self, name: str | None = None) -> list[DeadLetter]:
        sql = "SELECT name, pos, failed_ms, error FROM dead_letters "
        if name is None:
            found = await self._rows(sql + "ORDER BY name, pos")
        else:
            found = await self._rows(sql + "WHERE name = $1 ORDER BY pos", name)
        return [DeadLetter(*row) for row in found]

    async def failing(self, name: str | None = None) -> list[FailingEvent]:
        if name is None:
            found = await self._rows(lite.SELECT_FAILING + "ORDER BY name, pos")
        else:
            found = await self._rows(lite.SELECT_FAILING + "WHERE name = $1 ORDER BY pos", name)
        return [lite.failing_record(row) for row in found]

    async def event_cursors(self) -> dict[str, int]:
        found = await self._rows("SELECT name, pos FROM event_cursors ORDER BY name")
        return {name: int(pos) for name, pos in found}

    async def feed_floor(self) -> int:
        found = await self._rows("SELECT value FROM meta WHERE key = $1", FLOOR_KEY)
        return floor_value(bytes(found[0][0]) if found else None)


async def forget(conn: Connection, name: str) -> bool:
    """Consumer ``name``'s cursor, dead letters and events being retried deleted, in one
    transaction on ``conn``; whether there were any."""
    async with conn.transaction():
        deleted = [await conn.execute(f"DELETE FROM {table} WHERE name = $1", name)  # noqa: S608
                   for table in lite.FORGOTTEN]  # fmt: skip
    return any(int(status.split()[-1]) for status in deleted)


async def trim(conn: Connection, upto: int, recorded_before: int, keep: Collection[int],
               limit: int) -> int:  # fmt: skip
    """One step of trimming (:mod:`vrmproto.store._trim`) in one transaction on ``conn``: the
    events deleted, and the floor moved past them; how many. The floor's row is locked first
    (``FOR UPDATE``), so two processes trimming at once take turns."""
    async with conn.transaction():
        await conn.execute("INSERT INTO meta (key, value) VALUES ($1, '0') "
                           "ON CONFLICT (key) DO NOTHING", FLOOR_KEY)  # fmt: skip
        stored = await conn.fetchval("SELECT value FROM meta WHERE key = $1 FOR UPDATE",
                                     FLOOR_KEY)  # fmt: skip
        floor = floor_value(bytes(stored))
        rows = [(int(p), int(r)) for p, r in await conn.fetch(
            "SELECT pos, recorded_ms FROM events WHERE pos > $1 ORDER BY pos LIMIT $2",
            floor, limit)]  # fmt: skip
        below = [(int(p), int(r)) for p, r in await conn.fetch(
            "SELECT pos, recorded_ms FROM events WHERE pos <= $1", floor)]  # fmt: skip
        head = int(await conn.fetchval("SELECT coalesce(max(pos), 0) FROM events"))
        plan = trim_plan(rows, below, floor=floor, upto=upto, head=head,
                         recorded_before=recorded_before, keep=keep)  # fmt: skip
        if plan is None:
            return 0
        last, doomed = plan
        await conn.execute("DELETE FROM events WHERE pos = ANY($1::bigint[])", doomed)
        await conn.execute("UPDATE meta SET value = $2 WHERE key = $1", FLOOR_KEY,
                           str(last).encode("ascii"))  # fmt: skip
        return len(doomed)
