"""``vrm address set --only-held`` (``update_address(only_held=True)``): each vendor gets only
the fields it holds from a live share of ours; one that holds none gets nothing.

Without it, a change of address gives every agreed vendor every field (§5.3.6-3), and one that
never had the street holds it from then on, from the update, without expiry (§12.10-1): the
boot shop that had only an email gets the home address. The default is unchanged this session
(the walkthrough and ``make demo`` tell the story of an update to everyone).
"""

from __future__ import annotations

from pathlib import Path

from tests._cli_helpers import VendorHost, connected, fails, hosted, ok, vrm

vendors = hosted("outfitters", "lodge")


def _provided(home: Path, vendor: str) -> dict[str, str]:
    held = ok(vrm("data", vendor, "--json", home=home)).json
    return {r["field"]: r["value"] for r in held["records"] if r["source"] == "provided"}


def test_only_what_each_vendor_holds_goes_to_it(tmp_path: Path, vendors: VendorHost) -> None:
    home = connected(tmp_path, vendors["outfitters"].url)
    ok(vrm("connect", vendors["lodge"].url, home=home))
    ok(vrm("share", "Wasatch Outfitters", "email=doc@example.org", home=home))
    ok(vrm("share", "Silver Star Lodge", "email=doc@example.org", "street=1 Old Road",
           "city=Ogden", home=home))  # fmt: skip
    moved = ("address", "set", "street=1 Main Street", "city=Park City",
             "email=doc@new.example", "--only-held")  # fmt: skip
    report = ok(vrm(*moved, "--json", home=home)).json
    assert {r["vendor"] for r in report["results"]} == {"Wasatch Outfitters", "Silver Star Lodge"}
    assert _provided(home, "Wasatch Outfitters") == {"email": "doc@new.example"}  # no street
    assert _provided(home, "Silver Star Lodge") == {
        "email": "doc@new.example", "street": "1 Main Street", "city": "Park City"}


def test_a_vendor_holding_none_of_the_fields_gets_nothing(
    tmp_path: Path, vendors: VendorHost
) -> None:
    home = connected(tmp_path, vendors["outfitters"].url)
    ok(vrm("connect", vendors["lodge"].url, home=home))
    ok(vrm("share", "Silver Star Lodge", "street=1 Old Road", home=home))
    out = ok(vrm("address", "set", "street=1 Main Street", "--only-held", home=home)).stdout
    assert "Wasatch Outfitters: not sent, it holds none of these fields from you" in out, out
    assert _provided(home, "Wasatch Outfitters") == {}
    assert _provided(home, "Silver Star Lodge") == {"street": "1 Main Street"}
    fails(vrm("address", "set", "phone=+1 435 555 0199", "--only-held", home=home), 1,
          "no vendor holds any of these fields")  # fmt: skip
