"""Lock files swept while other processes lock them (spec §11.11-2, :mod:`vrmproto.store._locks`).

Four ``vrm`` processes started at once on one data directory each sweep the lock directory on
their first lock. A sweep opens a file by its name, locks it and unlinks the name; if the name
had meanwhile been unlinked by another sweep and made anew by a process that now holds the new
file, the late sweep locked the *old* file — nobody holds it — and unlinked the *new* one's
name. The next process then made a third file under the name and held "the same" lock as the
holder of the second: two steps of one relationship at once, both signing at the same history
index (CI, session 17: "history index 4 of thread … is taken"). A sweep now unlinks a name only
while the file it locked is still the one the name leads to.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import time
from multiprocessing.connection import Connection
from pathlib import Path

import pytest

from vrmproto.store import _locks as store_locks
from vrmproto.store._locks import FileLocks

#: How long a sweep waits between opening a lock file and locking it, in the forked processes
#: of the stress tests: the race's window, a few system calls wide, made wide enough to hit in
#: most runs instead of about one CI run in a hundred. Nothing else is changed.
SWEEP_GAP_S = 0.001


def widen_sweeps() -> None:
    """Make every sweep of this process wait :data:`SWEEP_GAP_S` before it locks a file."""
    real_sweep = store_locks.FileLocks.sweep
    real_flock = store_locks._flock
    assert real_flock is not None

    def slow_flock(fd: int) -> None:
        time.sleep(SWEEP_GAP_S)
        real_flock(fd)

    def sweep(self: store_locks.FileLocks) -> int:
        store_locks._flock = slow_flock
        try:
            return real_sweep(self)
        finally:
            store_locks._flock = real_flock

    store_locks.FileLocks.sweep = sweep  # type: ignore[method-assign]


def test_a_late_sweep_never_unlinks_a_file_another_process_holds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """B's sweep opened the name's file; before B locked it, C's sweep unlinked it and D made
    and locked the name's new file. B locks the old file (free) — and must leave D's name be:
    else E makes a third file and holds the lock while D does."""
    directory = tmp_path / "locks"
    first = FileLocks(directory)
    first.create()
    path = directory / b"t".hex()
    path.touch()  # the file an earlier step left (i1)
    b, c, d, e = (FileLocks(directory) for _ in range(4))
    real_flock = store_locks._flock
    assert real_flock is not None
    held: list[tuple[int, str, tuple[int, int]]] = []

    def between(fd: int) -> None:  # B opened i1 and is about to lock it
        monkeypatch.setattr(store_locks, "_flock", real_flock)
        assert c.sweep() == 1  # C locks i1 and unlinks it
        got = d._try(b"t")  # D makes i2 under the name and holds it
        assert got is not None
        assert got[0] >= 0
        held.append(got)
        real_flock(fd)

    monkeypatch.setattr(store_locks, "_flock", between)
    b.sweep()
    assert held, "the interleaving did not happen"
    assert path.exists(), "B's sweep unlinked the file D holds"
    assert (os.stat(path).st_dev, os.stat(path).st_ino) == held[0][2]
    assert e._try(b"t") is None  # D holds the name's lock: E waits
    os.close(held[0][0])
    for locks in (first, b, c, d, e):
        locks.close()


def _contend(directory: Path, inside: Path, rounds: int, conn: Connection) -> None:
    """A process that, ``rounds`` times, opens the lock directory afresh (as a ``vrm`` command
    does: its first lock sweeps) and holds ``b"t"`` for a moment, counting the times it found
    another holder inside."""
    widen_sweeps()

    async def go() -> int:
        overlaps = 0
        for _ in range(rounds):
            locks = FileLocks(directory)
            async with locks.hold(b"t"):
                try:
                    fd = os.open(inside, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
                except FileExistsError:
                    overlaps += 1
                else:
                    await asyncio.sleep(0.001)
                    os.close(fd)
                    os.unlink(inside)
            locks.close()
        return overlaps

    conn.send(asyncio.run(go()))


def test_processes_that_sweep_as_they_lock_never_hold_one_lock_at_once(tmp_path: Path) -> None:
    """Four processes, each sweeping on every lock (a fresh store object each time) with the
    sweep's open-to-lock window widened to 1 ms (:func:`widen_sweeps`): none ever finds another
    inside. Before the fix, dozens of overlaps a run."""
    ctx = multiprocessing.get_context("fork")
    pipes, procs = [], []
    for _ in range(4):
        ours, theirs = ctx.Pipe()
        proc = ctx.Process(target=_contend, args=(tmp_path / "locks", tmp_path / "inside",
                                                  40, theirs), daemon=True)  # fmt: skip
        proc.start()
        pipes.append(ours)
        procs.append(proc)
    try:
        assert [pipe.recv() for pipe in pipes] == [0, 0, 0, 0]
    finally:
        for proc in procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
