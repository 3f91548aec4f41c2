"""``vrm ui``'s forms given what a person may type (or clear) in them.

Before: a share whose "Purposes" box was left empty was signed and sent, and came back as
"peer refused: invalid_field: must hold 1..16 items", which names nothing on the page; a value
over 4096 characters, or an intentcast whose "what" is over 500 characters, went out the same
way (the intentcast to every vendor chosen, each refusing it, and kept in the list); "days" that
is not a number said "invalid literal for int() with base 10". Now each is a message that says
what to change, and nothing is sent.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from tests._world import post, serving, ui_page
from vrmproto.cli import LocalVendor
from vrmproto.ui import Ui

Client = TestClient[web.Request, web.Application]


@pytest.fixture
async def page() -> AsyncIterator[tuple[Ui, Client, LocalVendor]]:
    async with serving("outfitters") as (vendor,), ui_page() as (ui, client):
        yield ui, client, vendor


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
