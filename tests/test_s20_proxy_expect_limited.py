"""``Expect: 100-continue`` from a client over its rate limit (s20 hunt; §12.9-6, RFC 9110
§10.1.1).

aiohttp asks a route's expect handler before any middleware: the inbox's handler invited the
body of a client its address's rate limit was about to refuse (the middleware answered
``rate_limited`` only once the body was on its way), so a client held at its limit still sent
every body in full, and the server read and dropped it (lingering). A request refused before
its body is read gets no ``100 Continue`` (s15: a length over the limit, a wrong type); nor now
one whose address is over its limit — the address as the proxy middleware finds it, from a
trusted proxy's fields (§12.13-1).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from _vendor_proc import Customer, now_ms
from test_hunt_s15_srv_expect import connection, first_answer

from vrmproto import Identity, Limits, open_envelope
from vrmproto._binding import CONTENT_TYPE, DEFAULT_INBOX_PATH
from vrmproto.server import Deployment, Endpoint, Server, make_app, serve, serve_app
from vrmproto.store import MemoryStore

VENDOR = Identity(bytes(range(32)))
PROXY = Deployment.of(None, ["127.0.0.1/32"])


def _endpoint() -> Endpoint:
    return Endpoint(VENDOR, store=MemoryStore(), name="expect test vendor",
                    limits=Limits(rate_per_address_per_minute=1))  # fmt: skip


async def _serve() -> Server:
    return await serve(_endpoint(), deployment=PROXY)


async def _serve_app() -> Server:
    endpoint = _endpoint()
    return await serve_app(make_app(endpoint, deployment=PROXY), endpoint, deployment=PROXY)


SERVERS: dict[str, Callable[[], Awaitable[Server]]] = {"serve": _serve, "serve_app": _serve_app}


@pytest.fixture(params=list(SERVERS))
async def server(request: pytest.FixtureRequest) -> AsyncIterator[Server]:
    made = await SERVERS[request.param]()
    try:
        yield made
    finally:
        await made.close()


def _head(length: int, forwarded_for: str) -> bytes:
    return (f"POST {DEFAULT_INBOX_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
            f"{CONTENT_TYPE}\r\nContent-Length: {length}\r\nX-Forwarded-For: {forwarded_for}"
            "\r\nExpect: 100-continue\r\n\r\n").encode()  # fmt: skip


async def test_a_client_over_its_rate_limit_is_refused_without_100_continue(
    server: Server,
) -> None:
    offer = Customer(VENDOR, base_url="http://127.0.0.1").offer("vrm.purpose-only").envelope
    async with connection(server.port) as (reader, writer):  # its one request a minute
        writer.write(_head(len(offer), "192.0.2.7"))
        assert (await first_answer(reader))[0] == b"HTTP/1.1 100 Continue"
        writer.write(offer)
        assert (await first_answer(reader))[0].startswith(b"HTTP/1.1 2")
    async with connection(server.port) as (reader, writer):  # over it: no invitation
        writer.write(_head(len(offer), "192.0.2.7"))
        status, body = await first_answer(reader)
    assert status.startswith(b"HTTP/1.1 429 "), status  # before: 100 Continue
    assert open_envelope(body, now=now_ms()).body.code == "rate_limited"
    async with connection(server.port) as (reader, writer):  # another client behind the proxy
        writer.write(_head(len(offer), "192.0.2.8"))
        assert (await first_answer(reader))[0] == b"HTTP/1.1 100 Continue"
