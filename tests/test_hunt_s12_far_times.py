"""Times past the year 9999: a message can carry any time up to 2^53 - 1 ms (year 287,396),
and Python's :mod:`datetime` stops at 9999-12-31.

Before: ``vrm share --expires 99999999d`` (or a vendor's offer valid that long, or an
intentcast asking for such dates) was accepted and stored, and then every command that shows
it — ``vrm relationships``, ``vrm history``, ``vrm intent show``, ``vrm ui`` — exited with
``vrm: year 275817 is out of range``, for good; the share itself was reported as a failure
(exit 2) after the vendor had confirmed it. On the vendor's side, one such share or
intentcast stopped ``vrm vendor tryton`` at that event on every restart (``changes_of``
raised). A duration too long for a message at all failed with ``OverflowError`` (exit 1)
instead of a usage error.
"""

from __future__ import annotations

import os
from pathlib import Path

import click
import pytest

from tests._cli_helpers import VendorHost, fails, new_home, ok, vendor_host, vrm
from vrmproto import Identity, Money
from vrmproto.cli._parse import TIME_MAX_MS, format_date, format_time, parse_duration
from vrmproto.client import DEFAULT_TERMS, Agent
from vrmproto.crm import changes_of
from vrmproto.crm._changes import when
from vrmproto.server import CatalogueItem, Endpoint, ReferencePolicy
from vrmproto.server._events import follow
from vrmproto.store import MemoryStore, SQLiteStore
from vrmproto.testing.transport import MemoryTransport
from vrmproto.ui._present import when as ui_when

DAY_MS = 86_400_000
URL = "http://acme.test"


@pytest.mark.parametrize(("ms", "text"), [
    (1, "1970-01-01 00:00 UTC"),
    (253_402_300_799_999, "9999-12-31 23:59 UTC"),
    (253_402_300_800_000, "10000-01-01 00:00 UTC"),
    (TIME_MAX_MS, "287396-10-12 08:59 UTC"),
])  # fmt: skip
def test_every_time_a_message_can_carry_is_shown(ms: int, text: str) -> None:
    assert format_time(ms) == text
    assert format_date(ms) == text.partition(" ")[0]
    assert ui_when(ms) == text
    assert when(ms) == text


def test_a_duration_no_message_can_carry_is_a_usage_error() -> None:
    now = 1_800_000_000_000
    assert parse_duration("99999999d", now_ms=now) == 99_999_999 * DAY_MS
    with pytest.raises(click.BadParameter, match="too long"):
        parse_duration("99999999999999999d", now_ms=now)
    with pytest.raises(click.BadParameter, match="too long"):
        parse_duration(f"{TIME_MAX_MS - now + 1}ms", now_ms=now)
    assert parse_duration(f"{TIME_MAX_MS - now}ms", now_ms=now) == TIME_MAX_MS - now


@pytest.fixture(scope="module")
def host() -> object:
    with vendor_host("outfitters") as h:
        yield h


def test_a_share_until_year_275817_is_shown_everywhere(tmp_path: Path, host: VendorHost) -> None:
    home = new_home(tmp_path)
    ok(vrm("connect", host["outfitters"].url, home=home))
    shared = ok(vrm("share", "Wasatch Outfitters", "email=doc@example.org", "--expires",
                    "99999999d", home=home))  # fmt: skip
    assert "✓ shared" in shared.stdout
    year = format_date(ok(vrm("relationships", "--json", home=home)).json["relationships"][0]
                       ["shares"][0]["expires"]).partition("-")[0]  # fmt: skip
    assert len(year) == 6
    assert year in ok(vrm("relationships", home=home)).stdout
    assert year in ok(vrm("history", "Wasatch Outfitters", home=home)).stdout
    fails(vrm("share", "Wasatch Outfitters", "email=doc@example.org", "--expires",
              "99999999999999999d", home=home), 2, "too long")  # fmt: skip


async def test_a_far_share_and_intentcast_make_changes_for_a_crm(tmp_path: Path) -> None:
    store = await SQLiteStore.open(tmp_path / "vendor.db")
    policy = ReferencePolicy(accepts_terms=[t.id for t in DEFAULT_TERMS], name="Acme",
                             catalogue=(CatalogueItem("a bike", ("bike",), Money(100, "USD")),))
    ep = Endpoint(Identity(os.urandom(32)), store=store, policy=policy, name="Acme")
    agent = await Agent.open(MemoryStore(), os.urandom(32), client=MemoryTransport({URL: ep}))
    try:
        thread = (await agent.connect(URL)).thread
        d = await agent.share(thread, {"email": "ada@example.org"}, purposes=["delivery"],
                              categories=["contact"], expires_ms=TIME_MAX_MS)  # fmt: skip
        assert d.confirmed
        await agent.intentcast("a bike", vendors=[URL], start=TIME_MAX_MS - DAY_MS,
                               end=TIME_MAX_MS, deadline_ms=3_000)  # fmt: skip
        feed = [e.as_json() async for e in follow(store, None)]
        texts = [str(c) for e in feed for c in changes_of(e)]  # raised ValueError before
        assert any("287396-10-12" in t for t in texts), texts
        assert any("from 287396-10-11 to 287396-10-12" in t for t in texts), texts
    finally:
        await agent.close()
        await store.close()
