"""A discovery document nested too deeply is a ``DecodeError`` (§13.1-1), wherever it is read.

Before, ``verify_discovery`` let the JSON parser's ``RecursionError`` out: ``Agent.connect`` and
``vrm connect URL`` against an endpoint serving 30,000 nested arrays (60 kB, under the size
limit) failed with "vrm: RecursionError: maximum recursion depth exceeded…" (exit 1), outside
the library's errors. (s21-discovery had caught it in the LAN browse only.)
"""

from __future__ import annotations

import os

import pytest
from aiohttp import web

from vrmproto import DecodeError
from vrmproto._binding import SIGNATURE_HEADER, verify_discovery
from vrmproto.client import Agent, InvalidResponse
from vrmproto.store import MemoryStore

DEEP = b"[" * 30_000 + b"]" * 30_000
SIGNED = "ed25519=" + "A" * 86


def test_verify_discovery_says_decode_error() -> None:
    with pytest.raises(DecodeError, match="nested too deeply") as caught:
        verify_discovery(DEEP, SIGNED, now=0)
    assert caught.value.clause == "§13.1-1"


async def test_connect_to_such_an_endpoint_is_an_invalid_response() -> None:
    async def doc(_: web.Request) -> web.Response:
        return web.Response(body=DEEP, headers={SIGNATURE_HEADER: SIGNED})

    app = web.Application()
    app.router.add_get("/.well-known/vrm", doc)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    agent = await Agent.open(MemoryStore(), os.urandom(32))
    try:
        with pytest.raises(InvalidResponse, match="nested too deeply"):
            await agent.connect(f"http://127.0.0.1:{port}/")
    finally:
        await agent.close()
        await runner.cleanup()
