"""A policy that raises ``CancelledError`` without being cancelled (s22 hunt, §12.12).

A vendor's policy calls its own systems (a CRM, a pricing service). When one of them hands back
a future someone else cancelled (a client shut down, a shared task cancelled), awaiting it
raises ``CancelledError`` in the policy, though nothing cancelled the request. A policy's
``Exception`` is logged and dropped (the peer still gets its receipt), but ``CancelledError``
is a ``BaseException``: it went up through the endpoint, and the customer got no answer at all.
On ``serve()``'s lean connections the connection then stayed open, busy, with no deadline —
one descriptor and one place in ``max_connections_per_address`` held for good per message
(§10.1); through aiohttp it was closed without an answer. Now it is a policy failure like any
other: logged, dropped, and the message receipted. A step that is really cancelled (the
server stopping) is still cancelled.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

import aiohttp
import pytest
from _vendor_proc import ACCEPTED, Customer, post

from vrmproto._keys import Identity
from vrmproto.server import Endpoint, ReferencePolicy, serve
from vrmproto.store import MemoryStore


class Cancelled(ReferencePolicy):
    """Its CRM hands it a future that was cancelled elsewhere."""

    async def on_terms_offer(self, rel: Any, msg: Any) -> Any:
        gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        gone.cancel()
        await gone


@pytest.mark.parametrize("lean", [True, False])
async def test_a_policy_raising_cancelled_error_gets_the_offer_receipted(
    lean: bool, caplog: pytest.LogCaptureFixture
) -> None:
    vendor = Identity(os.urandom(32))
    endpoint = Endpoint(vendor, store=MemoryStore(), policy=Cancelled(accepts_terms=ACCEPTED))
    server = await serve(endpoint, access_log=None if lean else logging.getLogger("s22.embed"))
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            c = Customer(vendor, base_url=server.url)
            sent = c.offer(*ACCEPTED)
            got = c.absorb(await post(http, c.inbox, sent.envelope), sent)
        assert [r.message.type for r in got] == ["receipt"]  # the offer stays open
        assert len(await endpoint.store.relationships()) == 1
    finally:
        await server.close()
    assert any("policy failed on terms.offer" in r.getMessage() for r in caplog.records)


class Slow(ReferencePolicy):
    started: asyncio.Event

    async def on_terms_offer(self, rel: Any, msg: Any) -> Any:
        self.started.set()
        await asyncio.Event().wait()  # never answers


async def test_a_step_really_cancelled_is_still_cancelled() -> None:
    vendor = Identity(os.urandom(32))
    policy = Slow(accepts_terms=ACCEPTED)
    policy.started = asyncio.Event()
    endpoint = Endpoint(vendor, store=MemoryStore(), policy=policy)
    c = Customer(vendor)
    step = asyncio.get_running_loop().create_task(
        endpoint.handle_inbox(c.offer(*ACCEPTED).envelope, client="127.0.0.1"))
    await policy.started.wait()
    step.cancel()
    with pytest.raises(asyncio.CancelledError):
        await step
    assert await endpoint.store.relationships() == []
