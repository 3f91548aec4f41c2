"""An expectation other than ``100-continue`` off the inbox and history routes (s20 hunt;
§12.4-2, RFC 9110 §10.1.1).

The inbox and history routes answer an unknown expectation with the signed ``malformed`` problem
(s15). Every other request — discovery, ``/healthz``, an unknown path, a route asked with the
wrong method — still got aiohttp's plain-text ``417 Expectation Failed``: aiohttp asks a
route's expect handler before any middleware, and its default one raises, so the answer was
never turned into a problem. §12.4-2: every request that reaches the receiver, whatever its
headers, is answered with a problem body, never a plain-text page.
"""

from __future__ import annotations

import asyncio
import logging

import pytest
from _broken_vendor import make_endpoint
from _vendor_proc import now_ms

from vrmproto import open_envelope
from vrmproto._binding import CONTENT_TYPE, WELL_KNOWN_PATH
from vrmproto.server import Server, make_app, serve, serve_app
from vrmproto.store import MemoryStore


async def _server(kind: str) -> Server:
    endpoint = make_endpoint(MemoryStore())
    if kind == "serve_app":
        return await serve_app(make_app(endpoint), endpoint)
    access = logging.getLogger("s20.expect") if kind == "aiohttp" else None
    return await serve(endpoint, access_log=access)  # with an access log: aiohttp alone


async def _exchange(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        writer.write_eof()
        async with asyncio.timeout(5):
            return await reader.read()  # until the server closes
    finally:
        writer.close()


@pytest.mark.parametrize("request_head", [
    f"GET {WELL_KNOWN_PATH} HTTP/1.1",
    "GET /healthz HTTP/1.1",
    "POST /nowhere HTTP/1.1",
    "GET /vrm/inbox HTTP/1.1",  # the wrong method
])  # fmt: skip
@pytest.mark.parametrize("kind", ["serve", "aiohttp", "serve_app"])
async def test_an_unknown_expectation_gets_a_signed_problem_anywhere(
    kind: str, request_head: str
) -> None:
    server = await _server(kind)
    try:
        got = await _exchange(server.port, f"{request_head}\r\nHost: x\r\nExpect: tea\r\n"
                                           "Content-Length: 0\r\n\r\n".encode())  # fmt: skip
    finally:
        await server.close()
    head, _, body = got.partition(b"\r\n\r\n")
    status, *lines = head.split(b"\r\n")
    fields = {n.strip().lower(): v.strip() for n, _, v in (x.partition(b":") for x in lines)}
    assert status == b"HTTP/1.1 400 Bad Request", got
    assert fields[b"content-type"] == CONTENT_TYPE.encode()
    assert fields[b"connection"] == b"close"
    assert int(fields[b"content-length"]) == len(body)
    assert open_envelope(body, now=now_ms()).body.code == "malformed"
