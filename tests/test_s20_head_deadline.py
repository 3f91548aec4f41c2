"""The header deadline ends with the head (§10.1-1), not when the loop gets round to handling it.

Found by s20-flaky under load: the deadline was cleared only when the request's handler task
first ran, a loop iteration after aiohttp had parsed the head. A host whose loop was held past
``header_timeout_ms`` with the head's last bytes waiting (a busy vendor: other customers' work,
a slow store call) ran the deadline's timer in the same iteration as the read, after it: the
connection was closed as if the head were late, the client's request unanswered — an ordinary
"Server disconnected" to the customer's agent, a lost delivery to the conformance suite. The
head is whole when the parser has it, so the deadline ends there.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from _broken_vendor import make_endpoint

from vrmproto.server import ConnectionLimits, Server, make_app, serve, serve_app
from vrmproto.server._connections import _State
from vrmproto.store import MemoryStore

HEADER_MS = 100


async def started(lean: bool) -> Server:
    """The test vendor: ``serve`` (lean connections first, then aiohttp for the rest) or an
    application served by ``serve_app`` (aiohttp's parser only)."""
    endpoint = make_endpoint(MemoryStore())
    limits = ConnectionLimits(header_timeout_ms=HEADER_MS, idle_timeout_ms=5_000)
    if lean:
        return await serve(endpoint, connection_limits=limits)
    return await serve_app(make_app(endpoint), endpoint, connection_limits=limits)


@pytest.mark.parametrize(("lean", "target"), [
    (False, b"/healthz"), (True, b"/.well-known/vrm"), (True, b"/healthz")])  # fmt: skip
async def test_a_whole_head_is_answered_however_late_the_loop_reads_its_end(
    lean: bool, target: bytes
) -> None:
    server = await started(lean)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(b"GET " + target + b" HTTP/1.1\r\n")  # part of a head: its deadline runs
        async with asyncio.timeout(5):
            # (no event says a connection's head began: its state, a turn of the loop at a time)
            while not any(getattr(h, "_state", None) is _State.HEAD or (  # noqa: ASYNC110
                               getattr(h, "_waiting", True) is False)  # a lean connection's
                          for h in list(server.connections._open)):  # fmt: skip
                await asyncio.sleep(0)
        writer.write(b"Host: vendor.test\r\n\r\n")  # the head is whole, and in its time...
        # ...but the loop is held (a busy host), on purpose: it reads the end past the deadline
        time.sleep(2 * HEADER_MS / 1000)  # noqa: ASYNC251
        async with asyncio.timeout(5):
            answer = await reader.readuntil(b"\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 200 "), answer
    finally:
        writer.transport.abort()
        await server.close()
