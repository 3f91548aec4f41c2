"""Discovery (spec §13): the signed document, the TXT record, and zeroconf end to end.

The zeroconf test runs inside a private network namespace (``unshare -n``), where the only
interface is a loopback with multicast turned on: advertising and browsing happen there and
nowhere else. Where a namespace cannot be made (not root, no ``unshare`` or ``ip``, or the
kernel refuses), that test is skipped with the reason.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests._cli_helpers import ROOT, cli_env
from vrmproto import DEFAULT_LIMITS, Identity, Problem, ProtocolError, fingerprint
from vrmproto.binding import SIGNATURE_HEADER, WELL_KNOWN_PATH, build_discovery, verify_discovery
from vrmproto.discovery import (
    MAX_TXT_BYTES,
    SERVICE_TYPE,
    _Names,
    fetch_discovery,
    instance_name,
    txt_record,
)
from vrmproto.server import Endpoint, ReferencePolicy, serve
from vrmproto.store import MemoryStore

SPEC = ROOT / "spec" / "13-discovery.md"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def test_txt_record_is_small_and_complete() -> None:
    """§13.2-2, §13.2-3: four keys, txtvers first, under 200 bytes, keys of at most 9 chars."""
    key = Identity(bytes(32)).public_key
    txt = txt_record(key)
    assert list(txt) == ["txtvers", "v", "path", "fp"]
    assert txt == {"txtvers": "1", "v": "1", "path": WELL_KNOWN_PATH,
                   "fp": "fsvw-bacw-ntie-zub3"}
    size = sum(1 + len(f"{k}={v}".encode()) for k, v in txt.items())
    assert size == 59 < MAX_TXT_BYTES
    assert all(len(k) <= 9 for k in txt)
    assert SERVICE_TYPE == "_vrm._tcp.local."


def test_instance_names_fit_one_dns_label() -> None:
    """§13.2-1: the name, at most 63 bytes of UTF-8, no dots."""
    assert instance_name("Avis Park City") == "Avis Park City"
    assert "." not in instance_name("shop.example.com")
    long = instance_name("Ö" * 80)
    assert len(long.encode()) <= 63
    assert long == "Ö" * 31
    assert instance_name("  \n ") == "vrm endpoint"


def test_the_spec_example_document_verifies() -> None:
    """The example of §13.1 is real: its bytes and signature verify, under the §2.2 key."""
    text = SPEC.read_text()
    body = re.search(r"```json\n(.*?)\n```", text, re.S)
    sig = re.search(r"Vrm-Signature: (ed25519=[A-Za-z0-9_-]{86})\n", text)
    assert body is not None
    assert sig is not None
    raw = body.group(1).encode()
    assert len(raw) == 899
    doc = verify_discovery(raw, sig.group(1), now=1767225600000)
    assert doc.fingerprint == "fsvw-bacw-ntie-zub3"
    assert doc.name == "Example Rentals"
    changed = raw.replace(b'"name": "Example Rentals"', b'"name":  "Example Rentals"')
    with pytest.raises(ProtocolError) as err:
        verify_discovery(changed, sig.group(1), now=1767225600000)
    assert err.value.code is Problem.BAD_SIGNATURE


def test_every_clause_the_code_cites_exists() -> None:
    """The code cites §13.1-1 … §13.1-6 (and §13.2, §13.3 clauses): each is in the spec."""
    text = SPEC.read_text()
    defined = set(re.findall(r"\*\*(§13\.\d-\d+)\*\*", text))
    cited: set[str] = set()
    for path in (ROOT / "vrmproto").rglob("*.py"):
        cited |= set(re.findall(r"§13\.\d-\d+", path.read_text()))
    assert {f"§13.1-{i}" for i in range(1, 7)} <= defined
    assert cited <= defined, cited - defined


async def test_fetch_discovery_verifies_and_pins() -> None:
    """§13.3-2, §13.1-4: the document is fetched from the endpoint URL's path and checked;
    another key is refused with bad_key."""
    vendor = Identity(bytes(range(32)))
    endpoint = Endpoint(vendor, store=MemoryStore(), name="Corner Shop",
                        policy=ReferencePolicy(accepts_terms=["vrm.no-tracking"]))
    async with await serve(endpoint, "127.0.0.1", 0) as server:
        doc = await fetch_discovery(server.url)
        assert doc.key == vendor.public_key
        assert doc.accepts_terms == ("vrm.no-tracking",)
        assert doc.inbox == server.url + "/vrm/inbox"  # made absolute (§13.1-7)
        again = await fetch_discovery(server.url + WELL_KNOWN_PATH, expected_key=vendor.public_key)
        assert again.key == vendor.public_key
        with pytest.raises(ProtocolError) as err:
            await fetch_discovery(server.url, expected_key=Identity(bytes(32)).public_key)
        assert err.value.code is Problem.BAD_KEY
        with pytest.raises(ValueError, match="answered HTTP 404"):  # not /.well-known/vrm
            await fetch_discovery(server.url + "/some/page")


async def test_fetch_discovery_of_an_endpoint_url_with_a_path() -> None:
    """§13.3-2: an agent endpoint's URL has a path per relationship (§12.11-4); its document is
    at that path followed by /.well-known/vrm, not at the origin's. (On 25ceebf,
    ``vrmproto.discovery.fetch_discovery`` asked the origin, where there is none, while
    ``EndpointClient`` asked the path: the two fetchers disagreed.)"""
    agent = Identity(bytes(range(1, 33)))
    body, sig = build_discovery(agent, name="Ada", role="customer", now=now_ms(),
                                limits=DEFAULT_LIMITS, types=["data.return"])  # fmt: skip

    async def document(request: web.Request) -> web.Response:
        return web.Response(body=body, headers={SIGNATURE_HEADER: sig})

    app = web.Application()
    app.router.add_get("/vrm/agent/r1" + WELL_KNOWN_PATH, document)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        doc = await fetch_discovery(f"http://127.0.0.1:{port}/vrm/agent/r1", role="customer")
        assert doc.key == agent.public_key
        assert doc.inbox == f"http://127.0.0.1:{port}/vrm/inbox"
    finally:
        await runner.cleanup()


def test_stale_documents_are_refused() -> None:
    """§13.1-6: outside [issued − 2 min, expires] a document is expired."""
    who = Identity(bytes(32))
    body, sig = build_discovery(who, name="x", role="vendor", now=1_000_000_000,
                                limits=DEFAULT_LIMITS, types=["terms.offer"], lifetime_ms=60_000)
    verify_discovery(body, sig, now=1_000_000_000 - 119_000)
    for now in (1_000_000_000 - 121_000, 1_000_000_000 + 60_001):
        with pytest.raises(ProtocolError) as err:
            verify_discovery(body, sig, now=now)
        assert err.value.code is Problem.EXPIRED


# -- zeroconf, in a private network namespace --------------------------------------------------

_INSIDE = textwrap.dedent(
    """
    import asyncio, json, os, subprocess, sys
    from vrmproto import Identity
    from vrmproto.discovery import advertise, browse
    from vrmproto.server import Endpoint, ReferencePolicy, serve
    from vrmproto.store import MemoryStore

    async def main():
        honest = Identity(bytes(range(32)))
        liar = Identity(bytes(range(1, 33)))
        servers = []
        for who, name in ((honest, "Avis Park City"), (liar, "Totally Avis")):
            ep = Endpoint(who, store=MemoryStore(), name=name, policy=ReferencePolicy())
            servers.append(await serve(ep, "127.0.0.1", 0))
        # The second advertisement claims the honest vendor's key: its TXT fingerprint does not
        # match the key that signs its discovery document.
        async with advertise("Avis Park City", servers[0].port, honest.public_key), \\
                   advertise("Totally Avis", servers[1].port, honest.public_key):
            found = await browse(10.0, stop_when=lambda fs: len(fs) >= 2)
            cli = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "vrmproto.cli", "discover", "--json", "--timeout", "2",
                stdout=subprocess.PIPE)
            out, _ = await cli.communicate()
        for s in servers:
            await s.close()
        print(json.dumps({
            "library": [{"name": f.name, "url": f.url, "fp": f.fingerprint,
                         "verified": f.verified, "key": f.key.hex() if f.key else None,
                         "problem": f.problem} for f in found],
            "ports": [s.port for s in servers],
            "cli": json.loads(out), "cli_code": cli.returncode,
        }))

    asyncio.run(main())
    """
)


def _namespace_or_skip() -> list[str]:
    if sys.platform != "linux":
        pytest.skip("network namespaces need Linux")
    if os.geteuid() != 0:
        pytest.skip("a private network namespace needs root (unshare -n)")
    unshare, ip = shutil.which("unshare"), shutil.which("ip")
    if unshare is None or ip is None:
        pytest.skip("needs unshare (util-linux) and ip (iproute2)")
    setup = (f"{ip} link set lo up && {ip} link set lo multicast on && "
             f"{ip} route add 224.0.0.0/4 dev lo")
    probe = subprocess.run([unshare, "-n", "sh", "-c", setup], capture_output=True, text=True,
                           check=False, timeout=20)
    if probe.returncode != 0:
        pytest.skip(f"cannot make a network namespace: {probe.stderr.strip() or probe.returncode}")
    return [unshare, "-n", "sh", "-c", setup + ' && exec "$0" "$@"']


def _run_in_namespace(tmp_path: Path, source: str) -> Any:
    """Run ``source`` in a private network namespace (or skip); its last line of stdout, as JSON."""
    prefix = _namespace_or_skip()
    script = tmp_path / "inside.py"
    script.write_text(source)
    proc = subprocess.run([*prefix, sys.executable, str(script)], capture_output=True, text=True,
                          timeout=60, env=cli_env(tmp_path / "home"), cwd=ROOT, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_zeroconf_advertise_browse_and_vrm_discover_in_a_private_namespace(
    tmp_path: Path,
) -> None:
    """§13.2: an advertised vendor is found and verified; an advertisement whose fingerprint is
    not the key of its document is found but never verified (§13.2-6, §13.2-7)."""
    result = _run_in_namespace(tmp_path, _INSIDE)
    honest_key = Identity(bytes(range(32))).public_key
    by_name = {f["name"]: f for f in result["library"]}
    assert set(by_name) == {"Avis Park City", "Totally Avis"}
    avis = by_name["Avis Park City"]
    assert avis["verified"] is True
    assert avis["key"] == honest_key.hex()
    assert avis["fp"] == fingerprint(honest_key)
    assert avis["url"] == f"http://127.0.0.1:{result['ports'][0]}"
    liar = by_name["Totally Avis"]
    assert liar["verified"] is False
    assert "not " + fingerprint(honest_key) in liar["problem"]
    assert result["cli_code"] == 0
    cli = {f["name"]: f for f in result["cli"]["found"]}
    assert cli["Avis Park City"]["verified"] is True
    assert cli["Avis Park City"]["fingerprint"] == fingerprint(honest_key)
    assert cli["Totally Avis"]["verified"] is False


def test_browse_takes_at_most_max_found_names_each_once_at_a_time() -> None:
    """A hostile network can announce any number of ``_vrm._tcp`` services: :func:`browse`
    takes the first ``max_found`` names and ignores the rest, resolves a name once at a time
    (an update while it resolves is resolved again after), never twice at once."""
    names = _Names(3)
    for i in range(10):
        names.offer(f"v{i}")
    names.offer("v0")  # updated while its first resolve is queued: once more, after
    queued = [names.queue.get_nowait() for _ in range(names.queue.qsize())]
    assert queued == ["v0", "v1", "v2"]
    names.done("v1")
    assert names.queue.empty()
    names.done("v0")
    assert [names.queue.get_nowait() for _ in range(names.queue.qsize())] == ["v0"]
    names.offer("v9")  # still one of too many
    names.offer("v1")  # a taken name announced again is resolved again
    assert [names.queue.get_nowait() for _ in range(names.queue.qsize())] == ["v1"]


_FLOOD = textwrap.dedent(
    """
    import asyncio, json
    from vrmproto import Identity
    from vrmproto.discovery import advertise, browse

    async def main():
        key = Identity(bytes(range(32))).public_key
        ads = [advertise(f"Flood {i}", 9 + i, key) for i in range(8)]
        await asyncio.gather(*(ad.__aenter__() for ad in ads))
        try:
            found = await browse(3.0, verify=False, max_found=3)
        finally:  # all withdrawn at once: a goodbye takes a quarter of a second
            await asyncio.gather(*(ad.__aexit__(None, None, None) for ad in ads))
        print(json.dumps(sorted(f.name for f in found)))

    asyncio.run(main())
    """
)


def test_a_flood_of_announcements_is_capped_in_a_private_namespace(tmp_path: Path) -> None:
    """Eight services announced, ``max_found=3``: three reported, all of them announced ones."""
    found = _run_in_namespace(tmp_path, _FLOOD)
    assert len(found) == 3
    assert set(found) <= {f"Flood {i}" for i in range(8)}
