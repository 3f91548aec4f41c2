"""``share_notes(thread)`` reads that thread's notes, not every note (s18).

A person's agent reads one relationship's share notes for ``vrm data VENDOR``,
``vrm history VENDOR`` and the UI's relationship page. The memory store filtered every note it
held; PostgreSQL asked ``$1 IS NULL OR thread = $1``, whose generic plan (PostgreSQL may
switch a prepared statement to one after five runs, and does always under
``plan_cache_mode = force_generic_plan``) cannot use ``share_notes_by_thread`` and scans the
table. SQLite still scans (its schema 10 dropped the index: an index page of the WAL per
share); measured and left as it is — see the session's report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import _postgres
import asyncpg
import pytest

from vrmproto.store import Commit, MemoryStore, PostgresStore, Store
from vrmproto.store._base import ShareNote
from vrmproto.testing.store_contract import note

postgres_cluster = _postgres.postgres_cluster

THREADS = [n.to_bytes(16, "big") for n in range(1, 41)]


async def fill(store: Store) -> None:
    """Three notes in each of 40 threads, the first thread's noted last."""
    notes = [note(t, f"{t.hex()}-{k}", shared_ms=100 - k) for t in THREADS[1:] for k in range(3)]
    notes += [note(THREADS[0], f"first-{k}", shared_ms=50 + k) for k in range(3)]
    await store.commit(Commit(share_notes=tuple(notes)))


class CountedNotes(dict[bytes, ShareNote]):
    """The memory store's notes, counting the reads of all of them."""

    whole_reads = 0

    def values(self) -> Any:
        CountedNotes.whole_reads += 1
        return super().values()

    def __iter__(self) -> Any:
        CountedNotes.whole_reads += 1
        return super().__iter__()


async def test_memory_reads_one_threads_notes_without_reading_all() -> None:
    store = MemoryStore()
    await fill(store)
    counted = CountedNotes(store._share_notes)
    store._share_notes = counted
    CountedNotes.whole_reads = 0
    mine = await store.share_notes(THREADS[0])
    assert [n.shared_ms for n in mine] == [50, 51, 52]
    assert {n.thread for n in mine} == {THREADS[0]}
    assert CountedNotes.whole_reads == 0
    assert len(await store.share_notes()) == 120
    assert CountedNotes.whole_reads == 1


async def test_memory_note_that_moves_thread_leaves_the_old_one() -> None:
    store = MemoryStore()
    moved = note(THREADS[0], "moved")
    await store.commit(Commit(share_notes=(moved,)))
    again = ShareNote(moved.share, THREADS[1], moved.vendor, moved.fields, moved.purposes,
                      moved.categories, moved.expires_ms, moved.shared_ms, "confirmed")  # fmt: skip
    await store.commit(Commit(share_notes=(again,)))
    assert await store.share_notes(THREADS[0]) == []
    assert await store.share_notes(THREADS[1]) == [again]
    assert await store.share_notes() == [again]


async def test_postgres_reads_one_threads_notes_by_its_index(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """The statement the store runs for one thread, planned generically, uses the index."""
    async with _postgres.opened_store(request, tmp_path, "postgres") as store:
        assert isinstance(store, PostgresStore)
        await fill(store)
        ran: list[tuple[str, tuple[object, ...]]] = []
        rows = store._rows

        async def spy(sql: str, *args: object) -> list[tuple[Any, ...]]:
            ran.append((sql, args))
            return await rows(sql, *args)

        store._rows = spy  # type: ignore[method-assign]
        mine = await store.share_notes(THREADS[0])
        assert [n.shared_ms for n in mine] == [50, 51, 52]
        assert len(await store.share_notes()) == 120
        [sql] = [s for s, a in ran if a == (THREADS[0],)]
        conn = await asyncpg.connect(store.config.dsn, server_settings={
            "search_path": store.config.schema, "plan_cache_mode": "force_generic_plan",
            "enable_seqscan": "off"})  # fmt: skip
        try:
            await conn.execute(f"PREPARE notes_of(bytea) AS {sql}")
            plan = "\n".join(r[0] for r in await conn.fetch(
                f"EXPLAIN EXECUTE notes_of('\\x{THREADS[0].hex()}'::bytea)"))  # fmt: skip
        finally:
            await conn.close()
        assert "share_notes_by_thread" in plan, plan
        assert "Seq Scan" not in plan, plan
