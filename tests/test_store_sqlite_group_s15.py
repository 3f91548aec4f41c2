"""SQLiteStore's writer thread: the statements one group transaction runs (#12, session 15).

Under load the vendor's writer takes batches of inbox steps, each written together as one group
(:func:`vrmproto.store._sqlite._apply_group`). Every statement on the writer thread gives the
GIL up and takes it back while the event loop wants it, so a group checks the history heads of
all its threads in one statement, and a batch that is one group and nothing else runs without a
savepoint. These tests record the statements of the writer's connection (its trace callback)
and hold the failures to what each Commit alone would get: the others written, the failing one
refused with the error it gets alone.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from vrmproto.store import (
    Commit,
    RelationshipRecord,
    SQLiteStore,
    StoreConflict,
    StoreError,
    _sqlite,
)
from vrmproto.testing.store_contract import T1, T2, dedupe, digest, entry, held, rel

GUARD_S = 30.0  # only against a hang: nothing here asserts how long anything took
THREADS = [bytes([n]) * 16 for n in range(1, 5)]


@pytest.fixture
async def traced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[SQLiteStore, list[str]]]:
    """A store whose writer connection records every statement it runs."""
    statements: list[str] = []
    connect = _sqlite._connect_writer

    def connect_traced(path: Path) -> sqlite3.Connection:
        conn = connect(path)
        conn.set_trace_callback(statements.append)
        return conn

    monkeypatch.setattr(_sqlite, "_connect_writer", connect_traced)
    s = await SQLiteStore.open(tmp_path / "vendor.db")
    yield s, statements
    await s.close()


async def one_batch(
    store: SQLiteStore, writes: list[tuple[Commit, RelationshipRecord | None]]
) -> list[BaseException | None]:
    """Hold the writer inside a write, queue ``writes`` behind it, let it go: they are taken
    as one batch of their own (nothing else in its transaction)."""
    entered, release = threading.Event(), threading.Event()

    def hold(conn: sqlite3.Connection) -> None:
        entered.set()
        assert release.wait(GUARD_S)

    held = asyncio.ensure_future(store._write(hold, inline=False))
    assert await asyncio.to_thread(entered.wait, GUARD_S)
    tasks = [asyncio.ensure_future(store.commit(c, expect=e)) for c, e in writes]
    await asyncio.sleep(0)  # each task runs to its await: all queued, in order
    assert store._queue.qsize() == len(writes)
    release.set()
    results = await asyncio.gather(held, *tasks, return_exceptions=True)
    return [r if isinstance(r, BaseException) else None for r in results[1:]]


def last_transaction(statements: list[str]) -> list[str]:
    begins = [i for i, s in enumerate(statements) if s == "BEGIN IMMEDIATE"]
    return statements[begins[-1] :]


def step(thread: bytes, index: int, stored: RelationshipRecord) -> Commit:
    """An inbox step appending history ``index`` to ``thread`` (as the vendor's commits do:
    the relationship, its history, a replay record)."""
    return Commit(
        relationships=(dataclasses.replace(stored, updated_ms=stored.updated_ms + 1),),
        history=(entry(thread, index),),
        dedupe=(dedupe(thread * 2, index),),
    )


async def started(store: SQLiteStore) -> list[RelationshipRecord]:
    """Each of :data:`THREADS` stored with its first history entry; their records."""
    records = [rel(t) for t in THREADS]
    for r in records:
        await store.commit(Commit(relationships=(r,), history=(entry(r.thread, 0),)))
    return records


async def test_a_group_checks_its_threads_heads_in_one_statement(
    traced: tuple[SQLiteStore, list[str]],
) -> None:
    store, statements = traced
    records = await started(store)
    outcomes = await one_batch(store, [(step(r.thread, 1, r), None) for r in records])
    assert outcomes == [None] * len(records)
    reads = [s for s in last_transaction(statements) if s.startswith("SELECT")]
    assert len(reads) == 1, reads
    for r in records:
        assert [h.index for h in await store.history(r.thread)] == [0, 1]


async def test_a_batch_that_is_one_group_runs_no_savepoint(
    traced: tuple[SQLiteStore, list[str]],
) -> None:
    store, statements = traced
    records = await started(store)
    outcomes = await one_batch(store, [(step(r.thread, 1, r), r) for r in records])
    assert outcomes == [None] * len(records)
    ran = last_transaction(statements)
    assert not [s for s in ran if "SAVEPOINT" in s or s.startswith("RELEASE")], ran
    assert ran[-1] == "COMMIT"
    assert store.stats.largest_batch == len(records)


@pytest.mark.parametrize("which", ["taken", "gap", "moved"])
async def test_a_failing_step_of_a_one_group_batch_fails_alone(
    traced: tuple[SQLiteStore, list[str]], which: str
) -> None:
    """The group is rolled back and written again one by one: the others land, the failing
    one gets what it gets alone — a taken history slot or a changed relationship
    StoreConflict, a gap StoreError."""
    store, statements = traced
    records = await started(store)
    writes: list[tuple[Commit, RelationshipRecord | None]] = [
        (step(r.thread, 1, r), r) for r in records
    ]
    bad = records[2]
    if which == "taken":
        writes[2] = (step(bad.thread, 0, bad), bad)
    elif which == "gap":
        writes[2] = (step(bad.thread, 5, bad), bad)
    else:
        writes[2] = (step(bad.thread, 1, bad), dataclasses.replace(bad, state="agreed"))
    outcomes = await one_batch(store, writes)
    error = outcomes[2]
    assert isinstance(error, StoreError)
    assert isinstance(error, StoreConflict) == (which != "gap")
    assert outcomes[:2] + outcomes[3:] == [None] * 3
    for r in records:
        indexes = [h.index for h in await store.history(r.thread)]
        assert indexes == ([0] if r is bad else [0, 1])
    assert await store.get_relationship(bad.thread) == bad
    assert await store.get_dedupe(bad.thread * 2, (1).to_bytes(16, "big")) is None
    assert last_transaction(statements)[-1] == "COMMIT"


def test_a_groups_held_rows_are_one_statement_applied_in_order(tmp_path: Path) -> None:
    """Several shares of as many fields: their held rows in one statement, upserted in the
    order given — where two rows name one (thread, field), the later one stays, as one by
    one."""
    statements: list[str] = []
    conn = _sqlite._connect_writer(tmp_path / "vendor.db")
    conn.set_trace_callback(statements.append)
    first, second, third = digest("share", 1), digest("share", 2), digest("share", 3)
    commits = [
        Commit(held=tuple(held(T1, f"f{n}", first, value=f"a{n}") for n in range(2))),
        Commit(held=(held(T2, "f0", second, value="b0"), held(T2, "f0", second, value="b1"))),
        Commit(held=tuple(held(T1, f"f{n}", third, None, f"c{n}") for n in (1, 2))),
    ]
    try:
        conn.execute("BEGIN IMMEDIATE")
        assert _sqlite._apply_group(conn, commits)
        conn.execute("COMMIT")
        upserts = [s for s in statements if s.startswith("INSERT INTO held")]
        assert len(upserts) == 1, upserts
        rows = conn.execute(
            "SELECT thread, field, value, share, expires_ms FROM held ORDER BY thread, field"
        ).fetchall()
    finally:
        conn.close()
    assert rows == [
        (T1, "f0", "a0", first, 50_000),
        (T1, "f1", "c1", third, None),
        (T1, "f2", "c2", third, None),
        (T2, "f0", "b1", second, 50_000),
    ]


@pytest.mark.parametrize("shares", [1, 3, 16, 17, 40])
def test_held_rows_land_alike_in_a_group_and_one_by_one(tmp_path: Path, shares: int) -> None:
    """Any number of shares (past a statement's runs and rows) and fields: the group writes
    the rows the shares written one Commit at a time write."""
    commits = [
        Commit(
            held=tuple(
                held(THREADS[n % 4], f"f{(n + i) % 7}", digest("s", n), value=f"{n}.{i}")
                for i in range(1 + n % 11)
            )
        )
        for n in range(shares)
    ]
    stored = []
    for name, grouped in (("group.db", True), ("alone.db", False)):
        conn = _sqlite._connect_writer(tmp_path / name)
        try:
            conn.execute("BEGIN IMMEDIATE")
            if grouped:
                assert _sqlite._apply_group(conn, commits)
            else:
                for c in commits:
                    _sqlite._apply_commit(conn, c)
            conn.execute("COMMIT")
            stored.append(conn.execute("SELECT * FROM held ORDER BY thread, field").fetchall())
        finally:
            conn.close()
    assert stored[0] == stored[1]
    assert stored[0]
