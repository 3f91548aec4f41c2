"""One syncer thread per process fsyncs every inline store's WAL (#12, session 20).

What must hold (:class:`vrmproto.store._sqlite_durable.Syncer`): the fsyncs of all inline stores
of a process run on one thread; a round syncs each store queued by then once, however many of
its commits wait, and resolves all their waiters with one ``call_soon_threadsafe`` per event
loop; an fsync error fails only the commits of the store it covers (which then stays failed,
as before); closing one store leaves the others alone; stores on other threads' loops are
served too; a forked child gets its own thread. Each fsync goes through the ``WalFile`` seam
(its ``sync`` callable), held by a gate the test opens: every step is driven, none timed.
"""

from __future__ import annotations

import asyncio
import errno
import os
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from vrmproto.store import Commit, SQLiteStore, StoreError
from vrmproto.store import _sqlite_durable as durable

GUARD_S = 30.0  # only against a hang: nothing here asserts how long anything took


class Seam:
    """A store's fsync: records which thread ran it, optionally held until released or
    failing."""

    def __init__(self, *, hold: bool = False, fail: OSError | None = None) -> None:
        self.threads: list[int] = []
        self.entered = threading.Event()
        self.go = threading.Event()
        self.fail = fail
        if not hold:
            self.go.set()

    def __call__(self, fd: int) -> None:
        self.threads.append(threading.get_ident())
        self.entered.set()
        assert self.go.wait(GUARD_S)
        if self.fail is not None:
            raise self.fail
        os.fdatasync(fd)

    async def wait_entered(self) -> None:
        assert await asyncio.to_thread(self.entered.wait, GUARD_S)


def seam(store: SQLiteStore, **kw: Any) -> Seam:
    s = Seam(**kw)
    store._wal._sync = s
    return s


def meta(key: str) -> Commit:
    return Commit(meta=((key, b"v"),))


async def turns(n: int = 20) -> None:
    """Let every ready task and callback run a few times (no timer involved)."""
    for _ in range(n):
        await asyncio.sleep(0)


@pytest.fixture
async def stores(tmp_path: Path) -> AsyncIterator[list[SQLiteStore]]:
    """A blocker (index 0, to hold the syncer thread) and three stores, each warmed up: its WAL
    and directory synced once."""
    opened = [await SQLiteStore.open(tmp_path / f"s{i}.db", inline=True) for i in range(4)]
    for s in opened:
        await s.commit(meta("warm"))
    yield opened
    for s in opened:
        await s.close()


async def hold_syncer(blocker: SQLiteStore) -> tuple[Seam, asyncio.Task[None]]:
    """Park the syncer thread inside the blocker's fsync; what is requested meanwhile waits
    for the next round."""
    gate = seam(blocker, hold=True)
    task = asyncio.create_task(blocker.commit(meta("block")))
    await gate.wait_entered()
    return gate, task


class CountingLoop:
    """Counts the cross-thread wake-ups of the running loop (its ``call_soon_threadsafe``)."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.calls = 0
        self._real: Callable[..., Any] = self.loop.call_soon_threadsafe

    def __enter__(self) -> CountingLoop:
        def counted(*args: Any, **kw: Any) -> Any:
            self.calls += 1
            return self._real(*args, **kw)

        self.loop.call_soon_threadsafe = counted  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        del self.loop.call_soon_threadsafe  # the class's method again


async def test_one_thread_syncs_every_store_each_file_once_a_round(
    stores: list[SQLiteStore],
) -> None:
    blocker, *three = stores
    gate, blocked = await hold_syncer(blocker)
    seams = [seam(s) for s in three]
    rounds = durable.syncer().rounds
    commits = [asyncio.create_task(s.commit(meta(f"k{n}"))) for s in three for n in range(5)]
    await turns()
    assert not any(c.done() for c in commits)  # committed, queued for the held syncer
    with CountingLoop() as counting:
        gate.go.set()
        await blocked
        await asyncio.gather(*commits)
    assert [len(s.threads) for s in seams] == [1, 1, 1]  # five commits each, one fsync each
    assert {t for s in (gate, *seams) for t in s.threads} == {gate.threads[0]}  # one thread
    assert gate.threads[0] != threading.get_ident()
    assert durable.syncer().rounds == rounds + 2  # the blocker's, then the three together
    assert counting.calls == 2  # one wake-up of this loop per round, not one per store
    names = {t.ident: t.name for t in threading.enumerate()}
    assert names[gate.threads[0]] == "vrm-store-sync"
    assert sum(name == "vrm-store-sync" for name in names.values()) == 1


async def test_a_failed_fsync_fails_only_the_commits_of_its_store(
    stores: list[SQLiteStore],
) -> None:
    blocker, bad, good, _ = stores
    gate, blocked = await hold_syncer(blocker)
    seam(bad, fail=OSError(errno.EIO, "I/O error"))
    failing = asyncio.create_task(bad.commit(meta("a")))
    fine = asyncio.create_task(good.commit(meta("b")))
    await turns()
    gate.go.set()  # the next round syncs both files: one fails
    await blocked
    with pytest.raises(StoreError, match="fsync"):
        await failing
    await fine
    assert await good.get_meta("b") == b"v"
    await good.commit(meta("c"))  # the other store goes on as if nothing happened
    await blocker.commit(meta("d"))
    with pytest.raises(StoreError, match="fsync"):  # the failed one stays failed, as before
        await bad.commit(meta("e"))
    with pytest.raises(StoreError, match="fsync"):
        await bad.get_meta("a")


async def test_closing_one_store_leaves_the_others_commits_alone(
    stores: list[SQLiteStore],
) -> None:
    blocker, a, b, _ = stores
    gate, blocked = await hold_syncer(blocker)
    in_a = asyncio.create_task(a.commit(meta("a")))
    in_b = asyncio.create_task(b.commit(meta("b")))
    await turns()
    in_b.cancel()  # its awaiter goes away; close() still waits for its fsync
    closing = asyncio.create_task(b.close())
    await turns()
    assert not closing.done()
    gate.go.set()
    await asyncio.gather(blocked, in_a, closing)
    await a.commit(meta("after"))  # the syncer still serves the others
    assert await a.get_meta("after") == b"v"
    async with await SQLiteStore.open(b.path) as again:
        assert await again.get_meta("b") == b"v"


async def test_stores_on_another_thread_s_loop_are_synced_on_their_own_loop(
    stores: list[SQLiteStore], tmp_path: Path
) -> None:
    blocker, here, _, _ = stores
    queued = threading.Event()

    def elsewhere() -> bytes | None:
        async def work() -> bytes | None:
            async with await SQLiteStore.open(tmp_path / "other.db", inline=True) as s:
                task = asyncio.create_task(s.commit(meta("t")))
                await turns()
                queued.set()  # its fsync is requested; the syncer is held
                await task
                assert s.stats.inline == 1
                assert s.stats.fallbacks == 0
                return await s.get_meta("t")

        return asyncio.run(work())

    gate, blocked = await hold_syncer(blocker)
    other = asyncio.create_task(asyncio.to_thread(elsewhere))
    assert await asyncio.to_thread(queued.wait, GUARD_S)
    mine = asyncio.create_task(here.commit(meta("m")))
    await turns()
    gate.go.set()  # one round for both loops' stores
    await asyncio.gather(blocked, mine)
    assert await other == b"v"


def test_a_forked_child_gets_its_own_syncer_thread(tmp_path: Path) -> None:
    """The parent's syncer thread does not exist in a forked child (tests fork a pre-imported
    server, tests/_forkserver.py): the child's first request starts a thread of its own."""

    async def commit_in(path: Path) -> bytes | None:
        async with await SQLiteStore.open(path, inline=True) as s:
            await s.commit(meta("k"))
            return await s.get_meta("k")

    async def child(path: Path, parent: durable.Syncer) -> int:
        s = await SQLiteStore.open(path, inline=True)
        try:
            await asyncio.wait_for(s.commit(meta("k")), GUARD_S)
        except TimeoutError:
            return 2  # the commit waited on a thread that is not there (close() would too)
        await s.close()
        return 0 if durable.syncer() is not parent else 1

    assert asyncio.run(commit_in(tmp_path / "parent.db")) == b"v"  # the parent's thread runs
    parent = durable.syncer()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child; its exit status is the verdict
        code = 3
        try:
            code = asyncio.run(child(tmp_path / "child.db", parent))
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert asyncio.run(commit_in(tmp_path / "parent2.db")) == b"v"  # the parent's still runs
