"""A request line naming HTTP/1.2 (or 1.9) gets the same answer on the lean path and on
aiohttp's (the lean reader takes only what aiohttp answers alike, vrmproto/_http1_server.py).

RFC 9110 §2.5 says a recipient SHOULD process a higher minor version as the highest it speaks
(HTTP/1.1). aiohttp's parser (llhttp) refuses ``HTTP/1.2`` before any handler runs, so the
endpoint answers ``400`` with the signed problem ``malformed`` (§12.4-5) on both paths; serving
it on the lean path alone would make the two paths answer one request two ways. Serving it
needs the request line made ``HTTP/1.1`` before aiohttp reads it (vrmproto/server/), for both.
"""

from __future__ import annotations

import asyncio
import logging

import pytest
from _broken_vendor import make_endpoint

from vrmproto._binding import WELL_KNOWN_PATH
from vrmproto.server import serve
from vrmproto.store import MemoryStore


async def status_line(path: str, version: str) -> bytes:
    access = logging.getLogger("s19.minor") if path == "aiohttp" else None
    server = await serve(make_endpoint(MemoryStore()), access_log=access)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        try:
            writer.write(f"GET {WELL_KNOWN_PATH} HTTP/{version}\r\nHost: x\r\n\r\n".encode())
            writer.write_eof()
            async with asyncio.timeout(10):
                got = await reader.read()
        finally:
            writer.close()
    finally:
        await server.close()
    return got.split(b"\r\n", 1)[0]


@pytest.mark.parametrize("version", ["1.2", "1.9"])
async def test_a_higher_minor_version_is_answered_alike_on_both_paths(version: str) -> None:
    lean, full = await status_line("lean", version), await status_line("aiohttp", version)
    assert lean.split(b" ", 1)[1] == full.split(b" ", 1)[1]
    assert b" 400 " in lean
