"""A chunked body whose coding breaks after its head has been read (spec §12.4-5, §12.9-4).

The head arrives, the inbox starts reading the body, a good chunk comes, then a chunk-size line
that is not one. aiohttp's C parser raises, drops the body and queues the error as a request of
its own; the handler reading the body heard nothing more and waited out
``body_read_timeout_ms`` to answer 408 ``request_timeout`` (seen by s16-hunt-srv). The request
is malformed HTTP/1.1: it gets the signed ``malformed`` problem, 400, at once, and the
connection is closed (where the body ends is not known), on the lean path (which hands chunked
bodies to aiohttp's handler) and on aiohttp's.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging

import pytest
from _broken_vendor import ACCEPTS, VENDOR_SEED

from vrmproto import Identity, open_envelope
from vrmproto._binding import CONTENT_TYPE, DEFAULT_INBOX_PATH
from vrmproto._limits import Limits
from vrmproto.server import Endpoint, ReferencePolicy, _connections, serve
from vrmproto.store import MemoryStore

VENDOR = Identity(VENDOR_SEED)
#: Far beyond what the test waits: an answer that came at the body timeout would not come.
BODY_TIMEOUT_MS = 60_000

HEAD = (f"POST {DEFAULT_INBOX_PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: {CONTENT_TYPE}\r\n"
        "Transfer-Encoding: chunked\r\n\r\n").encode()  # fmt: skip


@pytest.mark.parametrize("path", ["lean", "aiohttp"])
@pytest.mark.parametrize("broken", [b"zz\r\n", b"3\r\nabcXX"], ids=["size", "after-data"])
async def test_a_chunk_that_breaks_after_the_head_is_malformed_at_once(
    monkeypatch: pytest.MonkeyPatch, path: str, broken: bytes
) -> None:
    reading = asyncio.Event()  # the inbox has the head and reads the body
    started = _connections._ConnectionHandler.request_started

    def request_started(self: _connections._ConnectionHandler) -> None:
        started(self)
        reading.set()

    monkeypatch.setattr(_connections._ConnectionHandler, "request_started", request_started)
    limits = dataclasses.replace(Limits(), body_read_timeout_ms=BODY_TIMEOUT_MS)
    endpoint = Endpoint(VENDOR, store=MemoryStore(), limits=limits,
                        policy=ReferencePolicy(accepts_terms=ACCEPTS))  # fmt: skip
    access = logging.getLogger("s17.chunked") if path == "aiohttp" else None
    server = await serve(endpoint, access_log=access)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(HEAD + b"5\r\nabcde\r\n")
        await asyncio.wait_for(reading.wait(), 10)
        writer.write(broken)
        async with asyncio.timeout(10):  # not BODY_TIMEOUT_MS
            head = await reader.readuntil(b"\r\n\r\n")
            fields = dict(line.split(b": ", 1) for line in head.split(b"\r\n")[1:-2])
            body = await reader.readexactly(int(fields[b"Content-Length"]))
            rest = await reader.read()  # until the server closes: nothing more
        writer.close()
    finally:
        await server.close()
    assert head.split(b" ")[1] == b"400"
    problem = open_envelope(body, now=0, check_time=False)
    assert problem.body.code == "malformed"
    assert problem.header.sender == VENDOR.public_key
    assert rest == b""  # one answer, and the connection closed
