"""A request body with a ``Content-Encoding`` (s16 hunt; spec §12.4-2, §12.4-5).

aiohttp decodes a request body sent with ``Content-Encoding: gzip`` or ``deflate`` (bounded:
a decompression bomb is refused ``too_large`` at ``max_envelope_bytes`` of decoded bytes).
Before,

- a body that did not decode (not gzip at all, or its data broken) made the inbox fail: ``500``
  with the ``internal`` problem and an error with a traceback in the log, per request — a
  client could fill the log and read a receiver failure where its own request was at fault;
- the lean path read the same request's body as the envelope itself, undecoded: one server
  answered the same bytes two ways (a gzipped offer: a receipt from aiohttp, ``malformed``
  from the lean path), where the lean path must answer as the application does.

Now a body that does not decode is the signed ``malformed`` problem (400, the connection
closed: where the body ends is not known), and the lean path hands any encoded body to
aiohttp.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import zlib
from collections.abc import Callable

import pytest
from _broken_vendor import ACCEPTS, VENDOR_SEED, make_endpoint
from _vendor_proc import Customer

from vrmproto import Identity, open_envelope
from vrmproto._binding import CONTENT_TYPE, DEFAULT_INBOX_PATH
from vrmproto.server import serve
from vrmproto.store import MemoryStore

VENDOR = Identity(VENDOR_SEED)

ENCODINGS: dict[str, Callable[[bytes], bytes]] = {"gzip": gzip.compress, "deflate": zlib.compress}


async def exchange(path: str, encoding: str, body: bytes, *, closes: bool = False) -> (
    tuple[int, bytes, bool]
):
    """(status, body, whether the connection closed after the answer: with ``closes``,
    awaited; else not looked at, False)."""
    access = logging.getLogger("s16.encoding") if path == "aiohttp" else None
    server = await serve(make_endpoint(MemoryStore()), access_log=access)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(f"POST {DEFAULT_INBOX_PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: "
                     f"{CONTENT_TYPE}\r\nContent-Encoding: {encoding}\r\nContent-Length: "
                     f"{len(body)}\r\n\r\n".encode() + body)  # fmt: skip
        async with asyncio.timeout(10):
            head = await reader.readuntil(b"\r\n\r\n")
            fields = dict(line.split(b": ", 1) for line in head.split(b"\r\n")[1:-2])
            answer = await reader.readexactly(int(fields[b"Content-Length"]))
            closed = closes and await reader.read(1) == b""
        writer.close()
        return int(head.split(b" ")[1]), answer, closed
    finally:
        await server.close()


@pytest.mark.parametrize("encoding", list(ENCODINGS))
@pytest.mark.parametrize("path", ["lean", "aiohttp"])
async def test_a_body_that_does_not_decode_is_malformed(
    path: str, encoding: str, caplog: pytest.LogCaptureFixture
) -> None:
    offer = Customer(VENDOR).offer(*ACCEPTS).envelope
    encoded = ENCODINGS[encoding](offer)
    corrupt = encoded[:12] + b"\xff" * 16 + encoded[28:]
    for body in (offer, corrupt):  # not encoded at all; its compressed data broken
        caplog.clear()
        status, answer, closed = await exchange(path, encoding, body, closes=True)
        assert status == 400, answer[:200]
        problem = open_envelope(answer, now=0, check_time=False).body
        assert problem.code == "malformed"
        assert closed
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize("encoding", list(ENCODINGS))
@pytest.mark.parametrize("path", ["lean", "aiohttp"])
async def test_an_encoded_body_is_decoded_on_either_path(path: str, encoding: str) -> None:
    sent = Customer(VENDOR).offer(*ACCEPTS)
    status, answer, _ = await exchange(path, encoding, ENCODINGS[encoding](sent.envelope))
    assert status == 200, answer[:200]  # the receipt and the acceptance (§12.3-2)



@pytest.mark.parametrize("coding", ["gzip, chunked", "deflate,chunked", "br, chunked"])
@pytest.mark.parametrize("path", ["lean", "aiohttp"])
async def test_a_transfer_coding_other_than_chunked_is_malformed(path: str, coding: str) -> None:
    """``Transfer-Encoding: gzip, chunked`` (RFC 9112 §6.1: a coding the server does not
    implement): before, aiohttp undid the chunks only and took the rest as the envelope — a
    receipt for bytes the client said were compressed. The body cannot be found: malformed."""
    access = logging.getLogger("s16.encoding") if path == "aiohttp" else None
    server = await serve(make_endpoint(MemoryStore()), access_log=access)
    offer = Customer(VENDOR).offer(*ACCEPTS).envelope
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(f"POST {DEFAULT_INBOX_PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: "
                     f"{CONTENT_TYPE}\r\nTransfer-Encoding: {coding}\r\n\r\n".encode()
                     + b"%x\r\n" % len(offer) + offer + b"\r\n0\r\n\r\n")  # fmt: skip
        async with asyncio.timeout(10):
            head = await reader.readuntil(b"\r\n\r\n")
            fields = dict(line.split(b": ", 1) for line in head.split(b"\r\n")[1:-2])
            answer = await reader.readexactly(int(fields[b"Content-Length"]))
            assert await reader.read(1) == b""
        writer.close()
    finally:
        await server.close()
    assert head.startswith(b"HTTP/1.1 400 "), answer[:200]
    assert open_envelope(answer, now=0, check_time=False).body.code == "malformed"
