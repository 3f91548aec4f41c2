"""fdatasync without a thread: Linux AIO ``IOCB_CMD_FDSYNC``, completed on the event loop.

Why (issue #12). An inline store (:mod:`vrmproto.store._sqlite_durable`) used to hand each fsync
of its ``-wal`` file to its writer thread and get the result back with
``call_soon_threadsafe``: a thread wake-up, two takes of the GIL and their futexes per fsync,
one writer thread per store. Here the event loop's own thread submits the fsync to the kernel
(``io_submit``), which runs it in a kernel worker; its completion increments an eventfd
(``IOCB_FLAG_RESFD``) that the loop watches with :meth:`~asyncio.AbstractEventLoop.add_reader`,
and the loop reaps it (``io_getevents``, no wait) and calls the waiting callback with the
fsync's result — 0, or a negative errno, which the caller treats exactly like a failed
``fdatasync``. ``IOCB_CMD_FDSYNC`` is ``vfs_fsync(file, datasync=1)``, what ``fdatasync(2)``
does (Linux ``fs/aio.c``, ``aio_fsync``, since 4.18).

One :class:`FdsyncRing` per event loop, shared by every store opened on it (a context costs
``aio-max-nr`` budget scaled by the machine's CPUs), counted by :func:`acquire` and
:func:`FdsyncRing.release`. :func:`acquire` returns None wherever this is not available — not
Linux, an architecture whose syscall numbers are not listed here, a kernel without AIO, no
``aio-max-nr`` budget left, or a filesystem (or a kernel before 4.18) that answers
``IOCB_CMD_FDSYNC`` with ``EINVAL``, found by one probe fsync of the database file when the
store is opened — and the store keeps its writer thread for its fsyncs.

The system calls go through ``libc.syscall`` (ctypes); no dependency. The kernel copies an
iocb when ``io_submit`` reads it, so one iocb per ring is reused for every submission.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import os
import platform
import sys
import threading
from collections.abc import Callable
from pathlib import Path

__all__ = ["FdsyncRing", "acquire"]

_SYSCALLS: dict[str, tuple[int, int, int, int]] = {
    # io_setup, io_destroy, io_submit, io_getevents (asm/unistd_64.h; asm-generic/unistd.h)
    "x86_64": (206, 207, 209, 208),
    "amd64": (206, 207, 209, 208),
    "aarch64": (0, 1, 2, 4),
    "arm64": (0, 1, 2, 4),
}

IOCB_CMD_FDSYNC = 3
IOCB_FLAG_RESFD = 1
RING_EVENTS = 128
"""Completions a ring holds at once; an inline store has at most one fsync outstanding, and a
full ring makes ``io_submit`` fail with ``EAGAIN`` (the store then syncs on its thread)."""


class _Iocb(ctypes.Structure):
    """``struct iocb`` (linux/aio_abi.h), little-endian layout (both architectures above)."""

    _fields_ = (
        ("aio_data", ctypes.c_uint64),
        ("aio_key", ctypes.c_uint32),
        ("aio_rw_flags", ctypes.c_int32),
        ("aio_lio_opcode", ctypes.c_uint16),
        ("aio_reqprio", ctypes.c_int16),
        ("aio_fildes", ctypes.c_uint32),
        ("aio_buf", ctypes.c_uint64),
        ("aio_nbytes", ctypes.c_uint64),
        ("aio_offset", ctypes.c_int64),
        ("aio_reserved2", ctypes.c_uint64),
        ("aio_flags", ctypes.c_uint32),
        ("aio_resfd", ctypes.c_uint32),
    )


class _IoEvent(ctypes.Structure):
    """``struct io_event``: ``data`` is the iocb's ``aio_data``, ``res`` the result."""

    _fields_ = (
        ("data", ctypes.c_uint64),
        ("obj", ctypes.c_uint64),
        ("res", ctypes.c_int64),
        ("res2", ctypes.c_int64),
    )


class _Timespec(ctypes.Structure):
    _fields_ = (("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long))


def _numbers() -> tuple[int, int, int, int] | None:
    if not sys.platform.startswith("linux") or ctypes.sizeof(ctypes.c_void_p) != 8:
        return None
    return _SYSCALLS.get(platform.machine().lower())


class FdsyncRing:
    """An AIO context and its eventfd, watched by ``loop``; use it on the loop's thread only.

    :meth:`fdsync` submits an ``IOCB_CMD_FDSYNC`` and returns; ``done(res)`` is called on the
    loop once the kernel finished it (``res`` 0, or ``-errno``).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        numbers = _numbers()
        if numbers is None:
            raise OSError(errno.ENOSYS, "Linux AIO is not available here")
        self._setup, self._destroy, self._submit, self._getevents = numbers
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._libc.syscall.restype = ctypes.c_long
        self.loop = loop
        self.users = 0
        self._ctx = ctypes.c_ulong(0)
        self._call(self._setup, ctypes.c_long(RING_EVENTS), ctypes.byref(self._ctx))
        try:
            self._efd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        except BaseException:
            self._call(self._destroy, self._ctx)
            raise
        self._iocb = _Iocb(aio_lio_opcode=IOCB_CMD_FDSYNC, aio_flags=IOCB_FLAG_RESFD,
                           aio_resfd=self._efd)  # fmt: skip
        self._iocbs = (ctypes.POINTER(_Iocb) * 1)(ctypes.pointer(self._iocb))
        self._events = (_IoEvent * 32)()
        self._no_wait = ctypes.byref(_Timespec(0, 0))
        self._next = 0
        self._pending: dict[int, Callable[[int], None]] = {}
        self._closed = False
        loop.add_reader(self._efd, self._ready)

    def _call(self, number: int, *args: object) -> int:
        while True:
            res = int(self._libc.syscall(ctypes.c_long(number), *args))
            if res >= 0:
                return res
            err = ctypes.get_errno()
            if err != errno.EINTR:
                raise OSError(err, os.strerror(err))

    def fdsync(self, fd: int, done: Callable[[int], None]) -> None:
        """Start an ``fdatasync`` of ``fd`` in the kernel; ``done(res)`` on the loop when it
        finished. Raises :class:`OSError` if it could not be submitted (nothing was started)."""
        if self._closed:
            raise OSError(errno.EBADF, "the fsync ring is closed")
        self._next += 1
        self._iocb.aio_data = self._next
        self._iocb.aio_fildes = fd
        self._pending[self._next] = done
        try:
            self._call(self._submit, self._ctx, ctypes.c_long(1), self._iocbs)
        except BaseException:
            del self._pending[self._next]
            raise

    def _ready(self) -> None:
        """The eventfd is readable: reap every finished fsync and tell its caller."""
        try:
            os.eventfd_read(self._efd)
        except BlockingIOError:
            return
        events, room, no_wait = self._events, ctypes.c_long(len(self._events)), self._no_wait
        while True:
            try:
                n = self._call(self._getevents, self._ctx, ctypes.c_long(0), room, events, no_wait)
            except OSError as exc:  # results lost: every fsync under way counts as failed
                finished = [(data, -(exc.errno or errno.EIO)) for data in self._pending]
                n = 0
            else:
                finished = [(int(e.data), int(e.res)) for e in events[:n]]
            for data, res in finished:
                done = self._pending.pop(data, None)
                if done is None:
                    continue
                try:
                    done(res)
                except Exception as exc:  # one caller's bug must not lose the others' results
                    self.loop.call_exception_handler(
                        {"message": "fsync completion callback failed", "exception": exc}
                    )
            if n < room.value:
                return

    async def probe(self, path: Path) -> bool:
        """Whether an ``IOCB_CMD_FDSYNC`` of the file at ``path`` is accepted and succeeds
        (``EINVAL`` from a filesystem without it, or a kernel before 4.18: False)."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return False
        try:
            result: asyncio.Future[int] = self.loop.create_future()

            def done(res: int) -> None:
                if not result.done():
                    result.set_result(res)

            try:
                self.fdsync(fd, done)
            except OSError:
                return False
            return await result == 0
        finally:
            os.close(fd)  # the kernel holds its own reference while the fsync runs

    def release(self) -> None:
        """One user fewer; the last one closes the ring (on the loop's thread, or handed to
        it if it runs elsewhere)."""
        with _rings_lock:
            self.users -= 1
            if self.users > 0:
                return
            if _rings.get(self.loop) is self:
                del _rings[self.loop]
        try:
            here = asyncio.get_running_loop() is self.loop
        except RuntimeError:
            here = False
        if not here and self.loop.is_running():
            with contextlib.suppress(RuntimeError):  # closed meanwhile: close it here
                self.loop.call_soon_threadsafe(self._close)
                return
        self._close()

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if not self.loop.is_closed():
            self.loop.remove_reader(self._efd)
        try:
            self._call(self._destroy, self._ctx)  # waits for fsyncs still running, if any
        finally:
            os.close(self._efd)


_rings: dict[asyncio.AbstractEventLoop, FdsyncRing] = {}
_rings_lock = threading.Lock()


async def acquire(path: Path) -> FdsyncRing | None:
    """The running loop's ring, if an AIO fdsync of the file at ``path`` works (one probe
    fsync of it); None: sync on a thread instead. Pair with :meth:`FdsyncRing.release`."""
    loop = asyncio.get_running_loop()
    with _rings_lock:
        ring = _rings.get(loop)
        if ring is None:
            try:
                ring = FdsyncRing(loop)
            except OSError:  # no AIO here, or no aio-max-nr budget left
                return None
            _rings[loop] = ring
        ring.users += 1
    try:
        works = await ring.probe(path)
    except BaseException:
        ring.release()
        raise
    if not works:
        ring.release()
        return None
    return ring
