"""The vendor document's expiry in the thread record (spec §13.1-8): SQLite schema 11
(:mod:`vrmproto.store._migrate_v11`), PostgreSQL schema 7.

A file or schema of the version before keeps every thread row, each now with an unknown expiry
(None), and takes the expiry of the threads written after. The store contract's
``test_a_thread_record_keeps_its_documents_expiry`` holds every store to the round trip
(``tests/test_store.py``, ``tests/test_store_postgres.py``).
"""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path

import _postgres
import pytest
from _sqlite_versions import sqlite_at_version

from vrmproto.store import Commit, PostgresConfig, PostgresStore, SQLiteStore
from vrmproto.store._sqlite import SCHEMA_VERSION
from vrmproto.store._sqlite_rows import THREAD_COLUMNS_V3, thread_row
from vrmproto.testing.store_contract import BOB, CAROL, T1, T2, entry, rel, thread_record

postgres_cluster = _postgres.postgres_cluster
postgres_config = _postgres.postgres_config

EXPIRES = 1_800_086_400_000


def columns(path: Path) -> dict[str, str]:
    conn = sqlite3.connect(path)
    try:
        return {r[1]: r[2] for r in conn.execute("PRAGMA table_info(threads)")}
    finally:
        conn.close()


async def test_a_version_10_file_keeps_its_threads_with_an_unknown_expiry(
    tmp_path: Path,
) -> None:
    path = tmp_path / "v10.db"
    conn = sqlite_at_version(path, 10)  # as vrmproto 77710f3 left it
    old = [thread_record(T1, generation=3, last_problem="refused"),
           thread_record(T2, vendor_key=CAROL, types=None)]  # fmt: skip
    for t in old:
        conn.execute(f"INSERT INTO threads ({THREAD_COLUMNS_V3}) VALUES "
                     f"({', '.join('?' * 12)})", thread_row(t)[:12])  # fmt: skip
    conn.close()
    assert "doc_expires_ms" not in columns(path)

    async with await SQLiteStore.open(path) as s:
        assert (await s.pragmas())["user_version"] == SCHEMA_VERSION == 15
        assert await s.threads() == old
        assert [t.doc_expires_ms for t in await s.threads()] == [None, None]
        read = dataclasses.replace(old[0], doc_expires_ms=EXPIRES)
        await s.commit(Commit(relationships=(rel(T1),), history=(entry(T1, 0),),
                              threads=(read,)))  # fmt: skip
        assert await s.threads(vendor_key=BOB) == [read]
        assert await s.get_thread(T2) == old[1]
    assert columns(path)["doc_expires_ms"] == "INTEGER"

    async with await SQLiteStore.open(path) as s:  # kept across a restart
        assert await s.get_thread(T1) == read


async def test_a_fresh_file_has_the_column(tmp_path: Path) -> None:
    async with await SQLiteStore.open(tmp_path / "new.db") as s:
        await s.commit(Commit(threads=(thread_record(T1, doc_expires_ms=EXPIRES),)))
    assert columns(tmp_path / "new.db")["doc_expires_ms"] == "INTEGER"


async def test_a_version_6_postgres_schema_keeps_its_threads_with_an_unknown_expiry(
    postgres_config: PostgresConfig,
) -> None:
    asyncpg = pytest.importorskip("asyncpg")
    from vrmproto.store._pg_schema import SCHEMA_VERSION as PG_VERSION  # noqa: PLC0415
    from vrmproto.store._pg_schema import migrate  # noqa: PLC0415

    old = thread_record(T1, generation=2)
    search_path = {"search_path": postgres_config.schema}
    conn = await asyncpg.connect(postgres_config.dsn, server_settings=search_path)
    try:
        assert await migrate(conn, postgres_config.schema, target=6) == 6
        await conn.execute(
            f"INSERT INTO threads ({THREAD_COLUMNS_V3}) VALUES "
            f"({', '.join(f'${n}' for n in range(1, 13))})", *thread_row(old)[:12],
        )  # fmt: skip
    finally:
        await conn.close()

    async with await PostgresStore.open(postgres_config) as s:
        assert (await s.settings())["schema_version"] == PG_VERSION == 11
        assert await s.get_thread(T1) == old
        assert old.doc_expires_ms is None
        read = dataclasses.replace(old, doc_expires_ms=EXPIRES)
        await s.commit(Commit(threads=(read,)))
        assert await s.threads() == [read]
