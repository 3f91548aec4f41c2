"""The lock registry: one step at a time per thread (§12.8-1), across processes when asked
(§11.11-2).

:class:`KeyedLocks` hands out one :class:`asyncio.Lock` per key and drops it as soon as nobody
holds or waits for it, so a vendor with a million threads keeps locks only for the threads busy
now. With ``shared``, each hold also takes the lock that function names for the key (the store's
cross-process lock of a customer's ``vrm`` commands), inside the asyncio one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

__all__ = ["KeyedLocks", "SharedLock"]

SharedLock = Callable[[bytes], AbstractAsyncContextManager[None]]


class KeyedLocks:
    """One asyncio.Lock per key, dropped when nobody holds or waits for it (§12.8-1); with
    ``shared``, also the lock it names for the key, taken inside the asyncio one (§11.11-2)."""

    def __init__(self, shared: SharedLock | None = None) -> None:
        self._locks: dict[bytes, tuple[asyncio.Lock, int]] = {}
        self._shared = shared

    def hold(self, key: bytes) -> _Hold:
        """``async with locks.hold(key):`` — the key's lock, held for the block."""
        return _Hold(self._locks, key, self._shared)

    def __len__(self) -> int:
        return len(self._locks)


class _Hold:
    """The async context manager of :meth:`KeyedLocks.hold` (a plain class: cheaper per
    message than an async generator)."""

    __slots__ = ("_held", "_key", "_lock", "_locks", "_shared")

    def __init__(self, locks: dict[bytes, tuple[asyncio.Lock, int]], key: bytes,
                 shared: SharedLock | None) -> None:  # fmt: skip
        self._locks = locks
        self._key = key
        self._shared = shared
        self._held: AbstractAsyncContextManager[None] | None = None

    async def __aenter__(self) -> None:
        locks, key = self._locks, self._key
        lock, users = locks.get(key, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        locks[key] = (lock, users + 1)
        try:
            await lock.acquire()
        except BaseException:
            self._leave()
            raise
        self._lock = lock
        if self._shared is not None:
            held = self._shared(key)
            try:
                await held.__aenter__()
            except BaseException:
                lock.release()
                self._leave()
                raise
            self._held = held

    async def __aexit__(self, *exc: object) -> None:
        try:
            if self._held is not None:
                await self._held.__aexit__(None, None, None)
        finally:
            self._lock.release()
            self._leave()

    def _leave(self) -> None:
        locks, key = self._locks, self._key
        lock, users = locks[key]
        if users == 1:
            del locks[key]
        else:
            locks[key] = (lock, users - 1)
