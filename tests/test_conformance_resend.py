"""The conformance suite sends a request again, once, when the target closed the connection as it
was sent (§10.1-2: "a sender that finds a connection closed as it sends delivers the same bytes
again on a new one").

Before, the suite failed the case with "no HTTP response": a kept-alive connection that the
target closed as idle just as the suite reused it — ``tests/test_conformance_broken.py``'s vendor
closes idle connections after 2 s, and on a loaded machine ADM-001 met that race ("Can not write
request body") and failed a vendor that had done nothing wrong.
"""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import aiohttp
import pytest

from vrmproto.testing import CaseContext, NoResponse, Registry
from vrmproto.testing._case import Level
from vrmproto.testing._context import closed_as_sent

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return head + await reader.readexactly(length)


@asynccontextmanager
async def _target(answer: Callable[[int], bool]) -> AsyncIterator[tuple[str, list[bytes]]]:
    """A raw HTTP/1.1 server on 127.0.0.1: the n-th connection (from 0) reads its request and is
    answered 200 if ``answer(n)``, else closed without a word."""
    received: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        n = len(received)
        received.append(await _read_request(reader))
        if answer(n):
            writer.write(OK)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}", received


def _context(base: str, session: aiohttp.ClientSession) -> CaseContext:
    reg = Registry()

    @reg.case(id="R-001", clause="§10.1-2", requirement="-", level=Level.MUST, accepts="-")
    async def run(ctx: CaseContext) -> None:  # pragma: no cover - only its Case is used
        del ctx

    return CaseContext(case=run, base_url=base, discovery={}, session=session,
                       rng=random.Random(1), state={})  # fmt: skip


async def test_a_request_whose_connection_closed_unanswered_is_sent_again_once() -> None:
    async with _target(lambda n: n > 0) as (base, received):
        async with aiohttp.ClientSession() as session:
            ctx = _context(base, session)
            ex = await ctx.post("/inbox", b"the same bytes")
        assert (ex.status, ex.response_body) == (200, b"ok")
        assert len(received) == 2
        assert received[0].endswith(b"the same bytes")
        assert received[1] == received[0]
        assert [e.status for e in ctx.exchanges] == [None, 200]  # both in the transcript


async def test_a_target_that_closes_every_connection_still_gets_no_response() -> None:
    async with _target(lambda n: False) as (base, received):
        async with aiohttp.ClientSession() as session:
            ctx = _context(base, session)
            with pytest.raises(NoResponse):
                await ctx.post("/inbox", b"x")
        assert len(received) == 2


async def test_a_refused_connection_is_not_sent_again() -> None:
    with socket.socket() as probe:  # a port that was just closed: connecting is refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with aiohttp.ClientSession() as session:
        ctx = _context(f"http://127.0.0.1:{port}", session)
        with pytest.raises(NoResponse) as raised:
            await ctx.post("/inbox", b"x")
    assert not closed_as_sent(raised.value.__cause__)
    assert len(ctx.exchanges) == 1
    assert closed_as_sent(aiohttp.ServerDisconnectedError())
    assert closed_as_sent(aiohttp.ClientOSError(32, "Can not write request body"))
    assert not closed_as_sent(TimeoutError())
