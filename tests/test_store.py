"""The storage layer: both stores behave alike; SQLite is durable and group-commits."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from vrmproto.store import (
    Commit,
    MemoryStore,
    SQLiteStore,
    Store,
    StoreConflict,
    StoreError,
)
from vrmproto.store import _locks as _store_locks
from vrmproto.store._locks import SWEEP_AFTER, FileLocks
from vrmproto.store._sqlite import _SCHEMA_V1, SCHEMA_VERSION, _apply_group, _connect_writer
from vrmproto.testing.store_contract import (
    BOB,
    CAROL,
    T1,
    T2,
    StoreContract,
    again,
    dedupe,
    digest,
    entry,
    held,
    note,
    outbox,
    rel,
    save_point,
    thread_record,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    async with await SQLiteStore.open(tmp_path / "vrm.db") as s:
        yield s


class TestMemoryStore(StoreContract):
    @pytest.fixture
    async def store(self) -> AsyncIterator[Store]:
        s = MemoryStore()
        yield s
        await s.close()


class TestSQLiteStore(StoreContract):
    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[Store]:
        s = await SQLiteStore.open(tmp_path / "vrm.db")
        yield s
        await s.close()

    async def gather_in_one_batch(
        self, store: Store, *commits: Commit
    ) -> list[BaseException | None]:
        """Park the writer thread on a gate first, so that every Commit is queued before it moves
        on: they then share one transaction, deterministically."""
        assert isinstance(store, SQLiteStore)
        return await gather_in_one_batch(store, *commits)

    async def test_a_conflict_is_rolled_back_alone_and_counted(self, store: Store) -> None:
        assert isinstance(store, SQLiteStore)
        await store.commit(Commit(relationships=(rel(),), history=(entry(T1, 0),)))
        good = [Commit(meta=((f"good{n}", b"x"),)) for n in range(5)]
        bad = Commit(relationships=(rel(),), history=(entry(T1, 0, tag="other"),))
        outcomes = await gather_in_one_batch(store, *good, bad)
        assert isinstance(outcomes[-1], StoreConflict)
        assert store.stats.conflicts == 1


class TestSQLiteStoreInline(StoreContract):
    """The same contract with commits made on the event loop's thread (``inline=True``, the
    customer's agent): each Commit is its own transaction, made durable by a shared fsync."""

    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[Store]:
        s = await SQLiteStore.open(tmp_path / "vrm.db", inline=True)
        yield s
        await s.close()
        assert s.stats.inline > 0 or s.stats.writes == 0  # the contract ran inline


async def gather_in_one_batch(store: SQLiteStore, *commits: Commit) -> list[BaseException | None]:
    """Fire ``commits`` concurrently, the writer thread first parked on a gate so that every
    Commit is queued before it moves on: they then share one transaction, deterministically."""
    loop = asyncio.get_running_loop()
    gate = threading.Event()
    tasks: list[asyncio.Future[Any]] = [
        asyncio.ensure_future(store._write(lambda _conn: gate.wait(10)))
    ]
    tasks += [asyncio.ensure_future(store.commit(c)) for c in commits]
    loop.call_soon(gate.set)  # runs after every task above has queued its Commit
    results = await asyncio.gather(*tasks, return_exceptions=True)
    return [r if isinstance(r, BaseException) else None for r in results[1:]]


# -- SQLite only -------------------------------------------------------------------------------


async def test_group_commit_shares_transactions(sqlite_store: SQLiteStore) -> None:
    before = sqlite_store.stats.transactions
    await asyncio.gather(
        *(sqlite_store.commit(Commit(meta=((f"k{n}", b"v"),))) for n in range(200))
    )
    transactions = sqlite_store.stats.transactions - before
    print(f"200 concurrent commits took {transactions} transactions")
    assert 1 <= transactions <= 20
    assert sqlite_store.stats.largest_batch >= 10


async def test_failed_commit_fails_the_whole_batch(sqlite_store: SQLiteStore) -> None:
    good = [Commit(meta=((f"k{n}", b"v"),)) for n in range(5)]
    loop = asyncio.get_running_loop()
    gate = threading.Event()
    blocker = asyncio.ensure_future(sqlite_store._write(lambda _conn: gate.wait(10)))
    tasks = [asyncio.ensure_future(sqlite_store.commit(c)) for c in good]
    # a job that ends the transaction under the writer's feet: the savepoint RELEASE then fails
    saboteur = asyncio.ensure_future(sqlite_store._write(lambda conn: conn.execute("ROLLBACK")))
    loop.call_soon(gate.set)
    results = await asyncio.gather(blocker, *tasks, saboteur, return_exceptions=True)
    assert all(isinstance(r, StoreError) for r in results[1:])
    for n in range(5):
        assert await sqlite_store.get_meta(f"k{n}") is None
    await sqlite_store.commit(Commit(meta=(("after", b"ok"),)))  # the writer carries on
    assert await sqlite_store.get_meta("after") == b"ok"


async def test_sqlite_settings(sqlite_store: SQLiteStore) -> None:
    pragmas = await sqlite_store.pragmas()
    assert pragmas["journal_mode"] == "wal"
    assert pragmas["synchronous"] == 2  # FULL
    assert pragmas["foreign_keys"] == 1
    assert pragmas["busy_timeout"] > 0
    assert pragmas["user_version"] == SCHEMA_VERSION == 15


async def test_survives_close_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "vrm.db"
    async with await SQLiteStore.open(path) as s:
        await s.commit(
            Commit(
                relationships=(rel(),),
                history=(entry(T1, 0),),
                dedupe=(dedupe(BOB, 1),),
                outbox_add=(outbox("https://a", 1),),
                meta=(("k", b"v"),),
            )
        )
    async with await SQLiteStore.open(path) as s:
        assert await s.get_relationship(T1) == rel()
        assert await s.history(T1) == [entry(T1, 0)]
        assert await s.get_dedupe(BOB, (1).to_bytes(16, "big")) == dedupe(BOB, 1)
        assert [o.destination for o in await s.outbox_all()] == ["https://a"]
        assert await s.get_meta("k") == b"v"


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "vrm.db"
    async with await SQLiteStore.open(path):
        pass
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 999")
    conn.close()
    with pytest.raises(StoreError, match="newer"):
        await SQLiteStore.open(path)


def test_group_path_takes_repeated_hashes(tmp_path: Path) -> None:
    """The multi-row group write (not its one-by-one fallback) accepts a repeated hash."""
    e0 = entry(T1, 0)
    commits = [
        Commit(relationships=(rel(T1),), history=(e0, again(e0, 1))),
        Commit(relationships=(rel(T2),), history=(again(e0, 0, T2),)),
    ]
    conn = _connect_writer(tmp_path / "vrm.db")
    try:
        conn.execute("BEGIN IMMEDIATE")
        assert _apply_group(conn, commits)
        conn.execute("COMMIT")
        rows = conn.execute("SELECT thread, idx FROM history ORDER BY rowid").fetchall()
        assert rows == [(T1, 0), (T1, 1), (T2, 0)]
    finally:
        conn.close()


# -- schema migrations -------------------------------------------------------------------------

V1_HISTORY = [entry(T1, 0), entry(T2, 0), entry(T1, 1), entry(T2, 1), entry(T1, 2)]


def make_v1_database(path: Path) -> list[tuple[Any, ...]]:
    """A version-1 file as vrmproto 1 wrote it: its schema, by hand, and a few rows of each
    table, history inserted across threads so rowid order is not (thread, idx) order. Returns
    the history rows with their rowids."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("BEGIN")
        for statement in _SCHEMA_V1:
            conn.execute(statement)
        for r in (rel(T1), rel(T2, peer=CAROL, state="agreed")):
            conn.execute(
                "INSERT INTO relationships VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (r.thread, r.role, r.local_key, r.peer_key, r.state, r.data, r.label,
                 r.peer_url, r.updated_ms),
            )  # fmt: skip
        for h in V1_HISTORY:
            conn.execute(
                "INSERT INTO history (thread, idx, msg_hash, entry_hash, envelope, direction, "
                "recorded_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (h.thread, h.index, h.msg_hash, h.entry_hash, h.envelope, h.direction,
                 h.recorded_ms),
            )  # fmt: skip
        for d in (dedupe(BOB, 1), dedupe(CAROL, 2)):
            conn.execute(
                "INSERT INTO dedupe VALUES (?, ?, ?, ?, ?)",
                (d.sender, d.msg_id, d.msg_hash, d.response, d.expires_ms),
            )
        o = outbox("https://a", 7)
        conn.execute(
            "INSERT INTO outbox (destination, thread, msg_hash, envelope, attempts, "
            "next_attempt_ms, last_error, created_ms) VALUES (?, ?, ?, ?, 0, ?, '', ?)",
            (o.destination, o.thread, o.msg_hash, o.envelope, o.next_attempt_ms, o.created_ms),
        )
        conn.execute("INSERT INTO meta VALUES ('k', x'76')")
        conn.execute("PRAGMA user_version = 1")
        conn.execute("COMMIT")
        return conn.execute("SELECT rowid, * FROM history ORDER BY rowid").fetchall()
    finally:
        conn.close()


def history_indexes(path: Path) -> list[tuple[bool, list[str]]]:
    """(unique, columns) of every index on ``history``."""
    conn = sqlite3.connect(path)
    try:
        return sorted(
            (bool(unique), [c[2] for c in conn.execute(f"PRAGMA index_info('{name}')")])
            for _, name, unique, *_ in conn.execute("PRAGMA index_list('history')")
        )
    finally:
        conn.close()


async def test_migration_1_to_2_keeps_every_row(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    rows = make_v1_database(path)
    assert history_indexes(path) == [(True, ["thread", "idx"]), (True, ["thread", "msg_hash"])]
    async with await SQLiteStore.open(path) as s:
        assert (await s.pragmas())["user_version"] == SCHEMA_VERSION == 15
        assert await s.relationships() == [rel(T1), rel(T2, peer=CAROL, state="agreed")]
        assert await s.history(T1) == [entry(T1, i) for i in range(3)]
        assert await s.history(T2) == [entry(T2, i) for i in range(2)]
        assert await s.history_head(T1) == entry(T1, 2)
        assert await s.history_entry(T2, entry(T2, 1).msg_hash) == entry(T2, 1)
        assert await s.get_dedupe(BOB, (1).to_bytes(16, "big")) == dedupe(BOB, 1)
        assert await s.get_dedupe(CAROL, (2).to_bytes(16, "big")) == dedupe(CAROL, 2)
        assert [(o.destination, o.next_attempt_ms) for o in await s.outbox_all()] == [
            ("https://a", 7)
        ]
        assert await s.get_meta("k") == b"v"
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("SELECT rowid, * FROM history ORDER BY rowid").fetchall() == rows
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        tables = {n for (n,) in conn.execute("SELECT name FROM sqlite_schema WHERE type='table'")}
        assert "history_v2" not in tables
    finally:
        conn.close()
    assert history_indexes(path) == [(True, ["thread", "idx"])]


async def test_migrated_history_keeps_its_slot_rule_and_foreign_key(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    make_v1_database(path)
    async with await SQLiteStore.open(path) as s:
        # a taken slot, alone and in a group written together
        with pytest.raises(StoreConflict):
            await s.commit(Commit(history=(entry(T1, 2, tag="other"),)))
        taken = Commit(relationships=(rel(T1),), history=(entry(T1, 0, tag="other"),))
        fresh = Commit(relationships=(rel(CAROL[:16]),), history=(entry(CAROL[:16], 0),))
        outcomes = await gather_in_one_batch(s, taken, fresh)
        assert isinstance(outcomes[0], StoreConflict)
        assert outcomes[1] is None
        # a repeated message hash is accepted now
        await s.commit(Commit(history=(again(entry(T1, 0), 3),)))
        assert await s.history_entry(T1, entry(T1, 0).msg_hash) == entry(T1, 0)
        assert (await s.history(T1, start=3)) == [again(entry(T1, 0), 3)]
        # history still needs its relationship row
        with pytest.raises(StoreError, match="no relationship") as orphan:
            await s.commit(Commit(history=(entry(b"\x09" * 16, 0),)))
        assert not isinstance(orphan.value, StoreConflict)
        assert await s.history(b"\x09" * 16) == []
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA foreign_keys = ON")
        with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
            conn.execute("INSERT INTO history SELECT * FROM history WHERE idx = 0")
        with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
            conn.execute(
                "INSERT INTO history VALUES (?, 0, x'00', x'00', x'00', 'in', 0)", (b"\x09" * 16,)
            )
    finally:
        conn.close()


async def test_failed_migration_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    """The step runs in one transaction: a v1 file holding an orphan history row (written with
    foreign keys off) fails to migrate, and stays a v1 file with every row."""
    path = tmp_path / "v1.db"
    make_v1_database(path)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("INSERT INTO history VALUES (?, 0, x'01', x'01', x'01', 'in', 0)", (CAROL[:16],))
    before = conn.execute("SELECT rowid, * FROM history ORDER BY rowid").fetchall()
    conn.close()
    with pytest.raises(StoreError):
        await SQLiteStore.open(path)
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone() == (1,)
        assert conn.execute("SELECT rowid, * FROM history ORDER BY rowid").fetchall() == before
    finally:
        conn.close()
    assert history_indexes(path) == [(True, ["thread", "idx"]), (True, ["thread", "msg_hash"])]


async def test_fresh_database_is_built_at_the_current_version(tmp_path: Path) -> None:
    path = tmp_path / "vrm.db"
    async with await SQLiteStore.open(path) as s:
        assert (await s.pragmas())["user_version"] == SCHEMA_VERSION
    assert history_indexes(path) == [(True, ["thread", "idx"])]


_CRASH_CHILD = """
import asyncio, sys
from vrmproto.store import Commit, HistoryEntry, RelationshipRecord, SQLiteStore

async def main(path, inline):
    store = await SQLiteStore.open(path, inline=inline)
    thread = bytes(16)
    rel = RelationshipRecord(thread, "vendor", bytes(32), bytes(32), "s", b"", "", "", 0)
    await store.commit(Commit(relationships=(rel,)))
    head = await store.history_head(thread)
    i = 0 if head is None else head.index + 1
    while True:
        h = i.to_bytes(32, "big")
        await store.commit(Commit(history=(HistoryEntry(thread, i, h, h, b"x" * 200, "in", i),)))
        print(i, flush=True)
        i += 1

asyncio.run(main(sys.argv[1], sys.argv[2] == "inline"))
"""


@pytest.mark.parametrize("mode", ["writer", "inline"])
def test_acknowledged_commits_survive_kill_9(tmp_path: Path, mode: str) -> None:
    """Killed at any point, the store keeps every commit it acknowledged, gap-free — with
    commits on the writer thread, and made on the caller's thread and fsynced together."""
    path = tmp_path / "crash.db"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    acknowledged: list[int] = []
    for _ in range(3):
        child = subprocess.Popen(
            [sys.executable, "-c", _CRASH_CHILD, str(path), mode],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        try:
            assert child.stdout is not None
            for _ in range(40):
                line = child.stdout.readline()
                assert line, child.stderr.read() if child.stderr else "child died"
                acknowledged.append(int(line))
        finally:
            os.kill(child.pid, signal.SIGKILL)
            child.communicate()
        assert child.returncode == -signal.SIGKILL

        async def indices() -> set[int]:
            async with await SQLiteStore.open(path) as s:
                return {e.index for e in await s.history(bytes(16))}

        stored = asyncio.run(indices())
        assert set(acknowledged) <= stored
        assert stored == set(range(len(stored)))  # gap-free
    assert len(acknowledged) == 120


@pytest.mark.parametrize("inline", [False, True], ids=["writer", "inline"])
async def test_an_upsert_that_changes_indexed_keys_moves_them(tmp_path: Path, inline: bool) -> None:
    """Upserts leave a row's indexed keys out of their SET while they stay the same (a page of
    each index written for nothing, #12); a row whose keys do change still gets them, and the
    indexes find it by the new keys only."""
    async with await SQLiteStore.open(tmp_path / "vrm.db", inline=inline) as s:
        first = rel(T1)
        await s.commit(Commit(relationships=(first,), threads=(thread_record(T1),),
                              share_notes=(note(T1, "a"),)))  # fmt: skip
        await s.commit(Commit(relationships=(dataclasses.replace(first, state="agreed"),)))
        assert (await s.get_relationship(T1)) == dataclasses.replace(first, state="agreed")
        moved = dataclasses.replace(first, local_key=CAROL, peer_key=bytes([7]) * 32,
                                    state="rotated")  # fmt: skip
        vendor = bytes(range(32))
        shared = note(T1, "a")
        await s.commit(Commit(relationships=(moved,),
                              threads=(thread_record(T1, vendor_key=vendor),),
                              share_notes=(dataclasses.replace(shared, thread=T2),)))  # fmt: skip
        assert await s.get_relationship(T1) == moved
        assert await s.find_relationship(local_key=CAROL) == [moved]
        assert await s.find_relationship(peer_key=BOB) == []
        assert [t.thread for t in await s.threads(vendor_key=vendor)] == [T1]
        assert await s.share_notes(T1) == []
        assert await s.share_notes(T2) == [dataclasses.replace(shared, thread=T2)]


async def test_a_group_with_a_relationship_whose_keys_change_is_written_one_by_one(
    sqlite_store: SQLiteStore,
) -> None:
    """The grouped inbox-step upsert leaves the keys out too; a row whose keys changed makes the
    group fall back to one savepoint per Commit, where the full upsert moves them."""
    await sqlite_store.commit(Commit(relationships=(rel(T1), rel(T2, peer=CAROL))))
    moved = dataclasses.replace(rel(T1), peer_key=bytes([7]) * 32, state="rotated")
    kept = rel(T2, peer=CAROL, state="agreed")
    outcomes = await gather_in_one_batch(
        sqlite_store, Commit(relationships=(kept,)), Commit(relationships=(moved,))
    )
    assert outcomes == [None, None]
    assert await sqlite_store.get_relationship(T1) == moved
    assert await sqlite_store.get_relationship(T2) == kept
    assert await sqlite_store.find_relationship(peer_key=bytes([7]) * 32) == [moved]
    assert await sqlite_store.find_relationship(peer_key=BOB) == []
    conn = _connect_writer(sqlite_store.path)
    try:
        conn.execute("BEGIN IMMEDIATE")
        assert _apply_group(conn, [Commit(relationships=(dataclasses.replace(kept, state="x"),))])
        assert not _apply_group(conn, [Commit(relationships=(rel(T1),))])  # keys change back
        conn.execute("ROLLBACK")
    finally:
        conn.close()


# -- locks shared by every user of the storage (§11.11-2) ---------------------------------------


async def test_sqlite_locks_are_shared_by_store_objects_on_one_file(tmp_path: Path) -> None:
    async with await SQLiteStore.open(tmp_path / "vrm.db") as a, \
            await SQLiteStore.open(tmp_path / "vrm.db") as b:  # fmt: skip
        waited = asyncio.Event()
        got = asyncio.Event()

        async def take() -> None:
            async with b.lock(b"t", on_wait=waited.set):
                got.set()

        async with a.lock(b"t"):
            task = asyncio.create_task(take())
            await waited.wait()
            assert not got.is_set()
        await task


async def test_sqlite_lock_files_do_not_pile_up(tmp_path: Path) -> None:
    """A lock file stays after its step (the next step only opens it again), but a sweep - on a
    store object's first lock, then after every SWEEP_AFTER new names - removes every file
    nobody holds, and never one that is held."""
    locks = tmp_path / "vrm.db-locks"
    async with await SQLiteStore.open(tmp_path / "vrm.db") as a, \
            await SQLiteStore.open(tmp_path / "vrm.db") as b:  # fmt: skip
        async with a.lock(b"held"):
            for i in range(3 * SWEEP_AFTER):
                async with b.lock(b"n%d" % i):
                    pass
                assert len(os.listdir(locks)) <= SWEEP_AFTER + 1
            assert (locks / b"held".hex()).exists()  # b's sweeps left a's held lock alone
            waited = asyncio.Event()
            got = asyncio.Event()

            async def take() -> None:
                async with b.lock(b"held", on_wait=waited.set):
                    got.set()

            task = asyncio.create_task(take())
            await waited.wait()  # and it still excludes
            assert not got.is_set()
        await task
    assert os.listdir(locks)  # left for the next process ...
    async with await SQLiteStore.open(tmp_path / "vrm.db") as c, c.lock(b"x"):
        assert os.listdir(locks) == [b"x".hex()]  # ... whose first lock sweeps them away


async def test_a_lock_file_swept_between_open_and_lock_is_not_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A taker that opened a lock file just before another store object's sweep unlinked it
    locks a file no name leads to any more: it sees so and starts over on the name's new file."""
    a = FileLocks(tmp_path / "locks")
    b = FileLocks(tmp_path / "locks")
    async with a.hold(b"t"):
        pass  # the file stays
    inodes: list[int] = []
    flock = _store_locks._flock
    assert flock is not None

    def swept_first(fd: int) -> None:
        if not inodes:
            inodes.append(os.fstat(fd).st_ino)
            monkeypatch.setattr(_store_locks, "_flock", flock)  # the sweep's own lock
            assert b.sweep() == 1  # between a's open and its lock
            monkeypatch.setattr(_store_locks, "_flock", swept_first)
        else:
            inodes.append(os.fstat(fd).st_ino)
        flock(fd)

    monkeypatch.setattr(_store_locks, "_flock", swept_first)
    async with a.hold(b"t"):
        held = os.stat(tmp_path / "locks" / b"t".hex()).st_ino
    assert len(inodes) == 2
    assert held == inodes[1]  # a holds the name's new file, not the swept one


_LOCK_HOLDER = """
import asyncio, sys
from vrmproto.store import SQLiteStore

async def main() -> None:
    store = await SQLiteStore.open(sys.argv[1])
    async with store.lock(b"t"):
        print("held", flush=True)
        await asyncio.Event().wait()

asyncio.run(main())
"""


async def test_a_sqlite_lock_is_released_when_its_holder_process_dies(tmp_path: Path) -> None:
    path = tmp_path / "vrm.db"
    async with await SQLiteStore.open(path) as store:
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _LOCK_HOLDER, str(path), cwd=ROOT,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            assert child.stdout is not None
            assert await asyncio.wait_for(child.stdout.readline(), 30) == b"held\n"
            waited = asyncio.Event()

            async def take() -> None:
                async with store.lock(b"t", on_wait=waited.set):
                    pass

            task = asyncio.create_task(take())
            await waited.wait()
        finally:
            child.kill()
            await child.communicate()
        await asyncio.wait_for(task, 10)  # the kernel dropped the dead holder's lock


# -- files only their owner can read (§11.13-1) -------------------------------------------------


async def test_sqlite_files_are_created_private(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        async with await SQLiteStore.open(tmp_path / "vrm.db") as s:
            await s.commit(Commit(meta=(("k", b"v"),)))
            for name in ("vrm.db", "vrm.db-wal", "vrm.db-shm"):
                assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600, name
            assert not (tmp_path / "vrm.db-locks").exists()  # until a lock is taken
            async with s.lock(b"t"):
                assert stat.S_IMODE((tmp_path / "vrm.db-locks").stat().st_mode) == 0o700
    finally:
        os.umask(old)


async def test_sqlite_files_others_could_read_are_made_private_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "vrm.db"
    async with await SQLiteStore.open(path) as s:
        await s.commit(Commit(meta=(("k", b"v"),)))
    conn = sqlite3.connect(path)  # leaves -wal and -shm behind while it is open
    conn.execute("PRAGMA journal_mode = WAL")
    for name in ("vrm.db", "vrm.db-wal", "vrm.db-shm"):
        if (tmp_path / name).exists():
            (tmp_path / name).chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="vrmproto.files"):
        async with await SQLiteStore.open(path) as s:
            assert await s.get_meta("k") == b"v"
            for name in ("vrm.db", "vrm.db-wal", "vrm.db-shm"):
                assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600, name
    conn.close()
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert "could be read by other users (mode 0644)" in warned
    assert str(path) in warned


def test_group_path_takes_save_points_and_held_rows_unless_clears_collide(tmp_path: Path) -> None:
    """An inbox step's save points and held rows go through the multi-row group write; two
    Commits that clear and set one thread's save points are left to the one-by-one path, where
    the later one's points win (as the contract checks)."""
    share = digest("share")
    commits = [
        Commit(
            save_points_clear=(t,), save_points=(save_point(t, "p"),), held=(held(t, "f", share),)
        )
        for t in (T1, T2)
    ]
    colliding = [Commit(save_points_clear=(T1,)), Commit(save_points=(save_point(T1, "q"),))]
    conn = _connect_writer(tmp_path / "vrm.db")
    try:
        conn.execute("BEGIN IMMEDIATE")
        assert _apply_group(conn, commits)
        assert not _apply_group(conn, colliding)
        conn.execute("COMMIT")
        assert conn.execute("SELECT count(*) FROM save_points").fetchone() == (2,)
        assert conn.execute("SELECT thread, field FROM held ORDER BY thread").fetchall() == [
            (T1, "f"),
            (T2, "f"),
        ]
    finally:
        conn.close()
