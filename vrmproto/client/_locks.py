"""One asyncio lock per thread, kept only while someone holds or waits for it (§12.8-1).

A customer node may touch many threads over its life (every intentcast opens one per vendor);
a registry that kept a lock for each would grow without bound, so a thread's lock is dropped as
soon as its last holder leaves and its last waiter is served. It is the vendor endpoint's
registry (:class:`vrmproto.server._locks.KeyedLocks`: a plain class for the context manager,
cheaper per message than an async generator), without a shared lock.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from vrmproto.server._locks import KeyedLocks

__all__ = ["InTurn", "ThreadLocks"]


class ThreadLocks(KeyedLocks):
    """``async with locks.hold(thread):`` — that thread's lock, held for the block."""

    def __init__(self) -> None:
        super().__init__()


class Holder(Protocol):
    """What :class:`InTurn` takes its two locks from (the ledger)."""

    def first_lock(self, key: bytes) -> AbstractAsyncContextManager[None]:
        """The lock of ``key`` among this node's tasks."""

    def second_lock(self, key: bytes, on_wait: Callable[[], None]
                    ) -> AbstractAsyncContextManager[None]:  # fmt: skip
        """The lock of ``key`` among every holder of the store (``on_wait`` if it waits)."""

    def entered(self, key: bytes) -> None:
        """Both locks of ``key`` are held."""

    def waiting(self, key: bytes) -> None:
        """The store's lock of ``key`` is held elsewhere: it waits (the default ``on_wait``)."""


class InTurn:
    """``async with``: ``holder``'s first lock of ``key``, then its second, held for the block;
    ``holder.entered(key)`` is called once both are held. How
    :meth:`~vrmproto.client._ledger.Ledger.lock` takes a thread's asyncio lock and then the
    store's (a plain class with one object per step, made when entered: cheaper per step than an
    async generator, or closures made for every step)."""

    __slots__ = ("_first", "_held", "_holder", "_key", "_on_wait")

    def __init__(self, holder: Holder, key: bytes,
                 on_wait: Callable[[], None] | None = None) -> None:  # fmt: skip
        self._holder = holder
        self._key = key
        self._on_wait = on_wait

    def _waiting(self) -> None:
        self._holder.waiting(self._key)

    async def __aenter__(self) -> None:
        holder, key = self._holder, self._key
        first = self._first = holder.first_lock(key)
        await first.__aenter__()
        try:
            held = holder.second_lock(key, self._on_wait or self._waiting)
            await held.__aenter__()
        except BaseException:
            await first.__aexit__(None, None, None)
            raise
        self._held = held
        holder.entered(key)

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self._held.__aexit__(None, None, None)
        finally:
            await self._first.__aexit__(None, None, None)
