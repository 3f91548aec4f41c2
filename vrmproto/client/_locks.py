"""One asyncio lock per thread, kept only while someone holds or waits for it (§12.8-1).

A customer node may touch many threads over its life (every intentcast opens one per vendor);
a registry that kept a lock for each would grow without bound, so a thread's lock is dropped as
soon as its last holder leaves and its last waiter is served. It is the vendor endpoint's
registry (:class:`vrmproto.server._locks.KeyedLocks`: a plain class for the context manager,
cheaper per message than an async generator), without a shared lock.
"""

from __future__ import annotations

from vrmproto.server._locks import KeyedLocks

__all__ = ["ThreadLocks"]


class ThreadLocks(KeyedLocks):
    """``async with locks.hold(thread):`` — that thread's lock, held for the block."""

    def __init__(self) -> None:
        super().__init__()
