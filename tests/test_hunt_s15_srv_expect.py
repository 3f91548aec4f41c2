"""``Expect: 100-continue`` on the inbox and history routes (s15 hunt; RFC 9110 §10.1.1).

curl sends ``Expect: 100-continue`` with every POST over 1 KiB, and waits for ``100 Continue``
before the body. aiohttp's default expect handler wrote ``100 Continue`` before any check, so
a 16 MiB POST was invited, sent, and only then refused ``too_large`` (§12.9-2), as was a body of
the wrong content type (§12.2-3); an expectation other than 100-continue got aiohttp's
plain-text 417, not a signed problem (§12.4-2). Now a request the route refuses before reading
its body is refused at once, without ``100 Continue``; the others are invited as before.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from _broken_vendor import make_endpoint
from _vendor_proc import Customer, now_ms

from vrmproto import Identity, open_envelope
from vrmproto._binding import CONTENT_TYPE, DEFAULT_HISTORY_PATH, DEFAULT_INBOX_PATH
from vrmproto.server import Server, make_app, serve, serve_app
from vrmproto.store import MemoryStore

TEST_VENDOR = Identity(bytes(range(32)))  # tests/_broken_vendor.py's key


async def lean_server() -> Server:
    return await serve(make_endpoint(MemoryStore()))


async def aiohttp_server() -> Server:
    endpoint = make_endpoint(MemoryStore())
    return await serve_app(make_app(endpoint), endpoint)


SERVERS: dict[str, Callable[[], Awaitable[Server]]] = {
    "serve": lean_server,
    "serve_app": aiohttp_server,
}


@pytest.fixture(params=list(SERVERS))
async def server(request: pytest.FixtureRequest) -> AsyncIterator[Server]:
    made = await SERVERS[request.param]()
    try:
        yield made
    finally:
        await made.close()


def head(path: str, length: int, *, content_type: str = CONTENT_TYPE,
         expect: str = "100-continue") -> bytes:  # fmt: skip
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {length}\r\nExpect: {expect}\r\n\r\n").encode()  # fmt: skip


@contextlib.asynccontextmanager
async def connection(port: int) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def first_answer(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """The status line of the first answer, and its body (read by its Content-Length)."""
    async with asyncio.timeout(5):
        got = await reader.readuntil(b"\r\n\r\n")
        status, *lines = got[:-4].split(b"\r\n")
        fields = {n.lower(): v.strip() for n, _, v in (line.partition(b":") for line in lines)}
        body = await reader.readexactly(int(fields.get(b"content-length", b"0")))
    return status, body


def code(body: bytes) -> str:
    return str(open_envelope(body, now=now_ms()).body.code)


@pytest.mark.parametrize("path", [DEFAULT_INBOX_PATH, DEFAULT_HISTORY_PATH])
async def test_a_declared_length_over_the_limit_is_refused_without_100_continue(
    server: Server, path: str
) -> None:
    async with connection(server.port) as (reader, writer):
        writer.write(head(path, 16 * 1024 * 1024))
        status, body = await first_answer(reader)
    assert status.startswith(b"HTTP/1.1 413 "), status  # before: 100 Continue
    assert code(body) == "too_large"


async def test_a_wrong_content_type_is_refused_without_100_continue(server: Server) -> None:
    async with connection(server.port) as (reader, writer):
        writer.write(head(DEFAULT_INBOX_PATH, 5, content_type="text/plain"))
        status, body = await first_answer(reader)
    assert status.startswith(b"HTTP/1.1 415 "), status
    assert code(body) == "unsupported_media_type"


async def test_another_expectation_gets_a_signed_problem(server: Server) -> None:
    async with connection(server.port) as (reader, writer):
        writer.write(head(DEFAULT_INBOX_PATH, 5, expect="the-moon") + b"hello")
        status, body = await first_answer(reader)
    assert status.startswith(b"HTTP/1.1 400 "), status  # before: aiohttp's plain-text 417
    assert code(body) == "malformed"


async def test_a_message_is_invited_then_accepted(server: Server) -> None:
    offer = Customer(TEST_VENDOR, base_url="http://127.0.0.1").offer("vrm.no-tracking").envelope
    async with connection(server.port) as (reader, writer):
        writer.write(head(DEFAULT_INBOX_PATH, len(offer)))
        status, _ = await first_answer(reader)
        assert status == b"HTTP/1.1 100 Continue"
        writer.write(offer)
        status, body = await first_answer(reader)
    assert status.startswith(b"HTTP/1.1 2"), (status, body[:200])
