"""The inline store's fsyncs through Linux AIO, reaped on the event loop (_aio_fsync.py).

The store-level rules (a commit waits for an fsync that started after its COMMIT, group commit,
failures, close) run both ways in tests/test_store_sqlite_inline.py. Here: that the kernel path
is the one taken and really completes, that it is shared per loop, and that every case where it
cannot be used leaves the fsyncs to the writer thread.
"""

from __future__ import annotations

import asyncio
import errno
import importlib.util
import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from vrmproto.store import Commit, SQLiteStore, StoreError
from vrmproto.store import _aio_fsync as aio
from vrmproto.store import _sqlite_durable as durable
from vrmproto.testing.store_contract import T1, entry, rel

pytestmark = pytest.mark.skipif(
    aio._numbers() is None, reason="Linux AIO is used on Linux x86_64 and aarch64 only"
)


class ThreadSyncs:
    """Counts the fsyncs the writer thread makes (``WalFile``'s sync function)."""

    def __init__(self) -> None:
        self.threads: list[int] = []

    def __call__(self, fd: int) -> None:
        self.threads.append(threading.get_ident())
        os.fdatasync(fd)


def meta(key: str, value: bytes = b"v") -> Commit:
    return Commit(meta=((key, value),))


async def _commits_on_the_loop(path: Path) -> tuple[int, int, int]:
    """(thread syncs, store syncs, inline commits) for sequential and concurrent commits."""
    async with await SQLiteStore.open(path, inline=True) as s:
        assert s._on_loop is not None
        await s.commit(meta("warm"))  # opens the WAL file and syncs its directory: the thread
        counted = ThreadSyncs()
        s._wal._sync = counted
        before = s.stats.syncs
        for i in range(10):
            await s.commit(meta(f"one{i}"))
        await asyncio.gather(*(s.commit(meta(f"many{i}")) for i in range(20)))
        await s.commit(meta("lazy"), durable=False)
        assert await s.get_meta("one9") == b"v"
        return len(counted.threads), s.stats.syncs - before, s.stats.inline


async def test_an_inline_store_fsyncs_through_the_kernel_not_its_writer_thread(
    tmp_path: Path,
) -> None:
    thread_syncs, syncs, inline = await _commits_on_the_loop(tmp_path / "vrm.db")
    assert thread_syncs == 0
    assert 11 <= syncs <= 31  # ten alone, the twenty concurrent ones grouped, close's for lazy
    assert inline == 32
    async with await SQLiteStore.open(tmp_path / "vrm.db") as again:
        assert await again.get_meta("many19") == b"v"
        assert await again.get_meta("lazy") == b"v"


@pytest.mark.skipif(importlib.util.find_spec("uvloop") is None, reason="uvloop not installed")
def test_the_same_on_uvloop(tmp_path: Path) -> None:
    import uvloop  # noqa: PLC0415 - optional

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        thread_syncs, syncs, _ = runner.run(_commits_on_the_loop(tmp_path / "vrm.db"))
    assert thread_syncs == 0
    assert syncs >= 11


async def test_a_checkpoint_due_sends_that_fsync_to_the_writer_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer's ``synchronous=FULL`` connection checkpoints after its own fsync."""
    monkeypatch.setattr(durable, "CHECKPOINT_EVERY", 8)
    async with await SQLiteStore.open(tmp_path / "vrm.db", inline=True) as s:
        await s.commit(Commit(relationships=(rel(T1),)))
        counted = ThreadSyncs()
        s._wal._sync = counted
        for i in range(40):
            await s.commit(Commit(relationships=(rel(T1),), history=(entry(T1, i),)))
    # closed: the writer thread has finished the checkpoint that follows its last fsync
    assert len(counted.threads) == s.stats.checkpoints == 5  # at commits 8, 16, 24, 32, 40
    assert s.stats.syncs == 1 + 40
    async with await SQLiteStore.open(tmp_path / "vrm.db") as s:
        assert [e.index for e in await s.history(T1)] == list(range(40))


# -- where it cannot be used, the writer thread fsyncs ------------------------------------------


async def _thread_does_the_syncs(path: Path) -> None:
    async with await SQLiteStore.open(path, inline=True) as s:
        assert s._on_loop is None
        await s.commit(meta("warm"))
        counted = ThreadSyncs()
        s._wal._sync = counted
        await s.commit(meta("a"))
        await s.commit(meta("b"))
        assert len(counted.threads) == 2
        assert s._writer is not None
        assert set(counted.threads) == {s._writer.ident}


async def test_a_kernel_or_filesystem_refusing_fdsync_keeps_the_writer_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An opcode the kernel does not know fails ``io_submit`` with EINVAL, as
    ``IOCB_CMD_FDSYNC`` does before Linux 4.18 or on a filesystem without fsync."""
    monkeypatch.setattr(aio, "IOCB_CMD_FDSYNC", 0x7F)
    await _thread_does_the_syncs(tmp_path / "vrm.db")


async def test_no_aio_context_keeps_the_writer_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``io_setup`` refused (here: more events than ``aio-max-nr`` allows)."""
    monkeypatch.setattr(aio, "RING_EVENTS", 1 << 22)
    await _thread_does_the_syncs(tmp_path / "vrm.db")


async def test_a_probe_that_fails_keeps_the_writer_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The probe's fsync was submitted but completed with an error."""
    real = aio.FdsyncRing.fdsync

    def failing(ring: aio.FdsyncRing, fd: int, done: Callable[[int], None]) -> None:
        real(ring, fd, lambda res: done(-errno.EINVAL))

    monkeypatch.setattr(aio.FdsyncRing, "fdsync", failing)
    await _thread_does_the_syncs(tmp_path / "vrm.db")


async def test_a_submission_that_fails_is_made_on_the_writer_thread(tmp_path: Path) -> None:
    async with await SQLiteStore.open(tmp_path / "vrm.db", inline=True) as s:
        await s.commit(meta("warm"))
        assert s._on_loop is not None
        counted = ThreadSyncs()
        s._wal._sync = counted
        ring = s._on_loop.ring

        def full(fd: int, done: Callable[[int], None]) -> None:
            raise OSError(errno.EAGAIN, "ring full")

        ring.fdsync = full  # type: ignore[method-assign]
        await s.commit(meta("a"))
        assert len(counted.threads) == 1
        del ring.fdsync  # the class's again
        await s.commit(meta("b"))
        assert len(counted.threads) == 1


async def test_completions_that_cannot_be_read_count_as_failed_fsyncs(tmp_path: Path) -> None:
    """If ``io_getevents`` fails, the results are lost: every fsync under way fails its
    commits (and the store), as a failed ``fdatasync`` would — never a commit left waiting."""
    async with await SQLiteStore.open(tmp_path / "vrm.db", inline=True) as s:
        await s.commit(meta("warm"))
        assert s._on_loop is not None
        ring = s._on_loop.ring
        real = ring._call

        def call(number: int, *args: object) -> int:
            if number == ring._getevents:
                raise OSError(errno.EFAULT, "Bad address")
            return real(number, *args)

        ring._call = call  # type: ignore[method-assign]
        try:
            with pytest.raises(StoreError, match=r"fsync .* failed"):
                async with asyncio.timeout(30):  # only against a hang (the commit left waiting)
                    await s.commit(meta("a"))
            assert ring._pending == {}
        finally:
            del ring._call


async def test_a_store_on_another_loop_syncs_on_its_thread(tmp_path: Path) -> None:
    """The ring belongs to the opener's loop: waiting for a commit from another thread (its
    own loop) asks the writer thread for the fsync."""
    async with await SQLiteStore.open(tmp_path / "vrm.db", inline=True) as s:
        await s.commit(meta("warm"))
        counted = ThreadSyncs()
        s._wal._sync = counted
        await s.commit(meta("lazy"), durable=False)  # committed, no fsync asked for

        def elsewhere() -> None:
            asyncio.run(s._horizon.settle(s._horizon.committed))  # as close() waits

        await asyncio.to_thread(elsewhere)
        assert len(counted.threads) == 1
        assert s._horizon.durable == s._horizon.committed


# -- the ring ---------------------------------------------------------------------------------


async def test_the_ring_completes_each_fdsync_on_the_loop(tmp_path: Path) -> None:
    files = [tmp_path / f"f{i}" for i in range(3)]
    for f in files:
        f.write_bytes(b"x" * 4096)
    ring = await aio.acquire(files[0])
    assert ring is not None
    fds = [os.open(f, os.O_RDWR) for f in files]
    try:
        loop = asyncio.get_running_loop()
        results: list[asyncio.Future[tuple[int, int]]] = []
        for fd in fds:
            os.pwrite(fd, b"y" * 4096, 0)
            future: asyncio.Future[tuple[int, int]] = loop.create_future()
            ring.fdsync(fd, lambda res, f=future: f.set_result((res, threading.get_ident())))
            results.append(future)
        here = threading.get_ident()
        assert await asyncio.gather(*results) == [(0, here)] * 3
    finally:
        for fd in fds:
            os.close(fd)
        ring.release()


async def test_a_file_without_fsync_is_refused_when_submitted(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"")
    ring = await aio.acquire(tmp_path / "f")
    assert ring is not None
    r, w = os.pipe()
    try:
        with pytest.raises(OSError, match="Invalid argument") as raised:
            ring.fdsync(r, lambda res: None)
        assert raised.value.errno == errno.EINVAL
        assert ring._pending == {}
    finally:
        os.close(r)
        os.close(w)
        ring.release()


async def test_stores_on_one_loop_share_one_ring_closed_with_the_last(tmp_path: Path) -> None:
    loop = asyncio.get_running_loop()
    a = await SQLiteStore.open(tmp_path / "a.db", inline=True)
    b = await SQLiteStore.open(tmp_path / "b.db", inline=True)
    assert a._on_loop is not None
    assert b._on_loop is not None
    ring = a._on_loop.ring
    assert b._on_loop.ring is ring
    assert ring.users == 2
    await a.close()
    assert aio._rings[loop] is ring
    await b.close()
    assert loop not in aio._rings
    assert ring._closed
    with pytest.raises(OSError):
        os.fstat(ring._efd)  # the eventfd is closed (nothing else opened since)
