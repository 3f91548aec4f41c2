"""aiohttp's own 400 answers named HTTP/1.0 in their status line (s22 hunt, RFC 9110 §6.2).

A request aiohttp cannot parse (a method that is no token, a control byte in the target, a
header line without a colon, a negative ``Content-Length``) was answered with the signed
problem ``malformed`` (§12.4-5) — under ``HTTP/1.0 400 Bad Request``: aiohttp answers such a
request with a stand-in message of version 1.0. The server speaks HTTP/1.1, and "a server
SHOULD send a response version equal to the highest version to which the server is conformant
that has a major version less than or equal to the one received" (RFC 9110 §6.2): a client
(or a proxy in front) reading ``HTTP/1.0`` takes the endpoint for an HTTP/1.0 server. Now the
status line says ``HTTP/1.1``, on every way of serving.
"""

from __future__ import annotations

import asyncio
import logging

import pytest
from _broken_vendor import make_endpoint
from _vendor_proc import now_ms

from vrmproto import open_envelope
from vrmproto._messages import ProblemReport
from vrmproto.server import Server, make_app, serve, serve_app
from vrmproto.store import MemoryStore

KINDS = ["serve", "aiohttp", "serve_app"]
UNPARSABLE = [
    b"GARBAGE\r\n\r\n",
    b"GET /\x01 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
]


async def _server(kind: str) -> Server:
    endpoint = make_endpoint(MemoryStore())
    if kind == "serve_app":
        return await serve_app(make_app(endpoint), endpoint)
    return await serve(endpoint, access_log=logging.getLogger("s22.embed") if kind == "aiohttp"
                       else None)  # fmt: skip


async def _exchange(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        async with asyncio.timeout(5):
            return await reader.read()
    finally:
        writer.close()


@pytest.mark.parametrize("kind", KINDS)
async def test_an_unparsable_request_is_answered_in_http_1_1(kind: str) -> None:
    server = await _server(kind)
    try:
        for data in UNPARSABLE:
            answer = await _exchange(server.port, data)
            head, _, body = answer.partition(b"\r\n\r\n")
            assert head.split(b"\r\n")[0] == b"HTTP/1.1 400 Bad Request", data
            problem = open_envelope(body, now=now_ms()).body
            assert isinstance(problem, ProblemReport)
            assert problem.code == "malformed"
    finally:
        await server.close()


@pytest.mark.parametrize("kind", KINDS)
async def test_an_http_1_0_request_is_still_answered_in_its_version(kind: str) -> None:
    """What aiohttp does for a request it parsed stays: HTTP/1.0 in, HTTP/1.0 out."""
    server = await _server(kind)
    try:
        answer = await _exchange(server.port, b"GET /healthz HTTP/1.0\r\n\r\n")
        assert answer.startswith(b"HTTP/1.0 200 OK\r\n")
    finally:
        await server.close()
