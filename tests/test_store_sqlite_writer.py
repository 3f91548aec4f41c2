"""SQLiteStore's writer thread: when a batch waits for company, and the writer's pragmas.

A batch of several writes waits :data:`~vrmproto.store._sqlite.GATHER_DELAY_S` once for more
(as before), and so does a lone write taken less than
:data:`~vrmproto.store._sqlite.GATHER_AFTER_S` after such a batch; a lone writer never waits.
The module's clock and sleep are replaced by a fake that records each wait and returns at once,
and the writer is held on a gate while writes queue up, so nothing here is timed.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from vrmproto.store import Commit, SQLiteStore, _sqlite

GUARD_S = 30.0  # only against a hang: nothing here asserts how long anything took


class FakeTime:
    """``time`` as the writer thread sees it: a clock the test moves, sleeps recorded."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


@pytest.fixture
async def clock(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    fake = FakeTime()
    monkeypatch.setattr(_sqlite, "time", fake)
    return fake


@pytest.fixture
async def store(tmp_path: Path, clock: FakeTime) -> AsyncIterator[SQLiteStore]:
    s = await SQLiteStore.open(tmp_path / "vendor.db")
    yield s
    await s.close()


def meta(n: int) -> Commit:
    return Commit(meta=((f"k{n}", b"v"),))


async def group_of_two(store: SQLiteStore) -> None:
    """Hold the writer inside a write, queue two commits behind it, let it go: the two are
    taken as one batch of two."""
    entered, release = threading.Event(), threading.Event()

    def hold(conn: sqlite3.Connection) -> None:
        entered.set()
        assert release.wait(GUARD_S)

    held = asyncio.ensure_future(store._write(hold, inline=False))
    assert await asyncio.to_thread(entered.wait, GUARD_S)
    pair = [asyncio.ensure_future(store.commit(meta(n))) for n in (1, 2)]
    await asyncio.sleep(0)  # each task runs to its await: both queued, in order
    assert store._queue.qsize() == 2
    release.set()
    await asyncio.gather(held, *pair)


async def test_a_lone_writer_never_waits(store: SQLiteStore, clock: FakeTime) -> None:
    for n in range(5):
        await store.commit(meta(n))
    assert clock.sleeps == []
    assert store.stats.largest_batch == 1


async def test_a_lone_write_just_after_a_group_waits_once(
    store: SQLiteStore, clock: FakeTime
) -> None:
    await group_of_two(store)
    assert clock.sleeps == [_sqlite.GATHER_DELAY_S]  # the batch of two, as before
    assert store.stats.largest_batch == 2
    await store.commit(meta(3))  # taken less than GATHER_AFTER_S after the group
    assert clock.sleeps == [_sqlite.GATHER_DELAY_S] * 2
    assert await store.get_meta("k3") == b"v"


async def test_a_lone_write_long_after_a_group_does_not_wait(
    store: SQLiteStore, clock: FakeTime
) -> None:
    await group_of_two(store)
    clock.now += _sqlite.GATHER_AFTER_S
    await store.commit(meta(3))
    await store.commit(meta(4))
    assert clock.sleeps == [_sqlite.GATHER_DELAY_S]  # only the group's own


async def test_lone_writes_after_a_group_do_not_prolong_the_wait(
    store: SQLiteStore, clock: FakeTime
) -> None:
    """Only a batch of several writes opens the window: lone ones taken in it do not extend
    it, so a customer left alone after a burst stops waiting."""
    await group_of_two(store)
    clock.now += _sqlite.GATHER_AFTER_S / 2
    await store.commit(meta(3))  # waits: still inside the group's window
    clock.now += _sqlite.GATHER_AFTER_S / 2
    await store.commit(meta(4))  # the window has closed; the lone write before did not move it
    assert clock.sleeps == [_sqlite.GATHER_DELAY_S] * 2


async def test_statement_journals_stay_in_memory(tmp_path: Path) -> None:
    """``temp_store = MEMORY`` (2) on the writer's and on the inline connection: a group's
    statement journal never spills to a temporary file."""
    for inline in (False, True):
        store = await SQLiteStore.open(tmp_path / f"s{inline}.db", inline=inline)
        try:
            on_writer = await store._write(
                lambda conn: conn.execute("PRAGMA temp_store").fetchone()[0], inline=False
            )
            assert on_writer == 2
            if inline:
                assert store._here is not None
                assert store._here.execute("PRAGMA temp_store").fetchone()[0] == 2
        finally:
            await store.close()
