"""A client that half-closes in the middle of a request body is given up at once.

§10-8 gives a body ``body_read_timeout_ms`` to arrive. A client that declared a body, sent part
of it and then shut its side down (a FIN: RFC 9112 §9.6) can never send the rest. The server
noticed only when the hand-off to aiohttp's request task was done: a FIN that came in between
(the request already taken from aiohttp's queue, its task not yet started) went unseen, and the
request waited out the whole body deadline — then was answered ``408 request_timeout`` to no
one, its connection and task held all the while (10 s with the defaults; 12 s of the suite's
time in ``test_hunt_s12_client_gone``).
"""

from __future__ import annotations

import asyncio
import logging
import os

import pytest
from test_hunt_s12_client_gone import watch_requests

from vrmproto import Identity, Limits
from vrmproto._binding import CONTENT_TYPE
from vrmproto.server import Endpoint, serve
from vrmproto.store import MemoryStore

#: Far longer than the test needs: the request must end because the client went, not this.
BODY_DEADLINE_MS = 600_000


async def test_a_body_cut_short_by_a_half_close_ends_its_request_at_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    handled = watch_requests(monkeypatch)
    limits = Limits(body_read_timeout_ms=BODY_DEADLINE_MS)
    endpoint = Endpoint(Identity(os.urandom(32)), store=MemoryStore(), limits=limits)
    server = await serve(endpoint, "127.0.0.1", 0)
    try:
        caplog.set_level(logging.INFO, logger="vrmproto")
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        head = f"POST /vrm/inbox HTTP/1.1\r\nHost: x\r\nContent-Type: {CONTENT_TYPE}\r\n"
        writer.write(head.encode() + b"Content-Length: 1000\r\n\r\n" + b"\x85" * 10)
        writer.write_eof()  # a half-close, 990 bytes short
        # Before the fix: the request waited out BODY_DEADLINE_MS (this bound fails first).
        await asyncio.wait_for(handled.wait(), timeout=60)
        assert await asyncio.wait_for(reader.read(), timeout=60) == b""  # closed, unanswered
        writer.close()
        timeouts = [r.getMessage() for r in caplog.records if "request_timeout" in r.getMessage()]
        assert timeouts == []
    finally:
        await server.close()
