"""Bytes after a request that closes the connection (s21 hunt; RFC 9112 §9.6, §12.4-5).

A server that receives ``Connection: close`` (or an HTTP/1.0 request without keep-alive) "MUST
initiate closure of the connection after it sends the final response to the request" and "MUST
NOT process any further requests received on that connection" (RFC 9112 §9.6): the request is
answered, and whatever follows it is not read. On aiohttp's path (``serve`` with an access log,
``serve_app``), llhttp refuses any byte after such a request; when those bytes came in the same
read as the request's head, aiohttp's parser raised before handing the request over, and the
client got a ``400 malformed`` in place of the answer to its valid request. The lean path
answered it. Now every path answers the request and closes, without a second answer.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random

import pytest
from _broken_vendor import make_endpoint
from aiohttp import web

from vrmproto._binding import WELL_KNOWN_PATH
from vrmproto.server import Server, make_app, serve, serve_app
from vrmproto.store import MemoryStore

KINDS = ["serve", "aiohttp", "serve_app"]


async def _server(kind: str) -> Server:
    endpoint = make_endpoint(MemoryStore())
    if kind == "serve_app":
        return await serve_app(make_app(endpoint), endpoint)
    return await serve(endpoint, access_log=logging.getLogger("s21.close") if kind == "aiohttp"
                       else None)  # fmt: skip


async def _exchange(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)  # one write: the request and what follows arrive together
        async with asyncio.timeout(5):
            return await reader.read()  # until the server closes
    finally:
        writer.close()


def _answers(got: bytes) -> list[tuple[bytes, dict[bytes, bytes]]]:
    """The answers in ``got``, each its status line and fields (bodies framed by length)."""
    out = []
    while got:
        head, _, rest = got.partition(b"\r\n\r\n")
        status, *lines = head.split(b"\r\n")
        fields = {n.strip().lower(): v.strip() for n, _, v in (x.partition(b":") for x in lines)}
        out.append((status, fields))
        got = rest[int(fields.get(b"content-length", b"0")):]
    return out


GET = f"GET {WELL_KNOWN_PATH} HTTP/1.1\r\nHost: x\r\n"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("after", [b"GARBAGE\r\n\r\n", (GET + "\r\n").encode(), b"\x00\xff"])
async def test_a_closing_request_is_answered_whatever_follows(kind: str, after: bytes) -> None:
    server = await _server(kind)
    try:
        got = await _exchange(server.port, f"{GET}Connection: close\r\n\r\n".encode() + after)
    finally:
        await server.close()
    answers = _answers(got)
    assert [status for status, _ in answers] == [b"HTTP/1.1 200 OK"], got[:300]
    assert answers[0][1][b"connection"] == b"close"


@pytest.mark.parametrize("kind", KINDS)
async def test_pipelined_requests_before_the_closing_one_are_answered_too(kind: str) -> None:
    """Three requests in one write, the last closing, then junk: three answers, then the close."""
    data = (f"{GET}\r\n{GET}\r\n{GET}Connection: close\r\n\r\n").encode() + b"JUNK\r\n\r\n"
    server = await _server(kind)
    try:
        got = await _exchange(server.port, data)
    finally:
        await server.close()
    assert [status for status, _ in _answers(got)] == [b"HTTP/1.1 200 OK"] * 3, got[:300]


@pytest.mark.parametrize("kind", KINDS)
async def test_an_http_1_0_request_is_answered_whatever_follows(kind: str) -> None:
    """HTTP/1.0 without keep-alive closes after its answer, as ``Connection: close`` does."""
    server = await _server(kind)
    try:
        got = await _exchange(server.port,
                              f"GET {WELL_KNOWN_PATH} HTTP/1.0\r\n\r\nJUNK\r\n\r\n".encode())
    finally:
        await server.close()
    assert [status for status, _ in _answers(got)] == [b"HTTP/1.0 200 OK"], got[:300]


@pytest.mark.parametrize("kind", KINDS)
async def test_bytes_after_a_closing_request_with_a_body_are_not_read(kind: str) -> None:
    """A POST with a body and ``Connection: close``, then junk, in one write: the POST's own
    answer (415: not the envelope type), not a 400 for the junk."""
    data = (b"POST /vrm/inbox HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
            b"Content-Length: 3\r\nConnection: close\r\n\r\nabcJUNK\r\n\r\n")
    server = await _server(kind)
    try:
        got = await _exchange(server.port, data)
    finally:
        await server.close()
    answers = _answers(got)
    assert [status for status, _ in answers] == [b"HTTP/1.1 415 Unsupported Media Type"], got


@pytest.mark.parametrize("coding", ["length", "chunked"])
async def test_a_body_of_blank_lines_is_fed_to_the_parser_in_few_pieces(
    coding: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Heads are looked for where they can start, not in a body: a body of 16 384 blank lines
    (64 KiB) costs a few calls of aiohttp's parser, not one per blank line. Then a closing
    request and junk, in the same write: both requests answered, the junk not read."""
    calls = 0
    real = web.RequestHandler.data_received

    def counted(self: web.RequestHandler, data: bytes) -> None:
        nonlocal calls
        calls += 1
        real(self, data)

    monkeypatch.setattr(web.RequestHandler, "data_received", counted)
    body = b"\r\n\r\n" * 16_384
    framing = (f"Content-Length: {len(body)}\r\n\r\n".encode() + body if coding == "length"
               else f"Transfer-Encoding: chunked\r\n\r\n{len(body):x}\r\n".encode() + body
               + b"\r\n0\r\n\r\n")  # fmt: skip
    data = (b"POST /no/such HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n" + framing
            + f"{GET}Connection: close\r\n\r\nJUNK\r\n\r\n".encode())  # fmt: skip
    server = await _server("aiohttp")
    try:
        got = await _exchange(server.port, data)
    finally:
        await server.close()
    statuses = [status.split()[1] for status, _ in _answers(got)]
    assert len(statuses) == 2, got[:300]
    assert statuses[1] == b"200", got[:300]
    assert calls < 40, calls  # the reads of 64 KiB, and a piece or two more each


@pytest.mark.parametrize(("name", "data", "most"), [
    ("blank lines", b"\r\n\r\n" * 16_384, 4),  # b9b4e73: 1; cut at every line: 16 381
    ("heads that do not parse", b"x\r\n\r\n" * 13_000, 4),  # 1; 13 000
    ("requests past the queue", (GET + "\r\n").encode() * 2_000, 200),  # 125; 2 001
])  # fmt: skip
async def test_a_read_is_cut_only_where_the_parser_takes_a_request(
    name: str, data: bytes, most: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read is cut at a head only while aiohttp's parser takes requests, and at heads that
    hold more than blank lines: 64 KiB of blank lines, of heads after the first that does not
    parse, or of requests past the 32 the handler queues, cost a few calls of the parser —
    not one a line (18 ms, 208 ms of CPU, and the queue's bound lost)."""
    calls = 0
    real = web.RequestHandler.data_received

    def counted(self: web.RequestHandler, data: bytes) -> None:
        nonlocal calls
        calls += 1
        real(self, data)

    monkeypatch.setattr(web.RequestHandler, "data_received", counted)
    server = await _server("aiohttp")
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        try:
            writer.write(data)
            writer.write_eof()
            async with asyncio.timeout(5):
                got = await reader.read()
        finally:
            writer.close()
    finally:
        await server.close()
    assert got.startswith(b"HTTP/1."), name
    assert calls <= most, (name, calls)


def _request(kind: str, rng: random.Random, *, close: bool = False) -> bytes:
    closing = "Connection: close\r\n" if close else ""
    body = bytes(rng.choice(b"\r\nab0") for _ in range(rng.randrange(0, 300)))
    if kind == "get":
        return f"{GET}{closing}\r\n".encode()
    head = f"POST /no/such HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n{closing}"
    if kind == "length":
        return f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body
    return (f"{head}Transfer-Encoding: chunked\r\n\r\n".encode()
            + (f"{len(body):x}\r\n".encode() + body + b"\r\n" if body else b"") + b"0\r\n\r\n")


async def test_requests_then_a_closing_one_then_junk_in_any_reads() -> None:
    """Up to five requests (bodiless, Content-Length, chunked; bodies of CR, LF, "0" and
    letters), the last closing, then junk, written in pieces cut at random: every request is
    answered, in order, and nothing more (seeded; 60 connections)."""
    rng = random.Random(21)
    server = await _server("aiohttp")
    try:
        for _ in range(60):
            kinds = [rng.choice(["get", "length", "chunked"]) for _ in range(rng.randrange(1, 6))]
            data = b"".join(_request(k, rng, close=i == len(kinds) - 1)
                            for i, k in enumerate(kinds)) + b"JUNK / HTTP/1.1\r\n\r\nX"
            cuts = sorted(rng.sample(range(1, len(data)), min(3, len(data) - 1)))
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            try:
                for a, b in itertools.pairwise([0, *cuts, len(data)]):
                    writer.write(data[a:b])
                    await writer.drain()
                async with asyncio.timeout(5):
                    got = await reader.read()
            finally:
                writer.close()
            statuses = [status.split()[1] for status, _ in _answers(got)]
            assert statuses == [b"200" if k == "get" else b"404" for k in kinds], (kinds, got)
    finally:
        await server.close()
