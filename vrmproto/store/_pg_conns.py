"""The read connections of :class:`~vrmproto.store.PostgresStore`: a fixed set, handed out in turn.

Every read is one statement on a connection that is idle at the moment. asyncpg's ``Pool`` does
the same with more machinery — a holder and a proxy per acquire, a timeout context, a reset on
release — which cost about a third of a short query's CPU here (measured: 134 µs against 90 µs per
query), and an inbox message makes several reads. :class:`Connections` keeps ``size`` connections
in a queue: a reader takes one (waiting if all are busy), runs its statement and puts it back.

A connection is opened when first needed and again after it broke. One that ended a statement
with anything but a database error — a lost connection, a cancelled caller whose query may still
be running — is terminated rather than reused, so the next reader never inherits its state.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from asyncpg import Connection

__all__ = ["Connections"]

_T = TypeVar("_T")


def _database_answer(exc: BaseException) -> bool:
    """Whether ``exc`` is the server's answer to a statement (the connection is still fine)."""
    return isinstance(getattr(exc, "sqlstate", None), str)


class Connections:
    """``size`` connections from ``connect``, each used by one statement at a time."""

    def __init__(self, connect: Callable[[], Awaitable[Connection]], size: int,
                 close_timeout_s: float | None = None) -> None:  # fmt: skip
        self._connect = connect
        self._close_timeout_s = close_timeout_s  # a goodbye the server never answers
        self._idle: asyncio.Queue[Connection | None] = asyncio.Queue()
        for _ in range(size):
            self._idle.put_nowait(None)  # None: not opened yet
        self._closed = False

    async def run(self, work: Callable[[Connection], Awaitable[_T]]) -> _T:
        """``work`` on an idle connection; its result or its exception."""
        conn = await self._idle.get()
        try:
            if conn is None or conn.is_closed():
                conn = None
                conn = await self._connect()
            return await work(conn)
        except BaseException as exc:
            if conn is not None and not _database_answer(exc):
                conn.terminate()
                conn = None
            raise
        finally:
            if self._closed and conn is not None:
                conn.terminate()  # close() has run: nobody will take it again
                conn = None
            self._idle.put_nowait(conn)

    async def close(self) -> None:
        """Close the idle connections; one in use is terminated when its statement ends."""
        self._closed = True
        while not self._idle.empty():
            conn = self._idle.get_nowait()
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.close(timeout=self._close_timeout_s)
