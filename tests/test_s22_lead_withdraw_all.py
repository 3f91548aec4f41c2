"""``vrm withdraw VENDOR`` takes back what an address update gave the vendor too (§5.3.2-1).

A change of address reaches every vendor with an agreement (§5.3.6-3), and one that never held
the person's street holds it from then on, from the update, without expiry (§12.10-1). Before,
no withdrawal could take it back: ``vrm withdraw`` withdrew the live shares only, and with no
share live it refused ("nothing to withdraw"), while the vendor kept the street.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from _vendor_proc import DAY_MS
from test_s18_held_update import Vendor
from test_s19_feed_privacy_crm import NEW_EMAIL, PHONE, apply_new, crm, values, vendor

from tests._cli_helpers import VendorHost, connected, fails, hosted, ok, vrm
from vrmproto._messages import DataWithdraw

vendors = hosted("outfitters")
__all__ = ["crm", "vendor"]  # the fixtures of test_s19_feed_privacy_crm, used here


def test_a_withdrawal_takes_back_an_address_no_share_gave(
    tmp_path: Path, vendors: VendorHost
) -> None:
    home = connected(tmp_path, vendors["outfitters"].url)
    fails(vrm("withdraw", "Wasatch Outfitters", home=home), 1, "nothing to withdraw")
    ok(vrm("address", "set", "street=1 Main Street", "city=Park City", home=home))
    held = ok(vrm("data", "Wasatch Outfitters", "--json", home=home)).json
    assert {r["field"] for r in held["records"] if r["source"] == "provided"} == {"street", "city"}
    done = ok(vrm("withdraw", "Wasatch Outfitters", home=home))  # was 1: nothing to withdraw
    assert "and what your address updates gave" in done.stdout, done
    held = ok(vrm("data", "Wasatch Outfitters", "--json", home=home)).json
    assert [r for r in held["records"] if r["source"] == "provided"] == []


def test_a_withdrawal_of_one_share_says_nothing_of_the_updates(
    tmp_path: Path, vendors: VendorHost
) -> None:
    home = connected(tmp_path, vendors["outfitters"].url)
    shared = ok(vrm("share", "Wasatch Outfitters", "email=doc@example.org", "--json",
                    home=home)).json  # fmt: skip
    ok(vrm("address", "set", "city=Park City", home=home))
    done = ok(vrm("withdraw", "Wasatch Outfitters", "--share", shared["share"][:12], home=home))
    assert "address updates" not in done.stdout, done
    held = ok(vrm("data", "Wasatch Outfitters", "--json", home=home)).json
    assert [r["field"] for r in held["records"] if r["source"] == "provided"] == ["city"]


@pytest.mark.slow
async def test_tryton_drops_the_fields_an_update_gave_at_a_withdrawal_of_all(
    vendor: Vendor, crm: Any
) -> None:
    """The data.withdrawn event's ``erase`` names the address.updated event too: the bridge
    drops the phone it held from it (a field no share held), as the vendor did."""
    v = vendor
    await v.share({"email": "old@example.org"}, expires=v.now + 7 * DAY_MS)
    await v.update({"email": NEW_EMAIL, "phone": PHONE})
    applied = await apply_new(v, crm, 0)
    rel = v.c.thread.hex()
    assert values("crm", rel) == {NEW_EMAIL, PHONE}
    await v.send(DataWithdraw(agreement=v.agreement, shares=()))
    await apply_new(v, crm, applied)
    assert values("crm", rel) == set()  # was {PHONE}
    assert await v.store.held(v.c.thread) == []
