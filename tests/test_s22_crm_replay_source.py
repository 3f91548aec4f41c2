"""``vrm vendor events --replay`` sends a dead letter from the source ``serve`` sends it from
(session 22).

A CloudEvent's ``source`` is the vendor (docs/events.md: ``[server] public_url``, else the URL
``vrm vendor serve`` listens at). A CRM fed by several vendors routes by it, and CloudEvents
consumers take ``source`` and ``id`` together as the event's identity. A vendor file without a
``public_url`` had ``serve`` deliver from ``http://127.0.0.1:8421`` but ``--replay`` send the
same events from ``urn:vrmproto:vendor``, a source the receiver had never seen. Now the replay
uses the URL ``serve`` of that file listens at, when the file fixes its port.
"""

from __future__ import annotations

import asyncio
import os
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from _vendor_proc import ACCEPTED, VENDOR_SEED, Customer
from _vendor_proc import InProcessVendor as Vendor
from click.testing import CliRunner
from test_webhooks import SECRET, VENDOR, Receiver

from vrmproto.cli._app import cli as main
from vrmproto.server._config import parse_vendor_file
from vrmproto.server._webhooks import webhooks
from vrmproto.store import Commit, DeadLetter, SQLiteStore


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.start()
    yield r
    await r.stop()


async def dead_letters(data: Path) -> list[str]:
    """A feed of three events whose last two the webhook ``crm`` set aside."""
    async with await SQLiteStore.open(data / "vendor.db") as store:
        v, c = Vendor(store), Customer(VENDOR)
        await v.deliver(c, c.offer(*ACCEPTED))
        await v.deliver(c, c.share({"email": "a@example.org"}))
        events = await store.events()
        await store.commit(Commit(dead_letters=tuple(
            DeadLetter("crm", e.pos, e.recorded_ms, "HTTP 500") for e in events[1:])))
        return [e.id for e in events[1:]]


@pytest.mark.parametrize("server", ['port = 8421\n', 'host = "::1"\nport = 8421\n',
                                    'port = 8421\ntls_cert = "c.pem"\ntls_key = "k.pem"\n'])
async def test_a_replayed_dead_letter_comes_from_the_source_serve_sends(
    receiver: Receiver, tmp_path: Path, server: str
) -> None:
    text = (f'name = "Shop"\nseed = "{VENDOR_SEED.hex()}"\n[server]\n{server}'
            f'[[webhooks]]\nname = "crm"\nurl = "{receiver.url}"\nsecret = "{SECRET}"\n')
    config = tmp_path / "vendor.toml"
    config.write_text(text, "utf-8")
    file = parse_vendor_file(tomllib.loads(text))
    scheme = "https" if file.server.tls_cert else "http"
    host = f"[{file.server.host}]" if ":" in file.server.host else file.server.host
    served = f"{scheme}://{host}:{file.server.port}"  # the url serve listens at (Server.url)
    (live,) = webhooks(file, served)  # what serve delivers with
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    ids = await dead_letters(data)
    args = ["vendor", "events", "--config", str(config), "--data-dir", str(data), "--replay"]
    out = await asyncio.to_thread(CliRunner().invoke, main, args, env=dict(os.environ))
    assert out.exit_code == 0, out.output
    bodies = receiver.verified()
    assert [b["id"] for b in bodies] == ids
    assert {b["source"] for b in bodies} == {live.source} == {served}
