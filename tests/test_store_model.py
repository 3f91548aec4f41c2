"""SQLite and memory agree on the typed records (schema v3) for any run of Commits.

Hypothesis draws Commits over a few threads — drafts added and taken, save points set, cleared
and taken, held rows written and dropped by share, thread records, whole threads dropped — and
both stores apply them; every Commit must have the same outcome (landed, or StoreConflict with
nothing written) and every query the same answer. SQLite gets them all in one batch, so that its
group commit (multi-row statements for save points and held rows, one savepoint per Commit when
they do not commute) is what is compared with the memory store's one-at-a-time application.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_store import gather_in_one_batch

from vrmproto.store import Commit, MemoryStore, SQLiteStore, Store, StoreConflict
from vrmproto.testing.store_contract import digest, draft, held, save_point, thread_record

THREADS = [bytes([n]) * 16 for n in (1, 2, 3)]
SHARES = [digest("share", n) for n in range(2)]

threads = st.sampled_from(THREADS)
tags = st.sampled_from(["a", "b", "c"])
few = {"max_size": 3}

any_parts = st.builds(
    lambda **parts: Commit(**{k: tuple(v) for k, v in parts.items()}),
    threads=st.lists(st.builds(lambda t, g: thread_record(t, generation=g), threads,
                               st.integers(0, 3)), **few),
    drafts_add=st.lists(st.builds(draft, threads, st.integers(0, 3)), **few),
    drafts_done=st.lists(st.tuples(threads, st.integers(0, 3)), **few),
    save_points_clear=st.lists(threads, max_size=2),
    save_points_done=st.lists(st.builds(lambda t, g: (t, save_point(t, g).msg_hash), threads,
                                        tags), **few),
    save_points=st.lists(st.builds(save_point, threads, tags, st.integers(0, 4)), **few),
    held_drop=st.lists(st.tuples(threads, st.sampled_from(SHARES)), max_size=2),
    held=st.lists(st.builds(held, threads, st.sampled_from(["f", "g", "h"]),
                            st.sampled_from(SHARES), st.sampled_from([None, 10, 20])), **few),
    drop=st.lists(threads, max_size=1),
)  # fmt: skip
#: What an inbox step writes: the parts SQLite groups into multi-row statements.
inbox_parts = st.builds(
    lambda **parts: Commit(**{k: tuple(v) for k, v in parts.items()}),
    save_points_clear=st.lists(threads, max_size=1),
    save_points=st.lists(st.builds(save_point, threads, tags, st.integers(0, 4)), **few),
    held=st.lists(st.builds(held, threads, st.sampled_from(["f", "g", "h"]),
                            st.sampled_from(SHARES), st.sampled_from([None, 10, 20])), **few),
)  # fmt: skip
commits = st.one_of(inbox_parts, any_parts)


async def everything(store: Store) -> list[Any]:
    """Every answer the typed queries give."""
    found: list[Any] = [await store.threads(), await store.drafts(), await store.held_expired(15)]
    for t in THREADS:
        found += [await store.drafts(t), await store.save_points(t), await store.held(t)]
    return found


async def compare(run: list[Commit], path: Path) -> None:
    memory = MemoryStore()
    expected: list[type[BaseException] | None] = []
    for c in run:
        try:
            await memory.commit(c)
            expected.append(None)
        except StoreConflict:
            expected.append(StoreConflict)
    async with await SQLiteStore.open(path) as sqlite:
        got = await gather_in_one_batch(sqlite, *run)
        assert [None if r is None else type(r) for r in got] == expected
        assert await everything(sqlite) == await everything(memory)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(commits, min_size=1, max_size=8))
def test_sqlite_and_memory_agree_on_typed_records(run: list[Commit]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(compare(run, Path(tmp) / "vrm.db"))
