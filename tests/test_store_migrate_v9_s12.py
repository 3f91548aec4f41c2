"""SQLite schema 9: the outbox without ``outbox_by_due`` (:mod:`vrmproto.store._migrate_v9`).

A version-8 file keeps every outbox item (ids, order, due times) and loses only the index; a
fresh file never has it; ``outbox_due`` answers the same without it (the store contract runs it
on fresh files, ``tests/test_store.py``).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from _sqlite_versions import sqlite_at_version

from vrmproto.store import Commit, SQLiteStore
from vrmproto.store._sqlite import SCHEMA_VERSION
from vrmproto.testing.store_contract import T2, outbox, rel


def indexes(path: Path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        return {r[0] for r in conn.execute(
            "SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'outbox'")}
    finally:
        conn.close()


async def test_a_version_8_file_keeps_its_outbox_without_the_due_index(tmp_path: Path) -> None:
    path = tmp_path / "v8.db"
    sqlite_at_version(path, 8).close()  # as vrmproto 31eceae left it
    assert "outbox_by_due" in indexes(path)
    conn = sqlite3.connect(path, isolation_level=None)
    for destination, due in (("a", 30), ("b", 10), ("c", 20)):
        o = outbox(destination, due)
        conn.execute(
            "INSERT INTO outbox (destination, thread, msg_hash, envelope, attempts, "
            "next_attempt_ms, last_error, created_ms) VALUES (?, ?, ?, ?, 0, ?, '', ?)",
            (o.destination, o.thread, o.msg_hash, o.envelope, o.next_attempt_ms, o.created_ms),
        )
    before = conn.execute("SELECT * FROM outbox ORDER BY item_id").fetchall()
    conn.execute("DELETE FROM outbox WHERE destination = 'c'")  # the newest: its id stays used
    conn.close()

    async with await SQLiteStore.open(path) as s:
        assert (await s.pragmas())["user_version"] == SCHEMA_VERSION == 15
        held = await s.outbox_all()
        assert [(o.item_id, o.destination, o.next_attempt_ms) for o in held] == [
            (r[0], r[1], r[6]) for r in before[:2]]  # fmt: skip
        assert [o.destination for o in await s.outbox_due(30)] == ["b", "a"]
        assert [o.destination for o in await s.outbox_due(15)] == ["b"]
        assert [o.destination for o in await s.outbox_due(30, limit=1)] == ["b"]
        (new,) = await s.commit_ids(Commit(relationships=(rel(T2),),
                                           outbox_add=(outbox("d", 5, thread=T2),)))  # fmt: skip
        assert new > before[-1][0]  # AUTOINCREMENT still: the deleted id is not handed out
    assert indexes(path) == set()  # version 10 drops outbox_by_thread too


async def test_a_fresh_file_has_no_due_index(tmp_path: Path) -> None:
    async with await SQLiteStore.open(tmp_path / "new.db") as s:
        await s.commit(Commit(outbox_add=(outbox("a", 5),)))
    assert indexes(tmp_path / "new.db") == set()
