"""A ``Host`` field that is not one host (s21 hunt; RFC 9112 §3.2, spec §12.4-5).

"A server MUST respond with a 400 (Bad Request) status code to any HTTP/1.1 request message
that lacks a Host header field and to any request message that contains more than one Host
header field line or a Host header field with an invalid field value" (RFC 9112 §3.2). Two
``Host`` lines were refused, but a value that is no ``uri-host [":" port]`` (RFC 3986) — a
space, a path, user info, a port that is not a number, two hosts joined by a comma as an
intermediary joins repeated lines — was served on every path. Such a request is not valid
HTTP/1.1: §12.4-5 answers it ``400`` with the signed problem ``malformed``, and closes.
"""

from __future__ import annotations

import asyncio
import logging

import pytest
from _broken_vendor import make_endpoint
from _vendor_proc import now_ms

from vrmproto import open_envelope
from vrmproto._binding import CONTENT_TYPE, WELL_KNOWN_PATH
from vrmproto._http1_server import RequestReader, Unhandled, valid_host
from vrmproto.server import Server, make_app, serve, serve_app
from vrmproto.store import MemoryStore

KINDS = ["serve", "aiohttp", "serve_app"]

INVALID = [b"a,b", b"a, b", b"a b", b"a/b", b"a@b", b"a:b:c", b"a:8x", b"[::1", b"[zz::1]:80",
           b"a?b", b"a#b", b"%zz", b"a\tb", b"[fe80::1%eth0]"]
VALID = [b"", b"example.com", b"example.com:8443", b"127.0.0.1", b"127.0.0.1:80", b"[::1]",
         b"[2001:db8::7]:443", b"xn--bcher-kva.example", b"my_host.local", b"a:", b"%41b",
         b"[v1.fe80::a+en1]", b"[fe80::1%25eth0]:80"]


async def _server(kind: str) -> Server:
    endpoint = make_endpoint(MemoryStore())
    if kind == "serve_app":
        return await serve_app(make_app(endpoint), endpoint)
    return await serve(endpoint, access_log=logging.getLogger("s21.host") if kind == "aiohttp"
                       else None)  # fmt: skip


async def _exchange(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        writer.write_eof()
        async with asyncio.timeout(5):
            return await reader.read()
    finally:
        writer.close()


@pytest.mark.parametrize("value", INVALID)
def test_an_invalid_host_is_told_apart(value: bytes) -> None:
    assert not valid_host(value)


@pytest.mark.parametrize("value", VALID)
def test_a_valid_host_is_taken(value: bytes) -> None:
    assert valid_host(value)


def test_the_lean_reader_leaves_an_invalid_host_to_the_full_server() -> None:
    reader = RequestReader(max_line=8190, max_body=1 << 20)
    reader.feed(f"GET {WELL_KNOWN_PATH} HTTP/1.1\r\nHost: a,b\r\n\r\n".encode())
    with pytest.raises(Unhandled):
        reader.next()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("value", [b"a,b", b"a b", b"a@b", b"a:b"])
async def test_an_invalid_host_is_answered_malformed_and_closed(kind: str, value: bytes) -> None:
    request = f"GET {WELL_KNOWN_PATH} HTTP/1.1\r\nHost: ".encode() + value + b"\r\n\r\n"
    server = await _server(kind)
    try:
        got = await _exchange(server.port, request + request)  # a second one is not read
    finally:
        await server.close()
    head, _, body = got.partition(b"\r\n\r\n")
    status, *lines = head.split(b"\r\n")
    fields = {n.strip().lower(): v.strip() for n, _, v in (x.partition(b":") for x in lines)}
    assert status == b"HTTP/1.1 400 Bad Request", got[:200]
    assert fields[b"content-type"] == CONTENT_TYPE.encode()
    assert fields[b"connection"] == b"close"
    length = int(fields[b"content-length"])
    assert len(body) == length  # one answer, then the close
    problem = open_envelope(body, now=now_ms()).body
    assert problem.code == "malformed"
    assert "Host" in problem.detail
    assert value.decode() not in problem.detail  # nothing of the request echoed (§12.4-5)


@pytest.mark.parametrize("kind", KINDS)
async def test_a_valid_host_with_a_port_is_served(kind: str) -> None:
    server = await _server(kind)
    try:
        got = await _exchange(server.port, f"GET {WELL_KNOWN_PATH} HTTP/1.1\r\n"
                              "Host: [2001:db8::7]:443\r\nConnection: close\r\n\r\n".encode())
    finally:
        await server.close()
    assert got.startswith(b"HTTP/1.1 200 OK\r\n"), got[:200]
