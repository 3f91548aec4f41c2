"""``Deployment`` made with the proxies as text (s22 hunt, §12.13-1).

``Deployment.of(public_url, ["10.0.0.0/8"])`` reads the networks from text; the class itself
took ``Deployment(None, ("10.0.0.0/8",))`` too — a tuple of strings where networks are meant —
and failed only when the first request came: through aiohttp every request was answered 500
(``'in <string>' requires string as left operand``), and on ``serve()``'s lean connections
each new connection logged a traceback. Now the class reads text as ``of`` does (``"::1"``,
``"10.0.0.0/8"``), takes any iterable of them, and refuses, when made, what is no network
(``ValueError``) — a lone string too, whose characters are no networks.
"""

from __future__ import annotations

import ipaddress
import logging

import aiohttp
import pytest
from _broken_vendor import make_endpoint

from vrmproto.server import Deployment, serve
from vrmproto.store import MemoryStore


@pytest.mark.parametrize("lean", [True, False])
async def test_proxies_given_as_text_are_trusted(lean: bool) -> None:
    deployment = Deployment(None, ("127.0.0.1/32",))  # type: ignore[arg-type]
    server = await serve(make_endpoint(MemoryStore()), deployment=deployment,
                         access_log=None if lean else logging.getLogger("s22.embed"))  # fmt: skip
    try:
        headers = {"X-Forwarded-For": "192.0.2.7"}
        async with aiohttp.ClientSession() as http, http.get(
            f"{server.url}/.well-known/vrm", headers=headers
        ) as r:
            assert r.status == 200
    finally:
        await server.close()
    assert deployment.trusted_proxies == (ipaddress.ip_network("127.0.0.1/32"),)
    assert deployment.trusts("127.0.0.1")


def test_proxies_are_read_from_any_iterable() -> None:
    net = ipaddress.ip_network("10.0.0.0/8")
    assert Deployment(None, [net, "::1"]).trusted_proxies == (  # type: ignore[arg-type]
        net, ipaddress.ip_network("::1/128"))
    assert Deployment.of(None, ["10.0.0.0/8"]) == Deployment(None, (net,))


@pytest.mark.parametrize("proxies", [("not a network",), (5,), "127.0.0.1", (None,)])
def test_what_is_no_network_is_refused_when_made(proxies: object) -> None:
    with pytest.raises(ValueError, match="trusted proxy"):
        Deployment(None, proxies)  # type: ignore[arg-type]
    if isinstance(proxies, str) or isinstance(proxies[0], str):  # type: ignore[index]
        with pytest.raises(ValueError, match="trusted proxy"):
            Deployment.of(None, proxies)
