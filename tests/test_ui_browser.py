"""``vrm ui`` in a real browser: Playwright driving the system Chromium (never a downloaded one).

Every step is clicking and typing in the page, against reference vendors served on 127.0.0.1 by
this test: connecting (one vendor counters; the counter is accepted in the page), sharing and
withdrawing, requesting the data a vendor holds, the change of address with one vendor down and
then back, an intentcast to three vendors and taking the best offer — each ending with the page
comparing our history with the vendor's: identical. Waits are Playwright's: it waits for what the
page shows, never for a time.

Screenshots of each page are saved under ``build/ui-screenshots/`` (the test's artifacts; the
README's picture of the relationships page is ``relationships.png`` from there).
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from aiohttp import web

from vrmproto.cli import LocalVendor, load_vendor_config
from vrmproto.client import CustomerNode, RetryPolicy
from vrmproto.store import MemoryStore
from vrmproto.ui import UiServer

playwright_api = pytest.importorskip("playwright.async_api", reason="playwright not installed")
async_playwright = playwright_api.async_playwright
expect = playwright_api.expect
Page = playwright_api.Page
Browser = playwright_api.Browser

ROOT = Path(__file__).resolve().parent.parent
VENDOR_FILES = ROOT / "examples" / "vendors"
SHOTS = ROOT / "build" / "ui-screenshots"
CHROMIUM = shutil.which("chromium")
#: Flags for a browser that fetches nothing of its own: no updates, sync or background traffic.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-dev-shm-usage"]  # fmt: skip
#: How long Playwright waits for what the page should show (a busy 2-core machine).
PATIENCE_MS = 20_000

pytestmark = [
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="chromium not installed (apt-get install chromium; .ci/run installs it)",
    ),
    # One browser for the module (starting Playwright's driver and Chromium takes a second or
    # two); each test has a browser context of its own, so no cookie or storage is shared.
    pytest.mark.asyncio(loop_scope="module"),
]


@dataclass
class World:
    """The page, the node behind it, and the vendors."""

    page: Page
    url: str
    node: CustomerNode
    vendors: dict[str, LocalVendor]

    async def shot(self, name: str) -> None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        await self.page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest_asyncio.fixture(loop_scope="module")
async def world(request: pytest.FixtureRequest, browser: Browser) -> AsyncIterator[World]:
    keys: tuple[str, ...] = request.param
    vendors = {k: LocalVendor.of(load_vendor_config(VENDOR_FILES / f"{k}.toml")) for k in keys}
    for v in vendors.values():
        await v.start()
    store = MemoryStore()
    once = RetryPolicy(attempts=1)
    node = await CustomerNode.open(store, os.urandom(32), retry=once, fanout_retry=once)
    server = UiServer(node)
    url = await server.start()
    expect.set_options(timeout=PATIENCE_MS)
    try:
        context = await browser.new_context(viewport={"width": 1100, "height": 900},
                                            accept_downloads=True)  # fmt: skip
        try:
            page = await context.new_page()
            page.set_default_timeout(PATIENCE_MS)
            await page.goto(url)
            yield World(page, url, node, vendors)
        finally:
            await context.close()
    finally:
        await server.close()
        await node.close()
        for v in vendors.values():
            await v.stop()


# -- steps, as a person takes them ---------------------------------------------------------------


async def connect(w: World, key: str) -> None:
    page = w.page
    await page.get_by_role("navigation").get_by_role("link", name="Connect").click()
    await page.get_by_label("The vendor's address").fill(w.vendors[key].url)
    await page.get_by_role("button", name="Proffer my terms").click()
    await expect(page.get_by_role("heading", level=1)).to_contain_text(w.vendors[key].name)


async def open_relationship(w: World, key: str) -> None:
    await w.page.get_by_role("navigation").get_by_role("link", name="Relationships").click()
    await w.page.get_by_role("link", name=w.vendors[key].name).click()
    await expect(w.page.get_by_role("heading", level=1)).to_contain_text(w.vendors[key].name)


async def histories_agree(w: World, key: str) -> None:
    """Compare in the page: the vendor's copy is identical to ours."""
    await open_relationship(w, key)
    await w.page.get_by_role("button", name="Compare with the vendor's copy").click()
    await expect(w.page.locator("#flash")).to_contain_text("Identical")
    await expect(w.page.locator(".card .agreement")).to_contain_text("identical")


def card(w: World, key: str) -> object:
    return w.page.locator(f'.card[data-vendor="{w.vendors[key].name}"]')


# -- the flows -------------------------------------------------------------------------------------


@pytest.mark.parametrize("world", [("avis", "budget")], indirect=True)
async def test_connect_accept_a_counter_share_withdraw_and_request_data(world: World) -> None:
    w, page = world, world.page
    await expect(page.get_by_text("No relationships yet")).to_be_visible()
    await connect(w, "avis")
    await expect(page.locator("#flash")).to_contain_text("agreed to your terms")
    await connect(w, "budget")
    await expect(page.locator("#flash")).to_contain_text("countered")
    await expect(page.locator(".card .state-word")).to_have_text(
        "countered — your answer is awaited")
    await expect(page.get_by_role("heading", name="The vendor's counter-offer")).to_be_visible()
    await w.shot("relationship-countered")
    await page.get_by_role("button", name="Accept the counter-offer").click()
    await expect(page.locator("#flash")).to_contain_text("agreed to your terms")
    await expect(page.locator(".card .terms")).to_contain_text("vrm.purpose-only")

    await page.get_by_role("navigation").get_by_role("link", name="Relationships").click()
    for key in ("avis", "budget"):
        await expect(card(w, key).locator(".state-word")).to_have_text("agreed")  # type: ignore[attr-defined]
    await expect(card(w, "budget").locator(".terms")).to_contain_text("vrm.purpose-only")  # type: ignore[attr-defined]
    await w.shot("relationships")

    await open_relationship(w, "avis")
    await page.get_by_label("Fields, one per line, as name = value").fill("email = me@example.org")
    await page.get_by_label("Keep it for (days)").fill("7")
    await page.get_by_role("button", name="Share", exact=True).click()
    await expect(page.locator("#flash")).to_contain_text("Shared email for 7 days")
    await expect(page.locator(".card .shared")).to_contain_text("email until")
    await expect(page.locator(".history")).to_contain_text("email = me@example.org")
    await w.shot("relationship")

    await page.get_by_role("button", name="Withdraw", exact=True).click()
    await expect(page.locator("#flash")).to_contain_text("the vendor confirmed it erased the data")
    await expect(page.locator(".card .shared")).to_have_text("nothing")

    await page.get_by_role("button", name="Request my data").click()
    table = page.get_by_role("table", name="What the vendor holds about you")
    await expect(table).to_contain_text("rental_history")
    await expect(table).to_contain_text("2 rentals, Salt Lake City airport")
    # the data.return in the history, its sealed content opened with our key (§5.5)
    await expect(page.locator(".history")).to_contain_text(
        "rental_history = 2 rentals, Salt Lake City airport")
    await w.shot("my-data")

    async with page.expect_download() as info:
        await page.get_by_role("link", name="Download the signed evidence").click()
    download = await info.value
    assert download.suggested_filename.startswith("vrm-evidence-")
    saved = await download.path()
    assert '"vrm-evidence/1"' in await asyncio.to_thread(Path(saved).read_text)

    await histories_agree(w, "avis")
    await histories_agree(w, "budget")


@pytest.mark.parametrize("world", [("avis", "hertz")], indirect=True)
async def test_change_of_address_with_a_vendor_down_then_back(world: World) -> None:
    w, page = world, world.page
    await connect(w, "avis")
    await connect(w, "hertz")
    await w.vendors["hertz"].stop()

    await page.get_by_role("navigation").get_by_role("link", name="Change of address").click()
    await page.get_by_label("New details, one per line, as name = value").fill(
        "street = 1 Main St\ncity = Park City")
    await page.get_by_role("button", name="Send to every vendor").click()
    avis = page.locator('#progress tr[data-vendor="Avis Park City"] .status')
    hertz = page.locator('#progress tr[data-vendor="Hertz Wasatch"] .status')
    await expect(avis).to_have_text("confirmed")
    await expect(hertz).to_have_text("queued")
    await expect(page.locator('#progress tr[data-vendor="Hertz Wasatch"]')).to_contain_text(
        "unreachable: connection refused")
    await w.shot("address-queued")

    await w.vendors["hertz"].start()
    await page.get_by_role("button", name="Deliver waiting now").click()
    await expect(hertz).to_have_text("delivered")
    await expect(page.locator(".job-state")).to_have_text("Done.")
    await w.shot("address-delivered")

    await page.get_by_role("navigation").get_by_role("link", name="Relationships").click()
    await expect(card(w, "hertz").locator(".outbox")).to_have_text("nothing waiting")  # type: ignore[attr-defined]
    await page.get_by_role("button", name="Compare every history with the vendor's copy").click()
    await expect(page.locator("#flash")).to_have_text("Compared 2: 2 identical, 0 differ, "
                                                      "0 could not be compared.")
    for key in ("avis", "hertz"):
        await expect(card(w, key).locator(".agreement")).to_contain_text("identical")  # type: ignore[attr-defined]
    await w.shot("relationships-compared")
    await histories_agree(w, "avis")
    await histories_agree(w, "hertz")
    await expect(page.locator(".history")).to_contain_text("address.update")


@pytest.mark.parametrize("world", [("avis", "budget", "hertz")], indirect=True)
async def test_intentcast_to_three_vendors_and_take_the_best_offer(world: World) -> None:
    w, page = world, world.page
    await page.get_by_role("navigation").get_by_role("link", name="Intentcast").click()
    await page.get_by_label("What").fill("a 4-wheel-drive SUV")
    await page.get_by_label("Where").fill("Park City")
    await page.get_by_label("From").fill("2027-03-20")
    await page.get_by_label("Until").fill("2027-03-25")
    await page.get_by_label("Price ceiling").fill("300")
    await page.get_by_label("Memberships, one per line").fill("Avis Wizard\nBudget FastBreak")
    await page.get_by_label("Constraints, one per line").fill("no prepaid gas\nno insurance")
    urls = "\n".join(w.vendors[k].url for k in ("avis", "budget", "hertz"))
    await page.get_by_label("Other vendors' addresses, one per line").fill(urls)
    await w.shot("intentcast-form")
    await page.get_by_role("button", name="Send the intentcast").click()

    offers = page.locator("#offers > li")
    await expect(offers).to_have_count(3)
    await expect(offers.nth(0)).to_contain_text("245.00 USD")
    await expect(offers.nth(0)).to_contain_text("Budget Salt Lake")
    await expect(offers.nth(1)).to_contain_text("265.00 USD")
    await expect(offers.nth(2)).to_contain_text("289.00 USD")
    await expect(page.locator(".job-state")).to_contain_text("Done: 3 offers")
    await expect(page.locator("#progress")).to_contain_text("Hertz Wasatch")
    await w.shot("intentcast-offers")

    await page.get_by_role("navigation").get_by_role("link", name="Intentcast").click()
    earlier = page.locator(".past-offers > li")  # kept in the store: still there on a new page
    await expect(earlier).to_have_count(3)
    await expect(earlier.nth(0)).to_contain_text("245.00 USD — Budget Salt Lake")
    await page.go_back()
    await offers.nth(0).get_by_role("button", name="Take this offer").click()
    await expect(page.get_by_role("heading", level=1)).to_contain_text("Budget Salt Lake")
    await expect(page.locator(".history")).to_contain_text("in reply to")
    await page.get_by_role("button", name="Accept the counter-offer").click()
    await expect(page.locator("#flash")).to_contain_text("agreed to your terms")
    await histories_agree(w, "budget")


@pytest.mark.parametrize("world", [("avis",)], indirect=True)
async def test_the_page_fits_a_narrow_window_and_works_by_keyboard(world: World) -> None:
    w, page = world, world.page
    await page.get_by_role("navigation").get_by_role("link", name="Connect").click()
    await w.shot("connect")
    await connect(w, "avis")
    async with page.expect_navigation():  # not evaluated while the old page unloads
        await page.get_by_role("navigation").get_by_role("link", name="Relationships").click()
    await page.set_viewport_size({"width": 360, "height": 740})
    assert await page.evaluate(
        "document.documentElement.scrollWidth <= document.documentElement.clientWidth")
    await w.shot("relationships-narrow")
    await page.keyboard.press("Tab")  # the skip link comes first
    await expect(page.get_by_role("link", name="Skip to the content")).to_be_focused()
    await page.get_by_role("link", name="Avis Park City").focus()
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", level=1)).to_contain_text("Avis Park City")
    for control in await page.locator("input:not([type=hidden]), textarea").all():
        control_id = await control.get_attribute("id")
        labelled = control_id and await page.locator(f'label[for="{control_id}"]').count()
        wrapped = await control.evaluate("e => e.closest('label') !== null")
        assert labelled or wrapped, await control.evaluate("e => e.outerHTML")


@pytest.mark.parametrize("world", [("avis",)], indirect=True)
async def test_rotate_the_key_then_end_the_relationship(world: World) -> None:
    w, page = world, world.page
    await connect(w, "avis")
    before = await page.locator(".url code").nth(1).text_content()
    await page.get_by_role("button", name="Rotate my key").click()
    await expect(page.locator("#flash")).to_contain_text(
        "Your key in this relationship was rotated.")
    await expect(page.locator(".url code").nth(1)).not_to_have_text(before or "")
    await expect(page.locator(".history")).to_contain_text("key.rotate")
    await histories_agree(w, "avis")

    await page.get_by_role("button", name="End the relationship").click()  # not ticked: refused
    await expect(page.locator(".card .state-word")).to_have_text("agreed")
    await page.get_by_label("Why (optional, the vendor sees it)").fill("moving away")
    await page.get_by_label("Yes, end this relationship").check()
    await page.get_by_role("button", name="End the relationship").click()
    await expect(page.locator("#flash")).to_contain_text("The relationship is ended.")
    await expect(page.locator(".card .state-word")).to_have_text("ended")
    await expect(page.locator(".history")).to_contain_text("moving away")
    await expect(page.get_by_role("button", name="Rotate my key")).to_have_count(0)
    await w.shot("relationship-ended")
    await histories_agree(w, "avis")


@pytest.mark.parametrize("world", [("avis",)], indirect=True)
async def test_a_form_on_another_site_changes_nothing(world: World) -> None:
    """CSRF in a real browser: another origin's page that even knows the token (it cannot) posts
    a change of address to the page; the browser says where the form came from, and it is
    refused."""
    w, page = world, world.page
    await connect(w, "avis")
    logged = len(await w.node.agent.history("Avis Park City"))
    evil = web.Application()
    form = (f'<form method="post" action="{w.url}address"><input type="hidden" name="fields" '
            'value="street = 13 Elm St"><button type="submit">Win a prize</button></form>')

    async def lure(request: web.Request) -> web.Response:
        return web.Response(text=form, content_type="text/html")

    evil.router.add_get("/", lure)
    runner = web.AppRunner(evil)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        await page.goto(f"http://localhost:{port}/")
        await page.get_by_role("button", name="Win a prize").click()
        await expect(page.locator("body")).to_contain_text(
            "a change must come from this page itself")
    finally:
        await runner.cleanup()
    assert await w.node.agent.pending() == []
    assert len(await w.node.agent.history("Avis Park City")) == logged
