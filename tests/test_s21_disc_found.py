"""What one zeroconf answer becomes (:func:`vrmproto.discovery._parse_info`, ``_check``), s21.

No multicast here: the resolved service is a stand-in for zeroconf's ``AsyncServiceInfo``, and
the endpoint it points at is an HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace

import aiohttp
import pytest
from aiohttp import web

from vrmproto import DEFAULT_LIMITS, Identity, ProtocolError
from vrmproto._keys import fingerprint
from vrmproto.binding import SIGNATURE_HEADER, WELL_KNOWN_PATH, build_discovery, verify_discovery
from vrmproto.discovery import (
    SERVICE_TYPE,
    Found,
    _check,
    _parse_info,
    advertise,
    fetch_discovery,
)

VENDOR = Identity(bytes(range(7, 39)))


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class Info:
    """What :func:`_parse_info` reads of a resolved ``AsyncServiceInfo``."""

    properties: dict[bytes, bytes | None] = field(default_factory=dict)
    port: int = 8701
    addresses: tuple[str, ...] = ("127.0.0.1",)

    def parsed_addresses(self, _version: object = None) -> list[str]:
        return list(self.addresses)


def txt(path: str = WELL_KNOWN_PATH, key: bytes = VENDOR.public_key) -> dict[bytes, bytes | None]:
    return {b"txtvers": b"1", b"v": b"1", b"path": path.encode(), b"fp": fingerprint(key).encode()}


def parse(info: Info, name: str = "Corner Shop", *, loopback: bool = True) -> Found:
    found = _parse_info(f"{name}.{SERVICE_TYPE}", info, loopback=loopback)  # type: ignore[arg-type]
    assert found is not None
    return found


@pytest.fixture
async def serve_document() -> AsyncIterator[Callable[[str], Awaitable[int]]]:
    """Serve VENDOR's signed discovery document at the path given; gives its port."""
    runners: list[web.AppRunner] = []

    async def start(path: str) -> int:
        body, sig = build_discovery(VENDOR, name="Corner Shop", role="vendor", now=now_ms(),
                                    limits=DEFAULT_LIMITS, types=["terms.offer"])  # fmt: skip

        async def document(request: web.Request) -> web.Response:
            return web.Response(body=body, headers={SIGNATURE_HEADER: sig})

        app = web.Application()
        app.router.add_get(path, document)
        runner = web.AppRunner(app)
        await runner.setup()
        runners.append(runner)
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        return int(runner.addresses[0][1])

    yield start
    for runner in runners:
        await runner.cleanup()


async def test_an_endpoint_under_a_path_is_found_at_that_path(
    serve_document: Callable[[str], Awaitable[int]],
) -> None:
    """§13.2-2, §13.3-2: a TXT ``path`` of ``/shop/.well-known/vrm`` is the document of the
    endpoint ``http://<address>:<port>/shop``. Before, ``Found.url`` was the bare
    ``http://<address>:<port>``: ``vrm discover`` showed it as verified, and ``vrm connect``
    (and ``vrm intent new --local``) then asked ``/.well-known/vrm`` of the origin, another
    document than the one verified (a 404 here; on a shared host, another vendor's)."""
    port = await serve_document("/shop" + WELL_KNOWN_PATH)
    found = parse(Info(txt("/shop" + WELL_KNOWN_PATH), port=port))
    assert found.problem == ""
    async with aiohttp.ClientSession() as session:
        checked = await _check(found, session, now_ms())
    assert checked.verified, checked.problem
    assert checked.url == f"http://127.0.0.1:{port}/shop"
    assert checked.document_url == f"http://127.0.0.1:{port}/shop{WELL_KNOWN_PATH}"
    again = await fetch_discovery(checked.url, expected_key=VENDOR.public_key)  # as connect does
    assert again.key == VENDOR.public_key


@pytest.mark.parametrize("path", ["/vrm.json", "/shop/.well-known/vrm/", "/.well-known/vrm?x=1",
                                  "/.well-known/vrmx", "/a?b/.well-known/vrm",
                                  "/a#b/.well-known/vrm", "/a b/.well-known/vrm",
                                  "/a\x1b[2J/.well-known/vrm"])  # fmt: skip
def test_a_txt_path_that_is_no_endpoints_document_is_not_used(path: str) -> None:
    """A document not at ``…/.well-known/vrm`` belongs to no endpoint URL (§13.3-2): before, the
    agent fetched ``PATH/.well-known/vrm`` instead — not the document advertised (§13.2-5) —
    and showed the origin as the endpoint."""
    found = parse(Info(txt(path)))
    assert "path" in found.problem
    assert not found.verified


@pytest.mark.parametrize("address", ["0.0.0.0", "0.1.2.3", "224.0.0.251", "239.255.255.250",
                                     "255.255.255.255", "240.0.0.1"])  # fmt: skip
def test_an_address_no_endpoint_can_have_is_not_contacted(address: str) -> None:
    """An announcement pointing at the unspecified address (a connection to 0.0.0.0 reaches
    the person's own machine), a multicast, broadcast or reserved one: before, the agent sent
    its GET there; now the endpoint is reported with the reason and never contacted."""
    found = parse(Info(txt(), addresses=(address,)), loopback=True)
    assert "address" in found.problem, found
    assert address in found.problem


def test_a_lan_announcement_cannot_point_the_agent_at_its_own_machine() -> None:
    """Browsing a network interface, an announcement of a loopback address would make the
    agent fetch from a server of the person's own machine (§13.2-4: the base URL is the
    announced address) — any port, any path ending in /.well-known/vrm. Only a browse on a
    loopback interface, where every announcer is on this machine, takes loopback addresses."""
    lan = Info(txt(), addresses=("127.0.0.1",))
    assert "address" in parse(lan, loopback=False).problem
    assert parse(lan, loopback=True).problem == ""
    both = parse(Info(txt(), addresses=("127.0.0.1", "192.168.1.66")), loopback=False)
    assert both.problem == ""
    assert both.url == "http://192.168.1.66:8701"


async def test_a_document_nested_too_deeply_is_reported_not_raised() -> None:
    """A document of 30 000 nested arrays (60 kB, under the size limit) made the JSON parser
    raise ``RecursionError`` before any signature was checked: ``fetch_discovery`` broke its
    contract (a ``ProtocolError``, ``ValueError``, ``aiohttp.ClientError`` or
    ``TimeoutError``), and in a browse the endpoint vanished from the list with a "Task
    exception was never retrieved". Now it is the endpoint's problem, shown."""
    async def document(request: web.Request) -> web.Response:
        return web.Response(body=b"[" * 30_000 + b"]" * 30_000,
                            headers={SIGNATURE_HEADER: "ed25519=" + "A" * 86})  # fmt: skip

    app = web.Application()
    app.router.add_get(WELL_KNOWN_PATH, document)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        port = int(runner.addresses[0][1])
        with pytest.raises(ProtocolError):
            await fetch_discovery(f"http://127.0.0.1:{port}")
        found = parse(Info(txt(), port=port))
        async with aiohttp.ClientSession() as session:
            checked = await _check(found, session, now_ms())
        assert not checked.verified
        assert "does not verify" in checked.problem, checked.problem
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("host", ["localhost", "::1", "fe80::1", "vendor.example"])
async def test_advertising_on_what_is_no_ipv4_address_says_so(host: str) -> None:
    """``vrm vendor serve --host localhost`` (or ``::1``) served, and said "(not advertised
    with zeroconf: illegal IP address string passed to inet_aton)". Now the reason is one a
    person can act on; nothing is opened before it is given."""
    with pytest.raises(ValueError, match="is not an IPv4 interface address") as err:
        async with advertise("Corner Shop", 8701, VENDOR.public_key, host):
            pass
    assert repr(host) in str(err.value)


@pytest.mark.parametrize(("advertised", "document", "shown"), [
    ("Avis Inc", "Avis Inc.", None),  # dots replaced (§13.2-1): the same name
    ("Ski Hire", "Ski \t Hire", None),
    ("Wasatch Outfitters and Mountain Guides of the Greater Park City",
     "Wasatch Outfitters and Mountain Guides of the Greater Park City Area", None),  # cut
    ("Avis Park City-2", "Avis Park City", "Avis Park City"),  # renamed by mDNS
    ("Avis PC", "Avis Park City", "Avis Park City"),
])  # fmt: skip
def test_the_documents_name_is_shown_only_where_it_is_not_the_advertised_one(
    advertised: str, document: str, shown: str | None
) -> None:
    body, sig = build_discovery(VENDOR, name=document, role="vendor", now=now_ms(),
                                limits=DEFAULT_LIMITS, types=["terms.offer"])  # fmt: skip
    doc = verify_discovery(body, sig, now=now_ms())
    found = replace(parse(Info(txt()), advertised), verified=True, document=doc)
    assert found.document_name == shown
