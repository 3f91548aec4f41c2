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

from vrmproto.server._locks import KeyedLocks

__all__ = ["InTurn", "ThreadLocks"]


class ThreadLocks(KeyedLocks):
    """``async with locks.hold(thread):`` — that thread's lock, held for the block."""

    def __init__(self) -> None:
        super().__init__()


class InTurn:
    """``async with``: the lock ``first``, then the one ``second()`` makes, held for the block;
    ``entered()`` is called once both are held. How :meth:`~vrmproto.client._ledger.Ledger.lock`
    takes a thread's asyncio lock and then the store's (a plain class: cheaper per step than an
    async generator)."""

    __slots__ = ("_entered", "_first", "_held", "_second")

    def __init__(self, first: AbstractAsyncContextManager[None],
                 second: Callable[[], AbstractAsyncContextManager[None]],
                 entered: Callable[[], None]) -> None:  # fmt: skip
        self._first = first
        self._second = second
        self._entered = entered

    async def __aenter__(self) -> None:
        first = self._first
        await first.__aenter__()
        try:
            held = self._second()
            await held.__aenter__()
        except BaseException:
            await first.__aexit__(None, None, None)
            raise
        self._held = held
        self._entered()

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self._held.__aexit__(None, None, None)
        finally:
            await self._first.__aexit__(None, None, None)
