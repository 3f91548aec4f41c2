"""The suite delivers a request lost to the idle-close race again until it goes on a NEW
connection (§10.1-2: "a sender that finds a connection closed as it sends delivers the same bytes
again on a new one ... a delivery is never lost to this race"), and the preflight probes and
ADM-001's session of its own do the same.

Before, the suite sent such a request again once, through its pool: on a loaded host several
pooled connections go stale together (the target's idle clock starts when it writes an answer,
the pool's when the suite gets round to reading it), so the second delivery met another stale
connection and the case failed with "no HTTP response" ("Server disconnected", "Can not write
request body"). ``tests/test_conformance_broken.py`` met it in RATE-003 and ADM-001 (whose own
session also kept idle connections 15 s against the test vendor's 2 s), and in the preflight
probe of the history URL, which lost all 13 suites at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import pytest
from test_conformance_resend import _context, _read_request

from vrmproto.testing import CaseContext, NoResponse
from vrmproto.testing._context import KEEPALIVE_S, MAX_DELIVERIES, suite_session
from vrmproto.testing._runner import _probe

KEPT = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
TIMEOUT = aiohttp.ClientTimeout(total=10)


@asynccontextmanager
async def _target(*, answer_later: bool = False) -> AsyncIterator[tuple[str, list[str]]]:
    """A raw HTTP/1.1 server on 127.0.0.1 that answers the first request of each connection and
    keeps it alive, then closes it unanswered when the next request arrives on it: each of its
    kept-alive connections is lost to the idle-close race (§10.1-2) once. With
    ``answer_later``, it never answers at all. Yields its URL and, per request, "new" or "kept"
    and the client's address."""
    seen: list[str] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")[0]
        try:
            await _read_request(reader)
            seen.append(f"new {peer}")
            if answer_later:
                return
            writer.write(KEPT)
            await writer.drain()
            await _read_request(reader)
            seen.append(f"kept {peer}")
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client closed an idle connection: no request lost
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}", seen


async def _fill_pool(ctx: CaseContext, n: int) -> None:
    """``n`` requests at once: ``n`` connections, each answered and kept alive in the pool."""
    answers = await asyncio.gather(*(ctx.post("/inbox", b"fill") for _ in range(n)))
    assert [a.status for a in answers] == [200] * n


@pytest.mark.parametrize("source", [None, "127.0.0.1"])
async def test_a_request_lost_on_stale_kept_alive_connections_is_delivered_on_a_new_one(
    source: str | None,
) -> None:
    local = None if source is None else (source, 0)
    async with _target() as (base, seen), suite_session(TIMEOUT, local_addr=local) as session:
        ctx = _context(base, session)
        await _fill_pool(ctx, 3)
        del ctx.exchanges[:]
        ex = await ctx.post("/inbox", b"the same bytes")
    assert (ex.status, ex.response_body) == (200, b"ok")
    # the three stale connections, oldest first, each closed as the bytes came; then a new one
    assert [e.status for e in ctx.exchanges] == [None, None, None, 200]
    assert all(e.request_body == b"the same bytes" for e in ctx.exchanges)
    assert [s.split()[0] for s in seen[3:]] == ["kept", "kept", "kept", "new"]
    assert {s.split()[1] for s in seen} == {source or "127.0.0.1"}


async def test_a_target_that_closes_every_new_connection_still_gets_no_response() -> None:
    """What a new connection loses is delivered again once, as before: never a loop."""
    async with _target(answer_later=True) as (base, seen), suite_session(TIMEOUT) as session:
        ctx = _context(base, session)
        with pytest.raises(NoResponse):
            await ctx.post("/inbox", b"x")
    assert seen == ["new 127.0.0.1", "new 127.0.0.1"]
    assert MAX_DELIVERIES > 2  # and, at worst, a bounded number of stale ones before


async def test_the_preflight_probe_delivers_again_on_a_new_connection() -> None:
    async with _target() as (base, seen), suite_session(TIMEOUT) as session:
        await _fill_pool(_context(base, session), 2)
        assert await _probe(session, f"{base}/vrm/history", 10.0) == (200, None)
    assert [s.split()[0] for s in seen] == ["new", "new", "kept", "kept", "new"]


async def test_every_suite_session_reuses_connections_as_briefly() -> None:
    """ADM-001's session, from an address of its own, is made like the suite's: it kept idle
    connections 15 s (aiohttp's default) against receivers that may close them after 2."""
    for local in (None, ("127.0.0.1", 0)):
        async with suite_session(TIMEOUT, local_addr=local) as session:
            connector = session.connector
            assert isinstance(connector, aiohttp.TCPConnector)
            assert connector.limit == 32
            assert session.trace_configs
    assert KEEPALIVE_S <= 0.5
