"""Named locks that every user of one database holds in turn: other processes, other store objects.

A customer's agent signs, persists and delivers a relationship's next message as one step, and
two processes on one data directory (``vrm agent serve`` and a ``vrm`` command, or two commands
at once) must not run such steps of the same relationship at the same time: both would sign from
the same head, or one would overwrite the other's queued message (spec §11.11-2). The lock that
keeps them apart belongs to the store, because the store is what they share.

:class:`FileLocks` is the SQLite store's: one lock file per name in a directory beside the
database (``<db>-locks/``), locked with ``flock(LOCK_EX)``. ``flock`` locks belong to an open
file, so two opens in one process exclude each other as two processes do, and the kernel drops a
lock when its holder dies — a crashed ``vrm`` never leaves a relationship locked. A lock file
stays when its lock is released, so the next step of the same relationship only opens, locks and
closes it (creating and unlinking it per step cost 140-300 µs of CPU, #12). Files do not pile
up: a *sweep* removes every lock file nobody holds — it locks the file (``LOCK_NB``) and unlinks
it while it holds it — on a store object's first lock and again after every
:data:`SWEEP_AFTER` further names, so the directory holds at most about that many files beside
those held elsewhere. A waiter that locked a file after the sweep unlinked it sees that the name
no longer leads to it and starts over (the usual "lock, then check the inode" recipe). Waiting
polls with a short, growing delay, so it can be cancelled at any point and never occupies a
thread. Each attempt is a few system calls on a local directory that return at once (the lock
itself is tried with ``LOCK_NB``), so they run on the event loop, and so does a sweep (a few
hundred files at most). Where ``fcntl`` does not exist (not POSIX) the locks exclude only within
the process.

:class:`LocalLocks` is the in-memory twin (one :class:`asyncio.Lock` per name) that
:class:`~vrmproto.store.MemoryStore` uses: store objects are not shared between processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from vrmproto.store._base import StoreError

_flock: Callable[[int], None] | None
try:
    import fcntl

    def _flock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
except ImportError:  # pragma: no cover -- not POSIX: the locks exclude within the process only
    _flock = None

__all__ = ["FileLocks", "LocalLocks", "OnWait"]

#: Called once when a lock is held elsewhere and the caller starts waiting for it.
OnWait = Callable[[], None]

#: The first and the longest pause between two attempts to take a lock held elsewhere.
POLL_FIRST_S = 0.002
POLL_MAX_S = 0.05
#: A store object sweeps unheld lock files away after locking this many new names.
SWEEP_AFTER = 256


class LocalLocks:
    """Named :class:`asyncio.Lock` objects, dropped again when nobody holds or awaits them."""

    def __init__(self) -> None:
        self._locks: dict[bytes, asyncio.Lock] = {}
        self._users: dict[bytes, int] = {}

    @contextlib.asynccontextmanager
    async def hold(self, name: bytes, on_wait: OnWait | None = None) -> AsyncIterator[None]:
        lock = self._locks.get(name)
        if lock is None:
            lock = self._locks[name] = asyncio.Lock()
        self._users[name] = self._users.get(name, 0) + 1
        try:
            if lock.locked() and on_wait is not None:
                on_wait()
            async with lock:
                yield
        finally:
            self._users[name] -= 1
            if not self._users[name]:
                del self._users[name], self._locks[name]


class FileLocks:
    """Named locks shared through ``flock`` on files in ``directory`` (see the module docstring)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._local = LocalLocks()  # tasks of this object queue here instead of polling
        self._named: set[bytes] | None = None  # names locked since the last sweep (None: none)

    def create(self) -> None:
        """Make the lock directory (mode 0700) if it does not exist; done on first use."""
        self.directory.mkdir(mode=0o700, exist_ok=True)

    def _path(self, name: bytes) -> Path:
        return self.directory / name.hex()

    def _try(self, path: Path) -> int | None:
        """The descriptor of ``path`` locked by us, or None if it is locked elsewhere."""
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(path, flags, 0o600)
        except FileNotFoundError:  # the first lock taken on this database
            self.create()
            fd = os.open(path, flags, 0o600)
        if _flock is None:  # pragma: no cover
            return fd
        try:
            _flock(fd)
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        try:
            now = os.stat(path)
        except FileNotFoundError:
            now = None
        held = os.fstat(fd)
        if now is None or (now.st_dev, now.st_ino) != (held.st_dev, held.st_ino):
            os.close(fd)  # the holder before us unlinked it: start over on the new file
            return -1
        return fd

    def sweep(self) -> int:
        """Remove every lock file that nobody holds (each locked while it is unlinked); the
        number removed. A missing directory has nothing to sweep."""
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return 0
        removed = 0
        for entry in names:
            path = self.directory / entry
            try:
                fd = os.open(path, os.O_RDWR | getattr(os, "O_CLOEXEC", 0))
            except OSError:  # gone already, or not ours to open
                continue
            try:
                if _flock is not None:
                    _flock(fd)
                os.unlink(path)
                removed += 1
            except OSError:  # held (BlockingIOError) or already unlinked by another sweep
                pass
            finally:
                os.close(fd)
        return removed

    def _note(self, name: bytes) -> None:
        """Count ``name`` among the names locked since the last sweep; sweep on the first lock
        of this object and after :data:`SWEEP_AFTER` new names."""
        named = self._named
        if named is None or len(named) >= SWEEP_AFTER:
            named = self._named = set()
            self.sweep()
        named.add(name)

    @contextlib.asynccontextmanager
    async def hold(self, name: bytes, on_wait: OnWait | None = None) -> AsyncIterator[None]:
        """Hold the lock ``name`` for the ``async with`` block."""
        async with self._local.hold(name, on_wait):
            path = self._path(name)
            delay, told = POLL_FIRST_S, False
            while True:
                try:
                    if self._named is None or name not in self._named:
                        self._note(name)
                    fd = self._try(path)
                except OSError as exc:
                    raise StoreError(f"cannot lock {path}: {exc.strerror or exc}") from exc
                if fd is not None and fd >= 0:
                    break
                if fd is None:  # held by another process or store object
                    if not told and on_wait is not None:
                        on_wait()
                    told = True
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, POLL_MAX_S)
            try:
                yield
            finally:
                os.close(fd)  # the file stays for the next step; a sweep removes it
