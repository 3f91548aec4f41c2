"""A share withdrawn or expired before the upgrade keeps no value in the feed: the schema step
that upgrades a store (SQLite 12 → 13, PostgreSQL 8 → 9) takes the values it may have governed
out of the address.updated events written before (docs/events.md, "Personal data";
:func:`vrmproto.store._redact.dropped_before`).

Before: the store's ``held_drop`` took a dropped share's fields out of the later updates only
when the share was dropped after the upgrade; one dropped before (its data.shared event's
``personal`` already NULL) left its updated values in those events for ever.

The file is as vrmproto before session 19 left it: events without ``field_shares``, the dropped
share's own event without ``personal``, its held rows gone.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import _postgres
from _sqlite_versions import sqlite_at_version

from vrmproto.store import EventRecord, PostgresConfig, PostgresStore, SQLiteStore
from vrmproto.store import _sqlite_events as feed
from vrmproto.store import _sqlite_rows as typed
from vrmproto.store._pg_schema import SCHEMA_VERSION, migrate
from vrmproto.testing.store_contract import T1, T2, event, held

postgres_cluster = _postgres.postgres_cluster
postgres_config = _postgres.postgres_config


def _json(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()


def _update(thread: bytes, seq: int, fields: dict[str, str]) -> EventRecord:
    """An address.updated event as the feed wrote it before ``field_shares``."""
    personal = _json({"fields": fields, "field_purposes": {name: [2] for name in fields},
                      "purposes": [2]})  # fmt: skip
    return dataclasses.replace(event(thread, seq), kind="address.updated", personal=personal)


SHARED = _json({"expires": 9_000, "fields": {"email": "old@example.org"}, "purposes": [2]})
#: T1: an update before the share, a share of the name (still held), the share of the email
#: (dropped before the upgrade), an update of the email and the name that also gave a phone
#: (held since, under no share) and a city, a later update that gave the city again (after the
#: share went) and one of the phone alone. T2: no share dropped.
EVENTS = (
    _update(T1, 0, {"email": "first@example.org"}),
    event(T1, 1, personal=_json({"expires": 9_000, "fields": {"name": "Ada"}, "purposes": [2]})),
    event(T1, 2, personal=None),
    _update(T1, 3, {"email": "new@example.org", "name": "Ada L", "phone": "+1 555 0100",
                    "city": "Nice"}),
    _update(T1, 4, {"city": "Lyon"}),
    _update(T1, 5, {"phone": "+1 555 0199"}),
    event(T2, 0, personal=SHARED),
    _update(T2, 1, {"email": "kept@example.org"}),
)
HELD = (
    held(T1, "name", EVENTS[1].msg_hash, 9_000, "Ada L"),
    held(T1, "phone", EVENTS[3].msg_hash, None, "+1 555 0199"),
    held(T1, "city", EVENTS[4].msg_hash, None, "Lyon"),
    held(T2, "email", EVENTS[6].msg_hash, 9_000, "kept@example.org"),
)


def expected() -> list[bytes | None]:
    """The stored ``personal`` of :data:`EVENTS` after the upgrade."""
    out: list[bytes | None] = [e.personal for e in EVENTS]
    # the dropped share's email goes; so does the city, held under no share only since seq 4;
    # the name, held under the live share since before, and the phone, given there, stay
    out[3] = _json({"fields": {"name": "Ada L", "phone": "+1 555 0100"},
                    "field_purposes": {"name": [2], "phone": [2]}, "purposes": [2]})  # fmt: skip
    # and the first email, which the dropped share replaced and no value held since: the
    # step to 15 (PostgreSQL's 11, tests/test_s21_store_superseded_upgrade.py)
    out[0] = None
    return out


def _stored(events: Sequence[EventRecord]) -> list[bytes | None]:
    by_hash = {e.msg_hash: e.personal for e in events}
    return [by_hash[e.msg_hash] for e in EVENTS]


def _fill_v12(conn: sqlite3.Connection) -> None:
    conn.execute("BEGIN")
    conn.executemany(feed.INSERT_EVENTS + "(?, ?, ?, ?, ?, ?, ?, ?)",
                     [feed.event_row(e) for e in EVENTS])  # fmt: skip
    conn.executemany(f"INSERT INTO held ({typed.HELD_COLUMNS}) VALUES ({', '.join('?' * 9)})",
                     [typed.held_row(h) for h in HELD])  # fmt: skip
    conn.execute("COMMIT")


async def test_sqlite_upgrade_forgets_values_of_shares_dropped_before(tmp_path: Path) -> None:
    path = tmp_path / "v12.db"
    conn = sqlite_at_version(path, 12)
    try:
        _fill_v12(conn)
    finally:
        conn.close()
    async with await SQLiteStore.open(path) as s:
        assert _stored(await s.events(0, 100)) == expected()
        assert [h.field for h in await s.held(T1)] == ["city", "name", "phone"]  # kept


async def test_postgres_upgrade_forgets_values_of_shares_dropped_before(
    postgres_config: PostgresConfig,
) -> None:
    import asyncpg  # noqa: PLC0415 -- only once the cluster fixture has checked it exists

    config = postgres_config
    conn = await asyncpg.connect(config.dsn, server_settings={"search_path": config.schema})
    try:
        assert await migrate(conn, config.schema, target=8) == 8
        await conn.executemany(
            f"INSERT INTO events ({feed.EVENT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            [feed.event_row(e) for e in EVENTS])  # fmt: skip
        await conn.executemany(
            f"INSERT INTO held ({typed.HELD_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            [typed.held_row(h) for h in HELD])  # fmt: skip
    finally:
        await conn.close()
    async with await PostgresStore.open(config) as s:
        assert (await s.settings())["schema_version"] == SCHEMA_VERSION == 11
        assert _stored(await s.events(0, 100)) == expected()
        assert [h.field for h in await s.held(T1)] == ["city", "name", "phone"]
