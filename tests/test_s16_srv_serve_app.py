"""An application of one's own, served with :func:`serve_app`, has its requests handled to
their end (s16 hunt; spec §10.1-1: "a request being handled or answered is never cut").

The connection learns that a request is being handled from a middleware that
:func:`make_app` installs. An application of one's own — the customer agent's inbound
endpoint is one — did not have it: the header deadline started at a request's first byte kept
running while the request was handled, and the connection was dropped ``header_timeout_ms``
after it, mid-request, logged as a head not complete in time; on a kept-alive connection,
``header_timeout_ms`` after the first request's first byte, whatever came later.
"""

from __future__ import annotations

import asyncio

import aiohttp
from _broken_vendor import make_endpoint
from aiohttp import web

from vrmproto.server import ConnectionLimits, serve_app
from vrmproto.store import MemoryStore

HEADER_MS = 200
LIMITS = ConnectionLimits(header_timeout_ms=HEADER_MS, idle_timeout_ms=5_000)


async def test_a_slow_request_of_an_own_application_is_not_cut() -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(3 * HEADER_MS / 1000)  # the slow handler under test
        return web.Response(text="done")

    app = web.Application()
    app.router.add_get("/slow", slow)
    server = await serve_app(app, make_endpoint(MemoryStore()), connection_limits=LIMITS)
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(2):  # the second on the kept-alive connection
                async with session.get(f"http://127.0.0.1:{server.port}/slow") as resp:
                    assert (resp.status, await resp.text()) == (200, "done")
    finally:
        await server.close()
