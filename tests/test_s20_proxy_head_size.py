"""A request head of many long fields (s20 hunt; §12.4-5, §10.1-3).

Each header field line was held to ``max_header_line_bytes`` (8 190), and aiohttp takes up to
128 of them: a head of ~1 MB was read whole, and kept in memory while it arrived. A client that
opened connections and sent such heads slowly held ~1.9 MB of the server's memory on each, for
``header_timeout_ms``: 200 connections took the server from 48 MB to 425 MB, and the default
``max_connections`` (1 024, over 8 addresses at 128 each) let one client take ~2 GB. Now a head
longer than :data:`~vrmproto.server._connections.MAX_HEAD_LINES` times ``max_header_line_bytes``
is answered ``malformed`` and the connection closed as soon as its bytes show it (§12.4-5: a
request with more header fields than the receiver accepts), on both paths of :func:`serve`.
"""

from __future__ import annotations

import asyncio
import logging

import pytest
from _broken_vendor import make_endpoint
from _vendor_proc import now_ms

from vrmproto import open_envelope
from vrmproto._binding import CONTENT_TYPE, WELL_KNOWN_PATH
from vrmproto.server import ConnectionLimits, Server, serve
from vrmproto.server._connections import MAX_HEAD_LINES
from vrmproto.store import MemoryStore

LIMITS = ConnectionLimits(header_timeout_ms=5_000, idle_timeout_ms=5_000)
BOUND = MAX_HEAD_LINES * LIMITS.max_header_line_bytes


async def _server(path: str) -> Server:
    access = logging.getLogger("s20.head") if path == "aiohttp" else None
    return await serve(make_endpoint(MemoryStore()), connection_limits=LIMITS, access_log=access)


def _fields(total: int) -> bytes:
    line = b"X-Pad-%04d: " + b"a" * 8_000 + b"\r\n"
    return b"".join(line % i for i in range(total // len(line % 0) + 1))


async def _answers(port: int, data: bytes, *, end: bool = True) -> list[tuple[bytes, bytes]]:
    """(status code, body) of each answer, until the server closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        if end:
            writer.write_eof()
        async with asyncio.timeout(4):  # well within the header deadline
            got = await reader.read()  # until the server closes
    finally:
        writer.close()
    out = []
    while got:
        head, _, got = got.partition(b"\r\n\r\n")
        status, *lines = head.split(b"\r\n")
        fields = {n.strip().lower(): v.strip() for n, _, v in (x.partition(b":") for x in lines)}
        length = int(fields[b"content-length"])
        out.append((status.split()[1], got[:length]))
        got = got[length:]
    return out


def _problem(body: bytes) -> tuple[str, str]:
    problem = open_envelope(body, now=now_ms()).body
    return str(problem.code), str(problem.detail)


@pytest.mark.parametrize("path", ["lean", "aiohttp"])
async def test_a_head_over_the_bound_is_malformed_and_closed(path: str) -> None:
    server = await _server(path)
    try:
        request = (f"GET {WELL_KNOWN_PATH} HTTP/1.1\r\nHost: x\r\n".encode()
                   + _fields(2 * BOUND) + b"\r\n")  # fmt: skip
        got = await _answers(server.port, request)
    finally:
        await server.close()
    assert [status for status, _ in got] == [b"400"]
    assert _problem(got[0][1]) == ("malformed", f"a request head is longer than {BOUND} bytes")


@pytest.mark.parametrize("path", ["lean", "aiohttp"])
async def test_a_head_that_never_ends_is_refused_without_waiting_for_the_deadline(
    path: str,
) -> None:
    """The client sends ever more fields and never the blank line: refused once past the
    bound, not read until ``header_timeout_ms``."""
    server = await _server(path)
    try:
        request = f"GET {WELL_KNOWN_PATH} HTTP/1.1\r\nHost: x\r\n".encode() + _fields(BOUND + 1)
        got = await _answers(server.port, request, end=False)
    finally:
        await server.close()
    assert [(status, _problem(body)[0]) for status, body in got] == [(b"400", "malformed")]


@pytest.mark.parametrize("path", ["lean", "aiohttp"])
async def test_heads_and_bodies_under_the_bound_are_served(path: str) -> None:
    """A head of half the bound, then a pipelined POST whose body is larger than the bound:
    both answered by their routes (a body is no part of a head), and a long head after them."""
    server = await _server(path)
    try:
        body = b"\x80" * (2 * BOUND)
        request = (
            f"GET {WELL_KNOWN_PATH} HTTP/1.1\r\nHost: x\r\n".encode() + _fields(BOUND // 2)
            + b"\r\n" + f"POST /vrm/inbox HTTP/1.1\r\nHost: x\r\nContent-Type: {CONTENT_TYPE}"
            f"\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body
            + f"GET {WELL_KNOWN_PATH} HTTP/1.1\r\nHost: x\r\n".encode() + _fields(BOUND // 2)
            + b"\r\n"
        )  # fmt: skip
        got = await _answers(server.port, request)
    finally:
        await server.close()
    assert [status for status, _ in got] == [b"200", b"400", b"200"]
    code, detail = _problem(got[1][1])
    assert code == "malformed"
    assert "head" not in detail  # the envelope's own fault, not the head's
