"""The suite's hand-written HTTP exchanges (WIRE-012 to WIRE-022, CONN-002 …) read what a
hostile or broken endpoint answers within bounds, and say what was wrong with it.

Before, ``_read_response`` read any ``Content-Length`` and any number of header lines into
memory (an answer of ``Content-Length: 10000000000`` took 4 GB before the read timeout), let an
``IndexError`` escape on a status line without a status (the case crashed with ERROR), and read
an empty body from a chunked or close-delimited answer (so a conforming endpoint that answers
chunked failed WIRE-012 with "the error body is not a signed problem").
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from vrmproto.testing._context import MAX_RESPONSE_BYTES
from vrmproto.testing.cases._support import (
    MAX_HEAD_BYTES,
    MAX_HEADERS,
    RawResponse,
    _raw_exchange,
)

Answer = Callable[[asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def _endpoint(answer: Answer) -> AsyncIterator[str]:
    """A raw endpoint on 127.0.0.1 that reads a request head and answers with ``answer``, then
    holds the connection open until the test is done (it never closes first on its own)."""
    done = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            await answer(writer)
            await done.wait()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        try:
            yield f"http://127.0.0.1:{port}/vrm/inbox"
        finally:
            done.set()


async def _exchange(answer: Answer, *, read_timeout_s: float = 5.0) -> RawResponse:
    async with _endpoint(answer) as url:
        return await _raw_exchange(url, "POST /vrm/inbox HTTP/1.1\r\nHost: x\r\n\r\n", [],
                                   pause_s=0.0, read_timeout_s=read_timeout_s,
                                   probe_close=False)


async def test_a_huge_content_length_is_read_only_up_to_the_cap() -> None:
    async def answer(w: asyncio.StreamWriter) -> None:
        w.write(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 10000000000\r\n\r\n")
        w.write(b"x" * (MAX_RESPONSE_BYTES + 1024 * 1024))
        await w.drain()

    raw = await _exchange(answer)
    assert raw.status == 413
    assert len(raw.body) == MAX_RESPONSE_BYTES
    assert f"truncated at {MAX_RESPONSE_BYTES} bytes" in raw.error


async def test_endless_header_lines_are_refused_at_the_bound() -> None:
    async def answer(w: asyncio.StreamWriter) -> None:
        w.write(b"HTTP/1.1 200 OK\r\n")
        for i in range(20 * MAX_HEADERS):
            w.write(b"X-Pad-%d: %s\r\n" % (i, b"y" * 100))
        w.write(b"Content-Length: 0\r\n\r\n")
        await w.drain()

    raw = await _exchange(answer)
    assert raw.status is None
    assert f"more than {MAX_HEADERS} header lines" in raw.error
    assert len(raw.headers) == 0


async def test_a_header_line_longer_than_the_head_bound_is_refused() -> None:
    async def answer(w: asyncio.StreamWriter) -> None:
        w.write(b"HTTP/1.1 200 OK\r\nX-Long: " + b"y" * (MAX_HEAD_BYTES * 4) + b"\r\n\r\n")
        await w.drain()

    raw = await _exchange(answer)
    assert raw.status is None
    assert f"longer than {MAX_HEAD_BYTES} bytes" in raw.error


async def test_a_garbage_status_line_is_a_clear_error_not_a_crash() -> None:
    for line in (b"garbage\r\n\r\n", b"HTTP/1.1 OK fine\r\n\r\n", b"SSH-2.0-OpenSSH_9.6\r\n"):
        async def answer(w: asyncio.StreamWriter, line: bytes = line) -> None:
            w.write(line)
            await w.drain()

        raw = await _exchange(answer)
        assert raw.status is None
        assert "not an HTTP/1 status line" in raw.error, raw.error


async def test_a_bad_content_length_is_named() -> None:
    for value in (b"-5", b"lots", b"1e3"):
        async def answer(w: asyncio.StreamWriter, value: bytes = value) -> None:
            w.write(b"HTTP/1.1 200 OK\r\nContent-Length: " + value + b"\r\n\r\n")
            await w.drain()

        raw = await _exchange(answer)
        assert raw.status is None
        assert f"Content-Length {value.decode()!r}" in raw.error, raw.error


async def test_a_close_in_the_middle_of_the_body_is_named() -> None:
    async def answer(w: asyncio.StreamWriter) -> None:
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this")
        await w.drain()
        w.close()

    raw = await _exchange(answer)
    assert raw.status is None
    assert "closed after 9 of the 100 bytes" in raw.error, raw.error


async def test_a_chunked_answer_is_read_whole() -> None:
    async def answer(w: asyncio.StreamWriter) -> None:
        w.write(b"HTTP/1.1 413 Payload Too Large\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n")
        await w.drain()

    raw = await _exchange(answer)
    assert (raw.status, raw.body, raw.error) == (413, b"hello world", "")


async def test_an_endless_chunked_answer_stops_at_the_cap() -> None:
    async def answer(w: asyncio.StreamWriter) -> None:
        w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        piece = b"x" * 65536
        for _ in range(MAX_RESPONSE_BYTES // len(piece) + 8):
            w.write(b"10000\r\n" + piece + b"\r\n")
        await w.drain()

    raw = await _exchange(answer)
    assert raw.status == 200
    assert len(raw.body) == MAX_RESPONSE_BYTES
    assert "truncated" in raw.error


async def test_a_close_delimited_answer_is_read_to_its_end() -> None:
    async def answer(w: asyncio.StreamWriter) -> None:
        w.write(b"HTTP/1.0 400 Bad Request\r\nConnection: close\r\n\r\nthe ")
        await w.drain()
        w.write(b"body")
        await w.drain()
        w.close()

    raw = await _exchange(answer)
    assert (raw.status, raw.body, raw.closed) == (400, b"the body", True)
