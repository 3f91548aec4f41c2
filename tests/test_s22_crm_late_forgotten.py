"""A webhook's late first attempt does not send what the vendor deleted meanwhile (§11.8-3,
session 22).

The deliverer reads a batch of the feed, then delivers each relationship's events in order. An
event held up behind its relationship's earlier ones (a receiver slow or failing) is read again
before its first attempt when that comes over a second after the batch was read — but only if
it carried personal data. An intentcast, and the vendor's offer answering it, carry the
customer's words and the offer in their ``body``, not as personal data. When the relationship
expired meanwhile (never agreed, §11.8-3: the vendor deletes it with what the customer said, and
its events forget their bodies), the late first attempt POSTed the body as the batch had read it:
the intentcast's text and the offer went to the CRM after the vendor had deleted them, and
after the ``relationship.expired`` event in the feed that tells the CRM to delete them. Now a
late first attempt reads every event again.
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from _ports import free_port
from _vendor_proc import DAY_MS, Customer
from aiohttp import web
from test_s21_store_expired_feed import WHAT, Vendor

from vrmproto._messages import Intentcast
from vrmproto.server import _webhooks
from vrmproto.server._webhooks import Deliverer, Webhook
from vrmproto.store import MemoryStore

KEY = b"k" * 24
SECRET = "whsec_" + base64.b64encode(KEY).decode()


@pytest.fixture
async def vendor() -> Vendor:
    return Vendor(MemoryStore())


@contextlib.asynccontextmanager
async def receiving(v: Vendor, got: list[dict[str, Any]]) -> AsyncIterator[str]:
    """A CRM's receiver: while it takes the relationship's first event, the relationship
    expires at the vendor (the deliverer has read the batch: its next event is in hand)."""

    async def hook(request: web.Request) -> web.Response:
        doc = json.loads(await request.read())
        got.append(doc)
        if len(got) == 1:
            v.now += v.endpoint.limits.open_relationship_ttl_ms + 1
            assert await v.endpoint.expire_unagreed() == 1
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/hook"
    finally:
        await runner.cleanup()


async def test_a_late_first_attempt_sends_no_body_the_vendor_deleted(
    vendor: Vendor, monkeypatch: pytest.MonkeyPatch
) -> None:
    v = vendor
    caster = Customer(v.endpoint.identity)
    await v.send(caster, Intentcast(what=WHAT, reply_by=v.now + DAY_MS, constraints=("suv",),
                                    memberships=()))  # fmt: skip
    kinds = [e.kind for e in await v.store.events()]
    assert kinds == ["intentcast.received", "offer.sent"]  # one relationship: one lane
    # every first attempt counts as late (as over a second after its batch was read): what a
    # receiver taking a second or more per POST makes of the relationship's second event
    monkeypatch.setattr(_webhooks, "FRESH_S", -1.0)
    got: list[dict[str, Any]] = []
    async with receiving(v, got) as url:
        hook = Webhook("crm", url, KEY, "https://shop.example/vrm", batch=2)
        async with Deliverer(hook, v.store, clock=lambda: v.now) as d:
            assert await d.step()
    first, offer = got[0], got[1]
    assert first["type"] == "org.vrmproto.intentcast.received"
    assert WHAT in json.dumps(first)  # delivered before the vendor deleted it: as it was
    assert offer["type"] == "org.vrmproto.offer.sent"
    assert offer["data"]["body"] == {}
    assert offer["data"]["forgotten"] is True
    assert "Jeep" not in json.dumps(offer)
