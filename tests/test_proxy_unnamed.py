"""A vendor put behind a proxy it did not name (``--trusted-proxy``): every customer reaches it
from the proxy's address, so the limits per address (§12.9-6) count them all as one and soon
refuse everyone, and nothing said why. The endpoint now says so once, in its log, when a local
peer it does not trust sends forwarding fields (``vrmproto.server._proxy.note_forwarding``).
An address on the Internet writing ``X-Forwarded-For`` is a client, not a proxy: no warning.
"""

from __future__ import annotations

import logging
from pathlib import Path

import aiohttp
import pytest
from _broken_vendor import CONNECTION_LIMITS, make_endpoint
from _nginx import nginx_in_front

from vrmproto.server import Deployment, serve
from vrmproto.server._proxy import _Warned, may_be_a_proxy
from vrmproto.store import MemoryStore

WARNING = "not a trusted proxy"


@pytest.fixture(autouse=True)
def not_warned(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_Warned, "done", False)


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "vrmproto.server" and WARNING in r.getMessage()]  # fmt: skip


async def discover(url: str, n: int, headers: dict[str, str] | None = None) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(n):
            async with http.get(f"{url}/.well-known/vrm", headers=headers) as r:
                assert r.status == 200


@pytest.mark.parametrize("lean", [True, False], ids=["lean", "aiohttp"])
async def test_forwarding_fields_from_a_local_untrusted_peer_are_named_once(
    caplog: pytest.LogCaptureFixture, lean: bool
) -> None:
    caplog.set_level(logging.WARNING, "vrmproto.server")
    access = None if lean else logging.getLogger("test.access")  # the aiohttp path logs access
    server = await serve(make_endpoint(MemoryStore()), access_log=access)
    try:
        await discover(server.url, 2)  # no forwarding fields: nothing to say
        assert warnings(caplog) == []
        await discover(server.url, 3, {"X-Forwarded-For": "203.0.113.7"})
        await discover(server.url, 1, {"Forwarded": "for=203.0.113.8"})
        (line,) = warnings(caplog)  # once a process, not once a request
        assert "--trusted-proxy 127.0.0.1" in line
    finally:
        await server.close()


def test_a_peer_on_the_internet_or_a_trusted_proxy_is_not_taken_for_an_unnamed_proxy() -> None:
    assert may_be_a_proxy("127.0.0.1", Deployment())
    assert may_be_a_proxy("10.1.2.3", Deployment())
    assert not may_be_a_proxy("93.184.216.34", Deployment())  # a client writing the fields
    assert not may_be_a_proxy("127.0.0.1", Deployment.of(None, ["127.0.0.1/32"]))


async def test_nginx_in_front_of_a_vendor_that_did_not_name_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "vrmproto.server")
    upstream = await serve(make_endpoint(MemoryStore()), connection_limits=CONNECTION_LIMITS)
    try:
        async with nginx_in_front(tmp_path, upstream.port) as proxy:
            await discover(proxy, 2)
        assert len(warnings(caplog)) == 1
    finally:
        await upstream.close()
