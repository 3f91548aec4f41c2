"""``vrm ui`` in a real browser (Playwright, the system Chromium), as a person clicks it — and as
a hostile vendor would have it shown. See ``tests/test_ui_browser.py`` for the flows."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from tests._world import serving
from tests.test_ui_browser import CHROMIUM, CHROMIUM_ARGS, PATIENCE_MS
from vrmproto.cli import LocalVendor
from vrmproto.cli._cmd_ui import _redirect
from vrmproto.client import CustomerNode, RetryPolicy
from vrmproto.store import MemoryStore
from vrmproto.ui import UiServer

playwright_api = pytest.importorskip("playwright.async_api", reason="playwright not installed")
expect = playwright_api.expect
Page = playwright_api.Page
Browser = playwright_api.Browser


pytestmark = [
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="chromium not installed (apt-get install chromium; .ci/run installs it)",
    ),
    pytest.mark.asyncio(loop_scope="module"),
]


#: A vendor that says everything at the wire's length, in words no line can break.
HOSTILE = f"""name = "{"W" * 400}"
seed = "{"11" * 32}"
accepts_terms = "all"
[[catalogue]]
description = "{"D" * 1000}"
keywords = ["suv"]
price = "289 USD"
conditions = ["{"C" * 200}"]
[[observed]]
field = "{"f" * 60}"
value = "{"V" * 1000}"
category = "behavioral"
source = "observed"
collected = 1767225600000
purposes = ["core-function"]
"""


@dataclass
class World:
    page: Page
    url: str
    node: CustomerNode
    vendor: LocalVendor


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with playwright_api.async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest_asyncio.fixture(loop_scope="module")
async def hostile(browser: Browser, tmp_path: Path) -> AsyncIterator[World]:
    """The page, on a node that knows nobody yet, and the vendor of :data:`HOSTILE`."""
    config = tmp_path / "hostile.toml"
    config.write_text(HOSTILE)
    once = RetryPolicy(attempts=1)
    async with serving(config) as (vendor,):
        node = await CustomerNode.open(MemoryStore(), os.urandom(32), retry=once,
                                       fanout_retry=once)  # fmt: skip
        server = UiServer(node)
        url = await server.start()
        expect.set_options(timeout=PATIENCE_MS)
        try:
            context = await browser.new_context(viewport={"width": 800, "height": 700})
            try:
                page = await context.new_page()
                page.set_default_timeout(PATIENCE_MS)
                yield World(page, url, node, vendor)
            finally:
                await context.close()
        finally:
            await server.close()
            await node.close()


async def overflow(page: Page) -> int:
    """How far the page is wider than the window, in CSS pixels (0: nothing is cut off)."""
    wider: int = await page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth")
    return wider


async def test_a_vendors_unbreakable_words_do_not_push_the_page_off_screen(hostile: World
                                                                           ) -> None:  # fmt: skip
    """Before: a vendor named with 400 letters and no space made every page it is on 8000 to
    12000 pixels wide; in a job's table the status column of every vendor went off screen."""
    w, page = hostile, hostile.page
    connected = await w.node.agent.connect(w.vendor.url)
    await page.goto(w.url)
    assert await overflow(page) == 0
    await page.goto(f"{w.url}r/{connected.thread.hex()}")
    await page.get_by_role("button", name="Request my data").click()
    await expect(page.locator("#my-data")).to_contain_text("VVVV")
    assert await overflow(page) == 0
    for form in ("intent", "address"):
        await page.goto(w.url + form)
        assert await overflow(page) == 0, form
    await page.goto(w.url + "intent")
    await page.get_by_label("What", exact=True).fill("suv")
    await page.get_by_label("Wait for answers (seconds)").fill("3")
    await page.get_by_role("checkbox").check()
    await page.get_by_role("button", name="Send the intentcast").click()
    await expect(page.locator("#offers .offer")).to_contain_text("DDDD")
    await expect(page.locator("#progress .status")).to_have_text("confirmed")
    assert await overflow(page) == 0
    status = await page.locator("#progress .status").bounding_box()
    assert status is not None
    assert status["x"] + status["width"] <= 800  # the window's width: the status can be read


async def test_the_launch_file_opens_the_page(hostile: World, tmp_path: Path) -> None:
    """What ``vrm ui`` gives the browser instead of the address (``tests/test_s21_ui_cli.py``)
    brings it to the page."""
    launcher = tmp_path / "ui-open.html"
    launcher.write_text(_redirect(hostile.url))
    await hostile.page.goto(launcher.as_uri())
    await expect(hostile.page.get_by_role("heading", level=1)).to_have_text("Your relationships")
    assert hostile.page.url == hostile.url
