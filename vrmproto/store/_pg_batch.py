"""Requests of one kind made while one is on its way to PostgreSQL go together in the next
statement: what the shared rate limits and first-contact budgets (spec §12.9-8) send.

Every message a vendor stores asks the database about its limits several times (the address's
bucket, the sender's, the first contact's budgets: :mod:`vrmproto.store._pg_rates`,
:mod:`vrmproto.store._pg_admission`). Sent one statement each, those round trips cost more
CPU, in the server process and in PostgreSQL, than the message's own write, which the store
already commits in groups. :class:`Coalescer` does for them what group commit does for the
writes: a request made while no statement of its kind is running is sent at once, alone; those
made while one runs wait for it and then go in the next statement together, as arrays. Nothing
waits for a batch to fill, so a request alone is never later than it was; under load one
statement answers many.

The statements apply the requests in the order they were made, each as it would have been
applied alone (the functions loop over them in PL/pgSQL), so what each caller gets back is what
it would have got one statement at a time, had the others been made just before it. A batch
takes its rows' locks in one order, sorted by key, and keeps them until it ends, so two
processes' batches never wait on each other in a circle; a batch that PostgreSQL aborts as a
deadlock victim all the same is sent again (nothing of it was applied).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

__all__ = ["MAX_BATCH", "Coalescer"]

_I = TypeVar("_I")
_R = TypeVar("_R")

#: Most requests one statement takes.
MAX_BATCH = 256
#: SQLSTATEs after which a batch is sent again: deadlock victim, serialization failure.
_RETRY_STATES = frozenset({"40P01", "40001"})
_RETRIES = 3


def _sqlstate(exc: BaseException) -> object:
    """The SQLSTATE of ``exc``, or of the database error it was translated from."""
    return getattr(exc, "sqlstate", None) or getattr(exc.__cause__, "sqlstate", None)


class Coalescer(Generic[_I, _R]):
    """Sends requests through ``run`` (a list of requests in, one result each out, in order),
    at most one statement at a time; what is asked meanwhile goes in the next one."""

    def __init__(self, run: Callable[[Sequence[_I]], Awaitable[Sequence[_R]]]) -> None:
        self._run = run
        self._queue: list[tuple[_I, asyncio.Future[_R]]] = []
        self._sending: asyncio.Task[None] | None = None

    async def ask(self, item: _I) -> _R:
        """``item``'s result, once the statement carrying it has answered."""
        future: asyncio.Future[_R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if self._sending is None:
            self._sending = asyncio.get_running_loop().create_task(self._send())
        return await future

    async def _send(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                await self._answer(batch)
        finally:
            self._sending = None
            for _, future in self._queue:  # cancelled while sending: nobody else will
                future.cancel()
            self._queue.clear()

    async def _answer(self, batch: list[tuple[_I, asyncio.Future[_R]]]) -> None:
        items = [item for item, _ in batch]
        for attempt in range(1, _RETRIES + 1):
            try:
                results = await self._run(items)
                break
            except asyncio.CancelledError:
                for _, future in batch:
                    future.cancel()
                raise
            except Exception as exc:
                if attempt < _RETRIES and _sqlstate(exc) in _RETRY_STATES:
                    continue
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():  # its caller may have been cancelled
                future.set_result(result)
