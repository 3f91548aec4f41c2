"""``vrm outbox`` (issue #11 item 2): every waiting message — drafts too — by relationship with
why it waits, the count ``vrm relationships`` shows; ``drop ID`` and ``retry ID``; a vendor
reached under another URL is the same relationship (item 6)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._cli_helpers import VendorHost, fails, new_home, ok, vendor_host, vrm


@pytest.fixture
def host() -> Iterator[VendorHost]:
    with vendor_host("outfitters") as h:
        yield h


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return new_home(tmp_path)



def test_outbox_lists_drops_and_retries(home: Path, host: VendorHost) -> None:
    url = host["outfitters"].url
    ok(vrm("connect", url, home=home))
    again = ok(vrm("connect", url.replace("127.0.0.1", "localhost"), "--json", home=home)).json
    assert again["existing"] is True
    ok(vrm("share", "wasatch outfitters", "email=doc@example.org", "--purpose",
           "contracted-service", "--expires", "30d", home=home))
    host.stop("outfitters")
    # each waits in the outbox: exit 3 (the s17 contract; withdraw and rotate exited 0)
    fails(vrm("data", "Wasatch Outfitters", home=home), 3)
    fails(vrm("withdraw", "Wasatch Outfitters", home=home), 3)
    fails(vrm("rotate", "Wasatch Outfitters", home=home), 3)
    waiting = ok(vrm("outbox", "--json", home=home)).json["pending"]
    assert [w["type"] for w in waiting] == ["data.request", "data.withdraw", "key.rotate"]
    assert waiting[1]["reason"].startswith("not signed yet")
    (rel,) = ok(vrm("relationships", "--json", home=home)).json["relationships"]
    assert rel["pending"] == len(waiting)
    human = ok(vrm("outbox", home=home)).stdout
    assert "why it waits" in human
    assert "not signed yet" in human

    ok(vrm("outbox", "drop", waiting[1]["id"][:8], home=home))
    left = ok(vrm("outbox", "--json", home=home)).json["pending"]
    assert [w["type"] for w in left] == ["data.request", "key.rotate"]
    host.start("outfitters")
    ran = ok(vrm("outbox", "retry", left[0]["id"][:6], "--json", home=home)).json
    assert ran["waiting"] == 0
    assert ran["counts"]["refused"] == 0
    cmp = ok(vrm("history", "Wasatch Outfitters", "--compare", "--json", home=home)).json
    assert cmp["comparison"]["equal"] is True
