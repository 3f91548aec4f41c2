"""A request line naming HTTP/0.9, HTTP/2 or later is answered ``malformed``, in HTTP/1.1 (s18).

aiohttp's parser takes ``GET /.well-known/vrm HTTP/2.0`` (and ``HTTP/0.9``; not ``HTTP/3.0``) in
text on an HTTP/1 connection, and its answers name the version of the request line: the
endpoint answered ``HTTP/2.0 200 OK`` with the discovery document, on the lean path (which hands
such a request to aiohttp) and on aiohttp's alike — a status line of a protocol the connection
does not speak, which no client can read as HTTP/1. Such a line is not valid HTTP/1.1
(RFC 9112 §2.3): spec §12.4-5 answers it ``400`` with the signed problem ``malformed``, and closes.
HTTP/1.0 is still served.
"""

from __future__ import annotations

import asyncio
import logging

import pytest
from _broken_vendor import make_endpoint
from _vendor_proc import now_ms

from vrmproto import open_envelope
from vrmproto._binding import CONTENT_TYPE, WELL_KNOWN_PATH
from vrmproto.server import serve
from vrmproto.store import MemoryStore


async def exchange(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        writer.write_eof()  # the answers, then the close (RFC 9112 §9.6)
        async with asyncio.timeout(10):
            return await reader.read()  # until the server closes
    finally:
        writer.close()


def answer(got: bytes) -> tuple[bytes, dict[bytes, bytes], bytes]:
    head, _, body = got.partition(b"\r\n\r\n")
    status, *lines = head.split(b"\r\n")
    fields = {n.strip().lower(): v.strip() for n, _, v in (x.partition(b":") for x in lines)}
    return status, fields, body


@pytest.mark.parametrize("version", ["0.9", "2.0", "3.0"])
@pytest.mark.parametrize("path", ["lean", "aiohttp"])
async def test_a_request_line_of_another_http_is_malformed(path: str, version: str) -> None:
    access = logging.getLogger("s18.version") if path == "aiohttp" else None
    server = await serve(make_endpoint(MemoryStore()), access_log=access)
    try:
        request = f"GET {WELL_KNOWN_PATH} HTTP/{version}\r\nHost: x\r\n\r\n".encode()
        status, fields, body = answer(await exchange(server.port, request))
    finally:
        await server.close()
    # HTTP/1.1, where aiohttp's parser refuses the line itself (0.9, 3.0) too (s22)
    assert status == b"HTTP/1.1 400 Bad Request"
    assert fields[b"content-type"] == CONTENT_TYPE.encode()
    assert fields[b"connection"] == b"close"
    problem = open_envelope(body[: int(fields[b"content-length"])], now=now_ms()).body
    assert problem.code == "malformed"
    assert "not valid HTTP/1.1" in problem.detail  # the kind of fault, no byte of the request
    assert len(body) == int(fields[b"content-length"])  # one answer, then the close


@pytest.mark.parametrize("path", ["lean", "aiohttp"])
async def test_http_1_0_is_still_served(path: str) -> None:
    access = logging.getLogger("s18.version") if path == "aiohttp" else None
    server = await serve(make_endpoint(MemoryStore()), access_log=access)
    try:
        got = await exchange(server.port, f"GET {WELL_KNOWN_PATH} HTTP/1.0\r\n\r\n".encode())
    finally:
        await server.close()
    status, fields, _ = answer(got)
    assert status == b"HTTP/1.0 200 OK"
    assert fields[b"content-type"] == b"application/json"
