"""SQLite schema 8 and the writes that touch fewer pages or take fewer statements (#12).

- Version 7 → 8 rebuilds ``events`` without ``AUTOINCREMENT`` (:mod:`vrmproto.store._migrate_v8`):
  a version-7 file holding every kind of row reads back the same afterwards, its events keep
  their positions and new ones continue after them; a file whose counter went past its newest
  event keeps its layout, so that no position is handed out twice.
- :func:`vrmproto.store._sqlite_rows.upsert_held` (a share's rows in one statement): a field
  given twice ends with the last value and expiry.
- The relationship upserts: a customer's commit writes no page of the partial URL and name
  indexes (read from the WAL's frame headers, not timed); ``commit(expect=)`` refuses a row
  that differs in any column.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import struct
import threading
from dataclasses import replace
from pathlib import Path

import pytest
from _sqlite_versions import sqlite_at_version

from vrmproto.store import (
    Commit,
    HeldRecord,
    HistoryEntry,
    MemoryStore,
    RelationshipRecord,
    SQLiteStore,
    StoreConflict,
)
from vrmproto.store._sqlite import SCHEMA_VERSION, _apply_commit, _apply_group
from vrmproto.testing.store_contract import BOB, T1, T2, dedupe, entry, event, held, rel

SHARE_A = b"\xaa" * 32
SHARE_B = b"\xbb" * 32


def layout(path: Path) -> tuple[str, list[str]]:
    conn = sqlite3.connect(path)
    try:
        (sql,) = conn.execute("SELECT sql FROM sqlite_schema WHERE name = 'events'").fetchone()
        seq = [r[0] for r in conn.execute("SELECT name FROM sqlite_sequence ORDER BY name")]
        return sql, seq
    finally:
        conn.close()


async def test_a_version_7_file_reads_back_the_same_at_version_8(tmp_path: Path) -> None:
    path = tmp_path / "v7.db"
    conn = sqlite_at_version(path, 7)  # as vrmproto 6f02a77 left it
    conn.execute("BEGIN")
    _apply_commit(conn, Commit(
        relationships=(rel(T1), rel(T2, peer=BOB)),
        history=(entry(T1, 0), entry(T1, 1), entry(T2, 0)),
        dedupe=(dedupe(BOB, 1), dedupe(BOB, 2, expires_ms=20_000)),
        held=(held(T1, "email", SHARE_A), held(T1, "name", SHARE_A, None)),
        events=(event(T1, 0), event(T1, 1, personal=b'{"email":"a@b"}'), event(T2, 0)),
    ))  # fmt: skip
    conn.execute("COMMIT")
    conn.close()
    assert "AUTOINCREMENT" in layout(path)[0]

    async with await SQLiteStore.open(path) as s:
        assert (await s.pragmas())["user_version"] == SCHEMA_VERSION == 15
        assert await s.relationships() == [rel(T1), rel(T2, peer=BOB)]
        assert await s.history(T1) == [entry(T1, 0), entry(T1, 1)]
        assert await s.get_dedupe(BOB, (2).to_bytes(16, "big")) == dedupe(BOB, 2, 20_000)
        assert await s.held(T1) == [held(T1, "email", SHARE_A), held(T1, "name", SHARE_A, None)]
        got = await s.events()
        assert [(e.pos, e.thread, e.seq, e.personal) for e in got] == [
            (1, T1, 0, None), (2, T1, 1, b'{"email":"a@b"}'), (3, T2, 0, None)]  # fmt: skip
        # the partial index is back: a dropped share's event loses its personal data
        await s.commit(Commit(held_drop=((T1, event(T1, 1).msg_hash),)))
        assert await s.event(got[1].id) == replace(got[1], personal=None)
        await s.commit(Commit(events=(event(T2, 1),)))
        assert [e.pos for e in await s.events(after=3)] == [4]
        assert await s.feed_head() == 4
    sql, seq = layout(path)
    assert "AUTOINCREMENT" not in sql
    assert "events" not in seq
    conn = sqlite3.connect(path)
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'index'")}
    conn.close()
    assert "events_with_personal" in names


async def test_a_counter_past_the_newest_event_keeps_autoincrement(tmp_path: Path) -> None:
    """Events deleted at the end by hand (the store never deletes one): a plain rowid would
    hand their positions out again, so the file keeps its layout and numbering."""
    path = tmp_path / "v7.db"
    conn = sqlite_at_version(path, 7)  # as vrmproto 6f02a77 left it
    conn.execute("BEGIN")
    _apply_commit(conn, Commit(events=(event(T1, 0), event(T1, 1), event(T1, 2))))
    conn.execute("COMMIT")
    conn.execute("DELETE FROM events WHERE pos = 3")
    conn.close()
    async with await SQLiteStore.open(path) as s:
        assert (await s.pragmas())["user_version"] == 15
        await s.commit(Commit(events=(event(T2, 0),)))
        assert [e.pos for e in await s.events()] == [1, 2, 4]
    assert "AUTOINCREMENT" in layout(path)[0]


async def test_a_fresh_file_numbers_events_without_a_counter(tmp_path: Path) -> None:
    async with await SQLiteStore.open(tmp_path / "new.db") as s:
        await s.commit(Commit(events=(event(T1, 0), event(T1, 1))))
        await s.commit(Commit(events=(event(T2, 0),)))
        assert [e.pos for e in await s.events()] == [1, 2, 3]
    sql, seq = layout(tmp_path / "new.db")
    assert "AUTOINCREMENT" not in sql
    assert "events" not in seq


# -- the held upsert ---------------------------------------------------------------------------


async def writer(path: Path) -> sqlite3.Connection:
    """A new store's file (version 8, WAL), on a connection that never checkpoints: each
    commit's frames stay in the WAL."""
    async with await SQLiteStore.open(path) as s:
        await s.commit(Commit(relationships=(rel(T1),)))
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def pages_written(path: Path, conn: sqlite3.Connection, c: Commit) -> set[int]:
    """The pages whose frames ``c``'s transaction appended to the WAL."""
    wal = path.with_name(path.name + "-wal")
    start = wal.stat().st_size if wal.exists() else 0
    conn.execute("BEGIN IMMEDIATE")
    _apply_commit(conn, c)
    conn.execute("COMMIT")
    data = wal.read_bytes()
    page_size = struct.unpack(">I", data[8:12])[0]
    start = max(start, 32)  # the WAL header
    return {struct.unpack(">I", data[off : off + 4])[0]
            for off in range(start, len(data), 24 + page_size)}  # fmt: skip


def root(conn: sqlite3.Connection, name: str) -> int:
    (page,) = conn.execute("SELECT rootpage FROM sqlite_schema WHERE name = ?", (name,)).fetchone()
    return int(page)


async def test_held_rows_end_as_applied_in_order(tmp_path: Path) -> None:
    """A share's rows in one multi-row upsert, and a group's (:func:`_apply_group`), with
    every mix of unchanged and new expiries, also a field given twice: the last value and
    expiry win."""
    path = tmp_path / "held.db"
    async with await SQLiteStore.open(path) as s:
        await s.commit(Commit(relationships=(rel(T1),), held=(held(T1, "a", SHARE_A, 1, "0"),)))
    conn = sqlite3.connect(path, isolation_level=None)
    cases = [(1, 2, 2), (1, 1, 2), (2, 1, 1), (2, 2, 1), (1, 1, 1), (None, 2, None)]
    for n, (e0, e1, e2) in enumerate(cases):
        conn.execute("BEGIN IMMEDIATE")
        _apply_commit(conn, Commit(held=(held(T1, "a", SHARE_A, e0, "old"),)))
        assert _apply_group(conn, [
            Commit(held=(held(T1, "a", SHARE_A, e1, f"mid{n}"), held(T1, "b", SHARE_B, e1))),
            Commit(held=(held(T1, "a", SHARE_B, e2, f"last{n}"),)),
        ])  # fmt: skip
        _apply_commit(conn, Commit(held=(held(T1, "c", SHARE_A, e0, "x"),
                                         held(T1, "c", SHARE_B, e2, "y"))))  # fmt: skip
        conn.execute("COMMIT")
        async with await SQLiteStore.open(path) as s:
            assert await s.held(T1) == [held(T1, "a", SHARE_B, e2, f"last{n}"),
                                        held(T1, "b", SHARE_B, e1),
                                        held(T1, "c", SHARE_B, e2, "y")]  # fmt: skip
            expired = await s.held_expired(10)
            assert expired == sorted({(T1, sh) for sh, e in ((SHARE_B, e2), (SHARE_B, e1))
                                      if e is not None})  # fmt: skip
    conn.close()


# -- the relationship upsert -------------------------------------------------------------------


async def test_a_customers_commit_leaves_the_url_and_name_indexes_alone(tmp_path: Path) -> None:
    """The partial indexes ``WHERE role = 'customer'`` are rewritten by an UPDATE that SETs
    ``role``, even to the same value: the kept upsert leaves it out (#12)."""
    path = tmp_path / "rel.db"
    conn = await writer(path)  # T1's row: rel(T1), role "customer"
    url, label = root(conn, "relationships_by_peer_url"), root(conn, "relationships_by_label")
    moved = replace(rel(T1), state="agreed", data=b"\x81\xa1s\x02", updated_ms=2_000)
    written = pages_written(path, conn, Commit(relationships=(moved,)))
    assert root(conn, "relationships") in written
    assert url not in written
    assert label not in written
    renamed = replace(moved, label="Avis Budget", updated_ms=3_000)
    assert label in pages_written(path, conn, Commit(relationships=(renamed,)))
    conn.close()


async def test_a_relationship_whose_role_changes_is_written_whole(tmp_path: Path) -> None:
    async with await SQLiteStore.open(tmp_path / "rel.db") as s:
        await s.commit(Commit(relationships=(rel(T1), rel(T2))))
        vendor = replace(rel(T1), role="vendor", state="agreed")
        await s.commit(Commit(relationships=(vendor,)))
        assert await s.get_relationship(T1) == vendor
        assert await s.relationships_where(role="customer") == [replace(rel(T2), data=b"")]
        assert await s.relationships_where(role="customer", peer_url=rel(T1).peer_url) == [
            replace(rel(T2), data=b"")]  # fmt: skip
    # a group's multi-row upsert changes fewer rows than it has: the writer then writes the
    # group's Commits one by one (the full upsert for the changed one)
    conn = sqlite3.connect(tmp_path / "rel.db", isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    back = replace(rel(T1), updated_ms=5_000)
    assert not _apply_group(conn, [Commit(relationships=(back,)),
                                   Commit(relationships=(replace(rel(T2), updated_ms=6),))])
    conn.execute("ROLLBACK")
    assert _apply_group(conn, [Commit(relationships=(replace(rel(T2), updated_ms=6),))])
    conn.close()


async def test_a_commit_expecting_a_row_is_written_only_while_every_column_holds(
    tmp_path: Path,
) -> None:
    """``commit(expect=)``: the one-statement check (:data:`_sqlite._UPDATE_REL_EXPECTING`)
    refuses a row that differs from ``expect`` in any column, and writes nothing of the Commit;
    a Commit that changes the keys, label or URL is checked by reading the row."""
    stored = replace(rel(T1), role="vendor")
    async with await SQLiteStore.open(tmp_path / "x.db") as s:
        await s.commit(Commit(relationships=(stored,)))
        step = replace(stored, state="agreed", data=b"\x81\xa1s\x03", updated_ms=9_000)
        changes = {"role": "customer", "local_key": b"L" * 32, "peer_key": b"P" * 32,
                   "state": "ended", "data": b"\x80", "label": "x", "peer_url": "https://x",
                   "updated_ms": 1}  # fmt: skip
        for column, value in changes.items():
            wrong = replace(stored, **{column: value})
            # the step keeps what it expects of the columns the UPDATE leaves alone
            kept = column not in ("state", "data", "updated_ms")
            mine = replace(step, **{column: value}) if kept else step
            with pytest.raises(StoreConflict):
                await s.commit(Commit(relationships=(mine,), history=(entry(T1, 0),)),
                               expect=wrong)  # fmt: skip
            assert await s.get_relationship(T1) == stored
            assert await s.history(T1) == []
        await s.commit(Commit(relationships=(step,), history=(entry(T1, 0),)), expect=stored)
        assert await s.get_relationship(T1) == step
        assert await s.history(T1) == [entry(T1, 0)]
        relabelled = replace(step, label="Avis Budget", updated_ms=9_001)
        with pytest.raises(StoreConflict):
            await s.commit(Commit(relationships=(relabelled,)), expect=stored)
        await s.commit(Commit(relationships=(relabelled,)), expect=step)
        assert await s.get_relationship(T1) == relabelled


def test_bytes_are_bound_without_the_adapter_look_up() -> None:
    """The identity adapter for ``bytes`` (:mod:`vrmproto.store._sqlite`): registered, and
    binding through it stores the same blob."""
    assert sqlite3.adapters[(bytes, sqlite3.PrepareProtocol)] == bytes.__bytes__
    conn = sqlite3.connect(":memory:")
    value = b"\x00\xffblob"
    assert conn.execute("SELECT ?, typeof(?)", (value, value)).fetchone() == (value, "blob")
    conn.close()


def vrec(thread: bytes, n: int) -> RelationshipRecord:
    return RelationshipRecord(thread, "vendor", bytes(32), bytes(32), "agreed", bytes([n]),
                              "label", "", n)  # fmt: skip


def step_over(thread: bytes, n: int) -> Commit:
    """Row n + 1 of ``thread``, with a history entry, to be written over row n."""
    entry = HistoryEntry(thread, n, bytes([n]) * 32, bytes([n + 1]) * 32, b"env", "in", n)
    return Commit(relationships=(vrec(thread, n + 1),), history=(entry,))


async def test_a_group_with_one_stale_expectation_writes_the_others_alone(
    tmp_path: Path,
) -> None:
    """A group checks each expectation in the UPDATE that writes its row
    (:func:`_sqlite._expecting_group`): one that finds the row moved sends the group one by
    one, and nothing of that Commit is written — also when nothing else of the group fails."""
    a, b, c = T1, T2, b"\x03" * 16
    async with await SQLiteStore.open(tmp_path / "g.db") as s:
        await s.commit(Commit(relationships=(vrec(a, 0), vrec(b, 0), vrec(c, 0))))
        gate = threading.Event()
        parked = asyncio.ensure_future(s._write(lambda _conn: gate.wait(10)))
        jobs = [(step_over(a, 0), vrec(a, 0)), (step_over(b, 0), vrec(b, 5)),
                (step_over(c, 0), vrec(c, 0))]  # fmt: skip
        tasks = [asyncio.ensure_future(s.commit(cm, expect=e)) for cm, e in jobs]
        asyncio.get_running_loop().call_soon(gate.set)
        results = await asyncio.gather(parked, *tasks, return_exceptions=True)
        assert results[1] is None
        assert isinstance(results[2], StoreConflict)
        assert results[3] is None
        assert s.stats.largest_batch >= 3  # one transaction (the parked write may be in it)
        assert await s.get_relationship(a) == vrec(a, 1)
        assert await s.get_relationship(b) == vrec(b, 0)
        assert await s.history(b) == []
        assert await s.get_relationship(c) == vrec(c, 1)
        assert [h.index for h in await s.history(c)] == [0]
        # and a group whose expectations all hold is written as a group
        jobs = [(step_over(a, 1), vrec(a, 1)), (step_over(c, 1), vrec(c, 1))]
        gate.clear()
        parked = asyncio.ensure_future(s._write(lambda _conn: gate.wait(10)))
        tasks = [asyncio.ensure_future(s.commit(cm, expect=e)) for cm, e in jobs]
        asyncio.get_running_loop().call_soon(gate.set)
        assert await asyncio.gather(parked, *tasks) == [True, None, None]
        assert await s.get_relationship(a) == vrec(a, 2)
        assert await s.get_relationship(c) == vrec(c, 2)


async def test_held_rows_in_runs_end_as_the_memory_store_has_them(tmp_path: Path) -> None:
    """:func:`_sqlite_rows.upsert_held` writes each run of rows that share thread, source,
    time, purposes, share and expiry in one statement: Commits mixing runs, categories, and
    fields given twice (within a run and across runs) end as applied row by row — as
    :class:`MemoryStore` keeps them — alone and in a group (:func:`_apply_group`)."""
    rng = random.Random(8)
    fields = ("a", "b", "c", "d")

    def record(thread: bytes) -> HeldRecord:
        return HeldRecord(thread, rng.choice(fields), str(rng.random()), rng.choice((1, 2)),
                          rng.choice(("provided", "observed")), rng.choice((1, 2)),
                          rng.choice(((1,), (1, 3))), rng.choice((SHARE_A, SHARE_B)),
                          rng.choice((None, 5, 6)))  # fmt: skip

    def commit() -> Commit:
        return Commit(held=tuple(record(rng.choice((T1, T2))) for _ in range(rng.randint(1, 9))))

    memory = MemoryStore()
    await memory.commit(Commit(relationships=(rel(T1), rel(T2))))
    async with await SQLiteStore.open(tmp_path / "runs.db") as s:
        await s.commit(Commit(relationships=(rel(T1), rel(T2))))
        for _ in range(40):
            c = commit()
            await s.commit(c)
            await memory.commit(c)
            for t in (T1, T2):
                assert await s.held(t) == await memory.held(t)
    conn = sqlite3.connect(tmp_path / "runs.db", isolation_level=None)
    for _ in range(10):
        group = [commit() for _ in range(rng.randint(2, 5))]
        conn.execute("BEGIN IMMEDIATE")
        assert _apply_group(conn, group)
        conn.execute("COMMIT")
        for c in group:
            await memory.commit(c)
        async with await SQLiteStore.open(tmp_path / "runs.db") as s:
            for t in (T1, T2):
                assert await s.held(t) == await memory.held(t)
    conn.close()
    await memory.close()


async def test_a_field_given_twice_in_one_run_ends_with_the_second(tmp_path: Path) -> None:
    async with await SQLiteStore.open(tmp_path / "twice.db") as s:
        await s.commit(Commit(relationships=(rel(T1),)))
        # four rows of one share: one statement (a VALUES list is inserted in order)
        await s.commit(Commit(held=(held(T1, "d", SHARE_A, 5, "first"), held(T1, "e", SHARE_A, 5),
                                    held(T1, "f", SHARE_A, 5),
                                    held(T1, "d", SHARE_A, 5, "second"))))  # fmt: skip
        assert await s.held(T1) == [held(T1, "d", SHARE_A, 5, "second"), held(T1, "e", SHARE_A, 5),
                                    held(T1, "f", SHARE_A, 5)]  # fmt: skip
