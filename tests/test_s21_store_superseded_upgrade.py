"""A vendor upgrading from a vrmproto before session 20 gets a feed without the values that
its withdrawn or expired shares had replaced (docs/events.md, "Personal data").

Since 8bab3bf a dropped share takes out of the feed the values it replaced of the fields the
vendor then holds no more, so a reader of the whole feed (a CRM resynchronised from scratch, a
webhook added later) ends with what the vendor holds. A share dropped before the upgrade had
not: the old phone that a withdrawn share replaced stayed in the address update that gave it,
for every reader from the feed's start. The schema step SQLite 14 → 15 (PostgreSQL 10 → 11)
takes them out once (``vrmproto/store/_migrate_v15.py``).

``data/s20-superseded/vendor.db`` was written by the code before 8bab3bf (schema 13;
``make_vendor_db.py`` says how): one customer per scenario. PostgreSQL gets the same rows in a
schema left at version 10.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import _postgres
import pytest
from test_s20_crm_superseded import replayed

from vrmproto.server._events import follow
from vrmproto.store import PostgresConfig, PostgresStore, SQLiteStore, Store
from vrmproto.store import _redact as redact_module
from vrmproto.store._pg_schema import SCHEMA_VERSION as PG_VERSION
from vrmproto.store._sqlite import SCHEMA_VERSION

postgres_cluster = _postgres.postgres_cluster
postgres_config = _postgres.postgres_config

DATA = Path(__file__).parent / "data" / "s20-superseded"
FIXTURE = json.loads((DATA / "threads.json").read_text())
NOW: int = FIXTURE["now"]
THREADS = {name: bytes.fromhex(t) for name, t in FIXTURE["threads"].items()}


def old_rows() -> dict[str, list[tuple[Any, ...]]]:
    """The fixture's events and held rows, as the old code left them."""
    conn = sqlite3.connect(DATA / "vendor.db")
    try:
        return {
            "events": conn.execute(
                "SELECT pos, id, thread, seq, kind, msg_hash, recorded_ms, data, personal "
                "FROM events ORDER BY pos").fetchall(),
            "held": conn.execute(
                "SELECT thread, field, value, category, source, collected_ms, purposes, share, "
                "expires_ms FROM held ORDER BY thread, field").fetchall(),
        }  # fmt: skip
    finally:
        conn.close()


async def feed(store: Store, thread: bytes | None = None) -> list[dict[str, Any]]:
    return [e.as_json() async for e in follow(store, None, 0, clock=lambda: NOW)
            if thread is None or e.thread == thread]  # fmt: skip


async def check_upgraded(store: Store) -> None:
    """What a reader of the upgraded feed from its start gets."""
    whole = json.dumps(await feed(store))
    for value in FIXTURE["superseded"]:
        assert value not in whole, f"{value} stayed in the feed"
    for name, thread in THREADS.items():
        holds = {h.field: h.value for h in await store.held(thread)}
        assert replayed(await feed(store, thread)) == holds, name
    still = [e["personal"]["fields"] for e in await feed(store, THREADS["still_held"])
             if e["kind"] == "address.updated"]  # fmt: skip
    assert still == [{"city": "Paris"}, {"city": "Lyon"}]  # nothing dropped replaced them
    (earlier,) = [e["personal"] for e in await feed(store, THREADS["earlier_share"])
                  if e["personal"] is not None]  # fmt: skip
    assert earlier["fields"] == {"city": "Lyon"}  # the live share keeps what is held
    again = [e["personal"] for e in await feed(store, THREADS["held_again"])
             if e["kind"] == "address.updated"]  # fmt: skip
    assert again[0] is None
    assert again[1]["fields"] == {"phone": "+1 801 555 0103"}


@pytest.fixture
def old_file(tmp_path: Path) -> Path:
    path = tmp_path / "vendor.db"
    shutil.copyfile(DATA / "vendor.db", path)
    return path


def test_the_fixture_holds_what_the_old_code_left() -> None:
    """The fixture is what the test says: the values are in the feed before the upgrade."""
    personal = json.dumps([str(e[8]) for e in old_rows()["events"]])
    for value in FIXTURE["superseded"]:
        assert value in personal


async def test_sqlite_upgrade_takes_the_superseded_values_out(old_file: Path) -> None:
    async with await SQLiteStore.open(old_file) as s:
        assert (await s.pragmas())["user_version"] == SCHEMA_VERSION == 15
        await check_upgraded(s)
        upgraded = await s.events(limit=1_000)
    async with await SQLiteStore.open(old_file) as s:  # opened again: nothing more changes
        assert await s.events(limit=1_000) == upgraded


async def test_a_step_that_fails_half_way_leaves_the_feed_as_it_was(
    old_file: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The step is one transaction: a crash or error in it leaves version 14 and every event
    as it was (none half rewritten), and the next open runs it whole."""
    calls = 0
    real = redact_module.stripped

    def failing(personal: bytes, gone: Any) -> bytes | None:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise RuntimeError("power cut")
        return real(personal, gone)

    monkeypatch.setattr(redact_module, "stripped", failing)
    with pytest.raises(RuntimeError, match="power cut"):
        await SQLiteStore.open(old_file)
    assert calls == 3
    conn = sqlite3.connect(old_file)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 14
        kept = conn.execute("SELECT pos, personal FROM events ORDER BY pos").fetchall()
    finally:
        conn.close()
    assert kept == [(row[0], row[8]) for row in old_rows()["events"]]
    monkeypatch.undo()
    async with await SQLiteStore.open(old_file) as s:
        await check_upgraded(s)


@pytest.fixture
async def old_schema(postgres_config: PostgresConfig) -> PostgresConfig:
    """A PostgreSQL schema at version 10 holding the fixture's events and held rows."""
    import asyncpg  # noqa: PLC0415 -- the cluster fixture has checked it exists

    from vrmproto.store._pg_schema import migrate  # noqa: PLC0415

    rows = old_rows()
    conn = await asyncpg.connect(postgres_config.dsn)
    try:
        assert await migrate(conn, postgres_config.schema, target=10) == 10
        schema = postgres_config.schema
        await conn.executemany(
            f"INSERT INTO {schema}.events (pos, id, thread, seq, kind, msg_hash, recorded_ms, "
            "data, personal) OVERRIDING SYSTEM VALUE VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            rows["events"])  # fmt: skip
        await conn.executemany(
            f"INSERT INTO {schema}.held (thread, field, value, category, source, collected_ms, "
            "purposes, share, expires_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            rows["held"])  # fmt: skip
    finally:
        await conn.close()
    return postgres_config


async def test_postgres_upgrade_takes_the_superseded_values_out(
    old_schema: PostgresConfig,
) -> None:
    async with await PostgresStore.open(old_schema) as s:
        assert (await s.settings())["schema_version"] == PG_VERSION == 11
        await check_upgraded(s)
