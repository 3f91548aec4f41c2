"""``vrm ui``'s pages and actions over HTTP (aiohttp's test client), as a person meets them
day to day: another ``vrm`` working on the same data directory, forms filled in as people do."""

from __future__ import annotations

import html
import os
import re
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from tests._world import Client, post, serving, ui_page
from vrmproto.cli._parse import parse_date
from vrmproto.client import CustomerNode, RetryPolicy
from vrmproto.client._drafts import ShareDraft
from vrmproto.store import SQLiteStore, StoreError
from vrmproto.ui import Guard, Ui, _pages, make_app, new_token

ONCE = RetryPolicy(attempts=1)


def flash(page: str) -> str:
    found = re.search(r'<div class="flash[^"]*"[^>]*>\s*<p>(.*?)</p>', page, re.S)
    return html.unescape(found.group(1)) if found else ""


async def ended(ui: Ui) -> None:
    """Once every job the page started has ended."""
    for job in ui.jobs.all():
        while job.running:
            await job.wait(job.version)


async def test_a_change_made_by_another_vrm_shows_on_the_next_page(tmp_path: Path) -> None:
    """Before: the page read each relationship once and kept it; ended with ``vrm end`` in a
    terminal, the relationship still said "agreed" on every page, with its forms to share and
    rotate, while its history listed the end. Now every page shows what the store holds."""
    seed = os.urandom(32)
    async with AsyncExitStack() as stack:
        (vendor,) = await stack.enter_async_context(serving("avis"))
        nodes = []
        for _ in range(2):  # the page's process, and a `vrm` command on the same data directory
            store = await SQLiteStore.open(tmp_path / "agent.db", inline=True)
            stack.push_async_callback(store.close)
            nodes.append(await CustomerNode.open(store, seed, retry=ONCE))
            stack.push_async_callback(nodes[-1].close)
        ui = Ui(nodes[0], Guard(new_token()))
        client: Client = TestClient(TestServer(make_app(ui), host="127.0.0.1"))
        await client.start_server()
        stack.push_async_callback(client.close)
        ui.guard.port = client.port or 0
        thread = (await ui.agent.connect(vendor.url)).thread
        index = await (await client.get(ui.guard.prefix)).text()
        assert 'class="state-word">agreed<' in index

        await nodes[1].agent.end(thread, "moving away")

        index = await (await client.get(ui.guard.prefix)).text()
        assert 'class="state-word">ended<' in index, index
        page = await (await client.get(f"{ui.guard.prefix}r/{thread.hex()}")).text()
        assert 'class="state-word">ended<' in page
        assert "relationship.end" in page
        assert "Rotate my key" not in page


async def test_an_intentcast_until_a_day_includes_that_day() -> None:
    """Before: "Until 2027-03-25" was sent as the first millisecond of the 25th, so the 25th
    was not asked for (``vrm intentcast --to 2027-03-25`` sends its last millisecond)."""
    async with serving("avis") as (vendor,), ui_page() as (ui, client):
        await post(ui, client, "intent", {"what": "suv", "more": vendor.url, "wait": "5",
                                          "start": "2027-03-20", "end": "2027-03-25"})  # fmt: skip
        await ended(ui)
        (sent,) = await ui.agent.intents()
        assert sent.start_ms == parse_date("2027-03-20")
        assert sent.end_ms == parse_date("2027-03-25", end_of_day=True)


@pytest.mark.parametrize(("change", "said"), [
    ({"currency": "€"}, "'€' is not an ISO 4217 currency code"),
    ({"currency": "UDS"}, "did you mean USD"),
    ({"start": "2027-03-25", "end": "2027-03-20"}, "“until” is before “from”"),
    ({"wait": "ten"}, "wait for answers a whole number of seconds, from 1 to 300"),
    ({"more": "avis.example"}, "'avis.example' is not a vendor's address: http://… or https://…"),
    ({"more": "http://"}, "'http://' is not a vendor's address"),
    ({"start": "20/03/2027"}, "'20/03/2027' is not a date: write it as YYYY-MM-DD"),
])  # fmt: skip
async def test_an_intentcast_form_that_cannot_go_says_what_to_change(
    change: dict[str, str], said: str
) -> None:
    """Before: a currency that is no ISO 4217 code, or an "until" before the "from", opened a
    job page that said "Done: 0 offers. nothing was sent: … invalid_field: must match
    [A-Z]{3}" above each vendor "waiting"; an address that is not one, a row "failed:
    unexpected failure: ValueError: not an http(s) URL"; a wait that is not a number,
    "invalid literal for int() with base 10". Now the form says what to change, as
    ``vrm intentcast`` does, and nothing is sent."""
    async with serving("avis") as (vendor,), ui_page() as (ui, client):
        form = {"what": "suv", "more": vendor.url, "wait": "5", "max_price": "300",
                "currency": "usd"} | change  # fmt: skip
        page = await post(ui, client, "intent", form)
        assert said in flash(page), flash(page)
        assert ui.jobs.all() == []
        assert await ui.agent.intents() == []


def listed(page: str) -> list[int]:
    """The history indexes a relationship page lists (its ``<ol start>`` counts from 1)."""
    ol = re.search(r'<ol class="history" start="(\d+)">(.*?)</ol>', page, re.S)
    assert ol is not None, page
    first = int(ol.group(1)) - 1
    return list(range(first, first + ol.group(2).count('<li class="entry')))


async def test_a_long_history_is_shown_a_page_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: the page listed every entry of the history, however long (1289 entries: 560 KB
    rendered in 0.2-0.6 s, each entry read, verified and decoded on every view). Now it lists
    the latest :data:`HISTORY_PAGE`, with links to earlier and later ones."""
    monkeypatch.setattr(_pages, "HISTORY_PAGE", 4)
    async with serving("avis") as (vendor,), ui_page() as (ui, client):
        thread = (await ui.agent.connect(vendor.url)).thread
        for n in range(3):
            await ui.agent.share(thread, {"email": f"{n}@example.org"},
                                 purposes=["core-function"], categories=["contact"],
                                 expires_ms=ui.agent.clock() + 86_400_000)  # fmt: skip
        total = len(await ui.agent.history(thread))
        assert total == 10
        base = f"{ui.guard.prefix}r/{thread.hex()}"
        page = await (await client.get(base)).text()
        assert listed(page) == [6, 7, 8, 9]
        assert "Entries 7–10 of 10." in page
        assert f'href="{base}?from=2"' in page  # the four before
        assert "Later entries" not in page
        page = await (await client.get(base + "?from=2")).text()
        assert listed(page) == [2, 3, 4, 5]
        assert f'href="{base}?from=0"' in page
        assert f'href="{base}?from=6"' in page
        page = await (await client.get(base + "?from=0")).text()
        assert listed(page) == [0, 1, 2, 3]
        assert "Earlier entries" not in page
        for odd in ("99", "-1", "x", "9" * 5000):  # past the end, or no index: the latest
            page = await (await client.get(base + "?from=" + odd)).text()
            assert listed(page) == [6, 7, 8, 9], odd


async def test_a_change_of_address_with_nobody_to_send_it_to_says_so() -> None:
    """Before: with no agreement yet, "Send to every vendor" opened a job page that said
    "Done." over an empty table, as if the new address had gone out. Now the form says that
    nothing was sent, and why."""
    async with ui_page() as (ui, client):
        page = await post(ui, client, "address", {"fields": "street = 1 Main St"})
        assert flash(page) == ("You have no agreement with any vendor yet: nothing was sent. "
                               "Connect to a vendor first.")  # fmt: skip
        assert ui.jobs.all() == []


async def test_a_vendor_that_cannot_be_compared_says_why_in_words() -> None:
    """Before: "Compare every history" noted a vendor that was down on its card as "not
    compared: POST http://…/vrm/history: connection refused" (the exception's text); comparing
    the one relationship said it in ``vrm``'s words. Now the card says the same words."""
    async with serving("avis") as (vendor,), ui_page() as (ui, client):
        thread = (await ui.agent.connect(vendor.url)).thread
        await vendor.stop()
        one = flash(await post(ui, client, f"r/{thread.hex()}/compare", {}))
        assert "the connection was refused" in one
        page = html.unescape(await post(ui, client, "compare-all", {}))
        assert f"not compared: {one} <small>" in page, page


async def test_an_entry_that_does_not_decode_does_not_take_the_page_down() -> None:
    """Before: a share signed with no data category (as agents before session 21 signed one,
    §5.1-2 refuses it) that waited in the outbox — its vendor down — made the relationship's
    page answer 500 "Internal Server Error" on every view: decoding the entry raised. Now the
    entry is listed as one that does not decode, with why, and the rest of the page is there.
    (``Agent.share`` now refuses such a share before signing: the draft is sent as they did.)"""
    async with serving("avis") as (vendor,), ui_page() as (ui, client):
        thread = (await ui.agent.connect(vendor.url)).thread
        await vendor.stop()
        await ui.agent._send(thread, ShareDraft(  # as Agent.share made it before session 21
            msg_id=os.urandom(16), fields={"email": "me@example.org"}, purposes=(1,),
            categories=(), expires=ui.agent.clock() + 86_400_000))  # fmt: skip
        r = await client.get(f"{ui.guard.prefix}r/{thread.hex()}")
        assert r.status == 200
        page = html.unescape(await r.text())
        assert listed(page) == [0, 1, 2, 3, 4]
        assert "does not decode: invalid_field: must hold 1..16 items at $.body.categories" in page
        assert "Rotate my key" in page


async def test_a_share_with_no_category_says_what_to_change() -> None:
    """Before: a share whose "Categories" box was left empty was signed and sent; the vendor
    refused it as "the peer refused it (invalid_field): must hold 1..16 items", which names
    nothing on the page (and with the vendor down it waited in the outbox to be refused).
    Now the form says to give a category, and nothing is sent (as for purposes, s14)."""
    async with serving("avis") as (vendor,), ui_page() as (ui, client):
        thread = (await ui.agent.connect(vendor.url)).thread
        before = len(await ui.agent.history(thread))
        page = await post(ui, client, f"r/{thread.hex()}/share", {
            "fields": "email = me@example.org", "purposes": "core-function", "categories": " ",
            "days": "30"})  # fmt: skip
        assert flash(page) == "give at least one category of the data, e.g. contact"
        assert len(await ui.agent.history(thread)) == before
        assert await ui.agent.pending() == []


@pytest.mark.parametrize(("body", "kind"), [
    (b"\xff\xfe=\xff", "application/x-www-form-urlencoded"),
    (b"--x\r\nbroken", "multipart/form-data; boundary=x"),
])  # fmt: skip
async def test_a_form_that_cannot_be_read_is_a_bad_request(body: bytes, kind: str) -> None:
    """Before: every action answered 500 "Internal Server Error" to a form body that is not
    UTF-8 or a broken multipart body (the page's own origin: a script of the person's, a
    browser extension): reading the form raised. Now it is 400, headed like every answer."""
    async with serving("avis") as (vendor,), ui_page() as (ui, client):
        thread = (await ui.agent.connect(vendor.url)).thread.hex()
        for path in ("connect", "outbox/run", "address", "intent", "offers/take",
                     f"r/{thread}/share", f"r/{thread}/withdraw", f"r/{thread}/end"):  # fmt: skip
            r = await client.post(ui.guard.prefix + path, data=body, headers={
                "Origin": f"http://127.0.0.1:{ui.guard.port}", "Content-Type": kind})  # fmt: skip
            assert r.status == 400, (path, r.status)
            assert r.headers["Cache-Control"] == "no-store"
        assert [v.state for v in await ui.agent.relationships()] == ["agreed"]


async def test_the_outbox_counts_every_message_that_waits() -> None:
    """Before: with three shares waiting for a vendor that is down, the relationships page said
    "1 message waiting in the outbox" over a card saying "3 waiting", and "Deliver waiting now"
    said "0 delivered, 1 still waiting": messages queued behind the first (drafts, signed in
    their turn) were not counted. Now both count all three, as the card does."""
    async with serving("avis") as (vendor,), ui_page() as (ui, client):
        thread = (await ui.agent.connect(vendor.url)).thread
        await vendor.stop()
        for n in range(3):
            await post(ui, client, f"r/{thread.hex()}/share", {
                "fields": f"note = {n}", "purposes": "core-function", "categories": "contact"})
        page = await (await client.get(ui.guard.prefix)).text()
        assert "3 messages waiting in the outbox." in page
        assert 'class="outbox">3 waiting<' in page
        assert flash(await post(ui, client, "outbox/run", {})) == (
            "Outbox: 0 delivered, 3 still waiting.")
        await vendor.start()
        assert flash(await post(ui, client, "outbox/run", {})) == (
            "Outbox: 3 delivered, 0 still waiting.")


@pytest.mark.parametrize("failure", [StoreError("database or disk is full"),
                                     RuntimeError("something unforeseen")])  # fmt: skip
async def test_a_change_of_address_that_fails_says_it_stopped(
    monkeypatch: pytest.MonkeyPatch, failure: Exception
) -> None:
    """Before: when the change of address failed as a whole (the disk full as it was stored,
    say), its page said "Done. database or disk is full" above every vendor "waiting"; any
    other failure, "Done." and nothing else. Now it says it stopped, why, and that those
    vendors were sent nothing."""
    async with serving("avis") as (vendor,), ui_page() as (ui, client):
        await ui.agent.connect(vendor.url)

        async def fails(*args: object, **kwargs: object) -> None:
            raise failure

        monkeypatch.setattr(ui.agent, "update_address", fails)
        page = html.unescape(await post(ui, client, "address", {"fields": "city = Park City"}))
        await ended(ui)
        (job,) = ui.jobs.all()
        page = html.unescape(await (await client.get(f"{ui.guard.prefix}jobs/{job.id}")).text())
        state = re.search(r'<p class="job-state">(.*?)</p>', page, re.S)
        assert state is not None
        assert state.group(1).startswith("Stopped: "), state.group(1)
        assert str(failure) in state.group(1)
        assert '<tr data-vendor="Avis Park City" class="status-not-sent"><td>Avis Park City</td>' \
               '<td class="status">not sent</td>' in page
        assert "Done" not in page


async def test_declining_a_counter_offer_accepted_in_another_tab_ends_nothing() -> None:
    """Before: with the counter-offer open in two tabs, accepting it in one and then pressing
    "Decline it" in the other (still showing it) ended the relationship just agreed — "You
    declined the counter-offer: the relationship is ended." — as ``Agent.decline_counter``
    ends a relationship in any state. Now there is nothing to decline, and the page says so."""
    async with serving("budget") as (vendor,), ui_page() as (ui, client):
        first = await ui.agent.connect(vendor.url)
        assert first.status == "countered"
        said = flash(await post(ui, client, f"r/{first.thread.hex()}/decline-counter", {}))
        assert said == "You declined the counter-offer: the relationship is ended."
        connected = await ui.agent.connect(vendor.url)
        assert connected.status == "countered"
        path = f"r/{connected.thread.hex()}/"
        assert "agreed to your terms" in flash(await post(ui, client, path + "accept-counter", {}))
        said = flash(await post(ui, client, path + "decline-counter", {}))
        assert said == "There is no counter-offer to decline: the relationship is agreed."
        assert sorted(v.state for v in await ui.agent.relationships()) == ["agreed", "ended"]
        assert await ui.agent.pending() == []


async def test_a_share_not_delivered_yet_says_so_on_the_card() -> None:
    """Before: a share waiting in the outbox for a vendor that is down was listed on the card
    as "email until …", as if the vendor had it (``vrm relationships`` says "not delivered
    yet" since s19): the share is in our relationship once signed, in the vendor's once it
    confirms it. Now the card says so, until it is delivered."""
    async with serving("avis") as (vendor,), ui_page() as (ui, client):
        thread = (await ui.agent.connect(vendor.url)).thread
        await vendor.stop()
        page = html.unescape(await post(ui, client, f"r/{thread.hex()}/share", {
            "fields": "email = me@example.org", "purposes": "core-function",
            "categories": "contact"}))  # fmt: skip
        assert "It waits in the outbox" in flash(page)
        for path in (f"r/{thread.hex()}", ""):
            shared = re.search(r'<dd class="shared">(.*?)</dd>', html.unescape(
                await (await client.get(ui.guard.prefix + path)).text()), re.S)  # fmt: skip
            assert shared is not None
            assert "email until" in shared.group(1)
            assert "not delivered yet" in shared.group(1), path
        await vendor.start()
        await post(ui, client, "outbox/run", {})
        page = await (await client.get(ui.guard.prefix)).text()
        assert "email until" in page
        assert "not delivered yet" not in page


async def test_withdrawing_with_none_ticked_withdraws_what_the_page_showed() -> None:
    """Before: "Withdraw" with no share ticked withdrew every share of the relationship,
    those the page showed and any shared since in another tab (or by another ``vrm``): the
    person withdrew data they were never shown. Now it withdraws the shares the page listed."""
    async with serving("avis") as (vendor,), ui_page() as (ui, client):
        thread = (await ui.agent.connect(vendor.url)).thread
        form = {"purposes": "core-function", "categories": "contact"}
        await post(ui, client, f"r/{thread.hex()}/share", form | {"fields": "email = a@b.c"})
        page = await (await client.get(f"{ui.guard.prefix}r/{thread.hex()}")).text()
        shown = re.findall(r'name="shown" value="([0-9a-f]+)"', page)
        assert len(shown) == 1
        await post(ui, client, f"r/{thread.hex()}/share", form | {"fields": "phone = 555"})
        r = await client.post(f"{ui.guard.prefix}r/{thread.hex()}/withdraw",
                              data=[("shown", h) for h in shown],
                              headers={"Origin": f"http://127.0.0.1:{ui.guard.port}"})  # fmt: skip
        assert "Withdrawn" in flash(await r.text())
        (view,) = await ui.agent.relationships()
        [(left, _)] = view.shares
        assert left.hex() not in shown  # the phone, shared after the page was shown, stays


async def test_a_vendor_the_intentcast_did_not_ask_says_why() -> None:
    """Before: an intentcast that named a vendor the person had ended a relationship with
    (the agent does not ask it, §5.6.4) showed that vendor "waiting" under "Done: 1 offer."
    for as long as the page was open. Now its row says it was not asked, and why."""
    async with serving("avis", "hertz") as (avis, hertz), ui_page() as (ui, client):
        await ui.agent.end((await ui.agent.connect(avis.url)).thread)
        await post(ui, client, "intent", {"what": "suv", "more": f"{avis.url}\n{hertz.url}",
                                          "wait": "5"})  # fmt: skip
        await ended(ui)
        (job,) = ui.jobs.all()
        page = html.unescape(await (await client.get(f"{ui.guard.prefix}jobs/{job.id}")).text())
        rows = re.findall(r'<tr class="status-[^"]*"><td>(.*?)</td><td class="status">(.*?)</td>'
                          r'<td>(.*?)</td>', page)  # fmt: skip
        assert ("Hertz Wasatch", "confirmed", "") in rows
        ((vendor, status, why),) = [r for r in rows if r[0] != "Hertz Wasatch"]
        assert (vendor, status) == (avis.url, "not asked")
        assert "ended" in why


async def test_a_vendor_the_change_of_address_did_not_reach_is_not_left_waiting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Before: a relationship listed on the job's page that the change of address then did not
    send to (one a newer relationship with the same vendor supersedes: ``update_address``
    skips it, and no progress tells of it) stayed "waiting" under "Done." for as long as the
    page was open. Now, once the operation ended, a vendor it never reported on is "not
    sent"."""
    async with serving("avis") as (vendor,), ui_page() as (ui, client):
        await ui.agent.connect(vendor.url)

        async def skips_everyone(*args: object, **kwargs: object) -> None:
            return None

        monkeypatch.setattr(ui.agent, "update_address", skips_everyone)
        await post(ui, client, "address", {"fields": "city = Park City"})
        await ended(ui)
        (job,) = ui.jobs.all()
        page = html.unescape(await (await client.get(f"{ui.guard.prefix}jobs/{job.id}")).text())
        assert '<td class="status">not sent</td>' in page
        assert '<td class="status">waiting</td>' not in page
