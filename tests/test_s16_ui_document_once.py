"""The page's connect reads the vendor's discovery document once, as ``vrm connect`` does since
the library reports a document that breaks a rule as the vendor's (``PeerRuleError``); it read
it apart first, then ``agent.connect`` read it again."""

from __future__ import annotations

import html

from test_s16_agent_vendor_bytes import Counted

from tests._world import post, ui_page
from vrmproto.client import DEFAULT_TERMS


async def test_the_page_reads_the_document_once_and_a_bad_one_is_the_vendors() -> None:
    vendor = Counted("Acme", accepts=[t.id for t in DEFAULT_TERMS])
    await vendor.start()
    try:
        async with ui_page() as (ui, client):
            page = html.unescape(await post(ui, client, "connect", {"url": vendor.url}))
            assert "Acme" in page
            assert vendor.documents == 1  # two before
            vendor.tamper_discovery = True
            page = html.unescape(await post(ui, client, "connect", {"url": vendor.url}))
            assert "the vendor's answer could not be used" in page
            assert "bad_signature" in page
    finally:
        await vendor.stop()
