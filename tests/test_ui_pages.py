"""``vrm ui``'s pages and actions over HTTP (aiohttp's test client) against a reference vendor:
connecting from what local discovery found (its key pinned), refusals shown as messages, the
evidence file verifiable on its own, and what no page may be asked for."""

from __future__ import annotations

import base64
import dataclasses
import json
import re

import pytest

import vrmproto.discovery
from tests import _world
from tests._world import Client, post
from vrmproto import Entry, verify_entries
from vrmproto._keys import Identity, fingerprint
from vrmproto.cli import LocalVendor
from vrmproto.discovery import Found
from vrmproto.ui import Ui
from vrmproto.ui._jobs import Row

avis = _world.served("avis")
page = _world.page


def found(vendor: LocalVendor, key: bytes) -> Found:
    return Found(name=vendor.name, url=vendor.url, fingerprint=fingerprint(key), host="127.0.0.1",
                 port=vendor.port, path="/.well-known/vrm", verified=True, key=key)


async def test_connect_to_a_vendor_found_on_the_local_network(
    page: tuple[Ui, Client], avis: LocalVendor, monkeypatch: pytest.MonkeyPatch
) -> None:
    ui, client = page

    async def browse(seconds: float) -> list[Found]:
        return [found(avis, avis.identity.public_key)]

    monkeypatch.setattr(vrmproto.discovery, "browse", browse)
    html = await post(ui, client, "connect/discover", {})
    assert "Avis Park City" in html
    assert fingerprint(avis.identity.public_key) in html
    key = re.search(r'name="key" value="([0-9a-f]+)"', html)
    assert key is not None
    html = await post(ui, client, "connect", {"url": avis.url, "key": key.group(1)})
    assert "Avis Park City agreed to your terms." in html
    assert [v.vendor for v in await ui.agent.relationships()] == ["Avis Park City"]


async def test_a_vendor_that_signs_with_another_key_than_found_is_refused(
    page: tuple[Ui, Client], avis: LocalVendor
) -> None:
    ui, client = page
    other = Identity(bytes(32)).public_key
    html = await post(ui, client, "connect", {"url": avis.url, "key": other.hex()})
    assert 'class="flash error"' in html
    assert await ui.agent.relationships() == []


@pytest.mark.parametrize("url", ["", "ftp://x", "javascript:alert(1)", "127.0.0.1:1"])
async def test_connect_wants_a_web_address(page: tuple[Ui, Client], url: str) -> None:
    ui, client = page
    html = await post(ui, client, "connect", {"url": url})
    assert "give the vendor&#39;s address" in html


async def test_the_evidence_verifies_without_this_program(
    page: tuple[Ui, Client], avis: LocalVendor
) -> None:
    ui, client = page
    await post(ui, client, "connect", {"url": avis.url})
    (view,) = await ui.agent.relationships()
    r = await client.get(f"{ui.guard.prefix}r/{view.thread.hex()}/evidence")
    assert r.status == 200
    assert r.headers["Content-Disposition"].startswith("attachment;")
    doc = json.loads(await r.text())
    assert doc["format"] == "vrm-evidence/1"
    entries = [Entry(e["index"], bytes.fromhex(e["hash"]), bytes.fromhex(e["link"]),
                     base64.b64decode(e["envelope"]), e["direction"] == "out")
               for e in doc["entries"]]  # fmt: skip
    verify_entries(entries)  # every link and signature (§8.2)
    assert [e["direction"] for e in doc["entries"]][:1] == ["out"]


async def test_a_vendors_name_cannot_inject_markup(page: tuple[Ui, Client], avis: LocalVendor
                                                   ) -> None:  # fmt: skip
    """Autoescaping: what a vendor says about itself is text, never markup."""
    ui, client = page
    avis.config = dataclasses.replace(avis.config, name="<script>alert(1)</script>")
    await avis.stop()
    await avis.start()
    await post(ui, client, "connect", {"url": avis.url})
    r = await client.get(ui.guard.prefix)
    html = await r.text()
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


@pytest.mark.parametrize("path", ["r/00", "r/zz", "r/" + "00" * 16, "jobs/nope",
                                  "r/" + "00" * 16 + "/evidence", "static/../_app.py"])
async def test_what_does_not_exist_is_not_found(page: tuple[Ui, Client], path: str) -> None:
    ui, client = page
    r = await client.get(ui.guard.prefix + path)
    assert r.status == 404


async def test_an_unknown_action_is_not_found(page: tuple[Ui, Client], avis: LocalVendor) -> None:
    ui, client = page
    await post(ui, client, "connect", {"url": avis.url})
    (view,) = await ui.agent.relationships()
    r = await client.post(f"{ui.guard.prefix}r/{view.thread.hex()}/explode",
                          headers={"Origin": f"http://127.0.0.1:{ui.guard.port}"})  # fmt: skip
    assert r.status == 404


async def test_a_job_is_followed_over_server_sent_events_until_it_is_done(
    page: tuple[Ui, Client],
) -> None:
    ui, client = page
    job = ui.jobs.new("address", "Change of address", [Row("Avis", "http://a", thread=b"t" * 16)])
    r = await client.get(f"{ui.guard.prefix}jobs/{job.id}/events")
    assert r.headers["Content-Type"].startswith("text/event-stream")
    assert r.headers["Cache-Control"] == "no-store"
    first = await r.content.readuntil(b"\n\n")
    assert first.startswith(b"event: update\n")
    assert b"waiting" in first
    job.row("http://a").status = "queued"  # type: ignore[union-attr]
    job.running = False
    job.changed()
    second = await r.content.readuntil(b"\n\n")
    assert b"queued" in second
    job.delivered(b"t" * 16, "confirmed")
    third = await r.content.readuntil(b"\n\n")
    assert b"delivered" in third
    assert await r.content.readuntil(b"\n\n") == b"event: done\ndata: \n\n"


async def test_streams_end_when_the_page_server_stops(page: tuple[Ui, Client]) -> None:
    ui, client = page
    job = ui.jobs.new("intent", "Intentcast: skis", [Row("http://a", "http://a")])
    r = await client.get(f"{ui.guard.prefix}jobs/{job.id}/events")
    await r.content.readuntil(b"\n\n")
    await ui.jobs.close()
    assert (await r.content.readuntil(b"\n\n")).startswith(b"event: update")
    assert await r.content.readuntil(b"\n\n") == b"event: done\ndata: \n\n"
