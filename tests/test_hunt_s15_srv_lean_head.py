"""A request head that is plainly not plain goes to aiohttp at once (s15 hunt).

The lean reader (vrmproto/_http1_server.py) waited for the ``CRLF CRLF`` that ends a head
before it looked at it. A head of bare-LF lines never has one: the lean path held it until the
header deadline (10 s) and closed the connection without an answer, where aiohttp, which
``serve_app`` runs alone, answers at once with the signed ``malformed`` problem — and the lean
path is to answer exactly as aiohttp does (vrmproto/server/_lean.py).
"""

from __future__ import annotations

import asyncio

import pytest
from _broken_vendor import make_endpoint
from _vendor_proc import now_ms
from test_http1_server import GET, read_all

from vrmproto import open_envelope
from vrmproto._binding import CONTENT_TYPE
from vrmproto._http1_server import Unhandled
from vrmproto.server import serve
from vrmproto.store import MemoryStore

INCOMPLETE = {
    "bare-lf-lines": b"GET /.well-known/vrm HTTP/1.1\nHost: x\n",
    "bare-lf-after-crlf": b"GET /.well-known/vrm HTTP/1.1\r\nHost: x\n",
    "bare-cr": b"GET /.well-known/vrm HTTP/1.1\rHost: x",
    "control": b"GET /.well-known/vrm HTTP/1.1\r\nX: \x01",
    "obs-text": b"GET /.well-known/vrm HTTP/1.1\r\nX: caf\xc3\xa9",
}


@pytest.mark.parametrize("head", list(INCOMPLETE.values()), ids=list(INCOMPLETE))
def test_an_incomplete_head_that_cannot_be_plain_is_unhandled_at_once(head: bytes) -> None:
    taken, end, rest = read_all(GET + head)
    assert [t.target for t in taken] == [b"/.well-known/vrm"]
    assert end is Unhandled
    assert rest == head


@pytest.mark.parametrize(
    "head", [b"GET /.well-known/vrm HTTP/1.1\r", b"GET / HTTP/1.1\r\nHost: x\r\n\r"]
)
def test_a_crlf_cut_between_its_bytes_is_waited_for(head: bytes) -> None:
    assert read_all(head)[1] is None


async def test_a_bare_lf_head_is_answered_malformed_at_once() -> None:
    server = await serve(make_endpoint(MemoryStore()))  # the default 10 s header deadline
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /.well-known/vrm HTTP/1.1\nHost: x\n\n")
        async with asyncio.timeout(5):  # before: nothing, then closed after 10 s
            got = await reader.read()
        writer.close()
    finally:
        await server.close()
    head, _, body = got.partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0].endswith(b"400 Bad Request"), got[:200]
    assert f"Content-Type: {CONTENT_TYPE}".encode() in head
    assert open_envelope(body, now=now_ms()).body.code == "malformed"
