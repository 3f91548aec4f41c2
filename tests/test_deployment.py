"""Issue 13, finding 2: a vendor behind a real nginx, and serving TLS itself.

Behind the proxy, rate limits key on the client's own address, read from ``X-Forwarded-For`` /
``Forwarded`` only when the proxy is trusted (§12.13-1, §12.13-2); discovery advertises the
configured public URL (§12.13-3); the conformance suite passes through the proxy.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from unittest import mock

import aiohttp
import pytest
import trustme
from _broken_vendor import CONNECTION_LIMITS, make_endpoint
from _nginx import free_port, nginx_in_front
from aiohttp.test_utils import make_mocked_request

from tests._cli_helpers import ROOT, VENDOR_FILES, VendorProcess, cli_env, vrm_command
from vrmproto._keys import Identity
from vrmproto._limits import Limits
from vrmproto.server import Deployment, Endpoint, Server, serve
from vrmproto.server._proxy import client_of
from vrmproto.store import MemoryStore
from vrmproto.testing import Outcome, run_suite

CONTENT_TYPE = "application/vnd.vrmproto+msgpack"


async def _vendor(deployment: Deployment) -> Server:
    return await serve(make_endpoint(MemoryStore()), connection_limits=CONNECTION_LIMITS,
                       deployment=deployment)  # fmt: skip


#: HTTP that does not parse never reaches the vendor: nginx answers it with its own 400 page
#: (an ``error_page`` does not apply to it), so §12.4-5 is the proxy's to keep (§12.13-4).
PROXY_ANSWERS = ("CONN-003",)


@pytest.mark.integration
async def test_conformance_passes_through_nginx(tmp_path: Path) -> None:
    """Acceptance: the suite, strict, through nginx, against the public URL it advertises."""
    upstream = await _vendor(Deployment.of(None, ["127.0.0.1/32"]))
    try:
        async with nginx_in_front(tmp_path, upstream.port) as proxy:
            result = await run_suite(proxy, seed=1_767_225_600, strict=True,
                                     skip=PROXY_ANSWERS)  # fmt: skip
    finally:
        await upstream.close()
    wrong = {r.case.id: (r.outcome.value, r.actual) for r in result.records
             if r.outcome not in (Outcome.PASSED, Outcome.INFORMATIONAL)
             and r.case.id not in PROXY_ANSWERS}  # fmt: skip
    assert not wrong, wrong
    assert result.exit_code() == 0


async def test_discovery_through_nginx_shows_the_public_url(tmp_path: Path) -> None:
    """§12.13-3: behind a proxy that serves the vendor under /shop/, discovery advertises the
    configured public URL, and the inbox there answers."""
    port = free_port()
    public = f"http://127.0.0.1:{port}/shop"
    upstream = await _vendor(Deployment.of(public, ["127.0.0.1/32"]))
    try:
        async with nginx_in_front(tmp_path, upstream.port, location="/shop/",
                                  upstream_path="/", port=port) as proxy:  # fmt: skip
            assert proxy == f"http://127.0.0.1:{port}"
            async with aiohttp.ClientSession() as http:
                async with http.get(f"{public}/.well-known/vrm") as r:
                    assert r.status == 200
                    doc = json.loads(await r.read())
                assert doc["inbox"] == f"{public}/vrm/inbox"
                assert doc["history"] == f"{public}/vrm/history"
                async with http.post(doc["inbox"], data=b"\x80",
                                     headers={"Content-Type": CONTENT_TYPE}) as r:
                    assert (r.status, r.headers["Content-Type"]) == (400, CONTENT_TYPE)
    finally:
        await upstream.close()


async def _statuses(url: str, source: str, n: int, headers: dict[str, str] | None = None) -> (
    list[int]
):
    """``n`` discovery requests to ``url`` from the loopback address ``source``."""
    connector = aiohttp.TCPConnector(local_addr=(source, 0), force_close=True)
    async with aiohttp.ClientSession(connector=connector) as http:
        out = []
        for _ in range(n):
            async with http.get(f"{url}/.well-known/vrm", headers=headers) as r:
                out.append(r.status)
        return out


def _small_rate() -> Endpoint:
    return Endpoint(Identity(bytes(range(32))), store=MemoryStore(), name="rate test vendor",
                    limits=Limits(rate_per_address_per_minute=2))  # fmt: skip


async def test_two_clients_behind_nginx_are_limited_separately(tmp_path: Path) -> None:
    """Finding 2: behind a proxy every customer shared the proxy's address and its budget."""
    upstream = await serve(_small_rate(), deployment=Deployment.of(None, ["127.0.0.1/32"]))
    try:
        async with nginx_in_front(tmp_path, upstream.port) as proxy:
            assert await _statuses(proxy, "127.0.0.2", 3) == [200, 200, 429]
            assert await _statuses(proxy, "127.0.0.3", 2) == [200, 200]
    finally:
        await upstream.close()


async def test_a_clients_own_forwarded_field_does_not_pass_nginx(tmp_path: Path) -> None:
    """§12.13-1 (session 18): nginx as the README configures it wrote X-Forwarded-For and passed
    a Forwarded field the client wrote on unchanged; the endpoint reads Forwarded first, so a
    client named any address it liked and escaped the limits per address."""
    upstream = await serve(_small_rate(), deployment=Deployment.of(None, ["127.0.0.1/32"]))
    try:
        async with nginx_in_front(tmp_path, upstream.port) as proxy:
            got = [(await _statuses(proxy, "127.0.0.6", 1, {"Forwarded": f"for=192.0.2.{n}"}))[0]
                   for n in range(3)]  # fmt: skip
            assert got == [200, 200, 429]
    finally:
        await upstream.close()


async def test_forwarding_headers_from_an_untrusted_peer_are_ignored() -> None:
    """§12.13-1: a client that writes X-Forwarded-For / Forwarded itself gets nothing by it."""
    upstream = await serve(_small_rate(), deployment=Deployment.of(None, ["127.0.0.1/32"]))
    try:
        spoofs = [{"X-Forwarded-For": "192.0.2.1"}, {"Forwarded": "for=192.0.2.2"},
                  {"X-Forwarded-For": "192.0.2.3"}]  # fmt: skip
        got = [(await _statuses(upstream.url, "127.0.0.4", 1, h))[0] for h in spoofs]
        assert got == [200, 200, 429]
    finally:
        await upstream.close()


@pytest.mark.parametrize(("peer", "headers", "expected"), [
    ("127.0.0.1", {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"},
     ("203.0.113.7", "https")),
    ("127.0.0.1", {"Forwarded": 'for=192.0.2.60;proto=https;by=203.0.113.43'},
     ("192.0.2.60", "https")),
    ("127.0.0.1", {"Forwarded": 'for="[2001:db8:cafe::17]:4711", for=10.0.0.5'},
     ("2001:db8:cafe::17", "http")),
    # a chain: the rightmost address that is not a trusted proxy is the client's
    ("127.0.0.1", {"X-Forwarded-For": "198.51.100.9, 203.0.113.7, 10.0.0.5"},
     ("203.0.113.7", "http")),
    # Forwarded wins over X-Forwarded-For
    ("127.0.0.1", {"Forwarded": "for=192.0.2.1", "X-Forwarded-For": "192.0.2.99"},
     ("192.0.2.1", "http")),
    # an obfuscated or unknown node stops the walk at the proxy that reported it
    ("127.0.0.1", {"Forwarded": "for=_hidden"}, ("127.0.0.1", "http")),
    # not from a trusted proxy: the headers are someone's writing
    ("198.51.100.1", {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"},
     ("198.51.100.1", "http")),
])  # fmt: skip
def test_client_of_reads_forwarding_headers_only_from_trusted_proxies(
    peer: str, headers: dict[str, str], expected: tuple[str, str]
) -> None:
    transport = mock.Mock()
    transport.get_extra_info.side_effect = lambda name, default=None: (
        (peer, 40000) if name == "peername" else default)
    request = make_mocked_request("GET", "/", headers=headers, transport=transport)
    assert client_of(request, Deployment.of(None, ["127.0.0.1/32", "10.0.0.0/8"])) == expected


# -- TLS -----------------------------------------------------------------------------------------


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A throw-away CA (trustme) and a certificate for 127.0.0.1 it signed: (ca, cert, key)."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    paths = tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem"
    ca.cert_pem.write_to_path(str(paths[0]))
    cert.cert_chain_pems[0].write_to_path(str(paths[1]))
    for extra in cert.cert_chain_pems[1:]:
        extra.write_to_path(str(paths[1]), append=True)
    cert.private_key_pem.write_to_path(str(paths[2]))
    return paths


def _connect(url: str, home: Path, ca: Path | None) -> subprocess.CompletedProcess[str]:
    env = cli_env(home)
    if ca is not None:
        env["SSL_CERT_FILE"] = str(ca)
    return subprocess.run([*vrm_command(), "connect", url, "--json"], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=60, check=False)  # fmt: skip


def test_vendor_serve_over_tls_to_a_customer_that_verifies_it(
    tls_files: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    """``vrm vendor serve --tls-cert --tls-key``: HTTPS that a customer's ``vrm connect``
    verifies against the CA it trusts, and refuses without it."""
    ca, cert, key = tls_files
    home = tmp_path / "home"
    subprocess.run([*vrm_command(), "init"], env=cli_env(home), cwd=ROOT, check=True,
                   capture_output=True, timeout=60)  # fmt: skip
    vendor = VendorProcess("--config", str(VENDOR_FILES / "avis.toml"), "--memory",
                           "--no-advertise", "--tls-cert", str(cert), "--tls-key", str(key))
    try:
        assert vendor.url.startswith("https://127.0.0.1:")
        untrusted = _connect(vendor.url, home, None)  # the certificate does not verify
        assert untrusted.returncode == 1, untrusted.stderr
        trusted = _connect(vendor.url, home, ca)
        assert trusted.returncode == 0, trusted.stderr
        assert json.loads(trusted.stdout)["status"] == "accepted"
    finally:
        vendor.stop()
