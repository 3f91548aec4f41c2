"""``vrm ui`` says what happened as ``vrm`` does (found by s15-huntcli).

Before, the page showed each failure's raw text: "GET http://…/.well-known/vrm: connection
refused", "peer refused: …"; a queued message "waits in the outbox: the vendor could not be
reached" even when the vendor had answered "not now"; connecting to a vendor you already had a
relationship with read "Budget Salt Lake agreed to your terms." (nothing was sent, and the
agreement was on Budget's counter-terms); taking up an intentcast offer from such a vendor did
the same, though the vendor was never told. Now the page uses the command line's sentences
(:func:`vrmproto.cli._errors.explain`), which say whose side broke a rule.
"""

from __future__ import annotations

import html as htmllib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from vrmproto import PeerProblemError
from vrmproto.cli import LocalVendor, load_vendor_config
from vrmproto.client import CustomerNode, Delivery, RetryPolicy
from vrmproto.store import MemoryStore
from vrmproto.ui import Guard, Ui, make_app, new_token
from vrmproto.ui._actions import _queued

VENDORS = Path(__file__).resolve().parent.parent / "examples" / "vendors"

Client = TestClient[object, object]


@pytest.fixture
async def budget() -> AsyncIterator[LocalVendor]:
    vendor = LocalVendor.of(load_vendor_config(VENDORS / "budget.toml"))
    await vendor.start()
    try:
        yield vendor
    finally:
        await vendor.stop()


@pytest.fixture
async def page() -> AsyncIterator[tuple[Ui, Client]]:
    async with await CustomerNode.open(MemoryStore(), os.urandom(32),
                                       retry=RetryPolicy(attempts=1)) as node:  # fmt: skip
        ui = Ui(node, Guard(new_token()))
        server = TestServer(make_app(ui), host="127.0.0.1")
        client: Client = TestClient(server)
        await client.start_server()
        ui.guard.port = server.port or 0
        try:
            yield ui, client
        finally:
            await client.close()
            await ui.jobs.close()


async def post(ui: Ui, client: Client, path: str, data: dict[str, str]) -> str:
    r = await client.post(ui.guard.prefix + path, data=data,
                          headers={"Origin": f"http://127.0.0.1:{ui.guard.port}"})  # fmt: skip
    assert r.status == 200, await r.text()
    return htmllib.unescape(await r.text())


async def test_a_vendor_that_is_down_reads_as_in_the_terminal(page: tuple[Ui, Client]) -> None:
    ui, client = page
    html = await post(ui, client, "connect", {"url": "http://127.0.0.1:9"})
    assert "could not reach http://127.0.0.1:9/.well-known/vrm: the connection was refused" in html


async def test_connecting_again_is_not_said_agreed_to_your_terms(
    page: tuple[Ui, Client], budget: LocalVendor
) -> None:
    ui, client = page
    first = await ui.agent.connect(budget.url)
    assert first.status == "countered"
    await ui.agent.accept_counter(first.thread)  # agreed on Budget's terms
    html = await post(ui, client, "connect", {"url": budget.url})
    assert "agreed to your terms" not in html
    assert "You already have a relationship with Budget Salt Lake (accepted): nothing was sent" \
        in html  # fmt: skip


async def test_taking_up_an_offer_from_a_vendor_already_related_says_it_was_not(
    page: tuple[Ui, Client], budget: LocalVendor
) -> None:
    ui, client = page
    first = await ui.agent.connect(budget.url)
    await ui.agent.accept_counter(first.thread)
    cast = await ui.agent.intentcast("4-wheel-drive SUV rental", where="Park City, UT",
                                     vendors=[budget.url], deadline_ms=10_000)  # fmt: skip
    (offer,) = cast.offers
    html = await post(ui, client, "offers/take", {"intent": cast.intent_id.hex(),
                                                  "offer": offer.hash.hex()})  # fmt: skip
    assert "agreed to your terms" not in html
    assert "The offer was not taken up: you already have a relationship with Budget Salt " \
        "Lake, and Budget Salt Lake was not told" in html  # fmt: skip


def test_a_queued_message_says_what_it_waits_for() -> None:
    busy = Delivery(bytes(16), bytes(16), bytes(32), "queued",
                    error=PeerProblemError("rate_limited", "slow down", status=429))
    said = _queued(busy)
    assert "could not be reached" not in said
    assert "rate_limited" in said
    assert _queued(Delivery(bytes(16), bytes(16), bytes(32), "confirmed")) == ""


async def test_taking_up_the_same_offer_twice_says_it_was_taken_up_earlier(
    page: tuple[Ui, Client]
) -> None:
    ui, client = page
    avis = LocalVendor.of(load_vendor_config(VENDORS / "avis.toml"))
    await avis.start()
    try:
        cast = await ui.agent.intentcast("4-wheel-drive SUV rental", vendors=[avis.url],
                                         deadline_ms=10_000)  # fmt: skip
        (offer,) = cast.offers
        form = {"intent": cast.intent_id.hex(), "offer": offer.hash.hex()}
        assert "Avis Park City agreed to your terms." in await post(ui, client, "offers/take",
                                                                    form)  # fmt: skip
        again = await post(ui, client, "offers/take", form)
        assert "You took up this offer earlier, in this relationship (accepted)." in again
        assert "not taken up" not in again
    finally:
        await avis.stop()
