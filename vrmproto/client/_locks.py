"""One asyncio lock per thread, kept only while someone holds or waits for it (§12.8-1).

A customer node may touch many threads over its life (every intentcast opens one per vendor);
a registry that kept a lock for each would grow without bound, so a thread's lock is dropped as
soon as its last holder leaves and its last waiter is served.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

__all__ = ["ThreadLocks"]


class ThreadLocks:
    """``async with locks.hold(thread):`` — that thread's lock, held for the block."""

    def __init__(self) -> None:
        self._locks: dict[bytes, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: bytes) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)
