"""The storage layer: both stores behave alike; SQLite is durable and group-commits."""

from __future__ import annotations

import asyncio
import hashlib
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
    DedupeRecord,
    HistoryEntry,
    MemoryStore,
    NewOutboxItem,
    RelationshipRecord,
    SQLiteStore,
    Store,
    StoreConflict,
    StoreError,
)
from vrmproto.store._sqlite import _SCHEMA_V1, SCHEMA_VERSION, _apply_group, _connect_writer

ROOT = Path(__file__).resolve().parents[1]
T1 = b"\x01" * 16
T2 = b"\x02" * 16
ALICE = b"A" * 32
BOB = b"B" * 32
CAROL = b"C" * 32


def rel(thread: bytes = T1, *, state: str = "offered", peer: bytes = BOB) -> RelationshipRecord:
    return RelationshipRecord(
        thread=thread,
        role="customer",
        local_key=ALICE,
        peer_key=peer,
        state=state,
        data=b"\x81\xa1s\x01" + state.encode(),
        label="Avis",
        peer_url="https://avis.example/vrm",
        updated_ms=1_000,
    )


def digest(*parts: object) -> bytes:
    return hashlib.sha256(repr(parts).encode()).digest()


def entry(thread: bytes, index: int, tag: str = "") -> HistoryEntry:
    return HistoryEntry(
        thread=thread,
        index=index,
        msg_hash=digest("msg", thread, index, tag),
        entry_hash=digest("entry", thread, index, tag),
        envelope=b"envelope-%d" % index,
        direction="in" if index % 2 else "out",
        recorded_ms=2_000 + index,
    )


def dedupe(sender: bytes, n: int, expires_ms: int = 10_000) -> DedupeRecord:
    return DedupeRecord(
        sender=sender,
        msg_id=n.to_bytes(16, "big"),
        msg_hash=digest("dedupe", sender, n),
        response=b"receipt-%d" % n,
        expires_ms=expires_ms,
    )


def outbox(destination: str, due_ms: int) -> NewOutboxItem:
    return NewOutboxItem(
        destination=destination,
        thread=T1,
        msg_hash=digest("out", destination, due_ms),
        envelope=b"env-" + destination.encode(),
        next_attempt_ms=due_ms,
        created_ms=5,
    )


@pytest.fixture(params=["sqlite", "memory"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    s: Store = (
        await SQLiteStore.open(tmp_path / "vrm.db") if request.param == "sqlite" else MemoryStore()
    )
    yield s
    await s.close()


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    async with await SQLiteStore.open(tmp_path / "vrm.db") as s:
        yield s


async def gather_in_one_batch(store: Store, *commits: Commit) -> list[BaseException | None]:
    """Fire ``commits`` concurrently. For SQLite, first park the writer thread on a gate so that
    every Commit is queued before it moves on: they then share one transaction, deterministically.
    """
    loop = asyncio.get_running_loop()
    tasks: list[asyncio.Future[Any]] = []
    if isinstance(store, SQLiteStore):
        gate = threading.Event()
        tasks.append(asyncio.ensure_future(store._write(lambda _conn: gate.wait(10))))
    tasks += [asyncio.ensure_future(store.commit(c)) for c in commits]
    if isinstance(store, SQLiteStore):
        loop.call_soon(gate.set)  # runs after every task above has queued its Commit
    results = await asyncio.gather(*tasks, return_exceptions=True)
    outcomes = results[1:] if isinstance(store, SQLiteStore) else results
    return [r if isinstance(r, BaseException) else None for r in outcomes]


# -- round trips -------------------------------------------------------------------------------


async def test_relationship_upsert_and_find(store: Store) -> None:
    await store.commit(Commit(relationships=(rel(T1), rel(T2, peer=CAROL))))
    assert await store.get_relationship(T1) == rel(T1)
    await store.commit(Commit(relationships=(rel(T1, state="agreed"),)))
    assert await store.get_relationship(T1) == rel(T1, state="agreed")
    assert await store.get_relationship(b"\x09" * 16) is None
    assert await store.relationships() == [rel(T1, state="agreed"), rel(T2, peer=CAROL)]
    assert await store.find_relationship(peer_key=CAROL) == [rel(T2, peer=CAROL)]
    assert await store.find_relationship(local_key=ALICE, peer_key=BOB) == [rel(T1, state="agreed")]
    assert len(await store.find_relationship(local_key=ALICE)) == 2
    assert await store.find_relationship(local_key=BOB) == []


async def test_history_round_trip(store: Store) -> None:
    entries = [entry(T1, i) for i in range(5)]
    await store.commit(Commit(relationships=(rel(T1),), history=tuple(entries[:2])))
    for e in entries[2:]:
        await store.commit(Commit(history=(e,)))
    assert await store.history(T1) == entries
    assert await store.history(T1, start=2) == entries[2:]
    assert await store.history(T1, start=1, limit=2) == entries[1:3]
    assert await store.history(T1, limit=0) == []
    assert await store.history_head(T1) == entries[-1]
    assert await store.history_entry(T1, entries[3].msg_hash) == entries[3]
    assert await store.history_entry(T2, entries[3].msg_hash) is None
    assert await store.history(T2) == []
    assert await store.history_head(T2) is None


async def test_dedupe_round_trip_and_purge(store: Store) -> None:
    records = [dedupe(ALICE, 1, 100), dedupe(ALICE, 2, 200), dedupe(BOB, 1, 300)]
    await store.commit(Commit(dedupe=tuple(records)))
    assert await store.get_dedupe(ALICE, (1).to_bytes(16, "big")) == records[0]
    assert await store.get_dedupe(BOB, (1).to_bytes(16, "big")) == records[2]
    assert await store.get_dedupe(BOB, (2).to_bytes(16, "big")) is None
    assert await store.purge_dedupe(200) == 1  # expires_ms < now: only the first
    assert await store.get_dedupe(ALICE, (1).to_bytes(16, "big")) is None
    assert await store.get_dedupe(ALICE, (2).to_bytes(16, "big")) == records[1]
    assert await store.purge_dedupe(10_000) == 2
    assert await store.purge_dedupe(10_000) == 0


async def test_outbox_due_retry_done(store: Store) -> None:
    await store.commit(
        Commit(
            outbox_add=(outbox("https://c", 30), outbox("https://a", 10), outbox("https://b", 10))
        )
    )
    everything = await store.outbox_all()
    assert [o.destination for o in everything] == ["https://c", "https://a", "https://b"]
    assert [o.item_id for o in everything] == sorted({o.item_id for o in everything})
    c, a, b = everything
    assert (a.attempts, a.last_error, a.created_ms, a.envelope) == (0, "", 5, b"env-https://a")

    assert await store.outbox_due(9) == []
    assert await store.outbox_due(10) == [a, b]  # due time, then id
    assert await store.outbox_due(100) == [a, b, c]
    assert await store.outbox_due(100, limit=1) == [a]

    await store.outbox_retry(a.item_id, 1, 50, "connection refused")
    await store.outbox_retry(999_999, 1, 50, "no such item: ignored")
    due = await store.outbox_due(100)
    assert [o.destination for o in due] == ["https://b", "https://c", "https://a"]
    assert (due[2].attempts, due[2].next_attempt_ms, due[2].last_error) == (
        1,
        50,
        "connection refused",
    )

    await store.commit(Commit(outbox_done=(b.item_id, 999_999)))
    await store.commit(Commit(outbox_add=(outbox("https://d", 0),)))
    remaining = await store.outbox_all()
    assert [o.destination for o in remaining] == ["https://c", "https://a", "https://d"]
    assert remaining[-1].item_id > b.item_id  # ids are never reused


async def test_meta(store: Store) -> None:
    assert await store.get_meta("head") is None
    await store.commit(Commit(meta=(("head", b"1"), ("node", b"n"))))
    await store.commit(Commit(meta=(("head", b"2"),)))
    assert await store.get_meta("head") == b"2"
    assert await store.get_meta("node") == b"n"


async def test_erase_replaces_envelope(store: Store) -> None:
    e0, e1 = entry(T1, 0), entry(T1, 1)
    await store.commit(Commit(relationships=(rel(),), history=(e0, e1)))
    await store.commit(Commit(erase=((T1, e1.msg_hash, b"erased"), (T2, e0.msg_hash, b"none"))))
    got = await store.history_entry(T1, e1.msg_hash)
    assert got is not None
    assert got.envelope == b"erased"
    assert (got.entry_hash, got.index) == (e1.entry_hash, 1)  # the chain is untouched
    assert await store.history(T1) == [e0, got]


async def test_truncate_drops_a_refused_tail_and_the_index_is_free_again(store: Store) -> None:
    """§8.1-5: a refused message leaves the history; its slot and hash can be used again."""
    e0, e1, e2 = entry(T1, 0), entry(T1, 1), entry(T1, 2)
    await store.commit(Commit(relationships=(rel(),), history=(e0, e1, e2)))
    await store.commit(Commit(truncate=((T1, 1),)))
    assert await store.history(T1) == [e0]
    head = await store.history_head(T1)
    assert head is not None
    assert head.index == 0
    # the same Commit may drop a tail and append anew, reusing a dropped hash
    await store.commit(Commit(history=(e1,)))
    await store.commit(Commit(truncate=((T1, 1),), history=(e1,)))
    assert await store.history(T1) == [e0, e1]


async def test_drop_deletes_a_thread_its_history_and_unset_meta_keys(store: Store) -> None:
    """§11.8-3: a relationship that never reached an agreement expires whole; other threads,
    meta keys and replay records stay."""
    await store.commit(Commit(
        relationships=(rel(T1), rel(T2)),
        history=(entry(T1, 0), entry(T1, 1), entry(T2, 0)),
        dedupe=(dedupe(BOB, 1),),
        meta=(("held:t1", b"x"), ("keep", b"y")),
    ))  # fmt: skip
    await store.commit(Commit(drop=(T1, b"\x09" * 16), unset=("held:t1", "missing")))
    assert await store.get_relationship(T1) is None
    assert await store.history(T1) == []
    assert await store.history_head(T1) is None
    assert await store.history_entry(T1, entry(T1, 0).msg_hash) is None
    assert [r.thread for r in await store.relationships()] == [T2]
    assert len(await store.history(T2)) == 1
    assert await store.get_meta("held:t1") is None
    assert await store.get_meta("keep") == b"y"
    assert await store.get_dedupe(BOB, dedupe(BOB, 1).msg_id) is not None
    # the thread id can open a relationship again, from index 0
    await store.commit(Commit(relationships=(rel(T1),), history=(entry(T1, 0, "again"),)))
    assert len(await store.history(T1)) == 1


async def test_usage_grows_with_what_is_stored(store: Store) -> None:
    """§11.8-4: a storage budget reads how much the store holds and the room left."""
    before = await store.usage()
    big = HistoryEntry(T1, 0, digest("big"), digest("big", 0), bytes(200_000), "in", 1)
    await store.commit(Commit(relationships=(rel(T1),), history=(big,)))
    after = await store.usage()
    assert after.stored_bytes >= before.stored_bytes + 100_000
    assert after.free_bytes is None or after.free_bytes > 0


def test_records_reject_bad_enumerations() -> None:
    with pytest.raises(ValueError, match="role"):
        RelationshipRecord(T1, "buyer", ALICE, BOB, "s", b"", "", "", 0)
    with pytest.raises(ValueError, match="direction"):
        HistoryEntry(T1, 0, b"h", b"e", b"", "sideways", 0)
    with pytest.raises(ValueError, match="index"):
        HistoryEntry(T1, -1, b"h", b"e", b"", "in", 0)


# -- all or nothing ----------------------------------------------------------------------------


async def test_conflicting_history_index_rolls_back_alone(store: Store) -> None:
    await store.commit(Commit(relationships=(rel(),), history=(entry(T1, 0),)))
    good = [
        Commit(relationships=(rel(bytes([n]) * 16),), meta=((f"good{n}", b"x"),))
        for n in range(10, 40)
    ]
    bad = Commit(
        relationships=(rel(T1, state="clobbered"),),
        meta=(("bad", b"x"),),
        dedupe=(dedupe(BOB, 7),),
        history=(entry(T1, 0, tag="other"),),  # index 0 is taken
    )
    outcomes = await gather_in_one_batch(store, *good[:15], bad, *good[15:])
    assert isinstance(outcomes[15], StoreConflict)
    assert outcomes[:15] + outcomes[16:] == [None] * 30
    assert await store.get_meta("bad") is None
    assert await store.get_relationship(T1) == rel(T1)
    assert await store.get_dedupe(BOB, (7).to_bytes(16, "big")) is None
    assert await store.history(T1) == [entry(T1, 0)]
    for n in range(10, 40):
        assert await store.get_meta(f"good{n}") == b"x"
    if isinstance(store, SQLiteStore):
        assert store.stats.conflicts == 1


async def test_conflicting_dedupe_key_rolls_back_alone(store: Store) -> None:
    await store.commit(Commit(relationships=(rel(),), dedupe=(dedupe(BOB, 1),)))
    replay = Commit(
        history=(entry(T1, 0),), outbox_add=(outbox("https://x", 0),), dedupe=(dedupe(BOB, 1),)
    )
    others = [Commit(dedupe=(dedupe(CAROL, n),)) for n in range(20)]
    outcomes = await gather_in_one_batch(store, *others, replay)
    assert isinstance(outcomes[-1], StoreConflict)
    assert outcomes[:-1] == [None] * 20
    assert await store.history(T1) == []
    assert await store.outbox_all() == []
    assert await store.get_dedupe(BOB, (1).to_bytes(16, "big")) == dedupe(BOB, 1)
    assert await store.get_dedupe(CAROL, (19).to_bytes(16, "big")) == dedupe(CAROL, 19)


async def test_conflicts_inside_one_commit(store: Store) -> None:
    await store.commit(Commit(relationships=(rel(),)))
    with pytest.raises(StoreConflict):
        await store.commit(Commit(meta=(("k", b"v"),), dedupe=(dedupe(BOB, 1), dedupe(BOB, 1))))
    same_slot = (entry(T1, 0), entry(T1, 1), entry(T1, 1, tag="other"))
    with pytest.raises(StoreConflict):
        await store.commit(Commit(meta=(("k", b"v"),), history=same_slot))
    assert await store.get_meta("k") is None
    assert await store.history(T1) == []


def again(e: HistoryEntry, index: int, thread: bytes | None = None) -> HistoryEntry:
    """The message of ``e`` logged once more, at ``index`` of ``thread`` (by default its own),
    with a link and envelope of its own."""
    thread = e.thread if thread is None else thread
    return HistoryEntry(thread, index, e.msg_hash, digest("again", thread, index),
                        b"again-%d" % index, "in", 3_000 + index)  # fmt: skip


async def test_a_repeated_message_hash_is_not_a_store_conflict(store: Store) -> None:
    """The engine keeps a message to one place in a history (§4.5-6, §8.2-2); the store keeps
    only the history slot and the dedupe key, and looks a hash up at its lowest index."""
    e0, e1 = entry(T1, 0), entry(T1, 1)
    # twice in one Commit, then once more in a later one
    await store.commit(Commit(relationships=(rel(),), history=(e0, e1, again(e0, 2))))
    await store.commit(Commit(history=(again(e0, 3),)))
    assert [h.index for h in await store.history(T1)] == [0, 1, 2, 3]
    assert await store.history_entry(T1, e0.msg_hash) == e0
    assert await store.history_entry(T1, e1.msg_hash) == e1
    # the same hash in another thread is another message's business
    await store.commit(Commit(relationships=(rel(T2),), history=(again(e0, 0, T2),)))
    assert await store.history_entry(T2, e0.msg_hash) == again(e0, 0, T2)
    assert await store.history_entry(T1, e0.msg_hash) == e0
    # dropping the first occurrence leaves none; a kept one stays the first
    await store.commit(Commit(truncate=((T1, 3),)))
    assert await store.history_entry(T1, e0.msg_hash) == e0
    await store.commit(Commit(truncate=((T1, 0),)))
    assert await store.history_entry(T1, e0.msg_hash) is None
    await store.commit(Commit(history=(entry(T1, 0, tag="new"), again(e0, 1))))
    assert await store.history_entry(T1, e0.msg_hash) == again(e0, 1)


async def test_erase_replaces_every_entry_of_the_thread_holding_the_message(store: Store) -> None:
    e0, e1 = entry(T1, 0), entry(T1, 1)
    await store.commit(Commit(relationships=(rel(), rel(T2)), history=(e0, e1, again(e1, 2))))
    await store.commit(Commit(history=(again(e1, 0, T2), entry(T2, 1))))
    await store.commit(Commit(erase=((T1, e1.msg_hash, b"erased"),)))
    t1 = await store.history(T1)
    assert [h.envelope for h in t1] == [e0.envelope, b"erased", b"erased"]
    assert [h.entry_hash for h in t1] == [e0.entry_hash, e1.entry_hash, again(e1, 2).entry_hash]
    assert await store.history(T2) == [again(e1, 0, T2), entry(T2, 1)]  # other threads untouched


async def test_repeated_hashes_in_one_group_transaction(store: Store) -> None:
    """Commits written together (SQLite's multi-row group) may repeat a hash across threads and
    within one; a taken slot still fails alone."""
    e0 = entry(T1, 0)
    threads = [bytes([n]) * 16 for n in range(10, 20)]
    commits = [
        Commit(relationships=(rel(t),), history=(again(e0, 0, t), again(e0, 1, t))) for t in threads
    ]
    await store.commit(Commit(relationships=(rel(),), history=(e0,)))
    taken = Commit(relationships=(rel(),), history=(entry(T1, 0, tag="other"),))
    outcomes = await gather_in_one_batch(store, *commits[:5], taken, *commits[5:])
    assert isinstance(outcomes[5], StoreConflict)
    assert outcomes[:5] + outcomes[6:] == [None] * 10
    for thread in threads:
        assert [h.msg_hash for h in await store.history(thread)] == [e0.msg_hash] * 2
        got = await store.history_entry(thread, e0.msg_hash)
        assert got is not None
        assert got.index == 0
    assert await store.history(T1) == [e0]


async def test_history_gap_and_orphan_are_errors_not_conflicts(store: Store) -> None:
    await store.commit(Commit(relationships=(rel(),)))
    with pytest.raises(StoreError, match="gap") as gap:
        await store.commit(Commit(history=(entry(T1, 1),)))
    assert not isinstance(gap.value, StoreConflict)
    with pytest.raises(StoreError, match="no relationship") as orphan:
        await store.commit(Commit(history=(entry(T2, 0),)))
    assert not isinstance(orphan.value, StoreConflict)
    # a relationship and its first entries in the same Commit is fine
    await store.commit(Commit(relationships=(rel(T2),), history=(entry(T2, 0), entry(T2, 1))))
    assert len(await store.history(T2)) == 2


async def test_many_concurrent_commits_all_visible(store: Store) -> None:
    await store.commit(Commit(relationships=(rel(),)))
    await asyncio.gather(
        *(
            store.commit(Commit(dedupe=(dedupe(BOB, n),), meta=((f"m{n}", b"%d" % n),)))
            for n in range(500)
        )
    )
    for n in range(500):
        assert await store.get_dedupe(BOB, n.to_bytes(16, "big")) == dedupe(BOB, n)
        assert await store.get_meta(f"m{n}") == b"%d" % n


async def test_closed_store_refuses(store: Store) -> None:
    await store.close()
    with pytest.raises(StoreError, match="closed"):
        await store.commit(Commit(meta=(("k", b"v"),)))
    with pytest.raises(StoreError, match="closed"):
        await store.get_meta("k")
    await store.close()  # idempotent


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
    assert pragmas["user_version"] == SCHEMA_VERSION == 2


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
        assert (await s.pragmas())["user_version"] == SCHEMA_VERSION == 2
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

async def main(path):
    store = await SQLiteStore.open(path)
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

asyncio.run(main(sys.argv[1]))
"""


def test_acknowledged_commits_survive_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "crash.db"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    acknowledged: list[int] = []
    for _ in range(3):
        child = subprocess.Popen(
            [sys.executable, "-c", _CRASH_CHILD, str(path)],
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


# -- locks shared by every user of the storage (§11.11-2) ---------------------------------------


async def test_a_lock_excludes_other_holders_of_its_name_and_says_they_wait(store: Store) -> None:
    waited = asyncio.Event()
    order: list[str] = []

    async def second() -> None:
        async with store.lock(b"thread-1", on_wait=waited.set):
            order.append("second")

    async with store.lock(b"thread-1"):
        task = asyncio.create_task(second())
        await waited.wait()  # it is waiting for us
        async with store.lock(b"thread-2", on_wait=lambda: order.append("never")):
            order.append("other name")
        order.append("first")
    await task
    assert order == ["other name", "first", "second"]
    async with store.lock(b"thread-1", on_wait=lambda: order.append("never")):
        pass  # free again, at once
    assert "never" not in order


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
        assert os.listdir(tmp_path / "vrm.db-locks") == []  # a lock file lives while held


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
