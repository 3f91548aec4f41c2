"""``Store.commit(c, expect=record)``: ``c`` is written only over exactly that relationship row.

A vendor endpoint commits a step taken from the relationship it kept warm with ``expect=`` the
record its last Commit stored, instead of reading the record first (``vrmproto.server._warm``).
Every store that the endpoint trusts with it (``_warm.checks_expect``) must refuse the Commit
with :class:`StoreConflict`, writing nothing of it, when the row is not exactly that record,
alone or in a group transaction; and several store objects on one database (several vendor
processes, spec §12.7-4) must each see what the others stored.
"""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import _postgres
import pytest
from _vendor_proc import ACCEPTED, VENDOR_SEED, Customer, Reply

from vrmproto import Identity
from vrmproto.server import Endpoint, ReferencePolicy, _warm
from vrmproto.store import (
    Commit,
    HistoryEntry,
    MemoryStore,
    PostgresConfig,
    PostgresStore,
    RelationshipRecord,
    SQLiteStore,
    Store,
    StoreConflict,
)

postgres_cluster = _postgres.postgres_cluster

Opener = Callable[[], Awaitable[Store]]


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Opener]:
    """Opens store objects on one database (one file, one schema); closes them afterwards."""
    opened: list[Store] = []
    config: PostgresConfig | None = None
    if request.param == "postgres":  # the session's cluster (a sync fixture), a new schema
        cluster = request.getfixturevalue("postgres_cluster")
        config = PostgresConfig(cluster.dsn, schema="t_" + uuid.uuid4().hex[:16], pool_size=2)

    async def one() -> Store:
        store: Store
        if request.param == "memory":
            store = MemoryStore()
        elif request.param == "sqlite":
            store = await SQLiteStore.open(tmp_path / "v.db")
        else:
            assert config is not None
            store = await PostgresStore.open(config)
        opened.append(store)
        return store

    one.kind = request.param  # type: ignore[attr-defined]
    yield one
    for store in opened:
        await store.close()
    if config is not None:
        await _postgres.drop_schema(config.dsn, config.schema)


def rec(thread: bytes, n: int) -> RelationshipRecord:
    return RelationshipRecord(thread, "vendor", bytes(32), bytes(32), "agreed", bytes([n]),
                              "label", "", n)  # fmt: skip


def over(thread: bytes, n: int) -> Commit:
    """Row n + 1 of ``thread``, with a history entry, to be written over row n."""
    entry = HistoryEntry(thread, n, bytes([n]) * 32, bytes([n + 1]) * 32, b"env", "in", n)
    return Commit(relationships=(rec(thread, n + 1),), history=(entry,))


def expecting(store: Store) -> _warm.ExpectingStore:
    checked = _warm.checks_expect(store)
    assert checked is not None, f"{type(store).__name__} is not trusted with expect="
    return checked


async def in_one_batch(store: Store, *jobs: tuple[Commit, RelationshipRecord]) -> list[Any]:
    """Commit ``jobs`` (each with its ``expect``) so that they share one transaction; each
    one's exception, or None."""
    tasks: list[asyncio.Future[Any]] = []
    gate = threading.Event()
    if isinstance(store, SQLiteStore):  # park the writer thread until all are queued
        tasks.append(asyncio.ensure_future(store._write(lambda _conn: gate.wait(10))))
    tasks += [asyncio.ensure_future(expecting(store).commit(c, expect=e)) for c, e in jobs]
    # PostgreSQL and memory: each task queues its Commit in its first step, all of them before
    # the writer task (woken by the first) runs
    asyncio.get_running_loop().call_soon(gate.set)
    results = await asyncio.gather(*tasks, return_exceptions=True)
    return [r if isinstance(r, BaseException) else None for r in results[len(tasks) - len(jobs):]]


async def test_a_commit_lands_only_over_the_expected_row(open_store: Opener) -> None:
    store = await open_store()
    checked = expecting(store)
    one, two, none = os.urandom(16), os.urandom(16), os.urandom(16)
    await store.commit(Commit(relationships=(rec(one, 0), rec(two, 0))))
    await checked.commit(over(one, 0), expect=rec(one, 0))
    with pytest.raises(StoreConflict):
        await checked.commit(over(two, 0), expect=rec(two, 8))
    with pytest.raises(StoreConflict):  # a thread with no row at all
        await checked.commit(over(none, 0), expect=rec(none, 0))
    assert await store.get_relationship(one) == rec(one, 1)
    assert [h.index for h in await store.history(one)] == [0]
    assert await store.get_relationship(two) == rec(two, 0)  # nothing of it written
    assert await store.history(two) == []


async def test_in_one_transaction_only_the_commits_whose_row_moved_are_refused(
    open_store: Opener,
) -> None:
    """Tried together as a group first: one refused expectation sends them one by one, so
    the others still land; two Commits of the group on one thread expecting the same row: the
    first lands, the second finds the row moved."""
    store = await open_store()
    a, b, c = (os.urandom(16) for _ in range(3))
    await store.commit(Commit(relationships=(rec(a, 0), rec(b, 0), rec(c, 0))))
    ok, refused, first, second = await in_one_batch(
        store,
        (over(a, 0), rec(a, 0)),
        (over(b, 0), rec(b, 5)),
        (over(c, 0), rec(c, 0)),
        (Commit(relationships=(rec(c, 9),)), rec(c, 0)),
    )
    assert ok is None
    assert isinstance(refused, StoreConflict)
    assert first is None
    assert isinstance(second, StoreConflict)
    assert await store.get_relationship(a) == rec(a, 1)
    assert await store.get_relationship(b) == rec(b, 0)
    assert await store.history(b) == []
    assert await store.get_relationship(c) == rec(c, 1)
    # every expectation holds when the group starts, but two Commits write thread c
    *landed, moved = await in_one_batch(
        store,
        (over(a, 1), rec(a, 1)),
        (over(c, 1), rec(c, 1)),
        (Commit(relationships=(rec(c, 9),)), rec(c, 1)),
    )
    assert landed == [None, None]
    assert isinstance(moved, StoreConflict)
    assert [h.index for h in await store.history(a)] == [0, 1]
    assert await store.get_relationship(c) == rec(c, 2)


async def test_vendor_processes_on_one_database_each_see_what_the_other_stored(
    open_store: Opener,
) -> None:
    """Two endpoints on two store objects of one database (two vendor processes): messages
    alternate between them, so each one's kept relationship is stale every time, and its
    commit with ``expect=`` conflicts and runs again from the store."""
    if open_store.kind == "memory":  # type: ignore[attr-defined]
        pytest.skip("two MemoryStore objects share nothing")
    stores = [await open_store(), await open_store()]
    policy = ReferencePolicy(accepts_terms=ACCEPTED)
    one, two = (Endpoint(Identity(VENDOR_SEED), store=s, policy=policy) for s in stores)
    customer = Customer(Identity(VENDOR_SEED))
    offer = customer.offer(*ACCEPTED)
    response = await one.handle_inbox(offer.envelope)
    customer.absorb(Reply(response.status, response.body, dict(response.headers)), offer)
    for n in range(6):
        msg = customer.share({"email": f"{n}@b.c"})
        response = await (two, one)[n % 2].handle_inbox(msg.envelope)
        assert response.status == 200, response.body
        customer.absorb(Reply(response.status, response.body, dict(response.headers)), msg)
    history = await stores[0].history(customer.thread)
    assert [h.index for h in history] == list(range(15))
