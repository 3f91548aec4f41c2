"""The asyncio side of one kept-alive HTTP/1.1 client connection, shared by our two clients:
the customer agent's (:mod:`vrmproto.client._http_conn`) and the vendor's webhook client
(:mod:`vrmproto.server._webhook_http`).

A connection carries one request at a time: :meth:`ClientConnection.send` writes it in one
piece and returns the future its outcome settles — what the client makes of the answer (the
whole :class:`~vrmproto._http1.Response`, or only its status), or the error that ended it. The
bytes are read by the sans-IO :class:`~vrmproto._http1.ResponseReader`; each client's subclass
turns what the reader returns or raises into its outcome (``data_received``, ``eof_received``,
``connection_lost``). The answer's deadline is one :class:`~vrmproto._deadline.Deadline` per
connection. Transports are used through the methods every stream transport has: uvloop's are
not :class:`asyncio.Transport` subclasses.
"""

from __future__ import annotations

import asyncio
from typing import Generic, TypeVar, cast

from vrmproto._deadline import Deadline
from vrmproto._http1 import ResponseReader

__all__ = ["ClientConnection"]

T = TypeVar("T")


class ClientConnection(asyncio.Protocol, Generic[T]):
    """One connection: a request written, its outcome (``T``, or an error) awaited."""

    def __init__(self, reader: ResponseReader) -> None:
        self.reader = reader
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[T] | None = None
        self.lost = False
        self.used = 0.0  # when it was last released, on the client's clock
        self.deadline = Deadline(self.expire)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.Transport", transport)

    def send(self, request: bytes, loop: asyncio.AbstractEventLoop,
             deadline: float) -> asyncio.Future[T]:  # fmt: skip
        """Write ``request``; its outcome comes in the future returned (a TimeoutError at the
        loop time ``deadline``)."""
        assert self.transport is not None
        self.waiter = waiter = loop.create_future()
        self.deadline.set(loop, deadline)
        self.transport.write(request)
        return waiter

    def settle(self, outcome: T | BaseException) -> None:
        """The awaited request's outcome. An answer nobody awaits (it came after its request
        failed) leaves the connection untrustworthy: it is not reused."""
        self.deadline.clear()
        waiter, self.waiter = self.waiter, None
        if waiter is None or waiter.done():
            if not isinstance(outcome, BaseException):
                self.reader.keep_alive = False
            return
        if isinstance(outcome, BaseException):
            waiter.set_exception(outcome)
        else:
            waiter.set_result(outcome)

    def expire(self) -> None:
        """No answer in time: the request fails, and the connection (its answer may still
        come) is closed."""
        self.settle(TimeoutError("no answer in time"))
        self.close()

    def close(self) -> None:
        self.reader.keep_alive = False
        self.deadline.cancel()
        if self.transport is not None:
            self.transport.close()
