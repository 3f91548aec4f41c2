"""``vrm ui``'s forms given what a person may type (or clear) in them.

Before: a share whose "Purposes" box was left empty was signed and sent, and came back as
"peer refused: invalid_field: must hold 1..16 items", which names nothing on the page; a value
over 4096 characters, or an intentcast whose "what" is over 500 characters, went out the same
way (the intentcast to every vendor chosen, each refusing it, and kept in the list); "days" that
is not a number said "invalid literal for int() with base 10". Now each is a message that says
what to change, and nothing is sent.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from vrmproto.cli import LocalVendor, load_vendor_config
from vrmproto.client import CustomerNode, RetryPolicy
from vrmproto.store import MemoryStore
from vrmproto.ui import Guard, Ui, make_app, new_token

VENDORS = Path(__file__).resolve().parent.parent / "examples" / "vendors"
Client = TestClient[web.Request, web.Application]


@pytest.fixture
async def page() -> AsyncIterator[tuple[Ui, Client, LocalVendor]]:
    vendor = LocalVendor.of(load_vendor_config(VENDORS / "outfitters.toml"))
    await vendor.start()
    store = MemoryStore()
    try:
        async with await CustomerNode.open(store, os.urandom(32),
                                           retry=RetryPolicy(attempts=1)) as node:  # fmt: skip
            ui = Ui(node, Guard(new_token()))
            server = TestServer(make_app(ui), host="127.0.0.1")
            client: Client = TestClient(server)
            await client.start_server()
            ui.guard.port = server.port or 0
            try:
                yield ui, client, vendor
            finally:
                await client.close()
                await ui.jobs.close()
    finally:
        await vendor.stop()


async def post(ui: Ui, client: Client, path: str, data: dict[str, str]) -> str:
    r = await client.post(ui.guard.prefix + path, data=data,
                          headers={"Origin": f"http://127.0.0.1:{ui.guard.port}"})  # fmt: skip
    assert r.status == 200, await r.text()
    return await r.text()


async def test_a_share_the_vendor_would_refuse_says_what_to_change(
    page: tuple[Ui, Client, LocalVendor],
) -> None:
    ui, client, vendor = page
    connected = await ui.agent.connect(vendor.url)
    assert connected.status == "accepted"
    path = f"r/{connected.thread.hex()}/share"
    form = {"fields": "email = doc@example.org", "purposes": "", "categories": "contact",
            "days": "30"}  # fmt: skip
    html = await post(ui, client, path, form)
    assert "give at least one purpose" in html, html
    html = await post(ui, client, path, form | {"purposes": "core-function",
                                                "fields": "note = " + "n" * 4097})  # fmt: skip
    assert "note: values are text of at most 4096 characters" in html, html
    html = await post(ui, client, path, form | {"purposes": "core-function", "days": "ten"})
    assert "whole number of days" in html, html
    [view] = await ui.agent.relationships()
    assert view.shares == ()
    html = await post(ui, client, path, form | {"purposes": "core-function"})
    assert "Shared email for 30 days." in html, html


async def test_an_intentcast_too_long_to_send_says_so_and_sends_nothing(
    page: tuple[Ui, Client, LocalVendor],
) -> None:
    ui, client, vendor = page
    html = await post(ui, client, "intent", {"what": "k" * 501, "more": vendor.url,
                                             "wait": "5"})  # fmt: skip
    assert "what you want: at most 500 characters" in html, html
    html = await post(ui, client, "intent", {"what": "kayak", "constraints": "c" * 201,
                                             "more": vendor.url, "wait": "5"})  # fmt: skip
    assert "a constraint: at most 200 characters" in html, html
    assert await ui.agent.intents() == []
