"""Commits made on the caller's thread, made durable by one fsync of the WAL shared by all of them.

This is the machinery behind ``SQLiteStore.open(path, inline=True)`` (the customer's agent);
:mod:`vrmproto.store._sqlite` says when it is used and falls back to its writer thread.

Why (issue #12). With the writer thread, each of an agent's two commits per ``data.share`` hands
its Commit to another thread and back (a queue put, a thread wake-up, the GIL passed back and
forth while both threads run Python, a ``call_soon_threadsafe``), and the COMMIT's fsync runs
inside that thread's transaction, so the next transaction waits for it. Inline, the transaction
runs right where ``commit()`` is called — a handful of statements, no waiting: ``BEGIN
IMMEDIATE`` has no busy timeout there and falls back to the writer thread if the write lock is
taken — and only the fsync goes to the writer thread, which flushes, in one ``fdatasync`` of the
``-wal`` file, every commit made before it started.

The guarantee (spec §12 (durability), "receipt only after commit"): the future of a commit —
what its awaiter waits for — is resolved only after an fsync *that started after its COMMIT
returned* has returned. :class:`Horizon` numbers commits as their COMMIT returns; the syncer
reads the number before it calls fsync (:meth:`Horizon.target`) and, when fsync returned,
resolves exactly the commits up to that number (:meth:`Horizon.synced`). Commits made while an
fsync runs wait for the next one. A failed fsync fails every waiting commit and every later one
(:class:`StoreError`): after a failed fsync Linux may have dropped the dirty pages, so nothing
written since can be promised again; reopen the store.

Why an fsync of the WAL file makes a commit as durable as ``synchronous=FULL`` does, and why
the inline connection runs ``synchronous=NORMAL`` and not OFF (SQLite's ``src/wal.c``, read at
``sqlite3WalFrames`` and ``walCheckpoint``; https://www.sqlite.org/pragma.html#pragma_synchronous):

- A WAL COMMIT appends the transaction's frames, the last one marked as a commit, with
  ``write()``s to the ``-wal`` file. With FULL, SQLite then syncs the WAL (``WAL_SYNC_FLAGS``,
  on Linux ``fdatasync``); with NORMAL it skips exactly that sync ("With synchronous=FULL in WAL
  mode, an additional sync operation of the WAL file happens after each transaction commit").
  Our ``fdatasync`` of the same file after COMMIT returned is that sync, done later and for
  several commits at once. ``fdatasync`` also flushes the file size that appended frames need.
  Recovery keeps the longest prefix of frames whose salts and cumulative checksums hold, up to
  its last commit frame, so a crash before the fsync loses a suffix of unacknowledged commits
  and never leaves a later commit without an earlier one.
- NORMAL still syncs what OFF would not: "the WAL file is synchronized before each checkpoint
  and the database file is synchronized after each completed checkpoint and the WAL file header
  is synchronized when a WAL file begins to be reused after a checkpoint" (pragma.html). The
  last one matters: when a writer restarts the WAL from its beginning, ``sqlite3WalFrames``
  writes a new header and syncs it (``CKPT_SYNC_FLAGS``, zero only with OFF) *before* the new
  frames, because "an out-of-order write following a WAL restart could result in database
  corruption" (ticket ff5be73dee): with the old header and a torn mix of old and new frames on
  disk, recovery would replay a prefix of old, already checkpointed frames over newer pages.
  Our later fsync cannot order writes that have already happened, so OFF would be unsafe on
  power loss; NORMAL costs one fsync per WAL restart (once per checkpoint cycle), on the
  committing thread.
- Checkpoints: the inline connection runs ``wal_autocheckpoint=0`` (no checkpoint, with its
  page copying and fsyncs, on the caller's thread); the writer thread's connection, which runs
  ``synchronous=FULL``, checkpoints PASSIVE every :data:`CHECKPOINT_EVERY` inline commits (and on
  its own commits as before). ``walCheckpoint`` syncs the WAL before copying frames into the
  database file, and syncs the database file before it records the frames as backfilled
  (``nBackfill``) when it copied all of them; only a fully backfilled WAL is ever restarted. So a
  commit whose frames a restart overwrites is already durable in the database file — also when
  that happens before our fsync covering it ran.
- The ``-wal`` file's name must survive too: SQLite syncs the directory on the first sync of a
  file it created; :class:`WalFile` syncs the directory when it opens the ``-wal`` file, then
  the file.

What readers see. An inline commit is visible to other connections as soon as its COMMIT
returns, before it is durable (with FULL it became visible only after its sync). So that nothing
in this process acts on a commit that a power loss could still take back — sends a message the
outbox holds, answers a duplicate with a stored receipt — every read of the store object first
waits until the durable commits made before it are durable (:meth:`Horizon.wait_for`; free when
none is pending). Another process may read such a commit before it is durable; the agent acts on
a thread's data only under the thread's lock (spec §11.11-2), which the committing step holds
until its commit is durable.

Commits that do not wait (``commit(c, durable=False)``, the agent's lazy close,
:func:`vrmproto.client._sending.may_close_lazily`). Such a commit returns as soon as its COMMIT
did; no fsync is asked for, and reads do not wait for it — else the next step's first read
would wait for that fsync anyway. It is numbered like any other (:meth:`Horizon.commit_returned`
with ``durable=False``), so what keeps it safe is the WAL itself:

- a crash of the process (kill -9) loses nothing: the COMMIT's frames are in the ``-wal`` file
  (in the kernel's page cache), which is all ``synchronous=NORMAL`` ever relies on for that;
- on power loss it may be lost, but only as a suffix: recovery keeps a prefix of the WAL's
  commits (above), and the next durable commit of this store returns only after an fsync that
  started after its own COMMIT — so after the lazy one's too, whose frames come earlier in the
  same file (:meth:`Horizon.synced` marks durable every commit numbered up to the fsync's
  target, lazy or not). A commit that goes to the writer thread instead (``synchronous=FULL``)
  syncs the same file. A WAL restart overwrites only frames a checkpoint already made durable
  in the database file. Another process that reads it under the thread's lock and then sends
  something first commits that durably, and its fsync of the same ``-wal`` file covers it too.
- :meth:`SQLiteStore.close` still waits until every commit made, lazy ones included, is durable.

So a lazy commit is durable by the time anything that depends on it is — provided that nothing
outside the store acts on it before the next durable commit. The caller vouches for that: the
agent commits lazily only an outcome that, if lost, the protocol repairs on its own (see
:mod:`vrmproto.client._sending`).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vrmproto.store._base import StoreError

__all__ = ["CHECKPOINT_EVERY", "Horizon", "WalFile", "sync_fd"]

CHECKPOINT_EVERY = 64
"""Inline commits between two PASSIVE checkpoints run by the writer thread. An agent's commit
writes about 13 pages, so this keeps the WAL near SQLite's default of 1000 pages; once
checkpointed, the WAL is reused from its start, and an fsync of blocks the file already has
needs no journal commit for its size."""


def sync_fd(fd: int) -> None:
    """Flush ``fd``'s data to stable storage as SQLite's sync does: ``F_FULLFSYNC`` on macOS
    (``PRAGMA fullfsync``), else ``fdatasync``."""
    if sys.platform == "darwin":  # pragma: no cover - not the CI platform
        fcntl.fcntl(fd, fcntl.F_FULLFSYNC)
    else:
        os.fdatasync(fd)


class WalFile:
    """The database's ``-wal`` file, opened on the first sync (after an inline commit wrote to
    it) and synced through that descriptor from then on.

    The file cannot be replaced while the store is open: SQLite deletes a WAL only when a
    closing connection gets the database file's EXCLUSIVE lock, and the store's connections
    hold SHARED locks on it until :meth:`SQLiteStore.close`, which first waits for every
    inline commit to be durable; a TRUNCATE checkpoint keeps the inode. So no ``stat`` per
    sync (each system call here is one more wait for the GIL on the way back).
    """

    def __init__(self, db: Path, sync: Callable[[int], None] = sync_fd) -> None:
        self.path = db.with_name(db.name + "-wal")
        self._sync = sync
        self._fd: int | None = None

    def sync(self) -> None:
        """fsync the WAL file (the first time, its directory too: the file's name must
        survive a power loss as well, and SQLite syncs the directory only on its own first
        sync of a file it created)."""
        if self._fd is None:
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            try:
                directory = os.open(self.path.parent, os.O_RDONLY)
                try:
                    self._sync(directory)
                finally:
                    os.close(directory)
            except BaseException:
                os.close(fd)
                raise
            self._fd = fd
        self._sync(self._fd)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


_Waiter = tuple[int, "asyncio.Future[None]", asyncio.AbstractEventLoop]


class Horizon:
    """How far inline commits are durable, and who waits for what (thread-safe).

    ``committed`` counts inline commits whose COMMIT returned; ``durable`` is the count an fsync
    that returned covered; ``wanted`` is the number of the last commit made with
    ``durable=True`` (what a read waits for). ``request_sync`` asks the syncer for one more
    fsync; at most one request is outstanding, and :meth:`synced` asks again while someone
    still waits. A commit made with ``durable=False`` asks for no fsync: it becomes durable
    with the next one, which any later durable commit, a read after one, or ``close`` asks for.
    """

    def __init__(self, request_sync: Callable[[], None]) -> None:
        self._request_sync = request_sync
        self._lock = threading.Lock()
        self.committed = 0
        self.durable = 0
        self.wanted = 0
        self.broken: StoreError | None = None
        self._requested = False
        self._waiters: list[_Waiter] = []

    def pending(self) -> bool:
        """Whether a durable commit is not yet known durable, which a read must wait for (a
        plain read: a stale answer only delays or skips a wait that :meth:`wait_for` would
        find unnecessary or re-check)."""
        return self.wanted > self.durable or self.broken is not None

    def commit_returned(self, durable: bool = True) -> int:
        """Number the commit whose COMMIT just returned (call before anyone may fsync for it);
        ``durable=False``: reads need not wait for it (see the module, "Commits that do not
        wait")."""
        with self._lock:
            self.committed += 1
            if durable:
                self.wanted = self.committed
            return self.committed

    def wait_for(self, seq: int) -> asyncio.Future[None] | None:
        """A future resolved once commit ``seq`` is durable (None: it already is); an fsync is
        requested if none is under way. Raises :class:`StoreError` once an fsync has failed."""
        request = False
        with self._lock:
            if self.broken is not None:
                raise self.broken
            if seq <= self.durable:
                return None
            loop = asyncio.get_running_loop()
            future: asyncio.Future[None] = loop.create_future()
            self._waiters.append((seq, future, loop))
            if not self._requested:
                self._requested = request = True
        if request:
            self._request_sync()
        return future

    async def settle(self, seq: int) -> None:
        """Return once commit ``seq`` is durable."""
        future = self.wait_for(seq)
        if future is not None:
            await future

    def target(self) -> int:
        """What an fsync starting now covers: every commit whose COMMIT has returned."""
        with self._lock:
            return self.committed

    def synced(self, target: int, error: StoreError | None) -> None:
        """An fsync that started at ``target`` returned (``error``: it failed). Resolves the
        waiters it covers on their loops, and asks for another fsync if commits are left."""
        with self._lock:
            if error is not None:
                self.broken = self.broken or error
                ready, self._waiters = self._waiters, []
                self._requested = again = False
            else:
                self.durable = max(self.durable, target)
                ready = [w for w in self._waiters if w[0] <= self.durable]
                self._waiters = [w for w in self._waiters if w[0] > self.durable]
                self._requested = again = bool(self._waiters)  # not for lazy commits alone
        by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
        for _, future, loop in ready:
            by_loop.setdefault(loop, []).append(future)
        failure = self.broken if error is not None else None
        for loop, futures in by_loop.items():
            with contextlib.suppress(RuntimeError):  # that loop has closed: nobody to tell
                loop.call_soon_threadsafe(_settle_futures, futures, failure)
        if again:
            self._request_sync()


def settle(future: asyncio.Future[Any], result: object, exc: BaseException | None) -> None:
    """Resolve ``future`` with ``result``, or ``exc``, unless its caller stopped waiting (the
    write itself still stands)."""
    if future.cancelled():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)


def _settle_futures(futures: list[asyncio.Future[Any]], error: BaseException | None) -> None:
    for future in futures:
        settle(future, None, error)
