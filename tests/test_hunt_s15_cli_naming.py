"""Naming a vendor with nothing (found by s15-huntcli).

Before: ``vrm share "" email=…`` — an empty VENDOR, as a script with an unset variable types it
(``vrm share "$VENDOR" …``) — matched every vendor's name as a prefix; with one relationship it
shared the data with that vendor, and ``vrm end ""`` ended it, without a word. Now an empty or
blank VENDOR is a usage error (exit 2) and nothing is sent.
"""

from __future__ import annotations

from pathlib import Path

from tests._cli_helpers import (
    VendorHost,
    connected,
    fails,
    history_length,
    hosted,
    relationships,
    vrm,
)

vendors = hosted("outfitters")


def test_an_empty_vendor_name_names_no_vendor(tmp_path: Path, vendors: VendorHost) -> None:
    home = connected(tmp_path, vendors["outfitters"].url)
    before = history_length("Wasatch", home)
    for args in (["share", "", "email=doc@example.org"], ["share", "  ", "email=x@y.org"],
                 ["withdraw", ""], ["data", ""], ["end", ""], ["rotate", " "]):  # fmt: skip
        fails(vrm(*args, home=home), 2, "name a vendor")
    assert history_length("Wasatch", home) == before
    (rel,) = relationships(home)
    assert rel["state"] == "agreed"
