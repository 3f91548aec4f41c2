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
stays when its lock is released, so the next step of the same relationship only locks it again
(creating and unlinking it per step cost 140-300 µs of CPU, #12): its descriptor is unlocked
(``LOCK_UN``) and kept open, for the last :data:`IDLE_FILES` names, so that the next step saves
the open, the close and the path look-up — and the ``fstat``, as the file's identity is kept
with it. Files do not pile
up: a *sweep* removes every lock file nobody holds — it locks the file (``LOCK_NB``) and unlinks
it while it holds it, if the name still leads to that file (another sweep may have replaced it
meanwhile) — on a store object's first lock and again after every
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
import os
from collections.abc import Callable
from pathlib import Path

from vrmproto.store._base import StoreError

_flock: Callable[[int], None] | None
_unflock: Callable[[int], None] | None
try:
    import fcntl

    def _flock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def _unflock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
except ImportError:  # pragma: no cover -- not POSIX: the locks exclude within the process only
    _flock = _unflock = None

__all__ = ["FileLocks", "LocalLocks", "OnWait"]

#: Called once when a lock is held elsewhere and the caller starts waiting for it.
OnWait = Callable[[], None]

#: The first and the longest pause between two attempts to take a lock held elsewhere.
POLL_FIRST_S = 0.002
POLL_MAX_S = 0.05
#: A store object sweeps unheld lock files away after locking this many new names.
SWEEP_AFTER = 256
#: Most lock files a store object keeps open, unlocked, for the next step of the same name.
IDLE_FILES = 64


def _names(path: Path, fd: int) -> bool:
    """Whether ``path`` still leads to the file open as ``fd``. A sweep unlinks a name only
    while it holds the lock of the very file the name leads to: it opened the name, but another
    sweep may have unlinked that file before it was locked, and a process made the name anew
    and holds the new file — whose name unlinked would let a third process make another file
    under it and hold "the same" lock at once (§11.11-2). Nobody else can unlink the name
    meanwhile: that takes the lock we hold."""
    try:
        now = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (now.st_dev, now.st_ino) == (mine.st_dev, mine.st_ino)


class LocalLocks:
    """Named :class:`asyncio.Lock` objects, dropped again when nobody holds or awaits them."""

    def __init__(self) -> None:
        self._locks: dict[bytes, asyncio.Lock] = {}
        self._users: dict[bytes, int] = {}

    def hold(self, name: bytes, on_wait: OnWait | None = None) -> _LocalHold:
        """``async with locks.hold(name):`` — the lock ``name``, held for the block;
        ``on_wait`` is called if it has to wait."""
        return _LocalHold(self, name, on_wait)


class _LocalHold:
    """The async context manager of :meth:`LocalLocks.hold` (a plain class: cheaper per step
    than an async generator)."""

    __slots__ = ("_lock", "_locks", "_name", "_on_wait")

    def __init__(self, locks: LocalLocks, name: bytes, on_wait: OnWait | None) -> None:
        self._locks = locks
        self._name = name
        self._on_wait = on_wait

    async def __aenter__(self) -> None:
        locks, name = self._locks, self._name
        lock = locks._locks.get(name)
        if lock is None:
            lock = locks._locks[name] = asyncio.Lock()
        locks._users[name] = locks._users.get(name, 0) + 1
        try:
            if lock.locked() and self._on_wait is not None:
                self._on_wait()
            await lock.acquire()
        except BaseException:
            self._leave()
            raise
        self._lock = lock

    async def __aexit__(self, *exc: object) -> None:
        self._lock.release()
        self._leave()

    def _leave(self) -> None:
        locks, name = self._locks, self._name
        locks._users[name] -= 1
        if not locks._users[name]:
            del locks._users[name], locks._locks[name]


class FileLocks:
    """Named locks shared through ``flock`` on files in ``directory`` (see the module docstring)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._local = LocalLocks()  # tasks of this object queue here instead of polling
        self._named: set[bytes] | None = None  # names locked since the last sweep (None: none)
        #: Open, unlocked lock files by name, oldest first: (descriptor, path, (device, inode)).
        self._idle: dict[bytes, tuple[int, str, tuple[int, int]]] = {}
        self._closed = False  # after close(): released files are closed, not kept

    def create(self) -> None:
        """Make the lock directory (mode 0700) if it does not exist; done on first use."""
        self.directory.mkdir(mode=0o700, exist_ok=True)

    def _path(self, name: bytes) -> Path:
        return self.directory / name.hex()

    def _try(self, name: bytes) -> tuple[int, str, tuple[int, int]] | None:
        """``name``'s lock file locked by us (descriptor, path, identity); None if it is
        locked elsewhere; descriptor -1 if it was unlinked before we locked it (try again)."""
        idle = self._idle.pop(name, None)
        if idle is not None:
            fd, path, ident = idle
        else:
            path = str(self._path(name))
            flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
            try:
                fd = os.open(path, flags, 0o600)
            except FileNotFoundError:  # the first lock taken on this database
                self.create()
                fd = os.open(path, flags, 0o600)
            try:
                held = os.fstat(fd)
            except BaseException:
                os.close(fd)
                raise
            ident = (held.st_dev, held.st_ino)
        if _flock is None:  # pragma: no cover
            return fd, path, ident
        try:
            _flock(fd)
        except BlockingIOError:
            self._keep(name, fd, path, ident)  # still ours to try again
            return None
        except BaseException:
            os.close(fd)
            raise
        try:
            now = os.stat(path)
        except FileNotFoundError:
            now = None
        if now is None or (now.st_dev, now.st_ino) != ident:
            os.close(fd)  # the holder before us unlinked it: start over on the new file
            return -1, path, ident
        return fd, path, ident

    def _keep(self, name: bytes, fd: int, path: str, ident: tuple[int, int]) -> None:
        """Keep ``name``'s unlocked file open for its next lock (the oldest beyond
        :data:`IDLE_FILES` is closed)."""
        if self._closed:
            os.close(fd)
            return
        self._idle[name] = (fd, path, ident)
        if len(self._idle) > IDLE_FILES:
            oldest = next(iter(self._idle))
            os.close(self._idle.pop(oldest)[0])

    def _release(self, name: bytes, fd: int, path: str, ident: tuple[int, int]) -> None:
        """Unlock ``name``'s file, keeping it open (:meth:`_keep`); closed if unlocking fails
        (closing releases the lock as well)."""
        if _unflock is None:  # pragma: no cover
            os.close(fd)
            return
        try:
            _unflock(fd)
        except OSError:
            os.close(fd)
            return
        self._keep(name, fd, path, ident)

    def _drop_idle(self) -> None:
        """Close the lock files kept open (none of them is locked)."""
        idle, self._idle = self._idle, {}
        for fd, _, _ in idle.values():
            os.close(fd)

    def close(self) -> None:
        """Close the lock files kept open; a lock released from now on closes its file."""
        self._closed = True
        self._drop_idle()

    def sweep(self) -> int:
        """Remove every lock file that nobody holds (each locked while it is unlinked); the
        number removed. A missing directory has nothing to sweep. The files this object kept
        open are closed first: they would only point at files swept away."""
        self._drop_idle()
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
                if not _names(path, fd):  # swept and made anew since we opened it: not ours
                    continue
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

    def hold(self, name: bytes, on_wait: OnWait | None = None) -> _FileHold:
        """Hold the lock ``name`` for the ``async with`` block."""
        return _FileHold(self, name, on_wait)

    async def _take(self, name: bytes, on_wait: OnWait | None
                    ) -> tuple[int, str, tuple[int, int]]:  # fmt: skip
        """``name``'s lock file locked by us (see :meth:`_try`): polled for while it is held
        by another process or store object."""
        delay, told = POLL_FIRST_S, False
        while True:
            try:
                if self._named is None or name not in self._named:
                    self._note(name)
                got = self._try(name)
            except OSError as exc:
                raise StoreError(
                    f"cannot lock {self._path(name)}: {exc.strerror or exc}") from exc
            if got is not None and got[0] >= 0:
                return got
            if got is None:  # held by another process or store object
                if not told and on_wait is not None:
                    on_wait()
                told = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, POLL_MAX_S)


class _FileHold:
    """The async context manager of :meth:`FileLocks.hold`: this object's tasks queue on its
    :class:`LocalLocks`, then the file is locked (a plain class: cheaper per step than an async
    generator)."""

    __slots__ = ("_held", "_local", "_locks", "_name", "_on_wait")

    def __init__(self, locks: FileLocks, name: bytes, on_wait: OnWait | None) -> None:
        self._locks = locks
        self._name = name
        self._on_wait = on_wait

    async def __aenter__(self) -> None:
        local = self._locks._local.hold(self._name, self._on_wait)
        await local.__aenter__()
        try:
            self._held = await self._locks._take(self._name, self._on_wait)
        except BaseException:
            await local.__aexit__(None, None, None)
            raise
        self._local = local

    async def __aexit__(self, *exc: object) -> None:
        try:
            self._locks._release(self._name, *self._held)  # the file stays; a sweep removes it
        finally:
            await self._local.__aexit__(None, None, None)
