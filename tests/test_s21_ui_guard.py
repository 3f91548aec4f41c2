"""``vrm ui``'s guard (:mod:`vrmproto.ui._guard`) on the ports a person may choose."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import make_mocked_request

from vrmproto.ui import Guard


@pytest.mark.parametrize(("host", "origin"), [
    ("127.0.0.1", "http://127.0.0.1"), ("localhost", "http://localhost"),
    ("127.0.0.1:80", "http://127.0.0.1:80"),
])  # fmt: skip
def test_on_port_80_the_browser_names_the_host_without_a_port(host: str, origin: str) -> None:
    """Before: ``vrm ui --port 80`` refused every request of the browser it opened (421 "this
    server answers only to its own address"): a browser leaves the default port out of
    ``Host`` and ``Origin`` (RFC 9110 §7.2, RFC 6454 §6.1), and the guard wanted ":80"."""
    guard = Guard("tok", port=80)
    page = make_mocked_request("GET", "/t/tok/", headers={"Host": host})
    assert guard.refusal(page) is None
    change = make_mocked_request("POST", "/t/tok/address", headers={"Host": host,
                                                                    "Origin": origin})  # fmt: skip
    assert guard.refusal(change) is None


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "127.0.0.1:80"])
def test_on_another_port_the_host_must_name_it(host: str) -> None:
    guard = Guard("tok", port=8080)
    refused = guard.refusal(make_mocked_request("GET", "/t/tok/", headers={"Host": host}))
    assert refused is not None
    assert refused.status == 421
