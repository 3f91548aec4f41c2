"""A site whose own middleware reads request bodies, with vrm mounted in it (s22 hunt).

Shops log or audit what is posted to them, or check a signature over it, in a middleware that
calls ``await request.read()`` before any handler runs (aiohttp keeps the body for the
handler). The vrm routes read the body from the stream, which that read had drained: every
message posted to the mounted inbox was taken for an empty body and answered ``malformed``
("not valid msgpack") — the customer told its valid message was broken. Now the routes take
the body aiohttp kept, held to the same limit (§12.9-2).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import aiohttp
import pytest
from _vendor_proc import ACCEPTED, Customer, Reply, post
from aiohttp import web
from aiohttp.typedefs import Handler

from vrmproto._binding import CONTENT_TYPE
from vrmproto._keys import Identity
from vrmproto._limits import Limits
from vrmproto.server import Endpoint, ReferencePolicy, make_app, serve_app
from vrmproto.store import MemoryStore

seen: list[int] = []


@web.middleware
async def audit(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The shop's own: it records the size of every POST body."""
    if request.method == "POST":
        seen.append(len(await request.read()))
    return await handler(request)


@pytest.fixture
async def shop() -> AsyncIterator[tuple[str, Identity]]:
    vendor = Identity(os.urandom(32))
    endpoint = Endpoint(vendor, store=MemoryStore(), limits=Limits(max_envelope_bytes=4096),
                        policy=ReferencePolicy(accepts_terms=ACCEPTED))  # fmt: skip
    app = web.Application(middlewares=[audit])
    app.add_subapp("/vrm", make_app(endpoint))
    server = await serve_app(app, endpoint)
    yield f"{server.url}/vrm", vendor
    await server.close()


async def test_a_message_read_by_the_sites_middleware_is_still_handled(
    shop: tuple[str, Identity],
) -> None:
    base, vendor = shop
    c = Customer(vendor, base_url=base)
    seen.clear()
    async with aiohttp.ClientSession() as http:
        sent = c.offer(*ACCEPTED)
        got = c.absorb(await post(http, f"{base}/vrm/inbox", sent.envelope), sent)
    assert [r.message.type for r in got] == ["receipt", "terms.accept"]
    assert seen == [len(sent.envelope)]


async def test_a_body_read_by_the_site_is_held_to_the_limit(shop: tuple[str, Identity]) -> None:
    base, _ = shop
    async def chunks() -> AsyncIterator[bytes]:  # chunked: no length declared up front
        for _ in range(5):
            yield b"\x00" * 1000

    seen.clear()
    headers = {"Content-Type": CONTENT_TYPE}
    async with aiohttp.ClientSession() as http, http.post(
        f"{base}/vrm/inbox", data=chunks(), headers=headers
    ) as r:
        reply = Reply(r.status, await r.read(), dict(r.headers))
    assert seen == [5000]
    assert reply.status == 413
    assert reply.problem().body.code == "too_large"
