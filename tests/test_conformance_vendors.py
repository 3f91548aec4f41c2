"""Issue 13, finding 5: the conformance suite as a vendor's engineer runs it.

(An all-green report fits a ticket, ≤ 2 MB: ``test_embedding.py`` checks the report of its
strict run.) A run is not failed by the target's per-address rate limit (the suite waits out
``Retry-After``), and a limit left from an earlier run is reported as that; a preflight
names an advertised URL that is not a route; ``host:port`` is a URL as for ``vrm connect``; a run
that cannot start says so in the ``vrm:`` style, with no header before it.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator

import aiohttp
import pytest
from _broken_vendor import CONNECTION_LIMITS, make_endpoint
from _cli_helpers import ROOT, cli_env
from aiohttp import web

from vrmproto._keys import Identity
from vrmproto._limits import Limits
from vrmproto.server import Endpoint, ReferencePolicy, Server, serve, serve_app
from vrmproto.store import MemoryStore
from vrmproto.testing import Outcome, SuiteCannotRun, run_suite
from vrmproto.testing._runner import _check_url

SEED = 1_767_225_600


@pytest.fixture
async def vendor() -> AsyncIterator[Server]:
    server = await serve(make_endpoint(MemoryStore()), connection_limits=CONNECTION_LIMITS)
    yield server
    await server.close()


def _not_passed(result: object) -> dict[str, tuple[str, str | None]]:
    return {r.case.id: (r.outcome.value, r.actual) for r in result.records  # type: ignore[attr-defined]
            if r.outcome not in (Outcome.PASSED, Outcome.INFORMATIONAL, Outcome.SKIPPED)}


@pytest.mark.integration
async def test_the_suite_waits_out_the_targets_rate_limit() -> None:
    """Finding 5: a target whose per-address budget the suite outruns (as a second run right
    after the first does) got false failures, every one 429 rate_limited. The suite waits out
    Retry-After (bounded) and says so."""
    endpoint = Endpoint(Identity(bytes(range(32))), store=MemoryStore(), name="busy vendor",
                        limits=Limits(rate_per_address_per_minute=70),
                        policy=ReferencePolicy(accepts_terms=["vrm.no-tracking"],
                                               name="busy vendor"))  # fmt: skip
    server = await serve(endpoint)
    try:
        result = await run_suite(server.url, seed=3, only=("HTTP-*", "ENV-*"), skip=("slow",))
    finally:
        await server.close()
    assert not _not_passed(result)
    assert result.rate_waits > 0


async def test_a_rate_limit_left_from_an_earlier_run_is_reported_as_such() -> None:
    endpoint = Endpoint(Identity(bytes(range(32))), store=MemoryStore(), name="slow vendor",
                        limits=Limits(rate_per_address_per_minute=1))  # fmt: skip
    server = await serve(endpoint)
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(2):  # the earlier run
                async with http.get(f"{server.url}/.well-known/vrm"):
                    pass
        with pytest.raises(SuiteCannotRun, match=r"429 rate_limited .*earlier run"):
            await run_suite(server.url, seed=SEED, rate_wait_s=5)
    finally:
        await server.close()


@pytest.fixture
async def misadvertised() -> AsyncIterator[str]:
    """A site that serves a vendor's discovery document but not the routes it names."""
    endpoint = make_endpoint(MemoryStore())

    async def discovery(request: web.Request) -> web.Response:
        body, signature = endpoint.discovery()
        return web.Response(body=body, content_type="application/json",
                            headers={"Vrm-Signature": signature})  # fmt: skip

    app = web.Application()
    app.router.add_get("/shop/.well-known/vrm", discovery)
    server = await serve_app(app, endpoint)
    yield f"{server.url}/shop"
    await server.close()


async def test_the_preflight_names_the_advertised_url_that_is_not_a_route(
    misadvertised: str,
) -> None:
    """Finding 1 as the suite saw it: 11 passed, 118 failed, every one 404, and nothing
    pointing at the cause."""
    origin = misadvertised.removesuffix("/shop")
    with pytest.raises(SuiteCannotRun) as caught:
        await run_suite(misadvertised, seed=SEED)
    text = str(caught.value)
    assert f"the inbox URL {origin}/vrm/inbox" in text
    assert "HTTP 404" in text


def test_host_port_is_a_url_as_for_vrm_connect() -> None:
    assert _check_url("127.0.0.1:8701") == "http://127.0.0.1:8701"
    assert _check_url("localhost:8701/vrm/") == "http://localhost:8701/vrm"
    assert _check_url("https://shop.example/vrm") == "https://shop.example/vrm"
    with pytest.raises(SuiteCannotRun):
        _check_url("ftp://shop.example")


async def _conformance(*args: str) -> tuple[int, str, str]:
    """``vrm conformance ARGS`` as a subprocess (this loop keeps serving the targets)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "vrmproto.cli", "conformance", *args, env=cli_env(None), cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_the_command_takes_host_port_and_fails_in_one_style(
    vendor: Server, misadvertised: str
) -> None:
    code, out, err = await _conformance(f"127.0.0.1:{vendor.port}", "--only", "HTTP-001")
    assert code == 0, out + err
    code, out, err = await _conformance(misadvertised)
    assert code == 2
    assert err.startswith("vrm: the suite cannot run: the inbox URL"), err
    assert out == ""  # no header before it
