"""Issue 13, finding 1: vrm added to a site of one's own (a "shop") as an aiohttp sub-app.

The shop has its own routes and its own 404 page; vrm is mounted under ``/vrm``. Discovery
advertises the URLs the routes really have (§13.1-7), the conformance suite passes against
``SHOP/vrm`` with ``--strict``, and the shop's own pages and errors are untouched by vrm's
problem middleware.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import aiohttp
import pytest
from _broken_vendor import CONNECTION_LIMITS, make_endpoint

from vrmproto.server import serve_app
from vrmproto.store import MemoryStore
from vrmproto.testing import Outcome, run_suite
from vrmproto.testing._report import write_reports

CONTENT_TYPE = "application/vnd.vrmproto+msgpack"
SHOP_404 = "<h1>Not here</h1><p>The corner shop has no such page.</p>"  # as in the README


README = Path(__file__).resolve().parent.parent / "README.md"


def readme_shop() -> dict[str, Any]:
    """The code of the README's section "Add vrm to your aiohttp app", run as written."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Add vrm to your aiohttp app"):]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None, "the section has its Python code"
    scope: dict[str, Any] = {}
    exec(compile(code.group(1), "README.md", "exec"), scope)
    return scope


@pytest.fixture
async def shop_url() -> AsyncIterator[str]:
    """The README's shop with vrm mounted under /vrm, served as the README serves it, with
    the conformance test vendor's connection limits (§10.1)."""
    endpoint = make_endpoint(MemoryStore())
    shop = readme_shop()["make_shop"](endpoint)
    server = await serve_app(shop, endpoint, "127.0.0.1", 0, connection_limits=CONNECTION_LIMITS)
    yield server.url
    await server.close()


def _session() -> aiohttp.ClientSession:
    """A session that opens a connection per request. aiohttp keeps a connection 15 s for
    reuse, the shop closes one idle for 2 s (CONNECTION_LIMITS, §10.1-2): on a busy host a
    POST on a kept connection raced that close and failed with ServerDisconnectedError (a
    client's race, RFC 9112 §9.3.1, not what these tests are about)."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))


async def test_a_mounted_vendor_advertises_the_urls_its_routes_have(shop_url: str) -> None:
    base = f"{shop_url}/vrm"
    async with _session() as http:
        async with http.get(f"{base}/.well-known/vrm") as r:
            assert r.status == 200
            doc = json.loads(await r.read())
        inbox = urljoin(f"{base}/.well-known/vrm", doc["inbox"])
        history = urljoin(f"{base}/.well-known/vrm", doc["history"])
        assert (inbox, history) == (f"{base}/vrm/inbox", f"{base}/vrm/history")
        for url in (inbox, history):  # a route, not a 404: an empty body is refused as such
            async with http.post(url, data=b"", headers={"Content-Type": CONTENT_TYPE}) as r:
                assert r.status in (400, 401), url
                assert r.headers["Content-Type"] == CONTENT_TYPE


def test_the_readme_shop_is_the_one_tested() -> None:
    assert readme_shop()["SHOP_404"] == SHOP_404


async def test_the_shops_own_pages_and_404_are_unchanged(shop_url: str) -> None:
    async with _session() as http:
        async with http.get(f"{shop_url}/") as r:
            assert (r.status, await r.text()) == (200, "welcome to the corner shop")
        async with http.get(f"{shop_url}/no/such/page") as r:
            assert (r.status, await r.text()) == (404, SHOP_404)
            assert r.content_type == "text/html"
        # under /vrm, vrm answers: a signed problem (§12.2-5)
        async with http.get(f"{shop_url}/vrm/no/such/page") as r:
            assert r.status == 404
            assert r.headers["Content-Type"] == CONTENT_TYPE


@pytest.mark.integration
async def test_conformance_passes_strict_against_the_mounted_vendor(
    shop_url: str, tmp_path: Path
) -> None:
    """Acceptance: ``vrm conformance SHOP/vrm --strict`` passes. Finding 5: the report of an
    all-green run was 59 MB; now the transcripts of passed cases are left out: ≤ 2 MB."""
    result = await run_suite(f"{shop_url}/vrm", seed=1_767_225_600, strict=True)
    wrong = {r.case.id: (r.outcome.value, r.actual) for r in result.records
             if r.outcome not in (Outcome.PASSED, Outcome.INFORMATIONAL)}
    assert not wrong, wrong
    assert result.exit_code() == 0
    paths = write_reports(result, tmp_path / "green")
    assert sum(p.stat().st_size for p in paths.directory.rglob("*") if p.is_file()) <= 2 << 20
    assert not paths.replay
    assert write_reports(result, tmp_path / "all", transcripts="all").replay
