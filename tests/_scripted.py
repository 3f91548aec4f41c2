"""A scripted HTTP/1.1 peer on 127.0.0.1 for the lean clients' connection tests (the agent's,
``test_http_conn``, and the webhooks', ``test_webhook_http``): it answers each connection's
requests as a script says, or closes the connection without answering, and logs what came."""

from __future__ import annotations

import asyncio
from typing import cast


class Scripted(asyncio.Protocol):
    """Answers each connection's requests as ``script`` says: ``script[n]`` lists the answers
    of the n-th connection in order, each the answer's bytes or None to close the connection
    without answering. ``log`` gets ``(-1, b"")`` per connection and ``(n, body)`` per request."""

    def __init__(self, script: list[list[bytes | None]], log: list[tuple[int, bytes]]) -> None:
        self.script, self.log = script, log
        self.index = -1
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.Transport", transport)  # uvloop's is no subclass of it
        self.index = len([i for i, _ in self.log if i < 0])
        self.log.append((-1, b""))  # one per connection

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        if b"\r\n\r\n" not in data:
            return
        self.log.append((self.index, data.split(b"\r\n\r\n", 1)[1]))
        answers = self.script[self.index] if self.index < len(self.script) else []
        answer = answers.pop(0) if answers else None
        if answer is None:
            self.transport.close()
        else:
            self.transport.write(answer)


async def scripted_server(script: list[list[bytes | None]],
                          log: list[tuple[int, bytes]]) -> tuple[asyncio.Server, int]:  # fmt: skip
    """A :class:`Scripted` server on 127.0.0.1, and its port."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Scripted(script, log), "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]
