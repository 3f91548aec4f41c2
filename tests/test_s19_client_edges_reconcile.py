"""Comparing and reconciling with a vendor's copy of the history is bounded in time (§8.3, §12.5).

Before: ``Agent.compare_history`` and ``Agent.reconcile`` had no overall deadline, only the HTTP
client's per request. A vendor that answered page after page of its history export (§12.5-5:
the agent asks until a page is empty) kept them going for as long as it liked — up to a million
entries — and ``reconcile`` held the relationship's lock all along, so nothing could be sent in
it. Now ``timeout_s`` (default :data:`HISTORY_TIMEOUT_S`) bounds the whole wait: past it,
:class:`Unreachable` (timed out), nothing adopted, the lock released.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from test_client import FakeVendor

from tests._cli_helpers import VendorHost, connected, fails, vrm
from vrmproto._history import Entry
from vrmproto.binding import CONTENT_TYPE, encode_history
from vrmproto.cli._errors import EXIT_UNREACHABLE
from vrmproto.client import Agent, RetryPolicy, Unreachable
from vrmproto.client._reconcile import HISTORY_TIMEOUT_S
from vrmproto.store import MemoryStore


class EndlessVendor(FakeVendor):
    """Once ``endless`` is set, answers every history page with one small entry more, for ever
    (each page continues where the last ended, so the agent asks for the next)."""

    def __init__(self) -> None:
        super().__init__("Acme", accepts=("vrm.no-tracking", "vrm.no-third-party",
                                          "vrm.delete-after", "vrm.return-on-request"))
        self.endless = False
        self.pages = 0

    async def history(self, request: web.Request) -> web.Response:
        if not self.endless:
            return await super().history(request)
        await request.read()
        self.pages += 1
        entry = Entry(self.pages - 1, os.urandom(32), os.urandom(32), b"x" * 16, False)
        return web.Response(body=encode_history([entry]), content_type=CONTENT_TYPE)


@pytest.fixture
async def vendor() -> AsyncIterator[EndlessVendor]:
    v = EndlessVendor()
    await v.start()
    try:
        yield v
    finally:
        await v.stop()


@pytest.mark.parametrize("call", ["compare_history", "reconcile"])
async def test_a_vendor_paging_for_ever_is_cut_at_the_timeout(vendor: EndlessVendor,
                                                              call: str) -> None:  # fmt: skip
    agent = await Agent.open(MemoryStore(), os.urandom(32), retry=RetryPolicy(attempts=1))
    try:
        thread = (await agent.connect(vendor.url)).thread
        vendor.endless = True
        loop = asyncio.get_running_loop()
        began = loop.time()
        async with asyncio.timeout(10):  # (before: ~a million pages)
            with pytest.raises(Unreachable, match="timed out"):
                await getattr(agent, call)(thread, timeout_s=0.3)
        assert loop.time() - began < 3
        assert vendor.pages > 1  # it was paging when cut
        # the relationship's lock is free, and its history as it was
        vendor.endless = False
        async with asyncio.timeout(10):
            assert await agent.compare_history(thread, timeout_s=5) is None
    finally:
        await agent.close()


def test_without_a_timeout_given_the_wait_is_bounded() -> None:
    for call in (Agent.compare_history, Agent.reconcile):
        default = inspect.signature(call).parameters["timeout_s"].default
        assert default == HISTORY_TIMEOUT_S
    assert 0 < HISTORY_TIMEOUT_S < math.inf


def test_vrm_history_reconcile_gives_up_at_its_timeout(tmp_path: Path) -> None:
    """`vrm history NAME --reconcile --timeout S`: the person waits S, not the vendor's will."""
    host = VendorHost()
    v = EndlessVendor()
    try:
        url = host.call(v.start())
        home = connected(tmp_path, url)
        v.endless = True
        began = time.monotonic()
        fails(vrm("history", "Acme", "--reconcile", "--timeout", "0.5", home=home),
              EXIT_UNREACHABLE, "did not answer in time")  # fmt: skip
        assert time.monotonic() - began < 10
        assert v.pages > 1
    finally:
        host.call(v.stop())
        host.close()
