"""``vrm ui``'s guard, server side: nothing without the launch token, only its own ``Host``, and
no change from another origin (CSRF, DNS rebinding). See :mod:`vrmproto.ui._guard`."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest

from tests import _world
from tests._world import Client
from vrmproto.client import CustomerNode, RetryPolicy
from vrmproto.store import MemoryStore
from vrmproto.ui import Ui, UiServer, new_token

ONE = RetryPolicy(attempts=1)


@pytest.fixture
async def node() -> AsyncIterator[CustomerNode]:
    store = MemoryStore()
    async with await CustomerNode.open(store, os.urandom(32), retry=ONE) as n:
        yield n


ui_client = _world.page


def origin(ui: Ui) -> str:
    return f"http://127.0.0.1:{ui.guard.port}"


async def test_the_page_is_served_with_the_token(ui_client: tuple[Ui, Client]
                                                 ) -> None:  # fmt: skip
    ui, client = ui_client
    r = await client.get(ui.guard.prefix)
    assert r.status == 200
    assert "Your relationships" in await r.text()
    assert r.headers["Cache-Control"] == "no-store"
    assert r.headers["Referrer-Policy"] == "same-origin"
    assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
    css = await client.get(ui.guard.prefix + "static/ui.css")
    assert css.status == 200


@pytest.mark.parametrize("path", ["/", "/t/", "/t/nope/", "/static/ui.css", "/t/nope/static/ui.css",
                                  "/t//", "/favicon.ico"])
async def test_nothing_is_served_without_the_token(
    ui_client: tuple[Ui, Client], path: str
) -> None:
    _, client = ui_client
    r = await client.get(path)
    assert r.status == 404
    text = await r.text()
    assert "relationships" not in text.lower()
    assert "⊂" not in text
    assert r.headers["Cache-Control"] == "no-store"


async def test_a_token_that_is_only_a_prefix_is_refused(
    ui_client: tuple[Ui, Client],
) -> None:
    ui, client = ui_client
    r = await client.get(f"/t/{ui.guard.token[:-1]}/")
    assert r.status == 404
    r = await client.get(f"/t/{ui.guard.token}x/")
    assert r.status == 404


@pytest.mark.parametrize("host", ["evil.example", "evil.example:{port}", "127.0.0.1:1",
                                  "127.0.0.1", "0.0.0.0:{port}", "[::1]:{port}", ""])
async def test_a_request_for_another_host_is_refused(
    ui_client: tuple[Ui, Client], host: str
) -> None:
    """DNS rebinding: a name an attacker controls, pointed at 127.0.0.1, is not this page."""
    ui, client = ui_client
    r = await client.get(ui.guard.prefix, headers={"Host": host.format(port=ui.guard.port)})
    assert r.status == 421
    assert "relationships" not in (await r.text()).lower()


async def test_localhost_is_this_host(ui_client: tuple[Ui, Client]) -> None:
    ui, client = ui_client
    r = await client.get(ui.guard.prefix, headers={"Host": f"localhost:{ui.guard.port}"})
    assert r.status == 200


@pytest.mark.parametrize("headers", [
    {},  # neither Origin nor Sec-Fetch-Site: a non-browser, or a browser that says nothing
    {"Origin": "http://evil.example"},
    {"Origin": "null"},
    {"Origin": "http://127.0.0.1:1"},
    {"Origin": "https://127.0.0.1:{port}"},
    {"Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "same-site"},
    {"Origin": "http://evil.example", "Sec-Fetch-Site": "same-origin"},
])  # fmt: skip
async def test_a_change_from_another_origin_is_refused(
    ui_client: tuple[Ui, Client], headers: dict[str, str]
) -> None:
    """CSRF: a form on another site posting here changes nothing."""
    ui, client = ui_client
    sent = {k: v.format(port=ui.guard.port) for k, v in headers.items()}
    r = await client.post(ui.guard.prefix + "address", data={"fields": "city = Park City"},
                          headers=sent, allow_redirects=False)  # fmt: skip
    assert r.status == 403
    assert ui.jobs.all() == []


async def test_a_change_from_this_origin_goes_through(
    ui_client: tuple[Ui, Client],
) -> None:
    ui, client = ui_client
    for headers in ({"Origin": origin(ui)}, {"Sec-Fetch-Site": "same-origin"}):
        r = await client.post(ui.guard.prefix + "address", data={"fields": "city = Park City"},
                              headers=headers, allow_redirects=False)  # fmt: skip
        assert r.status == 303, await r.text()
        # the action ran: with no agreement yet, it says so on the form (s21)
        assert r.headers["Location"].startswith(ui.guard.prefix + "address?m=")
        said = next(iter(ui.flashes.values())).text
        assert said.startswith("You have no agreement with any vendor yet")
        ui.flashes.clear()


async def test_a_change_without_the_token_is_refused_even_from_this_origin(
    ui_client: tuple[Ui, Client],
) -> None:
    ui, client = ui_client
    r = await client.post("/t/wrong/address", data={"fields": "city = Park City"},
                          headers={"Origin": origin(ui)}, allow_redirects=False)  # fmt: skip
    assert r.status == 404
    assert ui.jobs.all() == []


async def test_the_server_listens_on_loopback_only(node: CustomerNode) -> None:
    server = UiServer(node)
    url = await server.start()
    try:
        assert url.startswith(f"http://127.0.0.1:{server.port}/t/")
        runner = server._runner
        assert runner is not None
        assert [a[0] for a in runner.addresses] == ["127.0.0.1"]
    finally:
        await server.close()


def test_every_launch_has_its_own_token() -> None:
    tokens = {new_token() for _ in range(100)}
    assert len(tokens) == 100
    assert all(len(t) >= 43 for t in tokens)  # 256 bits in URL-safe base64
