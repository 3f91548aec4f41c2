"""A discovery document the suite can fetch but not use — no ``key``, an ``enc_key`` that is a
number, a limit that is not a number, ``limits`` that is a list — fails every case that needs
it, naming what is wrong (§13.1-3), instead of crashing them.

Before, ``target()`` let the ``KeyError``, ``ValueError`` or ``TypeError`` out: every case that
reads the target (ENV-001, DISC-004, …) ended in ERROR, "harness error: ValueError: invalid
literal for int() with base 10: 'big'", which spec 14.3 keeps for a bug in the suite, with a
Python traceback in the report.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web

from tests._loopback import serving_app
from vrmproto._keys import Identity, key_to_text
from vrmproto.testing import Outcome, run_suite

VENDOR = Identity(bytes(32))
GOOD: dict[str, Any] = {
    "key": key_to_text(VENDOR.public_key),
    "enc_key": key_to_text(VENDOR.enc_public_key, "x25519"),
    "inbox": "/vrm/inbox",
    "history": "/vrm/history",
    "limits": {"max_envelope_bytes": 262144},
}


@asynccontextmanager
async def serving(doc: dict[str, Any]) -> AsyncIterator[str]:
    """An endpoint on 127.0.0.1 whose discovery document is ``doc``, refusing every POST."""
    async def discovery(_: web.Request) -> web.Response:
        return web.json_response(doc)

    async def refuse(_: web.Request) -> web.Response:
        return web.Response(status=400)

    app = web.Application()
    app.router.add_get("/.well-known/vrm", discovery)
    app.router.add_post("/vrm/inbox", refuse)
    app.router.add_post("/vrm/history", refuse)
    async with serving_app(app) as url:
        yield url


@pytest.mark.parametrize(("change", "named"), [
    ({"key": None}, "no key"),
    ({"key": "ed25519:short"}, "key"),
    ({"enc_key": 7}, "enc_key"),
    ({"inbox": ["/vrm/inbox"]}, "inbox"),
    ({"limits": {"max_envelope_bytes": "big"}}, "max_envelope_bytes"),
    ({"limits": {"max_depth": 1e400}}, "max_depth"),
    ({"limits": {"max_depth": -3}}, "max_depth"),
    ({"limits": [1, 2]}, "limits"),
])
async def test_cases_fail_naming_the_unusable_document(change: dict[str, Any],
                                                       named: str) -> None:
    doc = {k: v for k, v in {**GOOD, **change}.items() if v is not None}
    async with serving(doc) as url:
        result = await run_suite(url, only=["DISC-004", "ENV-001"], seed=1, timeout_per_case=5)
    ran = [r for r in result.records if r.outcome is not Outcome.SKIPPED]
    assert {r.case.id for r in ran} == {"DISC-004", "ENV-001"}
    for record in ran:
        assert record.outcome is Outcome.FAILED, (record.case.id, record.actual)
        assert record.traceback is None
        assert "discovery document" in (record.expected or ""), record.expected
        assert named in (record.actual or ""), record.actual


@pytest.mark.parametrize("issued", [1e400, -1e400, "soon", [1]])
async def test_an_issued_that_is_no_time_fails_the_window_case(issued: Any) -> None:
    """Before, ``issued`` of 1e400 (JSON reads it as infinity) let OverflowError out of DISC-006:
    ERROR, a traceback."""
    async with serving({**GOOD, "issued": issued, "expires": 2**62}) as url:
        result = await run_suite(url, only=["DISC-006"], seed=1, timeout_per_case=5)
    record = result.records[0]
    assert record.case.id == "DISC-006"
    assert record.outcome is Outcome.FAILED, record.actual
    assert record.expected == "issued and expires"
