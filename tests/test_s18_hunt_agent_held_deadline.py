"""A share's ``timeout_s`` bounds the §8.1-8 check of the vendor's history too.

Before: when the first item of a thread's outbox had gone out before and the vendor's answer to
it now was unusable (a receipt that does not verify), the sender asked the vendor's history
whether it held the message after all (§8.1-8) — without the caller's deadline. A vendor that
then never answered the history request kept ``Agent.share(..., timeout_s=0.3)`` waiting for
the HTTP client's own timeout (10 s by default, per page and per retry), not 0.3 s. Now the
check runs within the deadline, and the message stays queued in the outbox, as persisted.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from test_client import FakeVendor

from vrmproto.binding import CONTENT_TYPE, encode_replies
from vrmproto.client import Agent, RetryPolicy
from vrmproto.store import MemoryStore


class StallingVendor(FakeVendor):
    """Accepts terms; then answers the inbox with a receipt that does not verify, and never
    answers a history request (until ``release`` is set, at the end of the test)."""

    def __init__(self) -> None:
        super().__init__("Acme")
        self.hostile = False
        self.history_asked = asyncio.Event()
        self.release = asyncio.Event()

    async def inbox(self, request: web.Request) -> web.Response:
        if not self.hostile:
            return await super().inbox(request)
        await request.read()
        self.inbox_posts += 1
        return web.Response(body=encode_replies([b"not a receipt"]), content_type=CONTENT_TYPE)

    async def history(self, request: web.Request) -> web.Response:
        if not self.hostile:
            return await super().history(request)
        self.history_asked.set()
        await self.release.wait()
        return web.Response(status=503)


@pytest.fixture
async def vendor() -> AsyncIterator[StallingVendor]:
    v = StallingVendor()
    await v.start()
    try:
        yield v
    finally:
        v.release.set()
        await v.stop()


async def one_share_out(agent: Agent, vendor: StallingVendor) -> tuple[bytes, int]:
    """Connect, and leave a share queued after it went out once (the vendor answered 503: it may
    hold it, so the next delivery checks its history first, §8.1-8); then the vendor's history
    stalls. The thread, and an expiry a year ahead."""
    thread = (await agent.connect(vendor.url)).thread
    in_a_year = int(time.time() * 1000) + 365 * 86_400_000
    vendor.fail_next.append((503, {}))
    first = await agent.share(thread, {"email": "ada@example.org"}, purposes=["delivery"],
                              categories=["contact"], expires_ms=in_a_year)
    assert first.status == "queued"
    vendor.hostile = True
    return thread, in_a_year


async def test_a_share_within_its_timeout_while_the_vendors_history_stalls(
    vendor: StallingVendor,
) -> None:
    agent = await Agent.open(MemoryStore(), os.urandom(32), retry=RetryPolicy(attempts=1))
    try:
        thread, in_a_year = await one_share_out(agent, vendor)
        loop = asyncio.get_running_loop()
        began = loop.time()
        async with asyncio.timeout(5):  # (the bug waited for the client's 10 s)
            second = await agent.share(thread, {"phone": "+15550001"}, purposes=["delivery"],
                                       categories=["contact"], expires_ms=in_a_year,
                                       timeout_s=0.3)  # fmt: skip
        assert vendor.history_asked.is_set()  # the §8.1-8 check was made, and cut short
        assert loop.time() - began < 2
        assert second.status == "queued"
        pending = await agent.pending()
        assert [p.attempts for p in pending] == [2]  # the first share, tried once more
    finally:
        await agent.close()


async def test_an_outbox_run_is_not_held_by_a_vendor_whose_history_stalls(
    vendor: StallingVendor,
) -> None:
    """``run_outbox`` has no caller's deadline: the check is bounded by ``held_check_s``
    (60 s by default; small here), not by the vendor's patience page after page."""
    agent = await Agent.open(MemoryStore(), os.urandom(32), retry=RetryPolicy(attempts=1))
    agent.outbox.held_check_s = 0.3
    try:
        await one_share_out(agent, vendor)
        loop = asyncio.get_running_loop()
        began = loop.time()
        async with asyncio.timeout(5):  # (the bug waited for the client's 10 s)
            run = await agent.run_outbox(now=int(time.time() * 1000) + 3_600_000)
        assert vendor.history_asked.is_set()
        assert loop.time() - began < 2
        assert [d.status for d in run.deliveries] == ["queued"]
        assert [p.attempts for p in await agent.pending()] == [2]
    finally:
        await agent.close()
