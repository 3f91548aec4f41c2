"""A webhook whose receiver redirects (s21 hunt; docs/events.md, "Webhooks").

A webhook follows no redirect: a ``3xx`` is a failed attempt, retried, and in the end set
aside. The usual cause is the vendor's own: ``url = "http://crm.example/hook"`` where the CRM
answers ``308`` to ``https://…``. The operator read only ``HTTP 308`` in the log and the dead
letters, with nothing saying where the receiver pointed: the Location was read and dropped
with the rest of the answer's fields. Now the failure names it, and what to do.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from vrmproto._http1 import ResponseReader
from vrmproto.server._webhook_http import Poster
from vrmproto.server._webhooks import Deliverer, Webhook, parse_secret
from vrmproto.store import MemoryStore
from vrmproto.testing.store_contract import event

SECRET = "whsec_" + base64.b64encode(b"k" * 24).decode()
TARGET = "https://crm.example/hook?x=1"


@pytest.fixture
async def redirecting() -> AsyncIterator[str]:
    async def answer(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=308, headers={"Location": TARGET})

    app = web.Application()
    app.router.add_post("/hook", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    await runner.cleanup()


async def test_the_failure_of_a_redirected_attempt_names_where_it_points(
    redirecting: str,
) -> None:
    hook = Webhook("crm", redirecting, parse_secret(SECRET), "https://shop.example/vrm")
    async with Deliverer(hook, MemoryStore()) as deliverer:
        failure = await deliverer.attempt([event(bytes(16), 1)])
    assert failure is not None
    assert failure.what.startswith("HTTP 308"), failure
    assert TARGET in failure.what, failure
    assert "redirect" in failure.what, failure
    assert not failure.refused
    assert not failure.gone


async def test_the_poster_answers_the_status_and_where_it_points(redirecting: str) -> None:
    poster = Poster(redirecting)
    try:
        status = await poster.post(b"", b"x")
    finally:
        await poster.close()
    assert status == 308
    assert status.location == TARGET


def test_a_reader_that_drops_fields_keeps_a_redirects_location_alone() -> None:
    reader = ResponseReader(keep_body=False)
    got = reader.feed(b"HTTP/1.1 301 Moved\r\nServer: x\r\nLocation: /elsewhere\r\n"
                      b"Content-Length: 3\r\n\r\nabc")
    assert got is not None
    assert got.headers == (("location", "/elsewhere"),)
    got = reader.feed(b"HTTP/1.1 200 OK\r\nLocation: /not-kept\r\nContent-Length: 0\r\n\r\n")
    assert got is not None
    assert got.headers == ()
