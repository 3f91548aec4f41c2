"""``vrm ui`` shows the characters that print as nothing in a vendor's words as their escapes.

Before: the page escaped bidirectional controls and control characters only (s15). A vendor
named ``"Avis Park City\\u200b"`` — a zero-width space at the end, or a word joiner, a soft
hyphen, a byte-order mark, a Hangul filler, Unicode tag characters — was shown exactly as
"Avis Park City": a name that is not the one the person knows (so §11.10-3's check of a known
name at another URL lets it through) reads as that name on every card, offer and row. ``vrm``
writes each of them as its escape in a terminal. Now the page does too; a zero-width joiner
stays, as it joins emoji and letters of many scripts (see ``tests/test_hunt_s15_ui_bidi.py``).
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests._world import post, serving, ui_page
from vrmproto.cli import LocalVendor
from vrmproto.ui._app import shown

INVISIBLE = ["\u200b", "\u2060", "\u00ad", "\ufeff", "\u3164", "\u2028", "\U000e0041"]


@pytest.fixture
async def vendor(tmp_path: Path) -> AsyncIterator[LocalVendor]:
    path = tmp_path / "invisible.toml"
    name = json.dumps("Avis Park City" + "".join(INVISIBLE), ensure_ascii=False)
    path.write_text(f'name = {name}\nseed = "{"ce" * 32}"\naccepts_terms = "all"\n')
    async with serving(path) as (v,):
        yield v


async def test_a_vendors_name_cannot_hide_characters_in_the_page(vendor: LocalVendor) -> None:
    async with ui_page() as (ui, client):
        thread = (await ui.node.agent.connect(vendor.url)).thread
        for path in ("", f"r/{thread.hex()}"):
            html = await (await client.get(ui.guard.prefix + path)).text()
            assert ("Avis Park City\\u200b\\u2060\\xad\\ufeff\\u3164\\u2028\\U000e0041"
                    in html), path  # fmt: skip
            for hidden in INVISIBLE:
                assert hidden not in html, (path, hidden)


@pytest.mark.parametrize("kept", ["\U0001F469\u200d\U0001F467", "a\tb\nc", "Café ≤ 5 §",
                                  "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"])  # fmt: skip
def test_what_prints_stays_as_it_is(kept: str) -> None:
    assert shown(kept) == kept


async def test_two_vendors_whose_names_look_alike_are_told_apart_by_their_address(
    tmp_path: Path,
) -> None:
    """Before: a card showed the vendor's name only — a claim the vendor makes of itself
    (§13.1-3, §11.10) — so "Avis Park City" and "\\u0410vis Park City" (a Cyrillic А, another
    name to §11.10-3's check) made two cards that read the same. Now each card also shows the
    address the person connected to, as the vendor's page does."""
    paths = []
    for n, name in enumerate(["Avis Park City", "\u0410vis Park City"]):
        path = tmp_path / f"v{n}.toml"
        path.write_text(f'name = "{name}"\nseed = "{f"{n + 1}d" * 32}"\naccepts_terms = "all"\n')
        paths.append(path)
    async with serving(*paths) as vendors, ui_page() as (ui, client):
        for v in vendors:
            await ui.agent.connect(v.url)
        index = await (await client.get(ui.guard.prefix)).text()
        for v in vendors:
            card = re.search(rf'<article [^>]*data-vendor="{v.name}">(.*?)</article>', index, re.S)
            assert card is not None, v.name
            assert v.url in card.group(1)


async def test_an_offer_shows_the_address_it_came_from() -> None:
    """Before: an offer named its vendor by the name the vendor gives itself only; "Take this
    offer" opens a relationship at the offer's address. Now the offer shows that address, in
    the live job and among the earlier intentcasts."""
    async with serving("avis") as (vendor,), ui_page() as (ui, client):
        await post(ui, client, "intent", {"what": "suv", "more": vendor.url, "wait": "5"})
        (job,) = ui.jobs.all()
        while job.running or not job.offers:
            await job.wait(job.version)
        live = await (await client.get(f"{ui.guard.prefix}jobs/{job.id}")).text()
        past = await (await client.get(f"{ui.guard.prefix}intent")).text()
        for page in (live, past):
            offer = re.search(r'<li class="offer"[^>]*>(.*?)</li>', page, re.S)
            assert offer is not None
            assert vendor.url in offer.group(1)
