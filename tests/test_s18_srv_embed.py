"""A vendor's own aiohttp application, served with :func:`serve_app`, is served as it is (s18).

``serve_app`` used to insert a middleware of its own at the head of ``app.middlewares`` (so
that the connection learned when a request was being handled, and stopped its deadlines,
§10.1-1): the vendor's application came back changed — one middleware more, ahead of the
vendor's own, in every place the vendor reused or inspected it. The connection now learns it
from aiohttp's request handler itself; what the middleware guaranteed still holds: a request
handled longer than ``header_timeout_ms`` is not cut, on a fresh or a kept-alive connection,
whatever the application's middlewares do first, and for ``make_app`` mounted as a sub-app.
"""

from __future__ import annotations

import asyncio

import aiohttp
from _broken_vendor import make_endpoint
from aiohttp import web
from aiohttp.typedefs import Handler

from vrmproto.server import ConnectionLimits, make_app, serve_app
from vrmproto.store import MemoryStore

HEADER_MS = 150
LIMITS = ConnectionLimits(header_timeout_ms=HEADER_MS, idle_timeout_ms=5_000)


@web.middleware
async def slow_vendor_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A vendor's own middleware that takes longer than the header deadline (a session store,
    say) before the handler runs."""
    await asyncio.sleep(2 * HEADER_MS / 1000)  # the slow work under test, not a wait for an event
    return await handler(request)


async def hello(request: web.Request) -> web.Response:
    return web.Response(text="hello")


def shop() -> web.Application:
    app = web.Application(middlewares=[slow_vendor_middleware])
    app.router.add_get("/hello", hello)
    return app


async def test_serve_app_leaves_the_vendors_application_as_it_was() -> None:
    app = shop()
    before = list(app.middlewares)
    server = await serve_app(app, make_endpoint(MemoryStore()), connection_limits=LIMITS)
    try:
        assert list(app.middlewares) == before == [slow_vendor_middleware]
    finally:
        await server.close()


async def test_a_request_slowed_by_the_vendors_middleware_is_not_cut() -> None:
    server = await serve_app(shop(), make_endpoint(MemoryStore()), connection_limits=LIMITS)
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(2):  # the second on the kept-alive connection
                async with session.get(f"{server.url}/hello") as resp:
                    assert (resp.status, await resp.text()) == (200, "hello")
    finally:
        await server.close()


async def test_the_mounted_vrm_app_is_held_to_the_same_deadlines() -> None:
    """The vrm sub-app (README, "Add vrm to your aiohttp app"): its discovery document, behind
    the shop's slow middleware, is answered on a fresh and on a kept-alive connection."""
    endpoint = make_endpoint(MemoryStore())
    app = shop()
    app.add_subapp("/vrm", make_app(endpoint))
    server = await serve_app(app, endpoint, connection_limits=LIMITS)
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(2):
                async with session.get(f"{server.url}/vrm/.well-known/vrm") as resp:
                    assert resp.status == 200
                    assert "inbox" in await resp.json()
    finally:
        await server.close()


async def test_a_frozen_application_is_served() -> None:
    """An application already frozen — served elsewhere too, or frozen by the vendor's own
    setup — could not be given to serve_app: inserting the middleware raised RuntimeError
    ("Cannot modify frozen list")."""
    app = shop()
    app.freeze()
    server = await serve_app(app, make_endpoint(MemoryStore()), connection_limits=LIMITS)
    try:
        async with aiohttp.ClientSession() as session, session.get(f"{server.url}/hello") as resp:
            assert (resp.status, await resp.text()) == (200, "hello")
    finally:
        await server.close()
