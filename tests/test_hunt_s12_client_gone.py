"""A client that goes away in the middle of its request body is not a failure of the receiver.

Anyone can open a connection to ``vrm vendor serve``, declare a body and close after part of it.
aiohttp then hands the ``ConnectionResetError`` of the body read to the connection handler's
``handle_error`` as a 500, and ``_ConnectionHandler.handle_error``
(``vrmproto/server/_connections.py``) logs it at ERROR, with a 40-line traceback, "failed
handling a request", and signs an ``internal`` problem nobody can receive. One such request
per line of ERROR: a vendor's log (and whatever pages its operators on ERROR) floods at the
cost of a few bytes per request, and a real failure drowns in it.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

import pytest

from vrmproto import Identity
from vrmproto._binding import CONTENT_TYPE
from vrmproto.server import Endpoint, serve
from vrmproto.server._connections import _ConnectionHandler
from vrmproto.store import MemoryStore


def watch_requests(monkeypatch: pytest.MonkeyPatch) -> asyncio.Event:
    """An event set when aiohttp's handler has finished a request (answered or given up)."""
    handled = asyncio.Event()
    original = _ConnectionHandler._handle_request

    async def watched(self: Any, *args: Any, **kw: Any) -> Any:
        try:
            return await original(self, *args, **kw)
        finally:
            handled.set()

    monkeypatch.setattr(_ConnectionHandler, "_handle_request",
                        watched)  # type: ignore[arg-type]  # fmt: skip
    return handled


async def test_a_body_cut_short_by_the_client_is_not_an_error_of_ours(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    handled = watch_requests(monkeypatch)
    server = await serve(Endpoint(Identity(os.urandom(32)), store=MemoryStore()), "127.0.0.1", 0)
    try:
        caplog.set_level(logging.DEBUG, logger="vrmproto")
        _, writer = await asyncio.open_connection("127.0.0.1", server.port)
        head = f"POST /vrm/inbox HTTP/1.1\r\nHost: x\r\nContent-Type: {CONTENT_TYPE}\r\n"
        writer.write(head.encode() + b"Content-Length: 1000\r\n\r\n" + b"\x85" * 10)
        await writer.drain()
        writer.close()  # gone, 990 bytes short
        await writer.wait_closed()
        await handled.wait()
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert errors == [], [r.getMessage() for r in errors]
    finally:
        await server.close()

