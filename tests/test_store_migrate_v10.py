"""SQLite schema 10: without ``share_notes_by_thread`` and ``outbox_by_thread``
(:mod:`vrmproto.store._migrate_v10`).

A version-9 file keeps every share note and outbox item (ids, order) and loses only the two
indexes; a fresh file never has them; the reads they could serve answer the same without them
(the store contract runs those on fresh files, ``tests/test_store.py``).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from _sqlite_versions import sqlite_at_version

from vrmproto.store import Commit, SQLiteStore
from vrmproto.store._sqlite import SCHEMA_VERSION
from vrmproto.testing.store_contract import T1, T2, note, outbox, rel

_GONE = {"share_notes_by_thread", "outbox_by_thread"}


def indexes(path: Path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        return {r[0] for r in conn.execute(
            "SELECT name FROM sqlite_schema WHERE type = 'index' "
            "AND tbl_name IN ('share_notes', 'outbox') AND sql IS NOT NULL")}  # fmt: skip
    finally:
        conn.close()


async def test_a_version_9_file_keeps_its_notes_and_outbox_without_the_indexes(
    tmp_path: Path,
) -> None:
    path = tmp_path / "v9.db"
    sqlite_at_version(path, 9).close()  # as vrmproto 8d7aa79 left it
    assert indexes(path) == _GONE
    conn = sqlite3.connect(path, isolation_level=None)
    notes = [note(T1, "a", 30), note(T2, "b", 10), note(T1, "c", 20)]
    for n in notes:
        conn.execute("INSERT INTO share_notes (share, thread, vendor, fields, purposes, "
                     "categories, expires_ms, shared_ms, status, withdrawn_ms) "
                     "VALUES (?, ?, ?, '[]', '[]', '[]', ?, ?, ?, ?)",
                     (n.share, n.thread, n.vendor, n.expires_ms, n.shared_ms, n.status,
                      n.withdrawn_ms))  # fmt: skip
    for destination, thread in (("a", T1), ("b", T2), ("c", T1)):
        o = outbox(destination, 5, thread=thread)
        conn.execute(
            "INSERT INTO outbox (destination, thread, msg_hash, envelope, attempts, "
            "next_attempt_ms, last_error, created_ms) VALUES (?, ?, ?, ?, 0, ?, '', ?)",
            (o.destination, o.thread, o.msg_hash, o.envelope, o.next_attempt_ms, o.created_ms),
        )
    before = conn.execute("SELECT * FROM outbox ORDER BY item_id").fetchall()
    conn.execute("DELETE FROM outbox WHERE destination = 'c'")  # the newest: its id stays used
    conn.close()

    async with await SQLiteStore.open(path) as s:
        assert (await s.pragmas())["user_version"] == SCHEMA_VERSION
        assert [n.share for n in await s.share_notes(T1)] == [notes[2].share, notes[0].share]
        oldest_first = [notes[1].share, notes[2].share, notes[0].share]
        assert [n.share for n in await s.share_notes()] == oldest_first
        assert [(o.item_id, o.destination) for o in await s.outbox_for(T1)] == [
            (before[0][0], "a")]  # fmt: skip
        assert [(o.item_id, o.destination) for o in await s.outbox_for(T2)] == [
            (before[1][0], "b")]  # fmt: skip
        (new,) = await s.commit_ids(Commit(relationships=(rel(T2),),
                                           outbox_add=(outbox("d", 5, thread=T2),)))  # fmt: skip
        assert new > before[-1][0]  # AUTOINCREMENT still: the deleted id is not handed out
        assert [o.destination for o in await s.outbox_for(T2)] == ["b", "d"]
    assert indexes(path) == {"share_notes_by_share"}  # schema 13's


async def test_a_fresh_file_has_neither_index(tmp_path: Path) -> None:
    async with await SQLiteStore.open(tmp_path / "new.db") as s:
        await s.commit(Commit(relationships=(rel(T1),), outbox_add=(outbox("a", 5),),
                              share_notes=(note(T1, "a"),)))  # fmt: skip
        assert [n.thread for n in await s.share_notes(T1)] == [T1]
    assert indexes(tmp_path / "new.db") == {"share_notes_by_share"}  # schema 13's
