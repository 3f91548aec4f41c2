"""Named locks across processes for :class:`~vrmproto.store.PostgresStore`: advisory locks.

Spec §11.11-2: a lock named ``name`` excludes every other holder of that name on the same
storage — here, the same database and schema, from any process on any machine. Each name maps
to a 64-bit key (:func:`~vrmproto.store._pg_schema.advisory_key`) and is held as a
session-level advisory lock (``pg_try_advisory_lock``) on one connection the store dedicates to
its locks, for the ``async with`` block. PostgreSQL releases a session's advisory locks when the
session ends, so a holder that dies — process killed, machine gone, connection cut — never
leaves a name locked (after the server notices, within its TCP keepalive settings).

Tasks of one store queue on a local :class:`asyncio.Lock` per name first
(:class:`~vrmproto.store._locks.LocalLocks`), so one connection can hold any number of different
names at once and never takes a name twice. Waiting for a name held elsewhere polls
``pg_try_advisory_lock`` with the same short, growing delay as the SQLite store's file locks:
a blocking ``pg_advisory_lock`` would occupy the shared connection, and a connection per waiter
could exhaust the server's connections. The try and the unlock are shielded from cancellation,
so a cancelled waiter never leaves a lock taken behind it.

If the lock connection itself breaks, the locks it held are gone (the server released them);
the next lock taken opens a new connection.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING

from vrmproto.store._base import StoreError
from vrmproto.store._locks import POLL_FIRST_S, POLL_MAX_S, LocalLocks, OnWait
from vrmproto.store._pg_schema import advisory_key

if TYPE_CHECKING:
    from asyncpg import Connection

__all__ = ["AdvisoryLocks"]

_TRY = "SELECT pg_try_advisory_lock($1)"
_UNLOCK = "SELECT pg_advisory_unlock($1)"


class AdvisoryLocks:
    """Named advisory locks on one dedicated connection (see the module docstring)."""

    def __init__(self, connect: Callable[[], Awaitable[Connection]], schema: str,
                 close_timeout_s: float | None = None) -> None:  # fmt: skip
        self._connect = connect
        self._close_timeout_s = close_timeout_s
        self._schema = schema
        self._local = LocalLocks()
        self._conn: Connection | None = None
        self._use = asyncio.Lock()  # one query at a time on the connection

    async def _call(self, sql: str, key: int) -> bool:
        async with self._use:
            if self._conn is None or self._conn.is_closed():
                self._conn = await self._connect()
            try:
                return bool(await self._conn.fetchval(sql, key))
            except Exception as exc:
                raise StoreError(f"advisory lock query failed: {exc}") from exc

    async def _shielded(self, sql: str, key: int) -> bool:
        """``_call`` run to its end even if the caller is cancelled meanwhile; a lock it took
        for a cancelled caller is released again."""
        task = asyncio.ensure_future(self._call(sql, key))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                if await task and sql == _TRY:
                    await self._call(_UNLOCK, key)
            raise

    @contextlib.asynccontextmanager
    async def hold(self, name: bytes, on_wait: OnWait | None = None) -> AsyncIterator[None]:
        """Hold the lock ``name`` for the ``async with`` block."""
        told = False

        def waiting() -> None:
            nonlocal told
            if not told and on_wait is not None:
                on_wait()
            told = True

        async with self._local.hold(name, waiting):
            key = advisory_key(self._schema, "lock", name)
            delay = POLL_FIRST_S
            while not await self._shielded(_TRY, key):
                waiting()
                await asyncio.sleep(delay)
                delay = min(delay * 2, POLL_MAX_S)
            try:
                yield
            finally:
                with contextlib.suppress(StoreError):  # a broken session released it already
                    await self._shielded(_UNLOCK, key)

    async def close(self) -> None:
        """Close the lock connection: every lock still held on it is released."""
        async with self._use:
            if self._conn is not None:
                with contextlib.suppress(Exception):
                    await self._conn.close(timeout=self._close_timeout_s)
                self._conn = None
