"""What many in-process tests start: reference vendors on 127.0.0.1 and the ``vrm ui`` page.

- :func:`serving` runs the vendors of ``examples/vendors/<name>.toml`` (or of a TOML file's
  path) on this event loop, and stops them after.
- :func:`ui_page` opens a customer's node on a fresh :class:`MemoryStore` (one delivery attempt
  a message: a vendor that is down reads at once) and serves its page to a test client;
  :func:`post` submits one of its forms from the page's own origin.
- :func:`page` and :func:`served` are the same as fixtures: a test module names them as its own
  (``page = _world.page``, ``avis = _world.served("avis")``), and pytest knows them by that name.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from vrmproto.cli import LocalVendor, load_vendor_config
from vrmproto.client import CustomerNode, RetryPolicy
from vrmproto.store import MemoryStore
from vrmproto.ui import Guard, Ui, make_app, new_token

VENDORS = Path(__file__).resolve().parent.parent / "examples" / "vendors"

Client = TestClient[object, object]


@asynccontextmanager
async def serving(*names: str | Path) -> AsyncIterator[list[LocalVendor]]:
    """The vendors of ``examples/vendors/NAME.toml`` (a name) or of a TOML file (a path),
    started in order and stopped in reverse."""
    async with AsyncExitStack() as stack:
        running = []
        for name in names:
            path = name if isinstance(name, Path) else VENDORS / f"{name}.toml"
            vendor = LocalVendor.of(load_vendor_config(path))
            await vendor.start()
            stack.push_async_callback(vendor.stop)
            running.append(vendor)
        yield running


@asynccontextmanager
async def ui_page() -> AsyncIterator[tuple[Ui, Client]]:
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


@pytest.fixture
async def page() -> AsyncIterator[tuple[Ui, Client]]:
    """:func:`ui_page`, for a test."""
    async with ui_page() as (ui, client):
        yield ui, client


def served(name: str) -> Any:
    """A fixture: the vendor of ``examples/vendors/NAME.toml``, served for a test."""

    @pytest.fixture
    async def vendor() -> AsyncIterator[LocalVendor]:
        async with serving(name) as (one,):
            yield one

    return vendor


async def post(ui: Ui, client: Client, path: str, data: dict[str, str]) -> str:
    """POST a form from the page's own origin; the text of the page the redirect leads to."""
    r = await client.post(ui.guard.prefix + path, data=data,
                          headers={"Origin": f"http://127.0.0.1:{ui.guard.port}"})  # fmt: skip
    assert r.status == 200, await r.text()
    return await r.text()
