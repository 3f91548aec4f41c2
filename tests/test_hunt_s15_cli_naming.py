"""Naming a vendor with nothing (found by s15-huntcli).

Before: ``vrm share "" email=…`` — an empty VENDOR, as a script with an unset variable types it
(``vrm share "$VENDOR" …``) — matched every vendor's name as a prefix; with one relationship it
shared the data with that vendor, and ``vrm end ""`` ended it, without a word. Now an empty or
blank VENDOR is a usage error (exit 2) and nothing is sent.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._cli_helpers import VendorHost, fails, new_home, ok, vendor_host, vrm


@pytest.fixture(scope="module")
def vendors() -> Iterator[VendorHost]:
    with vendor_host("outfitters") as h:
        yield h


def test_an_empty_vendor_name_names_no_vendor(tmp_path: Path, vendors: VendorHost) -> None:
    home = new_home(tmp_path)
    ok(vrm("connect", vendors["outfitters"].url, home=home))
    before = len(ok(vrm("history", "Wasatch", "--json", home=home)).json["entries"])
    for args in (["share", "", "email=doc@example.org"], ["share", "  ", "email=x@y.org"],
                 ["withdraw", ""], ["data", ""], ["end", ""], ["rotate", " "]):  # fmt: skip
        fails(vrm(*args, home=home), 2, "name a vendor")
    after = ok(vrm("history", "Wasatch", "--json", home=home)).json["entries"]
    assert len(after) == before
    (rel,) = ok(vrm("relationships", "--json", home=home)).json["relationships"]
    assert rel["state"] == "agreed"
