"""URLs given by others never aim the agent's requests nearer to the person's machine.

Before: the agent followed a discovery document's redirects anywhere (aiohttp, up to three), and
took the document's inbox and history as given. A vendor on the Internet — or anyone whose URL
reached the agent: an intentcast's answer, which anyone can seal (§15.4-2; s21-nostr drops
answers naming local addresses, a redirect passed that by) — could have the agent GET, then POST,
on the person's router, printer or a cloud's metadata service, on a path of its choosing. Now a
redirect and the document's URLs may be as far as where they came from, or farther, never nearer
(``vrmproto._hosts.nearer``).
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver

from vrmproto import Identity, Limits
from vrmproto._binding import SIGNATURE_HEADER, build_discovery
from vrmproto._hosts import host_class, nearer
from vrmproto.client import EndpointClient, InvalidResponse
from vrmproto.client._transport import Answer, discovery_from_answer


@pytest.mark.parametrize(("origin", "target", "is_nearer"), [
    ("https://shop.example/", "http://192.168.1.1/cgi-bin/x", True),
    ("https://shop.example/", "http://169.254.169.254/latest/meta-data", True),
    ("https://shop.example/", "http://127.1:8080/", True),
    ("https://shop.example/", "http://localhost/", True),
    ("https://shop.example/", "http://printer.local/", True),
    ("http://192.168.1.5/", "http://127.0.0.1/", True),
    ("https://shop.example/", "https://cdn.example/x", False),
    ("http://192.168.1.5/", "http://192.168.1.6/", False),
    ("http://192.168.1.5/", "https://shop.example/", False),
    ("http://127.0.0.1:8000/", "http://127.0.0.1:9000/", False),
    ("https://shop.example/", "not a url", True),
])  # fmt: skip
def test_nearer(origin: str, target: str, is_nearer: bool) -> None:
    assert nearer(origin, target) is is_nearer


def test_host_classes() -> None:
    assert [host_class(h) for h in ("2130706433", "0x7f.1", "10.0.0.1", "::1", "8.8.8.8",
                                    "shop.example")] == [
        "loopback", "loopback", "local", "loopback", "public", "public"]  # fmt: skip


def signed_document(inbox: str) -> tuple[bytes, str]:
    return build_discovery(Identity(os.urandom(32)), name="Shop", role="vendor",
                           now=time.time_ns() // 1_000_000, limits=Limits(),
                           types=["terms.offer"], inbox=inbox)  # fmt: skip


@pytest.mark.parametrize("inbox", ["http://192.168.1.1/admin", "http://127.0.0.1:631/jobs"])
def test_a_public_document_naming_a_local_inbox_is_refused(inbox: str) -> None:
    body, sig = signed_document(inbox)
    answer = Answer(200, {SIGNATURE_HEADER: sig}, body, "https://shop.example/.well-known/vrm")
    with pytest.raises(InvalidResponse, match="is an address of"):
        discovery_from_answer(answer, now=time.time_ns() // 1_000_000)
    # the same document served from that network is fine: the vendor is there
    here = Answer(200, {SIGNATURE_HEADER: sig}, body, "http://192.168.1.1/.well-known/vrm")
    if "192.168" in inbox:
        assert discovery_from_answer(here, now=time.time_ns() // 1_000_000).inbox == inbox


class ToLoopback(AbstractResolver):
    """Resolves every name to 127.0.0.1: a public-looking origin served on this machine."""

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET
                      ) -> list[dict[str, Any]]:  # fmt: skip
        return [{"hostname": host, "host": "127.0.0.1", "port": port, "family": socket.AF_INET,
                 "proto": 0, "flags": socket.AI_NUMERICHOST}]

    async def close(self) -> None:
        return None


async def test_a_redirect_to_this_machine_is_not_followed() -> None:
    hits: list[str] = []
    body, sig = signed_document("/vrm/inbox")

    async def public(request: web.Request) -> web.Response:
        hits.append(request.host)
        if request.host.startswith("shop.example"):  # the "public" vendor redirects home
            raise web.HTTPFound(f"http://127.0.0.1:{request.url.port}/.well-known/vrm")
        return web.Response(body=body, headers={SIGNATURE_HEADER: sig})

    app = web.Application()
    app.router.add_get("/.well-known/vrm", public)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(resolver=ToLoopback()))
    client = EndpointClient(session=session)
    try:
        with pytest.raises(InvalidResponse, match="an address of this machine; not followed"):
            await client.fetch_discovery(f"http://shop.example:{port}/")
        assert hits == [f"shop.example:{port}"]  # the redirect's target was never asked
        # a redirect no nearer is followed as before
        doc = await client.fetch_discovery(f"http://127.0.0.1:{port}/")
        assert doc.inbox == f"http://127.0.0.1:{port}/vrm/inbox"
    finally:
        await client.close()
        await session.close()
        await runner.cleanup()
