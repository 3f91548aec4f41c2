"""A vendor's history export is bounded as a whole, not page by page (§12.5-5).

Before: ``EndpointClient.fetch_history`` capped each page at ``max_history_bytes`` but asked
for page after page (§12.5-5: until one is empty) and kept every entry, so a hostile vendor that
answers each page with one large entry made the agent hold up to ``MAX_HISTORY_ENTRIES`` of them
— a million envelopes — in memory. The outbox reads a vendor's history on its own (an item that
went out without an answer, §8.1-8), so ``run_outbox`` was exposed too. Now the pages of one
export share one budget of ``max_history_bytes``; a vendor that goes past it is an
:class:`InvalidResponse`.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from vrmproto import Identity
from vrmproto._history import Entry
from vrmproto.binding import CONTENT_TYPE, encode_history
from vrmproto.client import InvalidResponse, RetryPolicy
from vrmproto.client._http import EndpointClient

ENVELOPE = 100 * 1024  # one entry's bytes: any envelope, the client does not verify them here
PAGES = 30  # the vendor's export ends after these (3 MB in all)


class EndlessExport:
    """A vendor whose every history page holds one large entry, until ``PAGES`` pages."""

    def __init__(self) -> None:
        self.pages = 0

    async def history(self, request: web.Request) -> web.Response:
        await request.read()
        self.pages += 1
        entries = [] if self.pages > PAGES else [
            Entry(self.pages - 1, os.urandom(32), os.urandom(32), os.urandom(ENVELOPE), False)]
        return web.Response(body=encode_history(entries), content_type=CONTENT_TYPE)


@pytest.fixture
async def vendor() -> AsyncIterator[tuple[EndlessExport, str]]:
    v = EndlessExport()
    app = web.Application()
    app.router.add_post("/vrm/history", v.history)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield v, f"http://127.0.0.1:{runner.addresses[0][1]}/vrm/history"
    finally:
        await runner.cleanup()


async def test_an_export_larger_than_the_limit_over_many_pages_is_refused(
    vendor: tuple[EndlessExport, str],
) -> None:
    v, url = vendor
    client = EndpointClient(retry=RetryPolicy(attempts=1), max_history_bytes=1024 * 1024)
    me, peer = Identity(os.urandom(32)), Identity(os.urandom(32))
    try:
        with pytest.raises(InvalidResponse) as info:
            await client.fetch_history(url, me, os.urandom(16), peer.public_key)
        assert "1048576" in str(info.value)
        # it stopped at the limit: no page was asked for once the budget was spent
        assert v.pages <= 1024 * 1024 // ENVELOPE + 1
    finally:
        await client.close()


async def test_an_export_within_the_limit_is_read_whole(
    vendor: tuple[EndlessExport, str],
) -> None:
    v, url = vendor
    client = EndpointClient(retry=RetryPolicy(attempts=1), max_history_bytes=4 * 1024 * 1024)
    me, peer = Identity(os.urandom(32)), Identity(os.urandom(32))
    try:
        entries = await client.fetch_history(url, me, os.urandom(16), peer.public_key)
        assert [e.index for e in entries] == list(range(PAGES))
        assert v.pages == PAGES + 1
    finally:
        await client.close()
