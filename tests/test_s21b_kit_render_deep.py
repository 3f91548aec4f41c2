"""Rendering an endpoint's answer for the transcript never raises (spec 14.2: every case's
exchanges are kept and shown).

Before, ``default_decode_body`` ("never raises") let ``RecursionError`` out of ``json.loads`` for
a body of 100,000 ``[``: the hand-written exchanges (``raw_request``: WIRE-012 … WIRE-022,
CONN-002) render without a guard, so such an answer ended the case in ERROR.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp

from vrmproto.testing import CaseContext, Registry
from vrmproto.testing._case import Level
from vrmproto.testing._exchange import default_decode_body
from vrmproto.testing.cases import render_envelope
from vrmproto.testing.cases._support import raw_request

DEEP_JSON = b"[" * 100_000


def test_deeply_nested_json_text_is_shown_as_text() -> None:
    for body in (DEEP_JSON, b"[" * 100_000 + b"]" * 100_000):
        shown = default_decode_body(body)
        assert shown.startswith("[[[[")
        assert render_envelope(body) == shown


@asynccontextmanager
async def _answering(body: bytes) -> AsyncIterator[str]:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    async with server:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/vrm/inbox"


async def test_a_hand_written_exchange_records_a_deeply_nested_answer() -> None:
    reg = Registry()

    @reg.case(id="R-001", clause="§12.4-5", requirement="-", level=Level.MUST, accepts="-")
    async def run(ctx: CaseContext) -> None:  # pragma: no cover - only its Case is used
        del ctx

    async with _answering(DEEP_JSON) as url, aiohttp.ClientSession() as session:
        ctx = CaseContext(case=run, base_url=url, discovery={}, session=session,
                          rng=random.Random(1), state={}, decode_body=render_envelope)
        raw = await raw_request(ctx, url, "POST /vrm/inbox HTTP/1.1", [b""])
    assert (raw.status, raw.body) == (400, DEEP_JSON)
    assert ctx.exchanges[-1].response_decoded.startswith("[[[[")
