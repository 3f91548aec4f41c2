"""The event feed in each store: schema migration steps, and a reader following a feed written
by concurrent writers never skips an event (issue 14)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import _postgres
from _vendor_proc import ACCEPTED, VENDOR_SEED, Customer, Reply

from vrmproto._keys import Identity
from vrmproto.server import Endpoint, ReferencePolicy
from vrmproto.server._events import FeedEvent
from vrmproto.store import Commit, PostgresConfig, PostgresStore, SQLiteStore, Store
from vrmproto.store._pg_schema import SCHEMA_VERSION as SCHEMA_VERSION_PG
from vrmproto.store._sqlite import _MIGRATIONS, SCHEMA_VERSION
from vrmproto.testing.store_contract import entry, event, rel

postgres_cluster = _postgres.postgres_cluster
postgres_config = _postgres.postgres_config
T1 = b"\x01" * 16
VENDOR = Identity(VENDOR_SEED)


async def test_a_version_3_sqlite_file_gains_an_empty_feed(tmp_path: Path) -> None:
    path = tmp_path / "v3.db"
    async with await SQLiteStore.open(path) as s:
        await s.commit(Commit(relationships=(rel(T1),), history=(entry(T1, 0),)))
    conn = sqlite3.connect(path, isolation_level=None)  # back to v3: as an older vrmproto left it
    for table in ("events", "event_cursors", "dead_letters"):
        conn.execute(f"DROP TABLE {table}")
    for column in ("relay_index", "relays"):  # schema 5's
        conn.execute(f"ALTER TABLE intents DROP COLUMN {column}")
    conn.execute("ALTER TABLE threads DROP COLUMN doc_expires_ms")  # schema 11's
    conn.execute("DROP TABLE webhook_failing")  # schema 12's
    conn.execute("PRAGMA user_version = 3")
    conn.close()
    assert len(_MIGRATIONS) == SCHEMA_VERSION == 15
    async with await SQLiteStore.open(path) as s:
        assert (await s.pragmas())["user_version"] == 15
        assert await s.history(T1) == [entry(T1, 0)]
        assert await s.events() == []
        await s.commit(Commit(events=(event(T1, 0),)))
        assert [e.pos for e in await s.events()] == [1]


async def test_a_version_2_postgres_schema_gains_an_empty_feed(
    postgres_config: PostgresConfig,
) -> None:
    import asyncpg  # noqa: PLC0415 -- only once the cluster fixture has checked it exists

    from vrmproto.store._pg_schema import migrate  # noqa: PLC0415

    conn = await asyncpg.connect(postgres_config.dsn)
    try:
        assert await migrate(conn, postgres_config.schema, target=2) == 2
    finally:
        await conn.close()
    async with await PostgresStore.open(postgres_config) as s:
        assert (await s.settings())["schema_version"] == SCHEMA_VERSION_PG
        await s.commit(Commit(relationships=(rel(T1),), events=(event(T1, 0),)))
        assert [e.seq for e in await s.events()] == [0]


async def _follow_while_writing(store: Store, customers: int) -> list[FeedEvent]:
    """``customers`` open relationships concurrently while a reader follows the feed."""
    ep = Endpoint(VENDOR, store=store, policy=ReferencePolicy(accepts_terms=ACCEPTED))
    seen: list[FeedEvent] = []
    done = asyncio.Event()

    async def read() -> None:
        async for e in ep.events():
            seen.append(e)
            if len(seen) == 2 * customers:
                done.set()

    async def one(c: Customer) -> None:
        msg = c.offer(*ACCEPTED)
        r = await ep.handle_inbox(msg.envelope)
        c.absorb(Reply(r.status, r.body, dict(r.headers)), msg)

    reader = asyncio.create_task(read())
    await asyncio.gather(*(one(Customer(VENDOR)) for _ in range(customers)))
    await asyncio.wait_for(done.wait(), 20)
    reader.cancel()
    return seen


async def test_a_reader_misses_nothing_written_concurrently_to_sqlite(tmp_path: Path) -> None:
    async with await SQLiteStore.open(tmp_path / "v.db") as s:
        seen = await _follow_while_writing(s, 40)
    assert len({e.id for e in seen}) == len(seen) == 80


async def test_a_reader_misses_nothing_written_concurrently_to_postgres(
    postgres_config: PostgresConfig,
) -> None:
    """Two writer connections commit at once; events still become visible in feed order (the
    advisory lock of :mod:`vrmproto.store._pg_events`), so a reader's cursor skips none."""
    async with await PostgresStore.open(postgres_config) as s:
        seen = await _follow_while_writing(s, 40)
    assert len({e.id for e in seen}) == len(seen) == 80
    assert [e.pos for e in seen] == sorted(e.pos for e in seen)


async def test_a_version_4_sqlite_file_keeps_its_intents_as_sent_over_http(
    tmp_path: Path,
) -> None:
    """Schema 5 adds the relayed intentcast's index and relays (spec §15.2-4) to ``intents``;
    the intentcasts of a version 4 file become HTTP-only ones."""
    from vrmproto.testing.store_contract import intent  # noqa: PLC0415

    path = tmp_path / "v4.db"
    sent = intent(2)
    async with await SQLiteStore.open(path) as s:
        await s.commit(Commit(intents=(sent,)))
    conn = sqlite3.connect(path, isolation_level=None)
    for column in ("relay_index", "relays"):
        conn.execute(f"ALTER TABLE intents DROP COLUMN {column}")
    conn.execute("ALTER TABLE threads DROP COLUMN doc_expires_ms")  # schema 11's
    conn.execute("DROP TABLE webhook_failing")  # schema 12's
    conn.execute("PRAGMA user_version = 4")
    conn.close()
    async with await SQLiteStore.open(path) as s:
        assert await s.intents() == [sent]
        relayed = intent(3)
        await s.commit(Commit(intents=(relayed,)))
        assert await s.get_intent(relayed.intent_id) == relayed


async def test_a_version_5_sqlite_file_indexes_only_events_with_personal_data(
    tmp_path: Path,
) -> None:
    """Schema 6 drops the events' UNIQUE id (its index keyed by random ids) keeping every
    position and the counter, and replaces the index of every event by share with one of the
    events that carry personal data, the only ones a dropped share's redaction changes;
    redaction uses it."""
    path = tmp_path / "v5.db"
    plain, personal = event(T1, 0), event(T1, 1, personal=b'{"email":"a@example.org"}')
    async with await SQLiteStore.open(path) as s:
        await s.commit(Commit(events=(plain, personal)))
    conn = sqlite3.connect(path, isolation_level=None)  # back to v5, as an older vrmproto left it
    conn.execute("DROP INDEX events_with_personal")
    conn.execute("CREATE INDEX events_by_share ON events(thread, msg_hash)")
    conn.execute("ALTER TABLE threads DROP COLUMN doc_expires_ms")  # schema 11's
    conn.execute("DROP TABLE webhook_failing")  # schema 12's
    conn.execute("PRAGMA user_version = 5")
    conn.close()
    async with await SQLiteStore.open(path) as s:
        assert (await s.pragmas())["user_version"] == 15
        await s.commit(Commit(held_drop=((T1, personal.msg_hash),)))
        assert [e.personal for e in await s.events()] == [None, None]
        assert [e.pos for e in await s.events()] == [1, 2]  # every position kept
        await s.commit(Commit(events=(event(T1, 3),)))
        assert (await s.events())[-1].pos == 3  # and the counter: none is reused
        assert await s.event(personal.id) == (await s.events())[1]
    conn = sqlite3.connect(path)
    try:
        indexes = dict(conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events'"
        ).fetchall())  # fmt: skip
        assert "events_by_share" not in indexes
        assert "WHERE personal IS NOT NULL" in indexes["events_with_personal"]
        table = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'events'").fetchone()[0]
        assert "UNIQUE" not in table  # no index keyed by the random event ids
        conn.execute("INSERT INTO events (id, thread, seq, kind, msg_hash, recorded_ms, data) "
                     "VALUES ('evt_x', ?, 2, 'terms.offered', ?, 1, '{}')",
                     (T1, b"\x02" * 32))  # fmt: skip
        in_index = conn.execute(
            "SELECT count(*) FROM events INDEXED BY events_with_personal "
            "WHERE thread = ? AND msg_hash IS NOT NULL AND personal IS NOT NULL", (T1,)
        ).fetchone()[0]  # fmt: skip
        assert in_index == 0  # neither the redacted one nor the new plain one
        plan = " ".join(str(row) for row in conn.execute(
            "EXPLAIN QUERY PLAN UPDATE events SET personal = NULL "
            "WHERE thread = ? AND msg_hash = ? AND personal IS NOT NULL",
            (T1, b"\x01" * 32)))  # fmt: skip
        assert "events_with_personal" in plan
    finally:
        conn.close()


async def test_a_version_4_postgres_schema_indexes_only_events_with_personal_data(
    postgres_config: PostgresConfig,
) -> None:
    import asyncpg  # noqa: PLC0415 -- only once the cluster fixture has checked it exists

    from vrmproto.store._pg_schema import migrate  # noqa: PLC0415

    conn = await asyncpg.connect(postgres_config.dsn)
    try:
        assert await migrate(conn, postgres_config.schema, target=4) == 4
        personal = event(T1, 1, personal=b'{"email":"a@example.org"}')
        async with await PostgresStore.open(postgres_config) as s:
            assert (await s.settings())["schema_version"] == SCHEMA_VERSION_PG == 11
            await s.commit(Commit(events=(event(T1, 0), personal)))
            await s.commit(Commit(held_drop=((T1, personal.msg_hash),)))
            assert [e.personal for e in await s.events()] == [None, None]
        indexes = dict(await conn.fetch(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = $1 "
            "AND tablename = 'events'", postgres_config.schema))  # fmt: skip
        assert "events_by_share" not in indexes
        assert "WHERE (personal IS NOT NULL)" in indexes["events_with_personal"]
        assert not [name for name in indexes if name.startswith("events_id")]
    finally:
        await conn.close()
