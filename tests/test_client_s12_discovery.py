"""Discovery GETs on the lean HTTP client (spec §13.1; #12), and a redirect through aiohttp.

:class:`~vrmproto.client.EndpointClient` fetches a discovery document on a connection of its own
with the lean client, as it posts envelopes; an answer that redirects is asked again through
aiohttp, which follows it (at most three times), and the document's inbox and history are made
absolute against the URL that answered in the end (§13.1-7).
"""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web
from test_client import FakeVendor, Sleeps

from vrmproto.client import EndpointClient, InvalidResponse, RetryPolicy


@pytest.fixture
async def vendor() -> Any:
    v = FakeVendor("Acme")
    await v.start()
    yield v
    await v.stop()


@pytest.fixture
async def client() -> Any:
    c = EndpointClient(sleep=Sleeps(), rand=lambda: 0.5, retry=RetryPolicy(attempts=1))
    yield c
    await c.close()


async def _server(*routes: tuple[str, Any]) -> tuple[web.AppRunner, str]:
    app = web.Application()
    for path, handler in routes:
        app.router.add_get(path, handler)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


async def test_discovery_is_one_lean_get_that_says_no_content(vendor: FakeVendor,
                                                              client: Any) -> None:  # fmt: skip
    seen: list[dict[str, str]] = []

    async def spy(request: web.Request) -> web.StreamResponse:
        seen.append(dict(request.headers))
        return await vendor.discovery(request)

    runner, url = await _server(("/.well-known/vrm", spy))
    try:
        doc = await client.fetch_discovery(url, expected_key=vendor.key, role="vendor")
    finally:
        await runner.cleanup()
    assert doc.key == vendor.key
    assert doc.inbox.startswith(url)  # absolute against the URL that answered (§13.1-7)
    (headers,) = seen
    assert headers["User-Agent"] == "vrmproto"  # the lean client's, not aiohttp's
    assert "Content-Length" not in headers
    assert headers["Connection"] == "close"  # a connection of its own (§11.6-3)
    assert client._session is None  # aiohttp was never needed


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_a_redirected_discovery_is_followed(vendor: FakeVendor, client: Any,
                                                  status: int) -> None:  # fmt: skip
    async def moved(request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, headers={"Location": vendor.url + "/.well-known/vrm"})

    runner, url = await _server(("/.well-known/vrm", moved))
    try:
        doc = await client.fetch_discovery(url, expected_key=vendor.key)
    finally:
        await runner.cleanup()
    assert doc.key == vendor.key
    assert doc.inbox.startswith(vendor.url)  # made absolute against where it was found


async def test_too_many_redirects_and_other_statuses_are_invalid_responses(client: Any) -> None:
    async def loop(request: web.Request) -> web.StreamResponse:
        return web.Response(status=302, headers={"Location": "/.well-known/vrm"})

    async def teapot(request: web.Request) -> web.StreamResponse:
        return web.Response(status=418, text="no")

    runner, url = await _server(("/.well-known/vrm", loop), ("/tea/.well-known/vrm", teapot))
    try:
        with pytest.raises(InvalidResponse, match="too many redirects"):
            await client.fetch_discovery(url)
        with pytest.raises(InvalidResponse) as info:
            await client.fetch_discovery(url + "/tea")
        assert info.value.status == 418
    finally:
        await runner.cleanup()


async def test_the_document_made_absolute_is_replace_of_the_one_read(
    vendor: FakeVendor, client: Any
) -> None:
    import dataclasses  # noqa: PLC0415

    from vrmproto._binding import relocated  # noqa: PLC0415

    doc = await client.fetch_discovery(vendor.url)
    moved = relocated(doc, "https://a.test/in", "https://a.test/hist")
    assert moved == dataclasses.replace(doc, inbox="https://a.test/in",
                                        history="https://a.test/hist")  # fmt: skip
    assert [f.name for f in dataclasses.fields(moved)][4:6] == ["inbox", "history"]
