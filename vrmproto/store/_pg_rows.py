"""PostgreSQL tables of the typed records (:mod:`vrmproto.store._rows`): DDL, the statements that
apply a :class:`~vrmproto.store.Commit`'s typed parts, and the queries.

The tables are the SQLite store's (:mod:`vrmproto.store._sqlite_rows`) with PostgreSQL types,
and records map to rows and back through the same functions (lists inside a record are JSON
text there and here), so both backends store the same values. Upserts go in as arrays
(``unnest``), reduced to the last row per key and sorted by key like every upsert of this store
(:mod:`vrmproto.store._pg_apply`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from vrmproto.store import _sqlite_rows as rows
from vrmproto.store._base import Commit

if TYPE_CHECKING:
    from asyncpg import Connection

__all__ = [
    "SCHEMA_V2",
    "SCHEMA_V4",
    "SCHEMA_V7",
    "TypedTable",
    "apply_typed",
    "drop_typed",
    "upsert",
]

SCHEMA_V2 = (
    """CREATE TABLE threads (
        thread bytea PRIMARY KEY, kind text NOT NULL, vendor_key bytea NOT NULL,
        name text NOT NULL, inbox text NOT NULL, history_url text NOT NULL,
        lifetime_ms bigint NOT NULL, generation integer NOT NULL, intent_id bytea,
        last_activity_ms bigint NOT NULL, last_problem text NOT NULL, types text)""",
    "CREATE INDEX threads_by_vendor_key ON threads (vendor_key)",
    """CREATE TABLE drafts (
        thread bytea NOT NULL, seq integer NOT NULL, kind text NOT NULL, payload bytea NOT NULL,
        PRIMARY KEY (thread, seq))""",
    """CREATE TABLE save_points (
        thread bytea NOT NULL, msg_hash bytea NOT NULL, length integer NOT NULL,
        head bytea NOT NULL, state bytea NOT NULL, after integer NOT NULL,
        PRIMARY KEY (thread, msg_hash))""",
    """CREATE TABLE held (
        thread bytea NOT NULL, field text NOT NULL, value text NOT NULL,
        category integer NOT NULL, source text NOT NULL, collected_ms bigint NOT NULL,
        purposes text NOT NULL, share bytea NOT NULL, expires_ms bigint,
        PRIMARY KEY (thread, field))""",
    "CREATE INDEX held_by_share ON held (thread, share)",
    "CREATE INDEX held_by_expiry ON held (expires_ms) WHERE expires_ms IS NOT NULL",
    """CREATE TABLE intents (
        intent_id bytea PRIMARY KEY, what text NOT NULL, place text, start_ms bigint,
        end_ms bigint, max_price_amount bigint, max_price_currency text,
        reply_by_ms bigint NOT NULL, sent_ms bigint NOT NULL, vendors text NOT NULL,
        declines text NOT NULL, constraints text NOT NULL, memberships text NOT NULL)""",
    "CREATE INDEX intents_by_sent ON intents (sent_ms, intent_id)",
    """CREATE TABLE offers (
        hash bytea PRIMARY KEY, intent_id bytea NOT NULL, thread bytea NOT NULL,
        vendor text NOT NULL, url text NOT NULL, vendor_key bytea NOT NULL,
        description text NOT NULL, price_amount bigint NOT NULL, price_currency text NOT NULL,
        valid_until_ms bigint NOT NULL, conditions text NOT NULL, accepts_terms text NOT NULL,
        received_ms bigint NOT NULL)""",
    "CREATE INDEX offers_by_intent ON offers (intent_id, received_ms, hash)",
    """CREATE TABLE share_notes (
        share bytea PRIMARY KEY, thread bytea NOT NULL, vendor text NOT NULL,
        fields text NOT NULL, purposes text NOT NULL, categories text NOT NULL,
        expires_ms bigint NOT NULL, shared_ms bigint NOT NULL, status text NOT NULL,
        withdrawn_ms bigint)""",
    "CREATE INDEX share_notes_by_thread ON share_notes (thread)",
    "CREATE INDEX outbox_by_thread ON outbox (thread, item_id)",
)
"""Schema version 2: the typed records, as the SQLite store's schema version 3."""

#: Version 3 → 4: an intentcast also published through relays keeps its index and relays
#: (:class:`~vrmproto.store.IntentRecord`, spec §15.2-4; SQLite's version 5).
SCHEMA_V4 = (
    "ALTER TABLE intents ADD COLUMN relay_index bigint, "
    "ADD COLUMN relays text NOT NULL DEFAULT '[]'",
)


#: Version 6 → 7: when the vendor's discovery document expires, per thread (spec §13.1-8;
#: SQLite's version 11, :mod:`vrmproto.store._migrate_v11`). A column without a default is
#: added to the catalogue only: no row is rewritten.
SCHEMA_V7 = ("ALTER TABLE threads ADD COLUMN doc_expires_ms bigint",)


class TypedTable:
    """One table's upsert through ``unnest``: the column list, the type of each column, the key.

    ``sql`` is ``INSERT INTO t (…) SELECT * FROM unnest($1::type[], …) ON CONFLICT (key) DO
    UPDATE SET …`` (or ``DO NOTHING``-free plain INSERT when ``key`` is empty).
    """

    def __init__(self, table: str, columns: str, types: str, key: str) -> None:
        names = [c.strip() for c in columns.split(",")]
        kinds = types.split()
        assert len(names) == len(kinds), table
        self.key_width = len(key.split(",")) if key else 0
        arrays = ", ".join(f"${n}::{kind}[]" for n, kind in enumerate(kinds, 1))
        sql = f"INSERT INTO {table} ({columns}) SELECT * FROM unnest({arrays})"  # noqa: S608
        if key:
            keys = {k.strip() for k in key.split(",")}
            sets = ", ".join(f"{n} = EXCLUDED.{n}" for n in names if n not in keys)
            sql += f" ON CONFLICT ({key}) DO UPDATE SET {sets}"
        self.sql = sql


THREADS = TypedTable(
    "threads",
    rows.THREAD_COLUMNS,
    "bytea text bytea text text text int8 int4 bytea int8 text text int8",
    "thread",
)
DRAFTS = TypedTable("drafts", rows.DRAFT_COLUMNS, "bytea int4 text bytea", "")
SAVE_POINTS = TypedTable(
    "save_points", rows.SAVE_POINT_COLUMNS, "bytea bytea int4 bytea bytea int4", "thread, msg_hash"
)
HELD = TypedTable(
    "held", rows.HELD_COLUMNS, "bytea text text int4 text int8 text bytea int8", "thread, field"
)
INTENTS = TypedTable(
    "intents",
    rows.INTENT_COLUMNS,
    "bytea text text int8 int8 int8 text int8 int8 text text text text int8 text",
    "intent_id",
)
OFFERS = TypedTable(
    "offers",
    rows.OFFER_COLUMNS,
    "bytea bytea bytea text text bytea text int8 text int8 text text int8",
    "hash",
)
NOTES = TypedTable(
    "share_notes", rows.NOTE_COLUMNS, "bytea bytea text text text text int8 int8 text int8", "share"
)


async def upsert(
    conn: Connection, table: TypedTable, records: Iterable[tuple[object, ...]]
) -> None:
    """Write ``records`` (rows in column order) to ``table``: for an upsert, the last row per key,
    sorted by key; for a plain insert, all of them in order."""
    found = list(records)
    if not found:
        return
    if table.key_width:
        last = {row[: table.key_width]: row for row in found}
        found = [last[k] for k in sorted(last)]
    await conn.execute(table.sql, *[list(column) for column in zip(*found, strict=True)])


async def apply_threads(conn: Connection, c: Commit) -> None:
    """Part 2 of a Commit (thread records), right after its relationships."""
    await upsert(conn, THREADS, (rows.thread_row(t) for t in c.threads))


async def _delete_pairs(conn: Connection, sql: str, pairs: Sequence[tuple[object, object]]) -> None:
    if pairs:
        first, second = zip(*pairs, strict=True)
        await conn.execute(sql, list(first), list(second))


async def apply_typed(conn: Connection, c: Commit) -> None:
    """Parts 10–20 of a Commit (see :class:`~vrmproto.store.Commit`), in order. A taken draft
    slot raises a unique violation (a :class:`~vrmproto.store.StoreConflict` to the caller)."""
    await _delete_pairs(
        conn,
        "DELETE FROM drafts WHERE (thread, seq) IN (SELECT * FROM unnest($1::bytea[], $2::int4[]))",
        c.drafts_done,
    )
    await upsert(conn, DRAFTS, (rows.draft_row(d) for d in c.drafts_add))
    if c.save_points_clear:
        await conn.execute(
            "DELETE FROM save_points WHERE thread = ANY($1::bytea[])", list(c.save_points_clear)
        )
    await _delete_pairs(
        conn,
        "DELETE FROM save_points WHERE (thread, msg_hash) IN "
        "(SELECT * FROM unnest($1::bytea[], $2::bytea[]))",
        c.save_points_done,
    )
    await upsert(conn, SAVE_POINTS, (rows.save_point_row(p) for p in c.save_points))
    await _delete_pairs(
        conn,
        "DELETE FROM held WHERE (thread, share) IN "
        "(SELECT * FROM unnest($1::bytea[], $2::bytea[]))",
        c.held_drop,
    )
    await upsert(conn, HELD, (rows.held_row(h) for h in c.held))
    await upsert(conn, INTENTS, (rows.intent_row(i) for i in c.intents))
    await upsert(conn, OFFERS, (rows.offer_row(o) for o in c.offers))
    await upsert(conn, NOTES, (rows.note_row(n) for n in c.share_notes))
    if c.intents_drop:
        dropped = list(c.intents_drop)
        await conn.execute("DELETE FROM offers WHERE intent_id = ANY($1::bytea[])", dropped)
        await conn.execute("DELETE FROM intents WHERE intent_id = ANY($1::bytea[])", dropped)


async def drop_typed(conn: Connection, threads: list[bytes]) -> None:
    """Part 21 for the typed tables: every row of ``threads`` but outbox items and share notes."""
    for table in ("threads", "drafts", "save_points", "held"):
        await conn.execute(f"DELETE FROM {table} WHERE thread = ANY($1::bytea[])", threads)  # noqa: S608


def clears_commute(commits: Sequence[Commit]) -> bool:
    """Whether clearing save points group-wise (every clear before every upsert) ends as
    clearing them Commit by Commit: no thread cleared by one Commit has its save points
    touched by another of the group."""
    touched: dict[bytes, int] = {}
    for i, c in enumerate(commits):
        for thread in {*c.save_points_clear, *(p.thread for p in c.save_points)}:
            j = touched.setdefault(thread, i)
            if j != i and (thread in c.save_points_clear or thread in commits[j].save_points_clear):
                return False
    return True


async def apply_group_typed(conn: Connection, commits: Sequence[Commit]) -> None:
    """The typed parts an inbox step writes (save points, held rows) for a group of Commits
    checked by :func:`clears_commute`."""
    clear = sorted({t for c in commits for t in c.save_points_clear})
    if clear:
        await conn.execute("DELETE FROM save_points WHERE thread = ANY($1::bytea[])", clear)
    await upsert(
        conn, SAVE_POINTS, (rows.save_point_row(p) for c in commits for p in c.save_points)
    )
    await upsert(conn, HELD, (rows.held_row(h) for c in commits for h in c.held))
