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

from tests import _world
from tests._world import Client, serving
from tests._world import post as post_form
from vrmproto import PeerProblemError
from vrmproto.cli import LocalVendor
from vrmproto.client import Delivery
from vrmproto.ui import Ui
from vrmproto.ui._actions import _queued

budget = _world.served("budget")
page = _world.page


async def post(ui: Ui, client: Client, path: str, data: dict[str, str]) -> str:
    return htmllib.unescape(await post_form(ui, client, path, data))


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
    async with serving("avis") as (avis,):
        cast = await ui.agent.intentcast("4-wheel-drive SUV rental", vendors=[avis.url],
                                         deadline_ms=10_000)  # fmt: skip
        (offer,) = cast.offers
        form = {"intent": cast.intent_id.hex(), "offer": offer.hash.hex()}
        assert "Avis Park City agreed to your terms." in await post(ui, client, "offers/take",
                                                                    form)  # fmt: skip
        again = await post(ui, client, "offers/take", form)
        assert "You took up this offer earlier, in this relationship (accepted)." in again
        assert "not taken up" not in again
