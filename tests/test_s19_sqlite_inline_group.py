"""SQLiteStore(inline=True): the writes of one turn of the event loop after its first share a
transaction.

Issue #12 asks for group commit across an agent's relationships: a fan-out's branches commit
from concurrent tasks, and each commit of its own wrote the pages they all touch (the database
header, the tails of the history, the outbox and the notes) again. The turn's first write still
runs at once, alone (a lone agent's every write), and the others at the start of the next turn.
Each write still succeeds or fails on its own (a savepoint each), still returns only once
durable, and still goes to the writer thread when the write lock is taken
(:mod:`vrmproto.store._sqlite_durable`).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from vrmproto.store import Commit, DraftRecord, SQLiteStore, StoreConflict
from vrmproto.testing.store_contract import T1, entry, rel


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    s = await SQLiteStore.open(tmp_path / "vrm.db", inline=True)
    await s.commit(Commit(meta=(("warm", b"1"),)))
    yield s
    await s.close()


def meta(key: str) -> Commit:
    return Commit(meta=((key, b"v"),))


def wal_frames(path: Path) -> int:
    size = path.with_name(path.name + "-wal").stat().st_size
    return (size - 32) // (4096 + 24)


async def test_commits_made_in_one_turn_share_one_transaction(store: SQLiteStore) -> None:
    before = store.stats.inline
    await asyncio.gather(*(store.commit(meta(f"k{i}")) for i in range(20)))
    assert store.stats.inline == before + 2  # the turn's first at once, the other 19 together
    assert store.stats.writes == 1 + 20
    assert store.stats.largest_batch == 19
    for i in range(20):
        assert await store.get_meta(f"k{i}") == b"v"


async def test_a_group_writes_the_pages_its_commits_share_once(tmp_path: Path) -> None:
    """Twenty relationships' history entries: one by one, then in one turn."""
    s = await SQLiteStore.open(tmp_path / "vrm.db", inline=True)
    try:
        threads = [bytes([i]) * 16 for i in range(1, 41)]
        for t in threads:
            await s.commit(Commit(relationships=(rel(t),)))
        alone = wal_frames(s.path)
        for t in threads[:20]:
            await s.commit(Commit(relationships=(rel(t),), history=(entry(t, 0),)))
        alone = wal_frames(s.path) - alone
        grouped = wal_frames(s.path)
        await asyncio.gather(*(s.commit(Commit(relationships=(rel(t),), history=(entry(t, 0),)))
                               for t in threads[20:]))  # fmt: skip
        grouped = wal_frames(s.path) - grouped
        assert s.stats.checkpoints == 0  # the WAL was never restarted: its size counts frames
        assert grouped * 4 <= alone  # 40 -> 5
        for t in threads:
            assert [h.index for h in await s.history(t)] == [0]
    finally:
        await s.close()


async def test_a_failing_commit_of_a_group_fails_alone(store: SQLiteStore) -> None:
    await store.commit(Commit(relationships=(rel(T1),)))
    draft = DraftRecord(T1, 1, "data.share", b"x")
    await store.commit(Commit(drafts_add=(draft,)))
    before = store.stats.inline
    results = await asyncio.gather(
        store.commit(meta("a")),
        store.commit(Commit(drafts_add=(draft,))),  # slot 1 is taken
        store.commit(Commit(history=(entry(T1, 0),))),
        return_exceptions=True,
    )
    assert results[0] is None
    assert results[2] is None
    assert isinstance(results[1], StoreConflict)
    assert store.stats.inline == before + 2  # "a" at once; the conflict and the entry together
    assert store.stats.largest_batch == 2
    assert await store.get_meta("a") == b"v"
    assert [h.index for h in await store.history(T1)] == [0]
    assert await store.drafts(T1) == [draft]


async def test_a_taken_write_lock_sends_the_whole_group_to_the_writer_thread(
    store: SQLiteStore,
) -> None:
    other = sqlite3.connect(store.path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        tasks = [asyncio.create_task(store.commit(meta(f"k{i}"))) for i in range(3)]
        for _ in range(20):
            await asyncio.sleep(0)
        assert store.stats.fallbacks == 3
        assert not any(t.done() for t in tasks)
        other.execute("COMMIT")
    finally:
        other.close()
    await asyncio.gather(*tasks)
    for i in range(3):
        assert await store.get_meta(f"k{i}") == b"v"
    assert store.stats.inline == 1


async def test_an_interrupt_in_one_write_of_a_group_reaches_its_awaiter_only(
    store: SQLiteStore,
) -> None:
    def interrupted(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO meta (key, value) VALUES ('half', x'00')")
        raise KeyboardInterrupt

    last = asyncio.create_task(store.commit(meta("b")))  # starts next turn, before it ends
    await store.commit(meta("a"), durable=False)  # at once, and returns without yielding
    with pytest.raises(KeyboardInterrupt):
        await store._write(interrupted)  # this turn's second write: queued, then last's
    await last  # rolled back with it, then written on the writer thread
    assert store.stats.fallbacks == 1
    assert store.stats.largest_batch == 1  # the group never committed
    assert await store.get_meta("half") is None
    assert await store.get_meta("a") == b"v"
    assert await store.get_meta("b") == b"v"
    assert store._here is not None
    assert not store._here.in_transaction


def test_a_store_that_outlives_an_event_loop_still_commits_inline(tmp_path: Path) -> None:
    """A loop stopped and closed with a write still queued (its next turn never ran): the next
    loop's writes neither wait for it nor for that turn's end."""
    first = asyncio.new_event_loop()
    opened: list[SQLiteStore] = []

    async def open_and_stop() -> None:
        s = await SQLiteStore.open(tmp_path / "vrm.db", inline=True)
        opened.append(s)
        await s.commit(meta("a"), durable=False)  # the turn's first: at once, no yield
        queued = s._write_in_turn(lambda conn: conn.execute(
            "INSERT INTO meta (key, value) VALUES ('queued', x'00')"), durable=False)
        assert not queued.done()
        first.stop()  # this turn ends the loop: the flush never runs
        await asyncio.sleep(0)

    try:
        with pytest.raises(RuntimeError, match="stopped before"):
            first.run_until_complete(open_and_stop())
    finally:
        first.close()
    store = opened[0]

    async def later() -> None:
        await asyncio.wait_for(store.commit(meta("b")), 30)
        assert await store.get_meta("a") == b"v"
        assert await store.get_meta("b") == b"v"
        assert await store.get_meta("queued") is None
        assert store.stats.inline == 2
        await store.close()

    asyncio.run(later())
