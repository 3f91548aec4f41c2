"""The store contract judges other backends (vrmproto/testing/store_contract.py): a backend that
breaks the :class:`~vrmproto.store.Store` protocol fails it, and one that keeps it passes, the
way a vendor's own backend meets it. Each backend here is a small change to MemoryStore."""

from __future__ import annotations

import dataclasses
import inspect
import zlib
from collections.abc import Callable
from typing import Any

import pytest

from vrmproto.store import (
    Commit,
    HistoryEntry,
    MemoryStore,
    RelationshipRecord,
    StoreError,
    ThreadKind,
    ThreadRecord,
)
from vrmproto.testing.store_contract import StoreContract

pytest_plugins = ["pytester"]


async def failures(make: Callable[[], MemoryStore]) -> list[str]:
    """The names of the contract's tests that a fresh store from ``make`` fails."""
    contract = StoreContract()
    failed = []
    for name in sorted(n for n in dir(StoreContract) if n.startswith("test_")):
        test = getattr(contract, name)
        if not inspect.iscoroutinefunction(test):
            continue
        store = make()
        try:
            await test(store)
        except Exception:  # any failure of the test counts
            failed.append(name)
        finally:
            await store.close()
    return failed


class KindBlind(MemoryStore):
    """Wrong: ``threads(kind=...)`` gives every kind; the agent finds its vendor threads (not
    its intentcast ones) this way."""

    async def threads(
        self, *, vendor_key: bytes | None = None, kind: ThreadKind | None = None
    ) -> list[ThreadRecord]:
        return await super().threads(vendor_key=vendor_key)


class ReadsAfterClose(MemoryStore):
    """Wrong: after ``close()`` only ``commit`` and ``get_meta`` refuse, the rest answer from
    what the store still holds; the protocol says every method but ``close`` raises."""

    shut = False

    async def close(self) -> None:
        self.shut = True

    async def commit(self, c: Commit, **kw: Any) -> None:
        if self.shut:
            raise StoreError("the store is closed")
        await super().commit(c, **kw)

    async def get_meta(self, key: str) -> bytes | None:
        if self.shut:
            raise StoreError("the store is closed")
        return await super().get_meta(key)


class Unsorted(MemoryStore):
    """Wrong: relationships in the order they were first written, not by thread (the Store
    protocol: ``relationships()`` and ``find_relationship()`` sort by thread)."""

    async def find_relationship(
        self, local_key: bytes | None = None, peer_key: bytes | None = None
    ) -> list[RelationshipRecord]:
        self._check_open()
        return [r for r in self._relationships.values()
                if (local_key is None or r.local_key == local_key)
                and (peer_key is None or r.peer_key == peer_key)]  # fmt: skip


class HalfWritten(MemoryStore):
    """Wrong: refuses a taken slot before writing anything, but finds a gap in a history (or
    an entry with no relationship) only once the rest of the Commit is written."""

    async def commit(self, c: Commit, **kw: Any) -> None:
        for h in c.history:
            head = await self.history_head(h.thread)
            known = await self.get_relationship(h.thread) is not None or any(
                r.thread == h.thread for r in c.relationships)
            if not known or h.index > (head.index + 1 if head else 0):
                await super().commit(dataclasses.replace(c, history=()))
                raise StoreError("a gap in the history, or no relationship")
            break
        await super().commit(c, **kw)


class Compressing(MemoryStore):
    """Right: keeps envelopes compressed (as a database may), reads them back whole, and says
    how much it holds — the compressed size."""

    async def commit(self, c: Commit, **kw: Any) -> None:
        packed = tuple(dataclasses.replace(h, envelope=zlib.compress(h.envelope))
                       for h in c.history)  # fmt: skip
        erase = tuple((t, m, zlib.compress(e)) for t, m, e in c.erase)
        await super().commit(dataclasses.replace(c, history=packed, erase=erase))

    @staticmethod
    def _whole(h: HistoryEntry | None) -> HistoryEntry | None:
        return None if h is None else dataclasses.replace(h, envelope=zlib.decompress(h.envelope))

    async def history(
        self, thread: bytes, start: int = 0, limit: int | None = None
    ) -> list[HistoryEntry]:
        got = await super().history(thread, start, limit)
        return [dataclasses.replace(h, envelope=zlib.decompress(h.envelope)) for h in got]

    async def history_head(self, thread: bytes) -> HistoryEntry | None:
        return self._whole(await super().history_head(thread))

    async def history_entry(self, thread: bytes, msg_hash: bytes) -> HistoryEntry | None:
        return self._whole(await super().history_entry(thread, msg_hash))


async def test_the_reference_memory_store_passes() -> None:
    assert await failures(MemoryStore) == []


async def test_a_store_that_ignores_the_thread_kind_fails() -> None:
    assert "test_thread_records_by_kind" in await failures(KindBlind)


async def test_a_store_that_still_reads_after_close_fails() -> None:
    assert await failures(ReadsAfterClose) == ["test_closed_store_refuses"]


async def test_a_store_that_lists_relationships_unsorted_fails() -> None:
    assert await failures(Unsorted) != []


async def test_a_store_that_writes_half_a_commit_it_refuses_fails() -> None:
    """Commit: "either way nothing of c was written" — for a gap as for a conflict."""
    assert await failures(HalfWritten) == ["test_history_gap_and_orphan_are_errors_not_conflicts"]


async def test_a_store_that_compresses_what_it_holds_passes() -> None:
    """Envelopes are signed and sealed bytes, which do not compress: the storage budget
    (§11.8-4) is measured with bytes like them, not 200 kB of zeros a compressing database
    keeps in a few hundred."""
    assert await failures(Compressing) == []


STRICT_MODULE = '''
import pytest_asyncio

from vrmproto.store import MemoryStore
from vrmproto.testing.store_contract import StoreContract


class TestMyStore(StoreContract):
    @pytest_asyncio.fixture
    async def store(self):
        s = MemoryStore()
        yield s
        await s.close()
'''


def test_the_contract_runs_in_pytest_asyncios_strict_mode(pytester: pytest.Pytester) -> None:
    """pytest-asyncio's default mode is strict: a vendor's suite that has not switched to auto
    mode runs the contract with its fixture made by ``pytest_asyncio.fixture`` (the module
    docstring). Before, every async test of the contract errored there ("requested an async
    fixture ... with no plugin or hook that handled it"): the tests carried no asyncio mark."""
    pytester.makeini("[pytest]\nasyncio_mode = strict\nasyncio_default_fixture_loop_scope = "
                     "function\nfilterwarnings = error\n")  # fmt: skip
    pytester.makepyfile(test_my_store=STRICT_MODULE)
    result = pytester.runpytest_inprocess("-q", "-p", "no:cacheprovider")
    tests = [n for n in dir(StoreContract) if n.startswith("test_")]
    result.assert_outcomes(passed=len(tests))
