"""``vrm intent accept`` names the vendor key the relationship holds, as ``vrm connect`` does.

Before: taking up an offer from a vendor already in a relationship with you (``existing``), or
one whose answer did not come back, said ``"vendor_fingerprint": null`` with ``--json`` and left
the key out of the text — though the agent held it (s21-discovery's note; ``vrm connect`` was
mended in 0d33934).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._cli_helpers import VendorHost, new_home, ok, vendor_host, vrm


@pytest.fixture(scope="module")
def host() -> Iterator[VendorHost]:
    with vendor_host("avis", "budget") as h:
        yield h


def test_taking_up_a_second_offer_names_the_key_held(tmp_path: Path, host: VendorHost) -> None:
    home = new_home(tmp_path)
    args = ["intent", "new", "4-wheel-drive SUV rental", "--where", "Park City, UT",
            "--from", "2027-03-20", "--to", "2027-03-25", "--max-price", "300USD",
            "--deadline", "10s", "--no-discover", "--vendor", host["avis"].url, "--json"]
    first = ok(vrm(*args, home=home)).json
    taken = ok(vrm("intent", "accept", first["offers"][0]["id"][:6], "--json", home=home)).json
    assert taken["status"] == "accepted"
    held = taken["vendor_fingerprint"]
    assert held
    second = ok(vrm(*args, home=home)).json
    again = vrm("intent", "accept", second["offers"][0]["id"][:6], "--json", home=home)
    assert again.json["existing"] is True
    assert again.json["vendor_fingerprint"] == held
