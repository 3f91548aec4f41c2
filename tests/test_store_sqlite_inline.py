"""SQLiteStore(inline=True): commits on the caller's thread, made durable by a shared fsync.

What must hold (:mod:`vrmproto.store._sqlite_durable`): a commit's awaiter — and any reader of
the store object — proceeds only after an fsync that started after its COMMIT returned; one
fsync covers every commit made before it started; a failed fsync fails what it covered and all
later commits; a taken write lock or another thread sends the write to the writer thread.
The fsync is replaced by a gate the test opens, so every step is driven, none timed.
"""

from __future__ import annotations

import asyncio
import errno
import os
import sqlite3
import stat
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from vrmproto.store import Commit, SQLiteStore, StoreConflict, StoreError
from vrmproto.store import _sqlite_durable as durable
from vrmproto.store._sqlite_durable import WalFile
from vrmproto.testing.store_contract import T1, entry, rel

GUARD_S = 30.0  # only against a hang: nothing here asserts how long anything took


class Gate:
    """An fsync that blocks until the test lets it go, counting calls."""

    def __init__(self) -> None:
        self.entered = threading.Semaphore(0)
        self.calls = 0
        self._lock = threading.Lock()
        self._gates: list[threading.Event] = []
        self.fail: Exception | None = None

    def __call__(self, fd: int) -> None:
        with self._lock:
            gate = threading.Event()
            self._gates.append(gate)
            self.calls += 1
        self.entered.release()
        assert gate.wait(GUARD_S)
        if self.fail is not None:
            raise self.fail
        os.fdatasync(fd)

    async def wait_entered(self) -> None:
        """Return once an fsync has started (and is now blocked)."""
        assert await asyncio.to_thread(self.entered.acquire, True, GUARD_S)

    def release(self, n: int) -> None:
        """Let fsync call number ``n`` (1-based) return."""
        self._gates[n - 1].set()


async def turns(n: int = 20) -> None:
    """Let every ready task and callback run a few times (no timer involved)."""
    for _ in range(n):
        await asyncio.sleep(0)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    s = await SQLiteStore.open(tmp_path / "vrm.db", inline=True)
    await s.commit(Commit(meta=(("warm", b"1"),)))  # the WAL and its directory synced once
    yield s
    await s.close()


def gate(store: SQLiteStore) -> Gate:
    g = Gate()
    store._wal._sync = g
    return g


def meta(key: str, value: bytes = b"v") -> Commit:
    return Commit(meta=((key, value),))


def raw_read(path: Path, key: str) -> bytes | None:
    """What another connection sees now (committed, durable or not)."""
    conn = sqlite3.connect(path)
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])
    finally:
        conn.close()


# -- settings ----------------------------------------------------------------------------------


async def test_the_inline_connection_never_syncs_in_commit_nor_checkpoints(
    store: SQLiteStore,
) -> None:
    assert store._here is not None
    names = ("journal_mode", "synchronous", "wal_autocheckpoint", "busy_timeout", "foreign_keys")
    here = {n: store._here.execute(f"PRAGMA {n}").fetchone()[0] for n in names}
    assert here == {"journal_mode": "wal", "synchronous": 1, "wal_autocheckpoint": 0,
                    "busy_timeout": 0, "foreign_keys": 1}  # fmt: skip
    assert (await store.pragmas())["synchronous"] == 2  # the writer (and checkpointer): FULL
    assert store.stats.inline == 1
    assert store.stats.fallbacks == 0


# -- a commit resolves only after the fsync that covers it -------------------------------------


async def test_a_commit_waits_for_an_fsync_that_started_after_its_commit(
    store: SQLiteStore,
) -> None:
    g = gate(store)
    a = asyncio.create_task(store.commit(meta("a")))
    await g.wait_entered()  # fsync 1 runs (for a) and is held
    await turns()
    assert raw_read(store.path, "a") == b"v"  # committed: written to the WAL, visible...
    assert not a.done()  # ...but not durable, so its awaiter waits

    b = asyncio.create_task(store.commit(meta("b")))  # COMMIT returns while fsync 1 runs
    await turns()
    assert raw_read(store.path, "b") == b"v"
    assert not b.done()
    g.release(1)
    await a  # fsync 1 covered a...
    await g.wait_entered()  # ...not b, whose COMMIT came after it started: fsync 2
    await turns()
    assert not b.done()

    c = asyncio.create_task(store.commit(meta("c")))
    d = asyncio.create_task(store.commit(meta("d")))
    await turns()
    g.release(2)
    await b
    await g.wait_entered()  # fsync 3, for c and d together
    await turns()
    assert not c.done()
    assert not d.done()
    g.release(3)
    await asyncio.gather(c, d)
    assert g.calls == 3  # group commit: one fsync for c and d
    assert store.stats.syncs == 1 + 3
    assert store.stats.inline == 1 + 4  # d came in a turn of its own (none ran in c's)


async def test_many_concurrent_commits_share_one_fsync(store: SQLiteStore) -> None:
    g = gate(store)
    first = asyncio.create_task(store.commit(meta("first")))
    await g.wait_entered()  # fsync 1 is under way: every commit below comes after it started
    tasks = [asyncio.create_task(store.commit(meta(f"k{n}"))) for n in range(50)]
    await turns()
    assert store.stats.writes == 1 + 51
    assert store.stats.inline == 1 + 3  # the fifty: the turn's first alone, 49 together
    assert not any(t.done() for t in tasks)
    g.release(1)
    await first
    await g.wait_entered()
    await turns()
    assert not any(t.done() for t in tasks)
    g.release(2)
    await asyncio.gather(*tasks)
    assert g.calls == 2  # fsync 2 covered all fifty


async def test_reads_wait_for_the_fsync_of_earlier_commits(store: SQLiteStore) -> None:
    g = gate(store)
    w = asyncio.create_task(store.commit(meta("k", b"new")))
    await g.wait_entered()
    point = asyncio.create_task(store.get_meta("k"))  # read on the calling thread
    scan = asyncio.create_task(store.outbox_all())  # read on the reader pool
    await turns()
    assert not point.done()
    assert not scan.done()
    g.release(1)
    assert await point == b"new"
    assert await scan == []
    await w


async def test_a_failed_commit_still_waits_for_what_it_saw(store: SQLiteStore) -> None:
    """A conflict may be decided by a row not yet durable: it is reported after that row's
    fsync, as a successful commit would be."""
    await store.commit(Commit(relationships=(rel(T1),), history=(entry(T1, 0),)))
    g = gate(store)
    first = asyncio.create_task(store.commit(Commit(history=(entry(T1, 1),))))
    await g.wait_entered()
    clash = asyncio.create_task(store.commit(Commit(history=(entry(T1, 1, tag="x"),))))
    await turns()
    assert not clash.done()
    g.release(1)
    await first
    with pytest.raises(StoreConflict):
        await clash
    assert store.stats.conflicts == 1


async def test_a_failed_fsync_fails_what_it_covered_and_every_later_commit(
    store: SQLiteStore,
) -> None:
    g = gate(store)
    g.fail = OSError(errno.EIO, "I/O error")
    a = asyncio.create_task(store.commit(meta("a")))
    await g.wait_entered()
    g.release(1)
    with pytest.raises(StoreError, match="fsync"):
        await a
    with pytest.raises(StoreError, match="fsync"):
        await store.commit(meta("b"))  # written, but never promised: the store is broken
    with pytest.raises(StoreError, match="fsync"):
        await store.get_meta("a")


async def test_an_fsync_failing_otherwise_than_with_oserror_fails_its_commits_too(
    store: SQLiteStore,
) -> None:
    """The writer thread settles the commits an fsync covered whatever it raised: it used to
    catch only OSError, and anything else ended the thread with the commits still waiting."""
    g = gate(store)
    g.fail = RuntimeError("the descriptor went away")
    a = asyncio.create_task(store.commit(meta("a")))
    await g.wait_entered()
    g.release(1)
    async with asyncio.timeout(GUARD_S):
        with pytest.raises(StoreError, match="fsync"):
            await a
    with pytest.raises(StoreError, match="fsync"):
        await store.commit(meta("b"))


async def test_close_makes_an_abandoned_commit_durable_first(tmp_path: Path) -> None:
    s = await SQLiteStore.open(tmp_path / "vrm.db", inline=True)
    await s.commit(meta("warm"))
    g = gate(s)
    a = asyncio.create_task(s.commit(meta("a")))
    await g.wait_entered()
    a.cancel()  # the awaiter goes away; the commit stands and still gets its fsync
    closing = asyncio.create_task(s.close())
    await turns()
    assert not closing.done()
    g.release(1)
    await closing
    assert g.calls == 1
    async with await SQLiteStore.open(tmp_path / "vrm.db") as again:
        assert await again.get_meta("a") == b"v"


# -- fallbacks to the writer thread -------------------------------------------------------------


async def test_a_taken_write_lock_sends_the_write_to_the_writer_thread(
    store: SQLiteStore,
) -> None:
    other = sqlite3.connect(store.path, isolation_level=None)  # another process, as SQLite sees
    try:
        other.execute("BEGIN IMMEDIATE")
        task = asyncio.create_task(store.commit(meta("k")))
        await turns()
        assert store.stats.fallbacks == 1  # BEGIN IMMEDIATE found it taken, without waiting
        assert not task.done()  # the writer thread waits for the lock (busy_timeout)
        other.execute("COMMIT")
    finally:
        other.close()
    await task
    assert await store.get_meta("k") == b"v"
    assert store.stats.inline == 1  # only the warm-up commit ran inline


async def test_a_store_used_from_another_thread_writes_through_the_writer_thread(
    store: SQLiteStore,
) -> None:
    def elsewhere() -> bytes | None:
        async def work() -> bytes | None:
            await store.commit(meta("t"))
            return await store.get_meta("t")

        return asyncio.run(work())

    assert await asyncio.to_thread(elsewhere) == b"v"
    assert store.stats.inline == 1
    assert store.stats.fallbacks == 1
    await store.commit(meta("here"))  # the owner thread still commits inline
    assert store.stats.inline == 2


# -- many agents in one process; checkpoints -----------------------------------------------------


async def test_agents_sharing_a_process_each_commit_inline(tmp_path: Path) -> None:
    stores = [await SQLiteStore.open(tmp_path / f"a{i}.db", inline=True) for i in range(6)]
    try:

        async def run(s: SQLiteStore) -> None:
            await s.commit(Commit(relationships=(rel(T1),)))
            for i in range(25):
                await s.commit(Commit(relationships=(rel(T1),), history=(entry(T1, i),)))

        await asyncio.gather(*(run(s) for s in stores))
        for s in stores:
            assert s.stats.inline == 26
            assert s.stats.fallbacks == 0
            assert 1 <= s.stats.syncs <= 26
    finally:
        for s in stores:
            await s.close()
    for i in range(6):
        async with await SQLiteStore.open(tmp_path / f"a{i}.db") as s:
            assert [e.index for e in await s.history(T1)] == list(range(25))


async def test_checkpoints_run_on_the_full_connection_and_keep_everything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(durable, "CHECKPOINT_EVERY", 8)
    path = tmp_path / "vrm.db"
    async with await SQLiteStore.open(path, inline=True) as s:
        await s.commit(Commit(relationships=(rel(T1),)))
        for i in range(60):
            await s.commit(Commit(relationships=(rel(T1),), history=(entry(T1, i),)))
        assert s.stats.checkpoints >= 3
        assert s.stats.inline == 61
        assert s.stats.fallbacks == 0
    async with await SQLiteStore.open(path) as s:
        assert [e.index for e in await s.history(T1)] == list(range(60))


# -- the WAL file's directory is synced too ---------------------------------------------------


def test_the_wal_file_s_directory_is_synced_before_the_file(tmp_path: Path) -> None:
    synced: list[tuple[bool, int]] = []  # (a directory?, inode)

    def record(fd: int) -> None:
        st = os.fstat(fd)
        synced.append((stat.S_ISDIR(st.st_mode), st.st_ino))

    wal_path = tmp_path / "vrm.db-wal"
    wal_path.write_bytes(b"x")
    wal = WalFile(tmp_path / "vrm.db", record)
    try:
        wal.sync()
        wal.sync()
    finally:
        wal.close()
    assert synced == [(True, tmp_path.stat().st_ino), (False, wal_path.stat().st_ino),
                      (False, wal_path.stat().st_ino)]  # fmt: skip


async def test_a_write_that_fails_inside_leaves_the_connection_usable(store: SQLiteStore) -> None:
    def ends_it_itself(conn: sqlite3.Connection) -> None:
        conn.execute("ROLLBACK")  # the transaction ends under the store's feet
        raise sqlite3.OperationalError("boom")

    with pytest.raises(StoreError, match="boom"):
        await store._write(ends_it_itself)

    def interrupted(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO meta (key, value) VALUES ('half', x'00')")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        await store._write(interrupted)
    assert store._here is not None
    assert not store._here.in_transaction
    await store.commit(meta("after"))
    assert await store.get_meta("half") is None
    assert await store.get_meta("after") == b"v"


async def test_point_reads_on_the_opener_s_thread_use_the_write_connection(
    store: SQLiteStore,
) -> None:
    """Its page cache holds what it just wrote; a separate reader would re-read those pages."""
    await store.commit(meta("k"))
    assert await store.get_meta("k") == b"v"
    assert store._inline_conns == []  # no per-thread reader was opened


class _BusyReads(sqlite3.Connection):
    def execute(self, sql: str, *args: object) -> sqlite3.Cursor:  # type: ignore[override]
        if sql.startswith("SELECT"):
            busy = sqlite3.OperationalError("database is locked")
            busy.sqlite_errorcode = sqlite3.SQLITE_BUSY
            raise busy
        return super().execute(sql, *args)  # type: ignore[arg-type]


async def test_a_busy_point_read_on_the_write_connection_is_retried_on_a_reader(
    store: SQLiteStore,
) -> None:
    await store.commit(meta("k"))
    busy = sqlite3.connect(store.path, factory=_BusyReads, isolation_level=None)
    here, store._here = store._here, busy
    try:
        assert await store.get_meta("k") == b"v"
    finally:
        store._here = here
        busy.close()
    assert len(store._inline_conns) == 1  # read on the calling thread's read-only connection


# -- commits that do not wait for their fsync (durable=False, the agent's lazy close) ----------


async def test_a_lazy_commit_returns_before_any_fsync_and_asks_for_none(
    store: SQLiteStore,
) -> None:
    g = gate(store)
    await store.commit(meta("lazy"), durable=False)  # returns: no fsync was even started
    await turns()
    assert g.calls == 0
    assert raw_read(store.path, "lazy") == b"v"  # committed, in the WAL
    assert store._horizon.durable < store._horizon.committed  # and not yet known durable
    after = asyncio.create_task(store.commit(meta("after")))  # the next durable one covers it
    await g.wait_entered()
    g.release(1)
    await after
    assert store._horizon.durable == store._horizon.committed


async def test_the_next_durable_commit_waits_for_an_fsync_after_both_commits(
    store: SQLiteStore,
) -> None:
    """A durable commit in flight, then a lazy one, then a durable one: the first fsync,
    started before the lazy COMMIT, releases only the first; the third returns only after
    an fsync that started after both its own COMMIT and the lazy one's, and that fsync
    leaves every commit durable."""
    g = gate(store)
    x = asyncio.create_task(store.commit(meta("x")))
    await g.wait_entered()  # fsync 1 (for x) is held
    await store.commit(meta("lazy"), durable=False)  # committed while fsync 1 runs
    y = asyncio.create_task(store.commit(meta("y")))
    await turns()
    assert not x.done()
    assert not y.done()
    g.release(1)
    await x
    await g.wait_entered()  # fsync 2: started after the lazy COMMIT and y's
    await turns()
    assert not y.done()  # fsync 1 covered neither
    g.release(2)
    await y
    assert g.calls == 2
    assert store._horizon.durable == store._horizon.committed  # the lazy one included


async def test_lazy_commits_left_alone_get_no_fsync_until_close_makes_them_durable(
    tmp_path: Path,
) -> None:
    s = await SQLiteStore.open(tmp_path / "vrm.db", inline=True)
    await s.commit(meta("warm"))
    g = gate(s)
    x = asyncio.create_task(s.commit(meta("x")))
    await g.wait_entered()
    await s.commit(meta("lazy"), durable=False)  # after fsync 1 started: not covered by it
    g.release(1)
    await x
    assert not s._horizon._requested  # nobody waits for the lazy commit: no fsync for it alone
    assert g.calls == 1
    closing = asyncio.create_task(s.close())
    await g.wait_entered()  # close() asks for one
    await turns()
    assert not closing.done()
    g.release(2)
    await closing
    assert g.calls == 2
    assert s._horizon.durable == s._horizon.committed


async def test_reads_wait_for_durable_commits_but_not_for_lazy_ones(store: SQLiteStore) -> None:
    g = gate(store)
    await store.commit(meta("k", b"lazy"), durable=False)
    assert await store.get_meta("k") == b"lazy"  # a point read, on the calling thread
    assert await store.outbox_all() == []  # a read on the reader pool
    assert g.calls == 0  # neither waited for (nor asked for) an fsync

    w = asyncio.create_task(store.commit(meta("k", b"durable")))
    await g.wait_entered()
    point = asyncio.create_task(store.get_meta("k"))
    scan = asyncio.create_task(store.outbox_all())
    await turns()
    assert not point.done()
    assert not scan.done()
    await store.commit(meta("later", b"lazy"), durable=False)  # a lazy one meanwhile...
    g.release(1)
    assert await point == b"durable"  # ...does not hold up the reads waiting for w
    assert await scan == []
    await w
    assert await store.get_meta("later") == b"lazy"
    assert g.calls == 1
    closing = asyncio.create_task(store.close())  # which makes "later" durable
    await g.wait_entered()
    g.release(2)
    await closing


async def test_durable_false_on_the_writer_thread_is_a_durable_commit(tmp_path: Path) -> None:
    async with await SQLiteStore.open(tmp_path / "vrm.db") as s:  # no inline connection
        await s.commit(meta("k"), durable=False)
        assert s.stats.inline == 0
        assert s.stats.transactions == 1  # its own COMMIT, synchronous=FULL
        assert await s.get_meta("k") == b"v"
