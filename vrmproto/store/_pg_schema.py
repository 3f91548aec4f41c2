"""The PostgreSQL store's schema and its versioned migrations.

Everything lives in one PostgreSQL schema (``vrm`` unless configured), so a vendor's database can
hold other things beside it and two stores can share a server. ``schema_version`` holds one row:
the version of the tables. :func:`migrate` brings an older schema up one version per
transaction, each step under a transaction-level advisory lock so that server processes starting
at once do not run a step twice, and refuses a schema newer than this code knows.

Version 1 is the layout of :class:`~vrmproto.store.SQLiteStore`'s version 2 (see
:mod:`vrmproto.store._sqlite` for why ``history`` keeps only ``UNIQUE (thread, idx)``); version 2
adds the typed records' tables (:mod:`vrmproto.store._pg_rows`, SQLite's version 3); version 3
the event feed's (:mod:`vrmproto.store._pg_events`, SQLite's version 4); version 4 the relayed
intentcast's ``intents.relay_index`` and ``relays`` (SQLite's version 5); version 5 indexes by
share only the events that carry personal data (SQLite's version 6); version 6 indexes a
customer's relationships by URL and by name (partial indexes; an update that keeps them is a
HOT update, PostgreSQL comparing the values) and drops ``held_by_share`` (SQLite's version 7,
:mod:`vrmproto.store._rel_query`); version 7 adds ``threads.doc_expires_ms``, when the vendor's
discovery document expires (SQLite's version 11, :mod:`vrmproto.store._migrate_v11`); version 8
the events a webhook is retrying (SQLite's version 12, :mod:`vrmproto.store._migrate_v12`); version
9 changes no table: it takes the values of shares dropped before out of the feed's older address
updates, once (:func:`._pg_events.forget_dropped_before`, as SQLite's version 13 does); version
10 changes no table either: from it on ``relationships.data`` may hold the core's stored state
form, which older code cannot read (SQLite's version 14); version 11 takes out of the feed, once,
the values that shares dropped before session 20 had replaced and what deleted relationships said,
and indexes by thread the events of the kinds a relationship has before an agreement
(:func:`._pg_events.migrate_10_to_11`, SQLite's version 15). All use
PostgreSQL types: ``bytea`` for bytes, ``bigint`` for milliseconds, an identity column for outbox
ids (never reused). The columns holding envelopes and opaque state are ``STORAGE EXTERNAL``:
signed msgpack and ciphertext do not compress, so trying costs CPU for nothing, and what
:meth:`~vrmproto.store.PostgresStore.usage` reports is what is stored.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from vrmproto.store._base import SchemaTooNew, StoreError
from vrmproto.store._migrate_v12 import PG_SCHEMA_V8
from vrmproto.store._pg_events import (
    SCHEMA_V3,
    SCHEMA_V5,
    forget_dropped_before,
    migrate_10_to_11,
)
from vrmproto.store._pg_rows import SCHEMA_V2, SCHEMA_V4, SCHEMA_V7
from vrmproto.store._rel_query import INDEXES as REL_INDEXES

if TYPE_CHECKING:
    from asyncpg import Connection

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "advisory_key", "check_schema_name", "migrate"]

_V1 = (
    """CREATE TABLE relationships (
        thread bytea PRIMARY KEY, role text NOT NULL, local_key bytea NOT NULL,
        peer_key bytea NOT NULL, state text NOT NULL, data bytea NOT NULL, label text NOT NULL,
        peer_url text NOT NULL, updated_ms bigint NOT NULL)""",
    "CREATE INDEX relationships_by_local_key ON relationships (local_key)",
    "CREATE INDEX relationships_by_peer_key ON relationships (peer_key)",
    """CREATE TABLE history (
        thread bytea NOT NULL REFERENCES relationships (thread), idx integer NOT NULL,
        msg_hash bytea NOT NULL, entry_hash bytea NOT NULL, envelope bytea NOT NULL,
        direction text NOT NULL, recorded_ms bigint NOT NULL,
        PRIMARY KEY (thread, idx))""",
    """CREATE TABLE dedupe (
        sender bytea NOT NULL, msg_id bytea NOT NULL, msg_hash bytea NOT NULL,
        response bytea NOT NULL, expires_ms bigint NOT NULL, PRIMARY KEY (sender, msg_id))""",
    "CREATE INDEX dedupe_by_expiry ON dedupe (expires_ms)",
    """CREATE TABLE outbox (
        item_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, destination text NOT NULL,
        thread bytea NOT NULL, msg_hash bytea NOT NULL, envelope bytea NOT NULL,
        attempts integer NOT NULL, next_attempt_ms bigint NOT NULL, last_error text NOT NULL,
        created_ms bigint NOT NULL)""",
    "CREATE INDEX outbox_by_due ON outbox (next_attempt_ms, item_id)",
    "CREATE TABLE meta (key text PRIMARY KEY, value bytea NOT NULL)",
    "ALTER TABLE relationships ALTER COLUMN data SET STORAGE EXTERNAL",
    "ALTER TABLE history ALTER COLUMN envelope SET STORAGE EXTERNAL",
    "ALTER TABLE dedupe ALTER COLUMN response SET STORAGE EXTERNAL",
    "ALTER TABLE outbox ALTER COLUMN envelope SET STORAGE EXTERNAL",
)

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    _V1, SCHEMA_V2, SCHEMA_V3, SCHEMA_V4, SCHEMA_V5, REL_INDEXES, SCHEMA_V7, PG_SCHEMA_V8, (), (),
    (),
)  # fmt: skip
"""``MIGRATIONS[n]`` takes the schema from version n to n + 1: statements run in one transaction,
with the store's schema first on ``search_path``, then ``STEPS[n]`` if there is one."""

#: What a step does besides its statements, by the version it starts from.
STEPS: dict[int, Callable[[Connection], Awaitable[None]]] = {
    8: forget_dropped_before, 10: migrate_10_to_11}

SCHEMA_VERSION = len(MIGRATIONS)

_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def check_schema_name(name: str) -> str:
    """``name`` if it is a plain lower-case SQL identifier (it is written into statements)."""
    if not _NAME.fullmatch(name):
        raise StoreError(f"schema name must match {_NAME.pattern}, not {name!r}")
    return name


def advisory_key(schema: str, purpose: str, name: bytes = b"") -> int:
    """A signed 64-bit advisory lock key for ``name`` used for ``purpose`` in ``schema``.

    Keys are hashes: two names colliding (odds 2^-64 per pair) only make their holders take
    turns, never lets two hold one lock.
    """
    scope = f"{schema}\0{purpose}\0".encode()
    digest = hashlib.blake2b(scope + name, digest_size=8, person=b"vrm-advisory").digest()
    return int.from_bytes(digest, "big", signed=True)


async def _version(conn: Connection, schema: str) -> int:
    exists = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f"{schema}.schema_version")
    if not exists:
        return 0
    version = await conn.fetchval(f"SELECT version FROM {schema}.schema_version")  # noqa: S608
    return int(version or 0)


async def migrate(conn: Connection, schema: str, target: int = SCHEMA_VERSION) -> int:
    """Bring ``schema`` to ``target`` (by default :data:`SCHEMA_VERSION`), one step per
    transaction; return the version.

    Each step re-reads the version under an advisory lock, so concurrent openers wait for the
    step in progress instead of running it again. A failed step rolls back whole: the schema is
    left at the version before it.
    """
    check_schema_name(schema)
    key = advisory_key(schema, "migrate")
    while True:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", key)
            version = await _version(conn, schema)
            if version > SCHEMA_VERSION:
                raise SchemaTooNew(version, SCHEMA_VERSION)
            if version >= target:
                return version
            await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
            await conn.execute(f"SET LOCAL search_path TO {schema}")
            for statement in MIGRATIONS[version]:
                await conn.execute(statement)
            if version in STEPS:
                await STEPS[version](conn)
            if version == 0:
                await conn.execute("CREATE TABLE schema_version (version integer NOT NULL)")
                await conn.execute("INSERT INTO schema_version VALUES (1)")
            else:
                await conn.execute("UPDATE schema_version SET version = $1", version + 1)
