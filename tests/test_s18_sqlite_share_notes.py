"""SQLite schema 13: one thread's share notes read through the key ``(thread, share)``
(:mod:`vrmproto.store._migrate_v13`).

The statement ``share_notes(thread)`` runs is planned as a search of the table's primary key,
not a scan; the upsert by share finds its row through ``share_notes_by_share``; a version-12
file keeps every note, in the new layout, in the step's one transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from _sqlite_versions import sqlite_at_version

from vrmproto.store import Commit, ShareNote, SQLiteStore, _migrate_v13
from vrmproto.store import _sqlite_rows as typed
from vrmproto.store._sqlite import _MIGRATIONS, SCHEMA_VERSION, _migrate
from vrmproto.testing.store_contract import T1, T2, note

_INSERT_V12 = ("INSERT INTO share_notes (share, thread, vendor, fields, purposes, categories, "
               "expires_ms, shared_ms, status, withdrawn_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, "
               "?, ?)")  # fmt: skip


def plan(path: Path, sql: str, params: tuple[object, ...]) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params)]
    finally:
        conn.close()


def recording(
    read: Callable[[str, tuple[object, ...]], Awaitable[list[tuple[Any, ...]]]],
    ran: list[tuple[str, tuple[object, ...]]],
) -> Callable[..., Awaitable[list[tuple[Any, ...]]]]:
    async def recorded(sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        ran.append((sql, params))
        return await read(sql, params)

    return recorded


async def test_one_threads_notes_are_a_search_of_the_key_not_a_scan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "agent.db"
    ran: list[tuple[str, tuple[object, ...]]] = []
    async with await SQLiteStore.open(path) as s:
        notes = [note(T1 if i % 2 else T2, f"s{i}", 100 - i) for i in range(6)]
        await s.commit(Commit(share_notes=tuple(notes)))
        for name in ("_rows", "_point"):  # the pool's reads and the point reads
            monkeypatch.setattr(s, name, recording(getattr(s, name), ran))
        assert await s.share_notes(T1) == sorted(
            (n for n in notes if n.thread == T1), key=lambda n: (n.shared_ms, n.share))
    ((sql, params),) = ran
    steps = plan(path, sql, params)
    assert any(s.startswith("SEARCH share_notes USING PRIMARY KEY (thread=?)") for s in steps)
    assert not any(s.startswith("SCAN share_notes") for s in steps), steps


def upsert_steps(notes: int) -> tuple[int, int]:
    """SQLite's VM steps for a note written again (the kept upsert) and for a note moved to
    another thread (the full upsert), on a table of ``notes`` notes."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    try:
        for step in _MIGRATIONS:
            step(conn)
        rows = [note(T1 if i % 2 else T2, f"s{i}") for i in range(notes)]
        conn.execute("BEGIN")
        typed.apply_rows(conn, Commit(share_notes=tuple(rows)))
        conn.execute("COMMIT")
        steps = [0]

        def count() -> int:
            steps[0] += 1
            return 0

        conn.set_progress_handler(count, 1)
        kept = typed.note_row(replace(rows[1], status="withdrawn"))
        assert conn.execute(typed._NOTES_KEPT, kept).rowcount == 1
        kept_steps, steps[0] = steps[0], 0
        full = typed._upsert_one(typed._NOTES_UPSERT, typed.NOTE_COLUMNS)
        assert conn.execute(full, typed.note_row(replace(rows[1], thread=T2))).rowcount == 1
        conn.set_progress_handler(None, 1)
        assert conn.execute("SELECT thread FROM share_notes WHERE share = ?",
                            (rows[1].share,)).fetchall() == [(T2,)]  # fmt: skip
        return kept_steps, steps[0]
    finally:
        conn.close()


def test_the_upsert_by_share_does_not_grow_with_the_table() -> None:
    """A note written again and a note written under another thread look a share up alone
    (``ON CONFLICT (share)``): through ``share_notes_by_share``, not a scan — the same few VM
    steps at 20 notes and at 4,000 (a scan would take thousands more). SQLite's query plan of
    an upsert shows nothing of its conflict check, hence the steps."""
    small, large = upsert_steps(20), upsert_steps(4_000)
    assert large[0] <= small[0] + 20, (small, large)
    assert large[1] <= small[1] + 20, (small, large)


def _v12_with_notes(path: Path) -> list[ShareNote]:
    conn = sqlite_at_version(path, 12)  # as vrmproto 7b26473 left it
    notes = [note(T1, "a", 30), note(T2, "b", 10), note(T1, "c", 20),
             replace(note(T2, "d", 20), withdrawn_ms=25, status="withdrawn")]  # fmt: skip
    conn.execute("BEGIN")
    conn.executemany(_INSERT_V12, [typed.note_row(n) for n in notes])
    conn.execute("COMMIT")
    conn.close()
    return notes


async def test_a_version_12_file_keeps_every_note_in_the_new_layout(tmp_path: Path) -> None:
    path = tmp_path / "v12.db"
    notes = _v12_with_notes(path)
    async with await SQLiteStore.open(path) as s:
        assert (await s.pragmas())["user_version"] == SCHEMA_VERSION == 15
        assert await s.share_notes() == sorted(notes, key=lambda n: (n.shared_ms, n.share))
        assert await s.share_notes(T1) == [notes[2], notes[0]]
        assert await s.share_notes(T2) == [notes[1], notes[3]]
        moved = replace(notes[1], thread=T1)  # written again under another thread: one note
        await s.commit(Commit(share_notes=(moved,)))
        assert await s.share_notes(T2) == [notes[3]]
        assert await s.share_notes(T1) == [moved, notes[2], notes[0]]
    conn = sqlite3.connect(path)
    try:
        (sql,) = conn.execute(
            "SELECT sql FROM sqlite_schema WHERE name = 'share_notes'").fetchone()
        names = {r[0] for r in conn.execute(
            "SELECT name FROM sqlite_schema WHERE tbl_name = 'share_notes'")}  # fmt: skip
    finally:
        conn.close()
    assert "PRIMARY KEY (thread, share)) WITHOUT ROWID" in sql
    assert sql.startswith('CREATE TABLE "share_notes" (')  # renamed back from share_notes_v13
    assert names == {"share_notes", "share_notes_by_share"}


def test_a_step_that_fails_half_way_leaves_version_12_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The step runs in one transaction: a failure after the copy and the drop (a crash there)
    rolls every statement back, and the next open runs it again."""
    path = tmp_path / "v12.db"
    notes = _v12_with_notes(path)
    monkeypatch.setattr(_migrate_v13, "NOTES_BY_SHARE", "CREATE INDEX broken ON nowhere(x)")
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        with pytest.raises(sqlite3.OperationalError, match="nowhere"):
            _migrate(conn)
        assert conn.execute("PRAGMA user_version").fetchone() == (12,)
        (sql,) = conn.execute(
            "SELECT sql FROM sqlite_schema WHERE name = 'share_notes'").fetchone()
        assert "share BLOB PRIMARY KEY" in sql
        assert "WITHOUT ROWID" not in sql
        assert conn.execute("SELECT count(*) FROM sqlite_schema "
                            "WHERE name = 'share_notes_v13'").fetchone() == (0,)  # fmt: skip
        assert conn.execute("SELECT count(*) FROM share_notes").fetchone() == (len(notes),)
    finally:
        conn.close()
