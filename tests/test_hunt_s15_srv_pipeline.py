"""Pipelined requests on the lean path are buffered within a bound (s15 hunt).

The lean connection pauses reading once two requests' worth of bytes wait (at their largest:
``max_envelope_bytes`` and a head of ``MAX_HEAD``). Before, every answer resumed reading, and
each resumed read let in up to 256 KiB while one request was taken: a client that pipelines
small requests as fast as it can (reading its answers) piled them up in the server without
bound, ~20 MB a few seconds into the flood (the memory of the process grew with them).
"""

from __future__ import annotations

import asyncio

import pytest
from _broken_vendor import make_endpoint

from vrmproto._binding import WELL_KNOWN_PATH
from vrmproto._http1_server import MAX_HEAD
from vrmproto.server import serve
from vrmproto.server._lean import LeanConnection
from vrmproto.store import MemoryStore

READ_SIZE = 256 * 1024  # the most an asyncio transport reads at once


def request(*, close: bool = False) -> bytes:
    extra = "Connection: close\r\n" if close else ""
    pad = "a" * 3000  # bigger requests: more bytes piled up per answer, fewer answers
    return f"GET {WELL_KNOWN_PATH} HTTP/1.1\r\nHost: x\r\nX-Pad: {pad}\r\n{extra}\r\n".encode()


async def test_a_pipelining_client_cannot_pile_requests_up(monkeypatch: pytest.MonkeyPatch) -> None:
    most = 0
    real = LeanConnection.data_received

    def data_received(self: LeanConnection, data: bytes) -> None:
        nonlocal most
        real(self, data)
        most = max(most, len(self._reader))

    monkeypatch.setattr(LeanConnection, "data_received", data_received)
    endpoint = make_endpoint(MemoryStore())
    n = 2000  # under the rate limit per address (3000 a minute)
    server = await serve(endpoint)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)

        async def send() -> None:
            for _ in range(n // 100):
                writer.write(request() * 100)
                await writer.drain()
            writer.write(request(close=True))
            await writer.drain()

        async def receive() -> bytes:
            got = bytearray()
            while chunk := await reader.read(1 << 20):
                got += chunk
            return bytes(got)

        async with asyncio.timeout(60):
            _, got = await asyncio.gather(send(), receive())
        writer.close()
    finally:
        await server.close()
    assert got.count(b"HTTP/1.1 200 OK\r\n") == n + 1
    one = endpoint.limits.max_envelope_bytes + MAX_HEAD
    assert most <= 2 * one + READ_SIZE, f"{most} bytes of requests piled up"
