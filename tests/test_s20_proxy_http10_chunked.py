"""An HTTP/1.0 request with ``Transfer-Encoding`` (s20 hunt; §12.4-5, RFC 9112 §6.1).

HTTP/1.0 has no transfer codings: a recipient of an HTTP/1.0 message with ``Transfer-Encoding``
"MUST treat the message as if the framing is faulty ... and close the connection after
processing the message" (RFC 9112 §6.1), since whoever sent it may frame it otherwise. aiohttp
read such a request's body as chunked, answered it, and — with ``Connection: keep-alive`` —
went on to read the bytes after it as a request of its own: a request a front proxy that
framed the message by HTTP/1.0's rules never saw, arriving on the trusted proxy's connection
with forwarding fields of the sender's choosing (§12.13-1). Now it is answered ``malformed``
and the connection closed, before its body is read, on both paths of :func:`serve` (the lean
reader hands every HTTP/1.0 request to aiohttp) and with :func:`serve_app`.
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
    return await serve(endpoint, access_log=logging.getLogger("s20.te") if kind == "aiohttp"
                       else None)  # fmt: skip


@pytest.mark.parametrize("kind", ["serve", "aiohttp", "serve_app"])
async def test_transfer_encoding_in_http_1_0_is_malformed_and_closes(kind: str) -> None:
    smuggled = f"GET {WELL_KNOWN_PATH} HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 192.0.2.1\r\n\r\n"
    request = (f"POST /vrm/inbox HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n"
               f"Content-Type: {CONTENT_TYPE}\r\nTransfer-Encoding: chunked\r\n\r\n"
               f"1\r\n\x00\r\n0\r\n\r\n{smuggled}").encode()  # fmt: skip
    server = await _server(kind)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        try:
            writer.write(request)
            writer.write_eof()
            async with asyncio.timeout(5):
                got = await reader.read()  # until the server closes
        finally:
            writer.close()
    finally:
        await server.close()
    head, _, body = got.partition(b"\r\n\r\n")
    status, *lines = head.split(b"\r\n")
    fields = {n.strip().lower(): v.strip() for n, _, v in (x.partition(b":") for x in lines)}
    assert status.split()[1] == b"400", got
    assert fields[b"connection"] == b"close"
    length = int(fields[b"content-length"])
    assert body[length:] == b""  # one answer: the bytes after it were no request
    problem = open_envelope(body[:length], now=now_ms()).body
    assert (problem.code, problem.detail) == (
        "malformed", "Transfer-Encoding in an HTTP/1.0 request: its framing is faulty")
