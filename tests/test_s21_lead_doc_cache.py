"""A discovery document is never cacheable past its ``expires`` (§13.1-8).

Before, both the vendor's endpoint (lean and aiohttp paths) and the agent's inbound endpoint
sent ``Cache-Control: max-age=300`` whatever the document's lifetime: with
``discovery_lifetime_ms`` under ten minutes a cache (a CDN in front of the vendor) could hand out
a document five minutes after it had expired, which readers must refuse (§13.1-8).
"""

from __future__ import annotations

import os

import aiohttp
import pytest

from vrmproto import Identity
from vrmproto.server import Endpoint, ReferencePolicy, serve
from vrmproto.server._app import cache_control
from vrmproto.store import MemoryStore


def test_max_age_stays_within_half_the_lifetime() -> None:
    assert cache_control(86_400_000) == "max-age=300"
    assert cache_control(600_000) == "max-age=300"
    assert cache_control(120_000) == "max-age=60"
    assert cache_control(1_000) == "max-age=0"


@pytest.mark.parametrize("lifetime_ms", [120_000, 86_400_000])
async def test_the_served_document_says_so(lifetime_ms: int) -> None:
    endpoint = Endpoint(Identity(os.urandom(32)), store=MemoryStore(), name="Shop",
                        policy=ReferencePolicy(accepts_terms=["vrm.no-tracking"], name="Shop"),
                        discovery_lifetime_ms=lifetime_ms)  # fmt: skip
    server = await serve(endpoint, "127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession() as s, s.get(
                f"http://127.0.0.1:{server.port}/.well-known/vrm") as r:  # fmt: skip
            assert r.status == 200
            assert r.headers["Cache-Control"] == f"max-age={min(300, lifetime_ms // 2000)}"
    finally:
        await server.close()
        await endpoint.drain()
